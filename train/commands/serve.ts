/**
 * `arbor serve`: the CLI runs on Bun, but the server needs Node.js (uWebSockets.js is a Node
 * addon), so this command validates the flags and spawns `node --import tsx serve/main.ts …` with
 * inherited stdio, forwards SIGINT/SIGTERM to it, and exits with its exit code.
 */
import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { defineCommand } from "../cli/command.ts";

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** `arbor serve`. */
export const serveCommand = defineCommand({
  name: "serve",
  summary: "serve the labelled model versions of the artifact store over HTTP and WebSocket (Node.js)",
  flags: [
    {
      name: "host",
      type: "string",
      placeholder: "HOST",
      description: "address to bind (ARBOR_SERVE_HOST; default 0.0.0.0)",
    },
    {
      name: "port",
      type: "integer",
      description: "port to bind, 0 for any free port (ARBOR_SERVE_PORT; default 8080)",
    },
    {
      name: "labels",
      type: "list",
      placeholder: "A,B",
      description: "labels to follow; the first is the default (ARBOR_SERVE_LABELS; default production)",
    },
    {
      name: "models",
      type: "list",
      placeholder: "A,B",
      description: "models to follow; default every model with a label pointer (ARBOR_SERVE_MODELS)",
    },
    {
      name: "workers",
      type: "integer",
      description: "server processes sharing the port; 0 = one per core, the default (ARBOR_SERVE_WORKERS)",
    },
    {
      name: "poll-ms",
      type: "integer",
      description: "label pointer polling interval in ms (ARBOR_SERVE_POLL_MS)",
    },
    {
      name: "no-batching",
      type: "boolean",
      description: "score every request on its own (ARBOR_SERVE_BATCHING=false)",
    },
  ],
  schema: z.object({
    _: z.array(z.string()),
    host: z.string().min(1).optional(),
    port: z.number().int().min(0).max(65535).optional(),
    labels: z.array(z.string().regex(NAME, "bad label name")).min(1).optional(),
    models: z.array(z.string().regex(NAME, "bad model name")).optional(),
    workers: z.number().int().min(0).max(256).optional(),
    pollMs: z.number().int().positive().optional(),
    noBatching: z.boolean().optional(),
  }),
  examples: [
    "arbor serve --port 8080 --labels production,staging",
    "arbor serve --store gs://bucket/arbor --workers 0",
  ],
  // No registry: a DATABASE_URL or ARBOR_API_TOKENS meant for other commands is not read.
  unusedConfig: ["databaseUrl", "apiTokens"],
  async run(ctx, args) {
    // Only what was given: the server reads ARBOR_SERVE_* itself for the rest (flag > env > default).
    const argv = ["--import", "tsx", "serve/main.ts", "--store", ctx.config.store];
    if (args.host !== undefined) argv.push("--host", args.host);
    if (args.port !== undefined) argv.push("--port", String(args.port));
    if (args.labels !== undefined) argv.push("--labels", args.labels.join(","));
    // The CLI's own default level is warn (quiet commands); a server logs at info unless told.
    if (ctx.logLevelGiven) argv.push("--log-level", ctx.config.logLevel);
    if (args.models && args.models.length > 0) argv.push("--models", args.models.join(","));
    if (args.workers !== undefined) argv.push("--workers", String(args.workers));
    if (args.pollMs !== undefined) argv.push("--poll-ms", String(args.pollMs));
    if (args.noBatching) argv.push("--no-batching");
    // cwd = the repository root so that `--import tsx` and serve/main.ts resolve from any cwd.
    const child = spawn("node", argv, { cwd: ROOT, stdio: "inherit" });
    const forward = (sig: NodeJS.Signals) => () => {
      if (child.exitCode === null) child.kill(sig);
    };
    const onTerm = forward("SIGTERM");
    const onInt = forward("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    const code = await new Promise<number>((resolve) => {
      child.on("error", (e) => {
        ctx.say(`arbor serve: cannot start node: ${e.message}`);
        resolve(1);
      });
      // A server ended by a signal: 128 + its number, as a shell reports it.
      child.on("exit", (c, signal) => resolve(c ?? (signal ? 128 + (osConstants.signals[signal] ?? 15) : 1)));
    });
    process.off("SIGTERM", onTerm);
    process.off("SIGINT", onInt);
    return { json: { exitCode: code }, text: "", exitCode: code };
  },
});
