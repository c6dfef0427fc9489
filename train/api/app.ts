/**
 * The control plane: splits, studies (queued as jobs for `arbor worker`), registry models, health,
 * readiness, Prometheus metrics and the OpenAPI document. `app.fetch(Request)` handles a request
 * without sockets (tests call it directly); `server.ts` puts it on Bun.serve.
 */
import { count, sql } from "drizzle-orm";
import { z } from "zod";
import { jobs, studies } from "../../registry/db/schema.ts";
import { newId } from "../../registry/ids.ts";
import type { Registry } from "../../registry/index.ts";
import type { ArborConfig } from "../../shared/config.ts";
import { type ArborError, arborError, toArborError } from "../../shared/errors.ts";
import { type Logger, requestIdFrom } from "../../shared/logger.ts";
import {
  counter,
  createMetricsRegistry,
  Gauge,
  histogram,
  type Registry as MetricsRegistry,
} from "../../shared/metrics.ts";
import { STRATEGIES } from "../data/split.ts";
import { buildStudyDefinition } from "../tune/pipeline.ts";
import { StudyStorage } from "../tune/storage.ts";
import { TUNE_JOB, tuneOptionsOf, tuneRequestSchema } from "../worker/tune-job.ts";
import {
  errorResponse,
  json,
  page,
  pagination,
  type RequestContext,
  type Route,
  Router,
  readBody,
  tokenIndex,
  validate,
} from "./http.ts";
import { openApiDocument, registerBodySchema } from "./openapi.ts";
import { createSplit, createSplitSchema } from "./splits.ts";

/** A handler-only app. */
export interface ApiApp {
  fetch(req: Request): Promise<Response>;
  readonly routes: readonly Route[];
  readonly metrics: MetricsRegistry;
}

/** Body of `PATCH /v1/splits/{id}`. */
export const patchSplitSchema = z
  .object({
    name: z.string().min(1).nullable().optional(),
    tags: z.array(z.string().min(1).max(100)).max(50).optional(),
  })
  .strict()
  .refine((b) => b.name !== undefined || b.tags !== undefined, { message: "give name and/or tags" });
/** Body of `POST /v1/registry/models/{name}:promote`. */
export const promoteSchema = z
  .object({
    version: z.number().int().positive(),
    label: z.string().min(1),
    reason: z.string().max(500).optional(),
  })
  .strict();
/** Body of `POST /v1/registry/models/{name}:rollback`. */
export const rollbackSchema = z
  .object({ label: z.string().min(1), reason: z.string().max(500).optional() })
  .strict();

