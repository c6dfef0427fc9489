/**
 * The baseline for bench/serve.ts: a plain uWebSockets.js server with the least work possible —
 * POST /hello reads the body and answers "hello", WS /hello echoes each message. Run with
 * `node --import tsx bench/serve-hello.ts`; prints `{"listening":{"port":N}}` on stdout. Port 0 (any
 * free port) unless HELLO_PORT is set: bench/serve.ts starts one process per arbor worker on one
 * port (uWS listens with SO_REUSEPORT, as arbor's workers do), so the baseline runs the same setup.
 */
import { loadNativeUws } from "../serve/transport/native.ts";

const uws = loadNativeUws();
const app = uws.App();
app.any("/*", (res) => {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  res.onData((_chunk, isLast) => {
    if (isLast && !aborted) {
      res.cork(() => {
        res.writeHeader("content-type", "text/plain").end("hello");
      });
    }
  });
});
app.ws("/hello", {
  maxPayloadLength: 16 * 1024 * 1024,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary);
  },
});
app.listen("127.0.0.1", Number(process.env.HELLO_PORT ?? 0), (sock) => {
  if (!sock) process.exit(1);
  process.stdout.write(`${JSON.stringify({ listening: { port: uws.us_socket_local_port(sock) } })}\n`);
});
process.on("SIGTERM", () => process.exit(0));
