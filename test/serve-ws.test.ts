/**
 * WebSocket limits against a real node server: a raw TCP client (node:net, so it can stop reading)
 * shows that when the client does not read, the server parks new messages instead of buffering
 * unbounded replies, and resumes on drain; messages past the in-flight limit get their own 503
 * TOO_MANY_IN_FLIGHT reply and the socket stays open; the connection limit answers 503.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { pointLabel, publishFixture, type ServeProcess, startServe, wsRawClient } from "./serve-fixtures.ts";

let dir: string;
let store: ArtifactStore;
let server: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-ws-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  const f = await publishFixture(store, {
    name: "w",
    version: 1,
    task: "regression",
    numFeatures: 4,
    numTrees: 3,
    depth: 2,
    seed: 9,
  });
  await pointLabel(store, "w", "production", 1, f.manifestSha256);
  server = await startServe(["--store", pathToFileURL(dir).href], {
    ARBOR_SERVE_WS_MAX_BACKPRESSURE_BYTES: "65536",
    ARBOR_SERVE_WS_MAX_IN_FLIGHT: "400",
    ARBOR_SERVE_WS_MAX_CONNECTIONS: "3",
    ARBOR_SERVE_WS_MAX_PAYLOAD_BYTES: "2000000",
    // The backpressure test needs big replies: 1000-row explains (the default explain limit is 100).
    ARBOR_SERVE_MAX_EXPLAIN_ROWS: "1000",
  });
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const rawClient = wsRawClient;

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

test("a client that stops reading gets its messages parked, then every reply after it reads again", async () => {
  const c = await rawClient(server.port);
  await c.until(() => c.status() !== "");
  expect(c.status()).toContain("101");
  c.socket.pause();
  // 150 explain messages of 1000 rows, each reply ~150 KB: ~22 MB, far more than the 64 KB bound
  // plus what the kernel's socket buffers absorb.
  const row = [0.1, 0.2, 0.3, 0.4];
  const msg = (id: number) =>
    JSON.stringify({ id, model: "w", op: "explain", instances: Array.from({ length: 1000 }, () => row) });
  for (let i = 0; i < 150; i++) c.send(msg(i));
  const end = Date.now() + 30_000;
  let parked = 0;
  while (parked === 0 && Date.now() < end) {
    await Bun.sleep(50);
    parked = await metric("arbor_serve_ws_parked_messages");
  }
  expect(parked).toBeGreaterThan(0);
  c.socket.resume();
  await c.until(() => c.frames.filter((f) => f.opcode === 1).length === 150);
  const ids = c.frames.map((f) => JSON.parse(f.payload.toString()).id as number).sort((a, b) => a - b);
  expect(ids).toEqual(Array.from({ length: 150 }, (_, i) => i));
  expect(await metric("arbor_serve_ws_parked_messages")).toBe(0);
  c.socket.destroy();
}, 60_000);

test("the connection limit answers 503; messages past the in-flight limit are refused one by one", async () => {
  const open: WebSocket[] = [];
  for (let i = 0; i < 3; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream`);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    open.push(ws);
  }
  const c = await rawClient(server.port);
  await c.until(() => c.status() !== "");
  expect(c.status()).toContain("503");
  c.socket.destroy();
  for (const ws of open) ws.close();
  await Bun.sleep(100);

  const refusals = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const m =
      /^arbor_serve_ws_messages_total\{(?=[^}]*op="invalid")(?=[^}]*status="503")[^}]*\} (\S+)$/m.exec(text);
    return m ? Number(m[1]) : 0;
  };
  const refusedBefore = await refusals();
  const flood = await rawClient(server.port);
  await flood.until(() => flood.status() !== "");
  flood.socket.pause();
  const instances = Array.from({ length: 500 }, () => [1, 2, 3, 4]);
  for (let i = 0; i < 1000; i++) flood.send(JSON.stringify({ id: i, model: "w", op: "predict", instances }));
  // Still not reading: replies back up, messages park, and the in-flight limit (400) is reached.
  // Read again only once the server has refused some (waiting for the first parked message raced
  // on a slow machine: the client resumed before 400 were in flight, and nothing was refused).
  const end = Date.now() + 20_000;
  while ((await refusals()) === refusedBefore && Date.now() < end) await Bun.sleep(50);
  flood.socket.resume();
  await flood.until(
    () =>
      flood.frames.some((f) => f.opcode === 8) || flood.frames.filter((f) => f.opcode === 1).length === 1000,
  );
  expect(flood.frames.some((f) => f.opcode === 8)).toBe(false);
  const replies = flood.frames.map((f) => JSON.parse(f.payload.toString()));
  // Every message answered exactly once, under its own id: scored, or refused with 503.
  expect(replies.map((r) => r.id as number).sort((a, b) => a - b)).toEqual(
    Array.from({ length: 1000 }, (_, i) => i),
  );
  const refused = replies.filter((r) => r.error !== undefined);
  expect(refused.length).toBeGreaterThan(0);
  for (const r of refused) {
    expect(r.error.code).toBe("TOO_MANY_IN_FLIGHT");
    expect(r.status).toBe(503);
  }
  expect(replies.filter((r) => r.predictions !== undefined).length).toBeGreaterThanOrEqual(400);
  // The connection still works after the refusals.
  flood.send(JSON.stringify({ id: "after", model: "w", op: "predict", instances: [[1, 2, 3, 4]] }));
  await flood.until(() => flood.frames.length === 1001);
  expect(JSON.parse(flood.frames[1000].payload.toString()).id).toBe("after");
  flood.socket.destroy();
}, 60_000);

test("a message over the payload limit gets a 413 reply and the connection stays open", async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream`);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const replies: { id: unknown; error?: { code: string } }[] = [];
  const two = new Promise<void>((resolve) => {
    ws.onmessage = (ev) => {
      replies.push(JSON.parse(String(ev.data)));
      if (replies.length === 2) resolve();
    };
  });
  ws.send(
    JSON.stringify({ id: "big", model: "w", op: "predict", instances: [], pad: "x".repeat(2_100_000) }),
  );
  ws.send(JSON.stringify({ id: "ok", model: "w", op: "predict", instances: [[1, 2, 3, 4]] }));
  await two;
  expect(replies[0].error?.code).toBe("PAYLOAD_TOO_LARGE");
  expect(replies[1].id).toBe("ok");
  expect(ws.readyState).toBe(WebSocket.OPEN);
  ws.close();
}, 60_000);

test("SIGTERM: messages parked by backpressure are answered before the connection closes (1001), exit 0", async () => {
  const own = await startServe(["--store", pathToFileURL(dir).href], {
    ARBOR_SERVE_WS_MAX_BACKPRESSURE_BYTES: "65536",
    ARBOR_SERVE_MAX_EXPLAIN_ROWS: "1000",
  });
  try {
    /** Messages parked now, in flight now (their replies may be held in order), and answered so far. */
    const taken = async () => {
      const text = await (await fetch(`${own.url}/metrics`)).text();
      const gauge = (name: string) =>
        Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
      let answered = 0;
      for (const m of text.matchAll(/^arbor_serve_ws_messages_total\{[^}]*\} (\S+)$/gm))
        answered += Number(m[1]);
      return {
        parked: gauge("arbor_serve_ws_parked_messages"),
        answered: answered + gauge("arbor_serve_ws_in_flight_messages"),
      };
    };
    const c = await rawClient(own.port);
    await c.until(() => c.status() !== "");
    c.socket.pause();
    const row = [0.1, 0.2, 0.3, 0.4];
    const n = 120;
    for (let i = 0; i < n; i++) {
      c.send(
        JSON.stringify({
          id: i,
          model: "w",
          op: "explain",
          instances: Array.from({ length: 1000 }, () => row),
        }),
      );
    }
    // Wait until the server has taken in every message (a message still on its way when the
    // shutdown begins is refused with SHUTTING_DOWN, by design), most of them parked.
    const end = Date.now() + 30_000;
    let t = await taken();
    while (t.parked + t.answered < n && Date.now() < end) {
      await Bun.sleep(50);
      t = await taken();
    }
    expect(t.parked + t.answered).toBe(n);
    expect(t.parked).toBeGreaterThan(0);
    own.proc.kill("SIGTERM");
    // The server waits for the unread replies (up to its shutdown timeout) before it closes.
    await Bun.sleep(300);
    c.socket.resume();
    await c.until(() => c.frames.some((f) => f.opcode === 8), 30_000);
    const replies = c.frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString()));
    expect(replies.map((r) => r.id).sort((a: number, b: number) => a - b)).toEqual(
      Array.from({ length: n }, (_, i) => i),
    );
    expect(replies.every((r) => Array.isArray(r.explanations))).toBe(true);
    const close = c.frames.find((f) => f.opcode === 8)!;
    expect(close.payload.readUInt16BE(0)).toBe(1001);
    expect(await own.proc.exited).toBe(0);
    c.socket.destroy();
  } finally {
    // A failed expectation must not leave the server running.
    if (own.proc.exitCode === null) own.proc.kill("SIGKILL");
  }
}, 60_000);
