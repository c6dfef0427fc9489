/**
 * The control-plane API over real sockets (port 0): every route, auth refusals, bad input, request
 * ids, and the job lifecycle — with an in-process worker on PGlite, and with real `arbor api` and
 * `arbor worker` processes on Postgres (one worker SIGKILLed mid-job; the job survives).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { openRegistry, type Registry } from "../registry/index.ts";
import { createApiApp } from "../train/api/app.ts";
import { type ApiServer, startApiServer } from "../train/api/server.ts";
import { Rng } from "../train/tune/random.ts";
import { runWorker } from "../train/worker/worker.ts";
import { createTestDatabase, POSTGRES_URL, type TestDatabase, testLogger } from "./helpers/db.ts";

const ROOT = path.resolve(import.meta.dir, "..");
const TOKEN = "test-token-0123456789abcdef";
let dir: string;

function syntheticFrame(n: number, seed: number): pl.DataFrame {
  const rng = new Rng(seed);
  const a = Array.from({ length: n }, () => rng.normal());
  const b = Array.from({ length: n }, () => rng.normal());
  const city = Array.from({ length: n }, () => `c${rng.int(5)}`);
  const y = a.map((v, i) => v - 0.7 * b[i] * b[i] + 0.3 * Number(city[i].slice(1)) + 0.5 * rng.normal() > 0);
  return pl.DataFrame({ a, b, city, y });
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "arbor-api-test-"));
  syntheticFrame(3000, 1).writeParquet(path.join(dir, "small.parquet"));
  syntheticFrame(30000, 2).writeParquet(path.join(dir, "large.parquet"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tiny client. */
