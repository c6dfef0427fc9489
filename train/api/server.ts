/** The control plane on Bun.serve. */
import type { ApiApp } from "./app.ts";

/** A running server. */
export interface ApiServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Listen on `port` (0: any free port). */
export function startApiServer(app: ApiApp, options: { port: number; hostname?: string }): ApiServer {
  const server = Bun.serve({
    port: options.port,
    hostname: options.hostname ?? "0.0.0.0",
    fetch: (req) => app.fetch(req),
  });
  const host = options.hostname && options.hostname !== "0.0.0.0" ? options.hostname : "127.0.0.1";
  return {
    url: `http://${host}:${server.port}`,
    port: server.port ?? options.port,
    async stop() {
      await server.stop(true);
    },
  };
}
