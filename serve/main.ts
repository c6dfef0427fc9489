/**
 * Entry point: `node --import tsx serve/main.ts [--host H] [--port P] [--store URI] [--labels a,b]
 * [--models a,b] [--workers N]`. With one worker the server runs in this process; with more, this
 * process is a node:cluster primary that forks one worker process per core, each binding the same
 * port (uSockets sets SO_REUSEPORT, so the kernel spreads connections between them). The primary
 * prints one JSON line on stdout once every worker listens: `{"listening":{"host","port","workers"}}`.
 * SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0.
 */
import cluster from "node:cluster";
import net from "node:net";
import { parseArgs } from "node:util";
import { argsErrorMessage } from "../shared/args.ts";
import { arborError, toArborError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { loadServeConfig, type ServeConfig, type ServeConfigOverrides } from "./config.ts";
import { serveClusterMetrics } from "./metrics.ts";
import { startServer } from "./server.ts";

function overridesFromArgv(argv: string[]): ServeConfigOverrides {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv);
  } catch (e) {
    throw arborError("INVALID_ARGUMENT", `serve: ${argsErrorMessage(e, Object.keys(FLAGS))}`);
  }
  const { values } = parsed;
  // Decimal integers only: Number() would read "" as 0, "0x50" as 80 and "1e3" as 1000.
  const num = (v: string | undefined) =>
    v === undefined ? undefined : /^-?[0-9]+$/.test(v.trim()) ? Number(v) : Number.NaN;
  const list = (v: string | undefined) =>
    v === undefined
      ? undefined
      : v
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
  return {
    host: values.host,
    port: num(values.port),
    store: values.store,
    labels: list(values.labels),
    models: list(values.models),
    workers: num(values.workers),
    logLevel: values["log-level"] as ServeConfig["logLevel"] | undefined,
    pollIntervalMs: num(values["poll-ms"]),
    batching: values["no-batching"] ? false : undefined,
  };
}

const FLAGS = {
  host: { type: "string" },
  port: { type: "string" },
  store: { type: "string" },
  labels: { type: "string" },
  models: { type: "string" },
  workers: { type: "string" },
  "log-level": { type: "string" },
  "poll-ms": { type: "string" },
  "no-batching": { type: "boolean" },
} as const;

function parseFlags(argv: string[]) {
  return parseArgs({ args: argv, options: FLAGS, strict: true });
}

function fatal(e: unknown): never {
  const err = toArborError(e);
  // The hint says what to do; an unexpected error keeps its stack for the bug report.
  const stack = err.code === "INTERNAL" && e instanceof Error ? { stack: e.stack } : {};
  const line = { level: "fatal", name: "serve", code: err.code, msg: err.message, hint: err.hint, ...stack };
  process.stderr.write(`${JSON.stringify(line)}\n`);
  process.exit(err.status < 500 ? 2 : 1);
}

async function runWorker(config: ServeConfig, index: number, port: number): Promise<void> {
  const logger = createLogger({ name: "serve", level: config.logLevel }).child({ worker: index });
  let server: Awaited<ReturnType<typeof startServer>> | null = null;
  /** A signal that came while the server was starting: acted on once it has started. */
  let early: string | null = null;
  const shutdown = (sig: string) => {
    logger.info({ signal: sig }, "signal received");
    if (server === null) {
      early = sig;
      return;
    }
    server.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        logger.error({ err: (e as Error).message }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  // Installed before the server starts, so that a signal during start-up (a replacement worker
  // when the cluster is stopped) is a graceful stop, not the default action's death.
  // `on`, not `once`: a second signal (terminal process group plus the primary's forward) must not
  // fall through to the default action and kill the process mid-drain; stop() is idempotent.
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  server = await startServer({ ...config, port }, logger, index);
  if (early !== null) {
    shutdown(early);
    return;
  }
  if (cluster.isWorker) process.send?.({ listening: server.port });
  else
    process.stdout.write(
      `${JSON.stringify({ listening: { host: config.host, port: server.port, workers: 1 } })}\n`,
    );
}

/**
 * Bind `host:port` exclusively and let it go: the port bound (port 0: a free one the kernel
 * picked), or LISTEN_FAILED when it cannot be bound (in use, or not an address of this machine).
 */
function probeListen(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        arborError(
          "LISTEN_FAILED",
          `serve: cannot listen on ${host}:${port}: ${e.code === "EADDRINUSE" ? "the port is in use" : e.message}`,
        ),
      ),
    );
    srv.listen({ host, port, exclusive: true }, () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === "object" && addr !== null ? addr.port : port));
    });
  });
}

