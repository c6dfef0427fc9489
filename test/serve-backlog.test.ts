/**
 * Clients that do not read: what the server holds for them stays bounded (real node server, raw
 * sockets that stop reading). HTTP: a reply the socket does not take is written as the client reads
 * (and arrives whole), a connection pipelining requests behind an unread reply is not answered
 * reply after reply into memory, ARBOR_SERVE_REPLY_BUDGET_BYTES closes the longest-waiting readers,
 * and a shutdown waits for a late reader. WebSocket: parked messages are bounded per connection
 * (TOO_MANY_IN_FLIGHT) and per process (ARBOR_SERVE_BODY_BUDGET_BYTES, SERVER_BUSY), and unread
 * replies by the reply budget.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { pack, unpack } from "msgpackr";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import {
  publishProduction,
  type ServeProcess,
  startServe,
  WIDE_MODEL,
  wsRawClient,
} from "./serve-fixtures.ts";

/** Rows per big request: its JSON reply (20 classes) is ~20 MB, far more than a socket's buffers take. */
const ROWS = 50_000;

let dir: string;
let store: ArtifactStore;
let uri: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-backlog-"));
  uri = pathToFileURL(dir).href;
  store = await openArtifactStore(uri);
  await publishProduction(store, { ...WIDE_MODEL, name: "m" });
});

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const instances = (n: number) => Array.from({ length: n }, (_, i) => [i % 7, (i % 13) * 0.5, -(i % 5), 1]);
const BIG_BODY = pack({ instances: instances(ROWS) });
/** A predict of ROWS rows in msgpack, answered in JSON (the bigger reply). */
const BIG_REQUEST = Buffer.concat([
  Buffer.from(
    "POST /v1/models/m:predict HTTP/1.1\r\nHost: a\r\nContent-Type: application/msgpack\r\n" +
      `Accept: application/json\r\nContent-Length: ${BIG_BODY.length}\r\n\r\n`,
  ),
  BIG_BODY,
]);

function serve(env: Record<string, string>): Promise<ServeProcess> {
  return startServe(["--store", uri], {
    ARBOR_SERVE_MAX_ROWS: String(ROWS),
    ARBOR_LOG_LEVEL: "warn",
    ...env,
  });
}

/** A metric's value (summed over its series); NaN when it is not exported. */
async function metric(srv: ServeProcess, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  let sum = Number.NaN;
  for (const m of text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "gm"))) {
    if (labels !== "" && !(m[1] ?? "").includes(labels)) continue;
    sum = (Number.isNaN(sum) ? 0 : sum) + Number(m[2]);
  }
  return sum;
}

async function until(cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out");
    await Bun.sleep(20);
  }
}

/** A raw HTTP connection that writes `data` and does not read until `read()`. */
async function stalled(port: number, data: Uint8Array) {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  socket.pause();
  socket.write(data);
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on("close", () => {
    closed = true;
  });
  return {
    /** Read on until the server closes or a whole reply has arrived; the reply's status and body. */
    read: async (ms = 20_000): Promise<{ status: number; body: string | null; closed: boolean }> => {
      socket.on("data", (d: Buffer) => chunks.push(d));
      socket.resume();
      const end = Date.now() + ms;
      for (;;) {
        const all = Buffer.concat(chunks);
        const head = all.indexOf("\r\n\r\n");
        const length =
          head < 0 ? -1 : Number(/content-length: (\d+)/i.exec(all.subarray(0, head).toString())?.[1]);
        if (head >= 0 && all.length >= head + 4 + length) {
          socket.destroy();
          return {
            status: Number(all.subarray(9, 12).toString()),
            body: all.subarray(head + 4, head + 4 + length).toString(),
            closed,
          };
        }
        if (closed || Date.now() > end) {
          socket.destroy();
          return { status: head < 0 ? 0 : Number(all.subarray(9, 12).toString()), body: null, closed };
        }
        await Bun.sleep(10);
      }
    },
    destroy: () => socket.destroy(),
  };
}

