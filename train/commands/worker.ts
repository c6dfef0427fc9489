/** `arbor worker`: run queued jobs (studies created through the API) until interrupted. */
import { z } from "zod";
import { openRegistry } from "../../registry/index.ts";
import { defineCommand } from "../cli/command.ts";
import { runWorker } from "../worker/worker.ts";

/** `arbor worker`. */
export const workerCommand = defineCommand({
  name: "worker",
  summary: "claim and run queued jobs from the registry database (start one or many, on any machine)",
  flags: [
    {
      name: "stale-after",
      type: "number",
      placeholder: "SECONDS",
      default: 60,
      description: "a running job without heartbeat this long is queued again",
    },
    { name: "max-jobs", type: "integer", placeholder: "N", description: "stop after N jobs" },
    { name: "exit-when-idle", type: "boolean", description: "stop when the queue is empty" },
  ],
  schema: z.object({
    _: z.array(z.string()),
    staleAfter: z.number().min(1, "must be ≥ 1"),
    maxJobs: z.number().int().min(1).optional(),
    exitWhenIdle: z.boolean().optional(),
  }),
  examples: [
    "DATABASE_URL=postgres://… arbor worker",
    "arbor worker --exit-when-idle   # drain the queue, then stop",
  ],
  async run(ctx, args) {
    const registry = await openRegistry(ctx.config, ctx.logger);
    ctx.onClose(() => registry.close());
    ctx.say(`arbor worker started (${registry.kind} database)`);
    const jobs = await runWorker({
      registry,
      config: ctx.config,
      logger: ctx.logger,
      signal: ctx.signal,
      staleSeconds: args.staleAfter,
      maxJobs: args.maxJobs,
      exitWhenIdle: args.exitWhenIdle,
    });
    return { json: { jobs }, text: `${jobs} job(s) run` };
  },
});
