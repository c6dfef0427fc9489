/**
 * TreeSHAP runs on the explain thread, not on the event loop (real node server): while a long
 * explain is being computed, predictions on other connections are answered; the explain's own
 * reply is right (one entry per row and feature, adding up to ORT's prediction). A stream keeps its
 * reply order behind an explain, and the replies it holds meanwhile count as unread (the messages
 * after them wait). Explain work waiting for the thread is bounded (503 SERVER_BUSY), and the
 * explains of a client that left are dropped before they run.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { pack, unpack } from "msgpackr";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import {
  BENCH_MODEL,
  publishProduction,
  type ServeProcess,
  startServe,
  WIDE_MODEL,
  wsRawClient,
} from "./serve-fixtures.ts";

const F = BENCH_MODEL.numFeatures;
/** Rows of the long explain: 500 trees of depth 6 take ~1 ms a row, so it runs for seconds. */
const ROWS = 3000;

let dir: string;
let store: ArtifactStore;
let server: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-explain-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  await publishProduction(store, { ...BENCH_MODEL, name: "big" });
  // Big replies: a 50,000-row predict's msgpack reply is ~10 MB.
  await publishProduction(store, WIDE_MODEL);
  server = await startServe(["--store", pathToFileURL(dir).href], {
    ARBOR_SERVE_MAX_EXPLAIN_ROWS: String(ROWS),
    ARBOR_SERVE_MAX_ROWS: "50000",
  });
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const row = (r: number) => Array.from({ length: F }, (_, j) => Math.sin(r * F + j) * 2);
const post = (verb: string, instances: number[][]) =>
  fetch(`${server.url}/v1/models/big:${verb}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ instances }),
  });

test("predictions are answered while a long explain is computed", async () => {
  // The first explain starts the explain thread and builds the model's tables there.
  expect((await post("explain", [row(0)])).status).toBe(200);
  const finished: string[] = [];
  const explain = post(
    "explain",
    Array.from({ length: ROWS }, (_, r) => row(r)),
  ).then(async (res) => {
    finished.push("explain");
    return { status: res.status, body: (await res.json()) as { explanations: Record<string, unknown>[] } };
  });
  // Let its body arrive and its TreeSHAP start (seconds of work), then predict, one after another.
  await Bun.sleep(300);
  for (let i = 0; i < 10; i++) {
    const res = await post("predict", [row(i)]);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    finished.push("predict");
  }
  const x = await explain;
  // On the event loop, the explain held every prediction until it was done.
  expect(finished.indexOf("explain")).toBe(10);
  expect(x.status).toBe(200);
  expect(x.body.explanations.length).toBe(ROWS);
  // The thread's SHAP values add up to ORT's prediction: sigmoid(base + Σ contributions) = p(yes).
  for (const e of x.body.explanations.slice(0, 50)) {
    const c = e["contributions"] as Record<string, number>;
    expect(Object.keys(c).length).toBe(F);
    const margin = (e["base_value"] as number) + Object.values(c).reduce((a, b) => a + b, 0);
    const p = (e["prediction"] as { probabilities: number[] }).probabilities[1];
    expect(Math.abs(1 / (1 + Math.exp(-margin)) - p)).toBeLessThan(1e-5);
  }
}, 120_000);

async function metric(srv: ServeProcess, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "gm")))
    if (labels === "" || (m[1] ?? "").includes(labels)) sum += Number(m[2]);
  return sum;
}

test("a stream's replies wait behind its explain in order, count as unread meanwhile, and hold back its next messages", async () => {
  const c = await wsRawClient(server.port);
  await c.until(() => c.status() !== "");
  c.send(pack({ id: "warm", model: "big", op: "explain", instances: [row(0)] }));
  await c.until(() => c.frames.length === 1, 60_000);
  c.frames.length = 0;
  const instances = Array.from({ length: 50_000 }, (_, i) => [i % 7, 1, 2, 3]);
  // A long explain, then three predicts whose ~10 MB replies must wait for it.
  c.send(
    pack({ id: 0, model: "big", op: "explain", instances: Array.from({ length: ROWS }, (_, r) => row(r)) }),
  );
  for (let i = 1; i <= 3; i++) c.send(pack({ id: i, model: "wide", op: "predict", instances }));
  // The first predict's reply is held (and counted), so the next ones are parked, not run.
  let unread = 0;
  let parked = 0;
  const end = Date.now() + 60_000;
  while ((unread < 5_000_000 || parked < 1) && c.frames.length === 0 && Date.now() < end) {
    await Bun.sleep(20);
    unread = await metric(server, "arbor_serve_reply_bytes_unsent");
    parked = await metric(server, "arbor_serve_ws_parked_messages");
  }
  expect(unread).toBeGreaterThan(5_000_000);
  expect(parked).toBeGreaterThanOrEqual(1);
  await c.until(() => c.frames.length === 4, 60_000);
  const replies = c.frames.map(
    (f) => unpack(f.payload) as { id: number; error?: unknown; predictions?: unknown[] },
  );
  expect(replies.map((r) => r.id)).toEqual([0, 1, 2, 3]);
  for (const r of replies) expect(r.error).toBeUndefined();
  expect(replies[3].predictions?.length).toBe(50_000);
  expect(c.closed()).toBe(false);
  c.socket.destroy();
  for (let i = 0; i < 200 && (await metric(server, "arbor_serve_reply_bytes_unsent")) > 0; i++)
    await Bun.sleep(20);
  expect(await metric(server, "arbor_serve_reply_bytes_unsent")).toBe(0);
}, 120_000);

test("explain work waiting for the thread is bounded, and a client's explains are dropped once it leaves", async () => {
  // 32 x 10 rows may wait; each explain here has 10 rows.
  const own = await startServe(["--store", pathToFileURL(dir).href], { ARBOR_SERVE_MAX_EXPLAIN_ROWS: "10" });
  try {
    const ten = Array.from({ length: 10 }, (_, r) => row(r));
    const clients = [];
    for (let k = 0; k < 4; k++) {
      const c = await wsRawClient(own.port);
      await c.until(() => c.status() !== "");
      clients.push(c);
    }
    const first = clients[0];
    first.send(pack({ id: "warm", model: "big", op: "explain", instances: [row(0)] }));
    await first.until(() => first.frames.length === 1, 60_000);
    first.frames.length = 0;
    // 4 streams x 25 explains at once (a stream runs 32 messages at a time): those past the
    // bound are refused with their ids, in their stream's order; the rest are answered.
    for (let i = 0; i < 25; i++)
      for (const c of clients) c.send(pack({ id: i, model: "big", op: "explain", instances: ten }));
    let busy = 0;
    let answered = 0;
    for (const c of clients) {
      await c.until(() => c.frames.length === 25, 60_000);
      const replies = c.frames.map((f) => unpack(f.payload) as { id: number; error?: { code: string } });
      expect(replies.map((r) => r.id)).toEqual(Array.from({ length: 25 }, (_, i) => i));
      busy += replies.filter((r) => r.error?.code === "SERVER_BUSY").length;
      answered += replies.filter((r) => r.error === undefined).length;
      c.socket.destroy();
    }
    expect(busy).toBeGreaterThan(0);
    expect(busy + answered).toBe(100);
    expect(answered).toBeGreaterThanOrEqual(32);
    // A client that sends 30 explains and leaves: those not yet on the thread are dropped (499).
    const b = await wsRawClient(own.port);
    await b.until(() => b.status() !== "");
    for (let i = 0; i < 30; i++) b.send(pack({ id: i, model: "big", op: "explain", instances: ten }));
    await Bun.sleep(30);
    b.socket.destroy();
    let dropped = 0;
    for (let i = 0; i < 300 && dropped + 0 < 10; i++) {
      await Bun.sleep(20);
      dropped = await metric(own, "arbor_serve_ws_messages_total", 'status="499"');
    }
    expect(dropped).toBeGreaterThanOrEqual(10);
  } finally {
    expect(await own.stop()).toBe(0);
  }
}, 120_000);