/** Build the app over an open registry. */
export function createApiApp(o: {
  registry: Registry;
  config: ArborConfig;
  logger: Logger;
  metrics?: MetricsRegistry;
}): ApiApp {
  const { registry, config } = o;
  const metrics = o.metrics ?? createMetricsRegistry({ defaultMetrics: false });
  const requests = counter(metrics, "arbor_api_requests_total", "API requests by route, method and status", [
    "route",
    "method",
    "status",
  ]);
  const latency = histogram(metrics, "arbor_api_request_duration_seconds", "API request latency", [
    "route",
    "method",
  ]);
  const storage = new StudyStorage(registry.db);
  const queue = registry.jobs;
  // Queue depth and study states, read from the database at scrape time.
  new Gauge({
    name: "arbor_jobs",
    help: "jobs by state",
    labelNames: ["state"],
    registers: [metrics],
    async collect() {
      const rows = await registry.db.select({ state: jobs.state, n: count() }).from(jobs).groupBy(jobs.state);
      this.reset();
      for (const r of rows) this.set({ state: r.state }, r.n);
    },
  });
  new Gauge({
    name: "arbor_studies",
    help: "studies by status",
    labelNames: ["status"],
    registers: [metrics],
    async collect() {
      const rows = await registry.db
        .select({ status: studies.status, n: count() })
        .from(studies)
        .groupBy(studies.status);
      this.reset();
      for (const r of rows) this.set({ status: r.status }, r.n);
    },
  });
  const router = new Router();
  const log = o.logger.child({ component: "api" });
  if (config.apiTokens.length === 0)
    log.warn("no ARBOR_API_TOKENS configured: every mutating route answers 401");

  const route = (r: Route) => router.add(r);
  registerBodySchema("splits.update", patchSplitSchema);
  registerBodySchema("models.promote", promoteSchema);
  registerBodySchema("models.rollback", rollbackSchema);

  // ── health, readiness, metrics, OpenAPI ────────────────────────────────────────────
  route({
    method: "GET",
    path: "/healthz",
    name: "healthz",
    mutating: false,
    handler: async () => json({ status: "ok" }),
  });
  route({
    method: "GET",
    path: "/readyz",
    name: "readyz",
    mutating: false,
    handler: async () => {
      try {
        await registry.db.execute(sql`select 1`);
        return json({ status: "ready", database: registry.kind, store: registry.store.uri });
      } catch (e) {
        return errorResponse(
          arborError("DB_UNAVAILABLE", `readyz: database check failed: ${(e as Error).message}`),
        );
      }
    },
  });
  route({
    method: "GET",
    path: "/metrics",
    name: "metrics",
    mutating: false,
    handler: async () =>
      new Response(await metrics.metrics(), { headers: { "content-type": metrics.contentType } }),
  });
  route({
    method: "GET",
    path: "/openapi.json",
    name: "openapi",
    mutating: false,
    handler: async () => json(openApiDocument(router.routes)),
  });

  // ── splits ─────────────────────────────────────────────────────────────────────────
  route({
    method: "POST",
    path: "/v1/splits",
    name: "splits.create",
    mutating: true,
    handler: async (c) => {
      const body = await readBody(c.req, createSplitSchema);
      const split = await createSplit(registry, config, body, log.child({ request_id: c.requestId }));
      return json(split, 201, { location: `/v1/splits/${split.id}` });
    },
  });
  route({
    method: "GET",
    path: "/v1/splits",
    name: "splits.list",
    mutating: false,
    handler: async (c) => {
      const p = pagination(c.url);
      const q = c.url.searchParams;
      const strategy = q.get("strategy") ?? undefined;
      if (strategy !== undefined && !(STRATEGIES as readonly string[]).includes(strategy)) {
        throw arborError("INVALID_ARGUMENT", `query.strategy: expected one of ${STRATEGIES.join(", ")}`);
      }
      const items = await registry.splits.list({
        name: q.get("name") ?? undefined,
        strategy,
        tag: q.get("tag") ?? undefined,
        includeDeleted: q.get("include_deleted") === "true",
        ...p,
      });
      return json(page(items, p));
    },
  });
  route({
    method: "GET",
    path: "/v1/splits/{id}",
    name: "splits.get",
    mutating: false,
    handler: async (c) =>
      json(
        await registry.splits.get(c.params["id"], {
          includeDeleted: c.url.searchParams.get("include_deleted") === "true",
        }),
      ),
  });
  route({
    method: "PATCH",
    path: "/v1/splits/{id}",
    name: "splits.update",
    mutating: true,
    handler: async (c) => {
      const body = await readBody(c.req, patchSplitSchema);
      return json(await registry.splits.update(c.params["id"], body));
    },
  });
  route({
    method: "DELETE",
    path: "/v1/splits/{id}",
    name: "splits.delete",
    mutating: true,
    handler: async (c) => {
      const purge = c.url.searchParams.get("purge");
      if (purge !== null && purge !== "true" && purge !== "false") {
        throw arborError("INVALID_ARGUMENT", "query.purge: must be true or false");
      }
      if (purge === "true") return json({ ...(await registry.splits.purge(c.params["id"])), purged: true });
      return json(await registry.splits.softDelete(c.params["id"]));
    },
  });

  // ── studies and jobs ───────────────────────────────────────────────────────────────
  route({
    method: "POST",
    path: "/v1/studies",
    name: "studies.create",
    mutating: true,
    handler: async (c) => {
      const req = await readBody(c.req, tuneRequestSchema);
      const split = await registry.splits.get(req.split).catch((e: ArborError) => {
        throw e.code === "SPLIT_NOT_FOUND"
          ? arborError("SPLIT_NOT_FOUND", `body.split: no split with id "${req.split}"`)
          : e;
      });
      const jobId = newId("job");
      const name = req.name ?? `study-${jobId.slice(4)}`;
      const def = buildStudyDefinition(tuneOptionsOf(req, req.target ?? split.target, name, jobId), split.id);
      const { study, created } = await storage.createOrLoad(def);
      if (!created)
        throw arborError("CONFLICT", `body.name: a study named "${name}" exists already (${study.id})`);
      const job = await queue.enqueue({
        id: jobId,
        kind: TUNE_JOB,
        payload: { request: req, studyName: name, studyId: study.id },
        createdBy: c.actor,
      });
      return json({ study, job }, 202, { location: `/v1/studies/${study.id}` });
    },
  });
  route({
    method: "GET",
    path: "/v1/studies",
    name: "studies.list",
    mutating: false,
    handler: async (c) => {
      const p = pagination(c.url);
      const status = c.url.searchParams.get("status") ?? undefined;
      const statuses = ["queued", "running", "complete", "failed", "cancelled"];
      if (status !== undefined && !statuses.includes(status)) {
        throw arborError("INVALID_ARGUMENT", `query.status: expected one of ${statuses.join(", ")}`);
      }
      return json(page(await storage.list({ status, ...p }), p));
    },
  });
  route({
    method: "GET",
    path: "/v1/studies/{id}",
    name: "studies.get",
    mutating: false,
    handler: async (c) => {
      const study = await storage.get(c.params["id"]);
      // Trials of workers that died show as what they are (waiting or failed), not "running".
      await storage.reapStale(study.id);
      const trials = await storage.trials(study.id);
      const job = study.jobId ? await queue.get(study.jobId).catch(() => null) : null;
      return json({ study, trials, job });
    },
  });
  route({
    method: "POST",
    path: "/v1/studies/{id}:cancel",
    name: "studies.cancel",
    mutating: true,
    handler: async (c) => {
      const study = await storage.get(c.params["id"]);
      if (study.status === "complete" || study.status === "failed") {
        throw arborError("CONFLICT", `cancel study: ${study.name} is ${study.status} already`);
      }
      await storage.setStatus(study.id, "cancelled", ["queued", "running", "cancelled"]);
      const job = study.jobId ? await queue.cancel(study.jobId) : null;
      return json({ study: await storage.get(study.id), job }, 202);
    },
  });
  route({
    method: "GET",
    path: "/v1/jobs",
    name: "jobs.list",
    mutating: false,
    handler: async (c) => {
      const p = pagination(c.url);
      const state = validate(
        z.enum(["queued", "running", "succeeded", "failed", "cancelled"]).optional(),
        c.url.searchParams.get("state") ?? undefined,
        "query.state",
      );
      return json(page(await queue.list({ state, ...p }), p));
    },
  });
  route({
    method: "GET",
    path: "/v1/jobs/{id}",
    name: "jobs.get",
    mutating: false,
    handler: async (c) => json(await queue.get(c.params["id"])),
  });

  // ── registry models ────────────────────────────────────────────────────────────────
  route({
    method: "GET",
    path: "/v1/registry/models",
    name: "models.list",
    mutating: false,
    handler: async () => json({ items: await registry.models.list() }),
  });
  route({
    method: "GET",
    path: "/v1/registry/models/{name}",
    name: "models.get",
    mutating: false,
    handler: async (c) => json(await registry.models.show(c.params["name"])),
  });
  route({
    method: "GET",
    path: "/v1/registry/models/{name}/versions",
    name: "models.versions",
    mutating: false,
    handler: async (c) => json({ items: (await registry.models.show(c.params["name"])).versionList }),
  });
  route({
    method: "GET",
    path: "/v1/registry/models/{name}/labels",
    name: "models.labels",
    mutating: false,
    handler: async (c) => {
      const d = await registry.models.show(c.params["name"]);
      return json({ items: d.labels, events: d.events });
    },
  });
  route({
    method: "POST",
    path: "/v1/registry/models/{name}:promote",
    name: "models.promote",
    mutating: true,
    handler: async (c) => {
      const b = await readBody(c.req, promoteSchema);
      return json(
        await registry.models.promote(c.params["name"], b.version, b.label, {
          actor: c.actor,
          reason: b.reason,
        }),
      );
    },
  });
  route({
    method: "POST",
    path: "/v1/registry/models/{name}:rollback",
    name: "models.rollback",
    mutating: true,
    handler: async (c) => {
      const b = await readBody(c.req, rollbackSchema);
      return json(
        await registry.models.rollback(c.params["name"], b.label, { actor: c.actor, reason: b.reason }),
      );
    },
  });
  route({
    method: "POST",
    path: "/v1/registry/models/{name}/versions/{version}:archive",
    name: "models.archive",
    mutating: true,
    handler: async (c) => {
      const v = validate(z.coerce.number().int().positive(), c.params["version"], "path.version");
      return json(await registry.models.archive(c.params["name"], v));
    },
  });

  return {
    routes: router.routes,
    metrics,
    async fetch(req: Request): Promise<Response> {
      const started = performance.now();
      const url = new URL(req.url);
      const requestId = requestIdFrom(req.headers.get("x-request-id") ?? undefined);
      const found = router.match(req.method, url.pathname);
      const routeName = "route" in found ? found.route.name : "unmatched";
      let res: Response;
      try {
        if ("error" in found) throw found.error;
        let actor = "anonymous";
        if (found.route.mutating) {
          const idx = tokenIndex(req.headers.get("authorization"), config.apiTokens);
          if (idx < 0) {
            throw arborError(
              "UNAUTHORIZED",
              req.headers.get("authorization")
                ? `${req.method} ${url.pathname}: the bearer token is not valid`
                : `${req.method} ${url.pathname}: needs Authorization: Bearer <token>`,
            );
          }
          actor = `token#${idx}`;
        }
        res = await found.route.handler({
          req,
          url,
          params: "params" in found ? found.params : {},
          requestId,
          actor,
        } satisfies RequestContext);
      } catch (e) {
        const err = toArborError(e);
        if (err.code === "INTERNAL") log.error({ err: e, request_id: requestId }, "internal error");
        res = errorResponse(err);
      }
      res.headers.set("x-request-id", requestId);
      const seconds = (performance.now() - started) / 1000;
      requests.inc({ route: routeName, method: req.method, status: String(res.status) });
      latency.observe({ route: routeName, method: req.method }, seconds);
      log.info(
        {
          request_id: requestId,
          method: req.method,
          path: url.pathname,
          status: res.status,
          ms: seconds * 1000,
        },
        "request",
      );
      return res;
    },
  };
}