describe("serve: HTTP clients that do not read", () => {
  let srv: ServeProcess;
  /** The JSON reply of BIG_REQUEST from a client that reads (fetch). */
  let expected: string;

  beforeAll(async () => {
    srv = await serve({ ARBOR_SERVE_REPLY_BUDGET_BYTES: String(60_000_000) });
    const res = await fetch(`${srv.url}/v1/models/m:predict`, {
      method: "POST",
      headers: { "content-type": "application/msgpack", accept: "application/json" },
      body: BIG_BODY,
    });
    expect(res.status).toBe(200);
    expected = await res.text();
    expect(expected.length).toBeGreaterThan(15_000_000);
  });

  afterAll(async () => {
    expect(await srv?.stop()).toBe(0);
  });

  test("a reply the socket cannot take at once is held in the reply budget, written as the client reads, and arrives whole", async () => {
    const c = await stalled(srv.port, BIG_REQUEST);
    await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) > 1_000_000);
    await Bun.sleep(300);
    const r = await c.read();
    expect(r.status).toBe(200);
    expect(r.body).toBe(expected);
    await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) === 0);
  }, 60_000);

  test("a connection that pipelines requests behind an unread reply is not answered into memory", async () => {
    const before = await metric(srv, "arbor_serve_requests_total", 'route="/v1/models/:name:predict"');
    // 12 big requests, one after another, never read. uWebSockets.js used to buffer every reply
    // whole (~240 MB here) and take the next request; now the first reply waits for the client
    // and the connection takes no more (uWS closes it when it pipelines behind a pending reply).
    const c = await stalled(srv.port, Buffer.concat(Array.from({ length: 12 }, () => BIG_REQUEST)));
    await until(
      async () =>
        (await metric(srv, "arbor_serve_requests_total", 'route="/v1/models/:name:predict"')) > before,
    );
    await Bun.sleep(1500);
    const answered =
      (await metric(srv, "arbor_serve_requests_total", 'route="/v1/models/:name:predict"')) - before;
    expect(answered).toBeLessThanOrEqual(2);
    expect(await metric(srv, "arbor_serve_reply_bytes_unsent")).toBeLessThan(2 * expected.length);
    c.destroy();
    await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) === 0);
    // The server goes on answering.
    const ok = await fetch(`${srv.url}/v1/models/m:predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [[1, 2, 3, 4]] }),
    });
    expect(ok.status).toBe(200);
  }, 60_000);

  test("past ARBOR_SERVE_REPLY_BUDGET_BYTES the connections that have waited longest are closed; the rest get whole replies", async () => {
    const closedBefore = await metric(srv, "arbor_serve_slow_readers_closed_total");
    const clients = [];
    // Five non-readers, one at a time: each holds ~15 MB unsent; the budget is 60 MB.
    for (let i = 0; i < 5; i++) {
      const unsent = await metric(srv, "arbor_serve_reply_bytes_unsent");
      const closed = await metric(srv, "arbor_serve_slow_readers_closed_total");
      clients.push(await stalled(srv.port, BIG_REQUEST));
      await until(
        async () =>
          (await metric(srv, "arbor_serve_reply_bytes_unsent")) > unsent ||
          (await metric(srv, "arbor_serve_slow_readers_closed_total")) > closed,
      );
      expect(await metric(srv, "arbor_serve_reply_bytes_unsent")).toBeLessThanOrEqual(60_000_000);
    }
    const closed = (await metric(srv, "arbor_serve_slow_readers_closed_total")) - closedBefore;
    expect(closed).toBeGreaterThanOrEqual(1);
    const replies = [];
    for (const c of clients) replies.push(await c.read());
    // The closed ones are the oldest: cut short; every later one whole and right.
    const whole = replies.map((r) => r.body !== null);
    expect(whole.filter((w) => !w).length).toBe(closed);
    expect(whole).toEqual(whole.map((_, i) => i >= closed));
    for (const r of replies.slice(closed)) expect(r.body).toBe(expected);
    await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) === 0);
  }, 90_000);

  test("a shutdown waits for a client still reading its reply", async () => {
    const own = await serve({});
    try {
      const c = await stalled(own.port, BIG_REQUEST);
      await until(async () => (await metric(own, "arbor_serve_reply_bytes_unsent")) > 1_000_000);
      own.proc.kill("SIGTERM");
      await Bun.sleep(500);
      const r = await c.read();
      expect(r.status).toBe(200);
      expect(r.body).toBe(expected);
      expect(await own.proc.exited).toBe(0);
    } finally {
      await own.stop();
    }
  }, 60_000);
});

test("a reply computed during a shutdown reaches a client that reads it late, whole", async () => {
  const own = await serve({});
  try {
    const socket = net.connect(own.port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.on("error", () => {});
    socket.pause();
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    // The request is in flight when SIGTERM comes (its headers and most of its body are in); its
    // body ends, and its ~20 MB reply is written, during the shutdown.
    socket.write(BIG_REQUEST.subarray(0, BIG_REQUEST.length - 1000));
    await Bun.sleep(300);
    own.proc.kill("SIGTERM");
    await Bun.sleep(200);
    socket.write(BIG_REQUEST.subarray(BIG_REQUEST.length - 1000));
    await Bun.sleep(1000);
    socket.resume();
    const code = await own.proc.exited;
    await Bun.sleep(100);
    const all = Buffer.concat(chunks);
    const head = all.indexOf("\r\n\r\n");
    expect(all.subarray(0, 12).toString()).toBe("HTTP/1.1 200");
    const length = Number(/content-length: (\d+)/i.exec(all.subarray(0, head).toString())?.[1]);
    expect(length).toBeGreaterThan(15_000_000);
    expect(all.length - head - 4).toBe(length);
    expect(code).toBe(0);
    socket.destroy();
  } finally {
    await own.stop();
  }
}, 60_000);

describe("serve: stream clients that do not read", () => {
  /**
   * A stream predict of ROWS rows in msgpack: a ~6.3 MB msgpack reply (20 float 32 probabilities a
   * row), of which the socket takes ~4 MB and ~2.4 MB stays unsent.
   */
  const bigMessage = (id: number) => pack({ id, model: "m", op: "predict", instances: instances(ROWS) });
  /** A message of ~1,000,000 bytes (padding in a field the server ignores). */
  const padded = (id: number) =>
    pack({ id, model: "m", op: "predict", instances: [[1, 2, 3, 4]], pad: "x".repeat(999_900) });

  test("parked messages are bounded per connection (TOO_MANY_IN_FLIGHT) and per process (SERVER_BUSY); their bytes come back", async () => {
    const srv = await serve({
      ARBOR_SERVE_WS_MAX_PAYLOAD_BYTES: String(1024 * 1024),
      ARBOR_SERVE_MAX_BODY_BYTES: String(1024 * 1024),
      ARBOR_SERVE_BODY_BUDGET_BYTES: String(6_000_000),
    });
    try {
      const a = await wsRawClient(srv.port);
      const b = await wsRawClient(srv.port);
      await a.until(() => a.status() !== "" && b.status() !== "");
      a.socket.pause();
      b.socket.pause();
      // A big reply each fills the send buffer past the 1 MiB backpressure bound: what follows is parked.
      a.send(bigMessage(0));
      b.send(bigMessage(0));
      await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) > 2_000_000);
      for (let i = 1; i <= 6; i++) a.send(padded(i));
      // a parks 4 (the 4 MiB per connection), b 2 more (the 6 MB budget), the rest are refused.
      await until(async () => (await metric(srv, "arbor_serve_ws_parked_messages")) === 4);
      for (let i = 1; i <= 6; i++) b.send(padded(i));
      await until(async () => (await metric(srv, "arbor_serve_ws_messages_total", 'status="503"')) === 6);
      expect(await metric(srv, "arbor_serve_ws_parked_messages")).toBe(6);
      expect(await metric(srv, "arbor_serve_request_body_bytes_held")).toBeLessThanOrEqual(6_000_000);
      expect(await metric(srv, "arbor_serve_request_body_bytes_held")).toBeGreaterThan(5_000_000);
      // Reading again: every message is answered, the refusals with their own ids and codes.
      a.socket.resume();
      b.socket.resume();
      await a.until(() => a.frames.length === 7 && b.frames.length === 7, 30_000);
      const codes = (c: typeof a) =>
        c.frames
          .map((f) => unpack(f.payload) as { id: number; error?: { code: string } })
          .filter((m) => m.error !== undefined)
          .map((m) => `${m.id}:${m.error?.code}`);
      expect(codes(a)).toEqual(["5:TOO_MANY_IN_FLIGHT", "6:TOO_MANY_IN_FLIGHT"]);
      expect(codes(b)).toEqual(["3:SERVER_BUSY", "4:SERVER_BUSY", "5:SERVER_BUSY", "6:SERVER_BUSY"]);
      await until(async () => (await metric(srv, "arbor_serve_request_body_bytes_held")) === 0);
      expect(await metric(srv, "arbor_serve_ws_parked_messages")).toBe(0);
      // A connection that leaves with messages parked gives their bytes back too.
      const c = await wsRawClient(srv.port);
      await c.until(() => c.status() !== "");
      c.socket.pause();
      c.send(bigMessage(0));
      await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) > 1_000_000);
      c.send(padded(1));
      await until(async () => (await metric(srv, "arbor_serve_request_body_bytes_held")) > 0);
      c.socket.destroy();
      await until(async () => (await metric(srv, "arbor_serve_request_body_bytes_held")) === 0);
      await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) === 0);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 90_000);

  test("past ARBOR_SERVE_REPLY_BUDGET_BYTES the longest-waiting stream connections are closed", async () => {
    const srv = await serve({ ARBOR_SERVE_REPLY_BUDGET_BYTES: String(4_000_000) });
    try {
      const clients = [];
      for (let i = 0; i < 4; i++) {
        const c = await wsRawClient(srv.port);
        await c.until(() => c.status() !== "");
        c.socket.pause();
        const closed = await metric(srv, "arbor_serve_slow_readers_closed_total");
        const unsent = await metric(srv, "arbor_serve_reply_bytes_unsent");
        c.send(bigMessage(i));
        await until(
          async () =>
            (await metric(srv, "arbor_serve_reply_bytes_unsent")) > unsent ||
            (await metric(srv, "arbor_serve_slow_readers_closed_total")) > closed,
        );
        expect(await metric(srv, "arbor_serve_reply_bytes_unsent")).toBeLessThanOrEqual(4_000_000);
        clients.push(c);
      }
      const closed = await metric(srv, "arbor_serve_slow_readers_closed_total");
      expect(closed).toBeGreaterThanOrEqual(1);
      // The oldest went; the others get their whole reply when they read.
      for (const c of clients) c.socket.resume();
      for (const c of clients.slice(closed)) await c.until(() => c.frames.length === 1, 30_000);
      for (const [i, c] of clients.entries()) {
        if (i < closed) {
          await c.until(() => c.closed());
          expect(c.frames.length).toBe(0);
        } else {
          const reply = unpack(c.frames[0].payload) as { id: number; predictions: unknown[] };
          expect(reply.id).toBe(i);
          expect(reply.predictions.length).toBe(ROWS);
        }
      }
      for (const c of clients) c.socket.destroy();
      await until(async () => (await metric(srv, "arbor_serve_reply_bytes_unsent")) === 0);
    } finally {
      const code = await srv.stop();
      if (code !== 0) console.log(srv.logs().slice(-4000));
      expect(code).toBe(0);
    }
  }, 90_000);
});
