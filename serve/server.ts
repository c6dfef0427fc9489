/**
 * One serving process: open the store, start following labels, attach the transports, listen.
 * `stop()` is the graceful path: close the listen socket, answer requests already in flight, close
 * WebSockets, release sessions.
 */
import cluster from "node:cluster";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import pkg from "../package.json" with { type: "json" };
import { openArtifactStore } from "../registry/store/open.ts";
import { arborError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { ServeConfig } from "./config.ts";
import { type BuildInfo, ServeCore } from "./core/service.ts";
import { configureExplain, unboundExplain } from "./explain.ts";
import { clusterExposition, createServeMetrics } from "./metrics.ts";
import { ModelCache } from "./model-cache/cache.ts";
import { LabelFollower } from "./model-cache/follower.ts";
import { ReplyBacklog, RequestBytes } from "./transport/budget.ts";
import { attachHttp, type TransportState } from "./transport/http.ts";
import { loadNativeUws } from "./transport/native.ts";
import { attachStream } from "./transport/ws.ts";

/** How long a shutdown waits after closing WebSocket connections before the process exits. */
const STREAM_CLOSE_LINGER_MS = 250;

/** A running server. */
export interface RunningServer {
  port: number;
  core: ServeCore;
  stop(): Promise<void>;
}

function buildInfo(): BuildInfo {
  const require = createRequire(import.meta.url);
  let ort = "unknown";
  try {
    ort = (require("onnxruntime-node/package.json") as { version: string }).version;
  } catch {}
  return {
    name: "arbor-serve",
    version: pkg.version,
    node: process.versions.node,
    onnxruntime: ort,
    pid: process.pid,
  };
}

/** Start serving on `config.host:config.port` (port 0: any free port). */
export async function startServer(
  config: ServeConfig,
  logger: Logger,
  workerIndex = 0,
): Promise<RunningServer> {
  const uws = loadNativeUws();
  // The server only reads the store: a folder that is not there is a wrong --store / ARBOR_STORE
  // (opening it would create an empty store and serve nothing, "ready").
  if (config.store.startsWith("file://")) {
    let folder: string;
    try {
      folder = fileURLToPath(config.store);
    } catch (e) {
      throw arborError("STORE_BAD_URI", `serve: store ${config.store}: ${(e as Error).message}`);
    }
    if (!existsSync(folder)) {
      throw arborError(
        "STORE_NOT_FOUND",
        `serve: the store folder ${folder} does not exist; check --store / ARBOR_STORE`,
      );
    }
  }
  const store = await openArtifactStore(config.store, {
    gcsEndpoint: config.gcsEndpoint,
    gcsProject: config.gcsProject,
  });
  const metrics = createServeMetrics({ worker: String(workerIndex) });
  if (cluster.isWorker) metrics.exposition = clusterExposition(metrics.registry);
  const cache = new ModelCache(store, config, logger, metrics);
  const follower = new LabelFollower(cache, logger);
  const core = new ServeCore(cache, config, metrics, logger, buildInfo());
  configureExplain(config.maxExplainRows);
  // Follow labels before listening: the first refresh loads every labelled version, so /readyz is
  // true as soon as the port is open (a failed load still lets us start; readiness says so).
  await follower.start(config.store, config.pollIntervalMs, config.watch);
  const state: TransportState = {
    inFlight: 0,
    shuttingDown: false,
    onIdle: null,
    requestBytes: new RequestBytes(config.bodyBudgetBytes, metrics.bodyBytesHeld),
    replies: new ReplyBacklog(
      config.replyBudgetBytes,
      metrics.replyBytesUnsent,
      metrics.slowReadersClosed,
      logger,
    ),
  };
  const app = uws.App();
  const stream = attachStream(app, core, state);
  attachHttp(app, core, state);
  const listenSocket = await new Promise<unknown>((resolve, reject) => {
    app.listen(config.host, config.port, (sock) =>
      sock
        ? resolve(sock)
        : reject(arborError("LISTEN_FAILED", `serve: cannot listen on ${config.host}:${config.port}`)),
    );
  });
  const port = uws.us_socket_local_port(listenSocket as never);
  logger.info({ host: config.host, port, ready: cache.ready() }, "listening");
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      state.shuttingDown = true;
      const deadline = Date.now() + config.shutdownTimeoutMs;
      uws.us_listen_socket_close(listenSocket as never);
      const following = follower.stop();
      logger.info(
        { in_flight: state.inFlight, websockets: stream.count() },
        "shutting down: finishing in-flight requests",
      );
      // Stream messages held back by backpressure were accepted: answer them too.
      unboundExplain();
      stream.runParked();
      if (state.inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, config.shutdownTimeoutMs);
          state.onIdle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      // A refresh under way finishes first (see LabelFollower.stop), but not past the deadline:
      // a store that stopped answering must not hold the shutdown.
      await Promise.race([following, sleep(Math.max(0, deadline - Date.now()))]);
      // Replies not yet taken by the kernel die with the process: give readers until the deadline.
      while (state.replies.recount() > 0 && Date.now() < deadline) await sleep(10);
      const streams = stream.count();
      stream.closeAll();
      // Linger while the 1001 close frames go out and the clients answer them: exiting at once,
      // with their last messages unread, makes the kernel reset those connections, and a client
      // that gets the reset before our close frame sees 1006 (seen on 3 of 4 sockets).
      if (streams > 0) await sleep(Math.max(0, Math.min(STREAM_CLOSE_LINGER_MS, deadline - Date.now())));
      cache.close();
      await store.close();
      logger.info({ in_flight: state.inFlight }, "stopped");
    })();
    return stopping;
  };
  return { port, core, stop };
}