function client(base: string) {
  return async (
    method: string,
    p: string,
    body?: unknown,
    token: string | null = TOKEN,
    headers: Record<string, string> = {},
  ) => {
    const res = await fetch(`${base}${p}`, {
      method,
      headers: {
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    const ct = res.headers.get("content-type") ?? "";
    return { status: res.status, headers: res.headers, body: ct.includes("json") ? JSON.parse(text) : text };
  };
}

describe("control-plane API on PGlite", () => {
  let db: TestDatabase;
  let registry: Registry;
  let server: ApiServer;
  let call: ReturnType<typeof client>;
  const logger = testLogger();

  beforeAll(async () => {
    db = await createTestDatabase("pglite");
    const config = db.config({ apiTokens: [TOKEN] });
    registry = await openRegistry(config, logger);
    server = startApiServer(createApiApp({ registry, config, logger }), { port: 0, hostname: "127.0.0.1" });
    call = client(server.url);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await registry?.close();
    await db?.drop();
  });

  test("health, readiness, metrics, OpenAPI, request ids, unknown routes", async () => {
    expect((await call("GET", "/healthz")).body).toEqual({ status: "ok" });
    expect((await call("GET", "/readyz")).body.status).toBe("ready");
    const echoed = await call("GET", "/healthz", undefined, null, { "x-request-id": "abc-123" });
    expect(echoed.headers.get("x-request-id")).toBe("abc-123");
    expect((await call("GET", "/healthz")).headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const doc = (await call("GET", "/openapi.json")).body;
    expect(doc.openapi).toBe("3.1.0");
    for (const p of [
      "/v1/splits",
      "/v1/splits/{id}",
      "/v1/studies",
      "/v1/studies/{id}:cancel",
      "/v1/registry/models/{name}:promote",
    ]) {
      expect(doc.paths[p]).toBeDefined();
    }
    expect(
      doc.paths["/v1/studies"].post.requestBody.content["application/json"].schema.properties.trials,
    ).toBeDefined();
    const nf = await call("GET", "/v1/nope");
    expect([nf.status, nf.body.error.code]).toEqual([404, "ROUTE_NOT_FOUND"]);
    const na = await call("PUT", "/v1/splits");
    expect([na.status, na.body.error.code]).toEqual([405, "METHOD_NOT_ALLOWED"]);
    const metrics = await call("GET", "/metrics");
    expect(metrics.body).toContain('arbor_api_requests_total{route="healthz",method="GET",status="200"}');
    expect(metrics.body).toContain("# TYPE arbor_jobs gauge");
  });

  test("mutating routes refuse missing and wrong tokens; reads need none", async () => {
    const none = await call("POST", "/v1/splits", { data: "x", target: "y" }, null);
    expect([none.status, none.body.error.code]).toEqual([401, "UNAUTHORIZED"]);
    const wrong = await call(
      "DELETE",
      "/v1/splits/spl_00000000000000000000",
      undefined,
      "wrong-token-0123456789",
    );
    expect([wrong.status, wrong.body.error.code]).toEqual([401, "UNAUTHORIZED"]);
    expect((await call("GET", "/v1/splits", undefined, null)).status).toBe(200);
  });

  let splitId: string;
  test("splits: create from a URI, get, list with filters and pages, patch, soft delete, purge; bad input named", async () => {
    const bad = await call("POST", "/v1/splits", { target: 5, bogus: 1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("INVALID_ARGUMENT");
    expect(bad.body.error.message).toContain("body.data");
    expect(bad.body.error.message).toContain("body.target");
    const malformed = await call("POST", "/v1/splits", "{not json");
    expect(malformed.body.error.code).toBe("MALFORMED_BODY");
    const created = await call("POST", "/v1/splits", {
      data: path.join(dir, "small.parquet"),
      target: "y",
      strategy: "stratified",
      name: "s1",
      tags: ["a"],
    });
    expect(created.status).toBe(201);
    splitId = created.body.id;
    expect(created.headers.get("location")).toBe(`/v1/splits/${splitId}`);
    const second = await call("POST", "/v1/splits", {
      data: path.join(dir, "small.parquet"),
      target: "y",
      seed: 3,
      name: "s2",
    });
    expect(second.status).toBe(201);
    expect((await call("GET", `/v1/splits/${splitId}`)).body.rows).toBe(3000);
    const p1 = await call("GET", "/v1/splits?limit=1");
    expect(p1.body.items.length).toBe(1);
    expect(p1.body.nextOffset).toBe(1);
    const p2 = await call("GET", "/v1/splits?limit=1&offset=1");
    expect(p2.body.items[0].id).not.toBe(p1.body.items[0].id);
    expect(
      (await call("GET", "/v1/splits?strategy=stratified")).body.items.map((s: { id: string }) => s.id),
    ).toEqual([splitId]);
    expect((await call("GET", "/v1/splits?limit=0")).body.error.message).toContain("query.limit");
    const patched = await call("PATCH", `/v1/splits/${splitId}`, { name: "renamed", tags: ["x", "y"] });
    expect([patched.body.name, patched.body.tags]).toEqual(["renamed", ["x", "y"]]);
    expect((await call("GET", "/v1/splits?tag=y")).body.items.length).toBe(1);
    expect((await call("PATCH", `/v1/splits/${splitId}`, {})).status).toBe(400);
    const deleted = await call("DELETE", `/v1/splits/${second.body.id}`);
    expect(deleted.body.deletedAt).not.toBeNull();
    expect((await call("GET", `/v1/splits/${second.body.id}`)).body.error.code).toBe("SPLIT_NOT_FOUND");
    expect((await call("GET", `/v1/splits/${second.body.id}?include_deleted=true`)).status).toBe(200);
    const purged = await call("DELETE", `/v1/splits/${second.body.id}?purge=true`);
    expect(purged.body.purged).toBe(true);
    expect(purged.body.deletedObjects).toBeGreaterThan(0);
    expect((await call("GET", `/v1/splits/${second.body.id}?include_deleted=true`)).status).toBe(404);
  }, 60_000);

  test("studies: bad bodies named; create queues a job; cancel a queued one; a worker runs one to a registered model", async () => {
    const bad = await call("POST", "/v1/studies", {
      split: splitId,
      task: "binary",
      trials: 0,
      promote: "production",
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain("body.trials");
    expect(bad.body.error.message).toContain("body.promote");
    const noSplit = await call("POST", "/v1/studies", { split: "spl_00000000000000000000", task: "binary" });
    expect(noSplit.body.error).toMatchObject({ code: "SPLIT_NOT_FOUND" });

    const toCancel = await call("POST", "/v1/studies", {
      split: splitId,
      task: "binary",
      name: "c1",
      trials: 3,
    });
    expect(toCancel.status).toBe(202);
    expect(toCancel.body.job.state).toBe("queued");
    const cancelled = await call("POST", `/v1/studies/${toCancel.body.study.id}:cancel`);
    expect(cancelled.status).toBe(202);
    expect(cancelled.body.study.status).toBe("cancelled");
    expect(cancelled.body.job.state).toBe("cancelled");
    expect(
      (await call("POST", "/v1/studies", { split: splitId, task: "binary", name: "c1" })).body.error.code,
    ).toBe("CONFLICT");

    const created = await call("POST", "/v1/studies", {
      split: splitId,
      task: "binary",
      name: "s-run",
      trials: 4,
      rounds: 30,
      register: "api-model",
      promote: "production",
    });
    expect(created.status).toBe(202);
    const ran = await runWorker({
      registry,
      config: db.config({ apiTokens: [TOKEN] }),
      logger,
      signal: new AbortController().signal,
      exitWhenIdle: true,
    });
    expect(ran).toBe(1);
    const got = await call("GET", `/v1/studies/${created.body.study.id}`);
    expect(got.body.study.status).toBe("complete");
    expect(got.body.trials.length).toBe(4);
    expect(got.body.job.state).toBe("succeeded");
    expect(got.body.job.result.registered).toEqual({ name: "api-model", version: 1 });
    expect(
      (await call("GET", "/v1/studies?status=complete")).body.items.map((s: { name: string }) => s.name),
    ).toEqual(["s-run"]);
    expect((await call("GET", `/v1/jobs/${created.body.job.id}`)).body.state).toBe("succeeded");
    expect((await call("GET", "/metrics")).body).toContain('arbor_studies{status="complete"} 1');
    expect((await call("GET", "/v1/jobs/job_00000000000000000000")).body.error.code).toBe("JOB_NOT_FOUND");
  }, 120_000);

  test("cancelling a running study stops its worker; the job ends cancelled", async () => {
    const created = await call("POST", "/v1/studies", {
      split: splitId,
      task: "binary",
      name: "long",
      trials: 500,
      rounds: 30,
      pruner: "none",
    });
    expect(created.status).toBe(202);
    const worker = runWorker({
      registry,
      config: db.config({ apiTokens: [TOKEN] }),
      logger,
      signal: new AbortController().signal,
      exitWhenIdle: true,
    });
    for (let i = 0; i < 600; i++) {
      const s = await call("GET", `/v1/studies/${created.body.study.id}`);
      if (s.body.trials.filter((t: { state: string }) => t.state === "complete").length >= 2) break;
      await Bun.sleep(50);
    }
    expect((await call("POST", `/v1/studies/${created.body.study.id}:cancel`)).status).toBe(202);
    await worker;
    const got = await call("GET", `/v1/studies/${created.body.study.id}`);
    expect(got.body.study.status).toBe("cancelled");
    expect(got.body.job.state).toBe("cancelled");
    expect(got.body.trials.length).toBeLessThan(500);
    expect(got.body.trials.some((t: { state: string }) => t.state === "running")).toBe(false);
  }, 120_000);

  test("a worker stopped mid-job (SIGTERM) hands the job back queued, the attempt not counted", async () => {
    const splitId = (await call("GET", "/v1/splits?limit=1")).body.items[0].id;
    const created = await call("POST", "/v1/studies", {
      split: splitId,
      task: "binary",
      name: "handed-back",
      trials: 500,
      rounds: 30,
      pruner: "none",
    });
    const stop = new AbortController();
    const worker = runWorker({
      registry,
      config: db.config({ apiTokens: [TOKEN] }),
      logger,
      signal: stop.signal,
    });
    for (let i = 0; i < 600; i++) {
      const s = await call("GET", `/v1/studies/${created.body.study.id}`);
      if (s.body.trials.some((t: { state: string }) => t.state === "complete")) break;
      await Bun.sleep(50);
    }
    stop.abort();
    expect(await worker).toBe(1);
    const job = await registry.jobs.get(created.body.job.id);
    expect(job).toMatchObject({ state: "queued", attempts: 0, workerId: null });
    expect(await registry.jobs.cancel(job.id)).toMatchObject({ state: "cancelled" });
  }, 120_000);

  test("registry models: list, versions, labels, promote, rollback, archive", async () => {
    const list = await call("GET", "/v1/registry/models");
    expect(list.body.items.map((m: { name: string }) => m.name)).toEqual(["api-model"]);
    const versions = await call("GET", "/v1/registry/models/api-model/versions");
    expect(versions.body.items[0].lineage.studyName).toBe("s-run");
    expect((await call("GET", "/v1/registry/models/api-model/labels")).body.items[0]).toMatchObject({
      label: "production",
      version: 1,
    });
    expect((await call("POST", "/v1/registry/models/api-model:promote", { version: 1 }, null)).status).toBe(
      401,
    );
    const staged = await call("POST", "/v1/registry/models/api-model:promote", {
      version: 1,
      label: "staging",
      reason: "api test",
    });
    expect(staged.body).toMatchObject({ label: "staging", version: 1 });
    expect(
      (await call("POST", "/v1/registry/models/api-model:promote", { version: "1", label: "x" })).body.error
        .message,
    ).toContain("body.version");
    expect(
      (await call("POST", "/v1/registry/models/api-model:rollback", { label: "staging" })).body.error.code,
    ).toBe("NO_PREVIOUS_VERSION");
    expect((await call("POST", "/v1/registry/models/api-model/versions/1:archive")).body.error.code).toBe(
      "VERSION_IN_USE",
    );
    expect(
      (await call("POST", "/v1/registry/models/api-model/versions/zero:archive")).body.error.message,
    ).toContain("path.version");
    expect((await call("GET", "/v1/registry/models/nope")).body.error.code).toBe("MODEL_NOT_FOUND");
  });
});

describe.skipIf(!POSTGRES_URL)("arbor api + arbor worker processes on Postgres", () => {
  if (!POSTGRES_URL) console.warn("skipping the API/worker process suite: DATABASE_URL is unset");
  let db: TestDatabase;
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL");
    await db?.drop();
  });

  function start(args: string[], env: Record<string, string>) {
    const child = spawn(process.execPath, [path.join(ROOT, "train", "cli.ts"), ...args], {
      env: { ...process.env, ...env, ARBOR_LOG_LEVEL: "silent", ARBOR_API_TOKENS: TOKEN },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let err = "";
    child.stderr?.on("data", (d) => {
      err += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    return { child, exited, stderr: () => err };
  }

  test("a job survives its worker's SIGKILL: another worker finishes the study", async () => {
    db = await createTestDatabase("postgres");
    const api = start(["api", "--port", "0", "--host", "127.0.0.1"], db.env);
    let url = "";
    for (let i = 0; i < 300 && !url; i++) {
      const m = /"listening":"([^"]+)"/.exec(api.stderr());
      if (m) url = m[1];
      else await Bun.sleep(100);
    }
    expect(url).not.toBe("");
    const call = client(url);
    const split = await call("POST", "/v1/splits", { data: path.join(dir, "large.parquet"), target: "y" });
    expect(split.status).toBe(201);
    const created = await call("POST", "/v1/studies", {
      split: split.body.id,
      task: "binary",
      name: "survivor",
      trials: 8,
      rounds: 150,
      earlyStopping: 0,
      pruner: "none",
      staleSeconds: 3,
    });
    expect(created.status).toBe(202);
    const w1 = start(["worker", "--stale-after", "3"], db.env);
    // Kill the first worker once it is inside a trial.
    for (let i = 0; i < 600; i++) {
      const s = await call("GET", `/v1/studies/${created.body.study.id}`);
      if (s.body.trials.some((t: { state: string }) => t.state === "running")) break;
      await Bun.sleep(100);
    }
    w1.child.kill("SIGKILL");
    await w1.exited;
    const w2 = start(["worker", "--stale-after", "3", "--max-jobs", "1"], db.env);
    expect(await w2.exited).toBe(0);
    const done = await call("GET", `/v1/studies/${created.body.study.id}`);
    expect(done.body.study.status).toBe("complete");
    expect(done.body.trials.length).toBe(8);
    expect(done.body.trials.every((t: { state: string }) => t.state === "complete")).toBe(true);
    expect(done.body.job.state).toBe("succeeded");
    expect(done.body.job.attempts).toBe(2);
    api.child.kill("SIGTERM");
    expect(await api.exited).toBe(0);
  }, 120_000);
});