/** Restarts allowed per minute before the primary gives up on a crash-looping worker. */
const MAX_RESTARTS_PER_MINUTE = 5;

async function runPrimary(config: ServeConfig): Promise<void> {
  const logger = createLogger({ name: "serve", level: config.logLevel });
  // uSockets sets SO_REUSEPORT only for a non-zero port, so port 0 cannot be shared: pick a free
  // port here first (tiny race with other programs, acceptable for tests and dev), then every
  // worker binds that port.
  const port = config.port === 0 ? await probeListen(config.host, 0) : config.port;
  const live = new Map<number, ReturnType<typeof cluster.fork>>();
  /** Workers that have started (their metrics are gathered for a scrape). */
  const listening = new Set<ReturnType<typeof cluster.fork>>();
  const restarts: number[] = [];
  let started = false;
  let stopping = false;
  /** The process's exit code: the first failure's (a worker's own: 2 for a bad setting). */
  let exitCode = 0;
  const failWith = (code: number) => {
    if (exitCode === 0) exitCode = code;
  };
  const stopAll = (sig: NodeJS.Signals, code: number) => {
    stopping = true;
    failWith(code);
    if (live.size === 0) process.exit(exitCode);
    for (const w of live.values()) w.process.kill(sig);
  };
  const shutdown = (sig: NodeJS.Signals) => {
    if (stopping) return;
    logger.info({ signal: sig }, "stopping workers");
    stopAll(sig, 0);
  };
  // Before the workers start: a SIGTERM during start-up (as PID 1 in a container, nothing else
  // would act on it) stops them; a worker it ends while starting is a clean stop.
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  const fork = (index: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const w = cluster.fork({
        ARBOR_SERVE_WORKER_INDEX: String(index),
        ARBOR_SERVE_WORKER_PORT: String(port),
      });
      live.set(index, w);
      serveClusterMetrics(w, () => listening);
      w.on("message", (m: { listening?: number }) => {
        if (typeof m?.listening === "number") {
          listening.add(w);
          resolve();
        }
      });
      w.on("exit", (code, signal) => {
        const wasListening = listening.delete(w);
        if (live.get(index) === w) live.delete(index);
        if (stopping) {
          // A worker still starting (e.g. a replacement still loading its modules, before it can
          // handle signals) had nothing to drain: the signal we forwarded ending it is a clean stop.
          failWith(!wasListening && signal !== null ? 0 : (code ?? 1));
          if (live.size === 0) process.exit(exitCode);
          return;
        }
        reject(new Error(`worker ${index} exited with code ${code}`));
        if (!started) {
          logger.error({ worker: index, code, signal }, "worker failed to start; stopping");
          stopAll("SIGTERM", code !== null && code !== 0 ? code : 1);
          return;
        }
        // A crash after start: replace the worker, unless it is crash-looping.
        const now = Date.now();
        restarts.push(now);
        while (restarts.length > 0 && restarts[0] < now - 60_000) restarts.shift();
        if (restarts.length > MAX_RESTARTS_PER_MINUTE) {
          logger.error(
            { worker: index, code, signal, restarts: restarts.length },
            "workers keep crashing; stopping",
          );
          stopAll("SIGTERM", 1);
          return;
        }
        logger.error({ worker: index, code, signal }, "worker exited; starting a replacement");
        fork(index).catch(() => {});
      });
    });
  try {
    await fork(0);
    await Promise.all(Array.from({ length: config.workers - 1 }, (_, i) => fork(i + 1)));
  } catch {
    return; // stopAll is already under way; the process exits when the workers have.
  }
  started = true;
  process.stdout.write(
    `${JSON.stringify({ listening: { host: config.host, port, workers: config.workers } })}\n`,
  );
}

async function main(): Promise<void> {
  const env = process.env;
  if (cluster.isWorker) {
    const config = loadServeConfig(env, overridesFromArgv(process.argv.slice(2)));
    await runWorker(
      config,
      Number(env["ARBOR_SERVE_WORKER_INDEX"] ?? 0),
      Number(env["ARBOR_SERVE_WORKER_PORT"] ?? config.port),
    );
    return;
  }
  const config = loadServeConfig(env, overridesFromArgv(process.argv.slice(2)));
  // uSockets binds with SO_REUSEPORT, so a second server on a port another one holds would start
  // and silently share its traffic: make sure nothing listens there first.
  if (config.port !== 0) await probeListen(config.host, config.port);
  if (config.workers === 1) await runWorker(config, 0, config.port);
  else await runPrimary(config);
}

main().catch(fatal);
