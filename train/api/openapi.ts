/** The OpenAPI 3.1 document of the control plane, derived from the route table and the zod body schemas. */
import { z } from "zod";
import { ERRORS } from "../../shared/errors.ts";
import { tuneRequestSchema } from "../worker/tune-job.ts";
import type { Route } from "./http.ts";
import { createSplitSchema } from "./splits.ts";

const BODIES: Record<string, z.ZodType> = {
  "splits.create": createSplitSchema,
  "studies.create": tuneRequestSchema,
};

const SUMMARIES: Record<string, string> = {
  healthz: "liveness",
  readyz: "readiness: the database answers",
  metrics: "Prometheus metrics",
  openapi: "this document",
  "splits.create": "split a dataset (path, file:// or gs:// URI) into train/valid/test",
  "splits.list": "list splits (filters: name, strategy, tag, include_deleted; limit/offset)",
  "splits.get": "one split",
  "splits.update": "rename or retag a split",
  "splits.delete": "soft-delete a split, or remove it and its artifacts with purge=true",
  "studies.create": "create a study and queue it as a job for `arbor worker`",
  "studies.list": "list studies (filter: status; limit/offset)",
  "studies.get": "a study with its trials and job",
  "studies.cancel": "cancel a queued or running study",
  "jobs.list": "list jobs (filter: state; limit/offset)",
  "jobs.get": "one job",
  "models.list": "registered models",
  "models.get": "a model: versions, labels, label events",
  "models.versions": "a model's versions",
  "models.labels": "a model's labels and their audit trail",
  "models.promote": "point a label at a version",
  "models.rollback": "move a label back to its previous version",
  "models.archive": "archive a version",
};

/** Extra body schemas registered by the app (kept here to avoid an import cycle). */
export function registerBodySchema(routeName: string, schema: z.ZodType): void {
  BODIES[routeName] = schema;
}

const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: {
        code: { type: "string", enum: Object.keys(ERRORS) },
        message: { type: "string" },
        details: { type: "object" },
      },
      required: ["code", "message"],
    },
  },
};

/** Build the document. */
export function openApiDocument(routes: readonly Route[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const params = [...r.path.matchAll(/\{([a-zA-Z]+)\}/g)].map((m) => ({
      name: m[1],
      in: "path",
      required: true,
      schema: { type: "string" },
    }));
    const op: Record<string, unknown> = {
      operationId: r.name,
      summary: SUMMARIES[r.name] ?? r.name,
      parameters: params,
      responses: {
        "200": { description: "success" },
        default: { description: "error", content: { "application/json": { schema: errorSchema } } },
      },
    };
    if (r.mutating) op["security"] = [{ bearer: [] }];
    const body = BODIES[r.name];
    if (body) {
      op["requestBody"] = {
        required: true,
        content: {
          "application/json": { schema: z.toJSONSchema(body, { io: "input", unrepresentable: "any" }) },
        },
      };
    }
    paths[r.path] ??= {};
    paths[r.path][r.method.toLowerCase()] = op;
  }
  return {
    openapi: "3.1.0",
    info: { title: "arbor control plane", version: "1" },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    paths,
  };
}
