/** `arbor api`: the control-plane REST API (Bun.serve) over the registry and the store. */
import { z } from "zod";
import { openRegistry } from "../../registry/index.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createApiApp } from "../api/app.ts";
import { startApiServer } from "../api/server.ts";
import { defineCommand } from "../cli/command.ts";
import { runWorker } from "../worker/worker.ts";

/** `arbor api`. */
export const apiCommand = defineCommand({
  name: "api",
  summary: "serve the control-plane REST API (splits, studies, jobs, registry models) until interrupted",
  flags: [
    {
      name: "port",
      type: "integer",
      placeholder: "P",
      default: 8070,
      description: "port (0: any free port)",
    },
    {
      name: "host",
      type: "string",
      placeholder: "HOST",
      default: "0.0.0.0",
      description: "interface to listen on",
    },
    {
      name: "worker",
      type: "boolean",
      description: "also run a job worker in this process (needed with the embedded database)",
    },
  ],
  schema: z.object({
    _: z.array(z.string()),
    port: z.number().int().min(0).max(65535),
    host: z.string().min(1),
    worker: z.boolean().optional(),
  }),
  examples: [
    "ARBOR_API_TOKENS=$(openssl rand -hex 24) arbor api --port 8070",
    "arbor api --worker   # one process on PGlite",
  ],
  async run(ctx, args) {
    const registry = await openRegistry(ctx.config, ctx.logger);
    ctx.onClose(() => registry.close());
    const app = createApiApp({
      registry,
      config: ctx.config,
      logger: ctx.logger,
      metrics: createMetricsRegistry(),
    });
    const server = startApiServer(app, { port: args.port, hostname: args.host });
    ctx.onClose(() => server.stop());
    ctx.say(`arbor api listening on ${server.url} (${registry.kind} database, store ${registry.store.uri})`);
    if (registry.kind === "pglite" && !args.worker) {
      ctx.say("embedded database: no other process can open it, so queued studies need `arbor api --worker`");
    }
    // Machine-readable line for scripts and tests that start the API on port 0.
    process.stderr.write(`${JSON.stringify({ listening: server.url, port: server.port })}\n`);
    const worker = args.worker
      ? runWorker({ registry, config: ctx.config, logger: ctx.logger, signal: ctx.signal })
      : Promise.resolve(0);
    await new Promise<void>((resolve) =>
      ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    await worker;
    return { json: { stopped: true, url: server.url }, text: "" };
  },
});
