/**
 * Fuzz: thousands of random and mutated bodies (JSON and msgpack) at every route of a real serve
 * process, plus random WebSocket frames. Every reply must be a well-formed error or success with a
 * status from the documented set (never 500, never a dropped connection), and afterwards the server
 * must still answer a known request with the known prediction.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { pack, unpack } from "msgpackr";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { rng } from "../shared/onnx/random.ts";
import { pointLabel, publishFixture, type ServeProcess, startServe } from "./serve-fixtures.ts";

let dir: string;
let store: ArtifactStore;
let server: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-fuzz-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  const f = await publishFixture(store, {
    name: "m",
    version: 1,
    task: "binary",
    numFeatures: 4,
    numTrees: 10,
    depth: 3,
    seed: 5,
    categories: [0, 3],
  });
  await pointLabel(store, "m", "production", 1, f.manifestSha256);
  server = await startServe(["--store", pathToFileURL(dir).href], {
    ARBOR_SERVE_MAX_BODY_BYTES: "65536",
    ARBOR_LOG_LEVEL: "warn",
  });
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const ROUTES = [
  "/v1/models/m:predict",
  "/v1/models/m:explain",
  "/v1/models/m/versions/1:predict",
  "/v1/models/m/labels/production:predict",
  "/v1/models/m/importance",
  "/v1/models/m",
  "/v1/models",
  "/v2/models/m/infer",
  "/v2/models/m/versions/1/infer",
  "/v2/models/m",
  "/v2/models/m/ready",
  "/v2",
  "/healthz",
  "/readyz",
  "/metrics",
  "/version",
];
const GOOD_BODIES: unknown[] = [
  { instances: [{ f0: 1, f1: "c1", f2: null, f3: -2 }] },
  { instances: [[1, "c2", 3, 4]], top_k: 2 },
  { columns: { f0: [1], f1: ["c0"], f2: [0], f3: [1] } },
  { inputs: [{ name: "input", shape: [1, 4], datatype: "FP32", data: [1, 0, 3, 4] }] },
  {
    inputs: [
      { name: "f0", shape: [1], datatype: "FP32", data: [1] },
      { name: "f1", shape: [1], datatype: "BYTES", data: ["c1"] },
    ],
  },
];
const ALLOWED = new Set([200, 400, 404, 405, 413, 415, 422, 501, 503]);

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 7 : 10));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return (r() - 0.5) * 10 ** Math.floor(r() * 45);
    case 3:
      return Math.floor(r() * 1000) - 500;
    case 4:
      return ["", "c1", "f0", "instances", "\u0000", "é", "x".repeat(300)][Math.floor(r() * 7)];
    case 5:
      return [Number.NaN, Number.POSITIVE_INFINITY, -0, 1e39][Math.floor(r() * 4)];
    case 6:
      return "__proto__";
    case 7:
    case 8:
      return Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const keys = [
        "instances",
        "columns",
        "inputs",
        "outputs",
        "f0",
        "f1",
        "f2",
        "f3",
        "name",
        "shape",
        "datatype",
        "data",
        "top_k",
        "id",
        "__proto__",
        "constructor",
      ];
      for (let i = Math.floor(r() * 5); i > 0; i--)
        o[keys[Math.floor(r() * keys.length)]] = randomValue(r, depth + 1);
      return o;
    }
  }
}

/** Mutate a valid body: replace a nested value, then maybe damage the bytes. */
function mutate(r: () => number, body: unknown, format: "json" | "msgpack"): Uint8Array {
  const copy = structuredClone(body) as Record<string, unknown>;
  const keys = Object.keys(copy);
  if (r() < 0.7) {
    const k = keys[Math.floor(r() * keys.length)];
    const v = copy[k];
    if (Array.isArray(v) && v.length > 0 && r() < 0.7) {
      const inner = v[0];
      if (inner !== null && typeof inner === "object" && !Array.isArray(inner)) {
        const ik = Object.keys(inner);
        (inner as Record<string, unknown>)[ik[Math.floor(r() * ik.length)]] = randomValue(r, 2);
      } else v[0] = randomValue(r, 2);
    } else copy[k] = randomValue(r, 1);
  }
  let bytes =
    format === "json" ? new TextEncoder().encode(JSON.stringify(copy) ?? "null") : (pack(copy) as Uint8Array);
  const damage = r();
  if (damage < 0.15) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
  else if (damage < 0.3) {
    bytes = bytes.slice();
    for (let i = 0; i < 3; i++) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
  }
  return bytes;
}

test("random and mutated bodies at every route; the server keeps answering correctly", async () => {
  const r = rng(20261127);
  const reference = await fetch(`${server.url}/v1/models/m:predict`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(GOOD_BODIES[0]),
  }).then((x) => x.json());
  const total = 3000;
  const bad: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const route =
        r() < 0.9
          ? ROUTES[Math.floor(r() * ROUTES.length)]
          : `/${Math.floor(r() * 1e6).toString(36)}/${"%zz/..".repeat(Math.floor(r() * 3))}`;
      const format = r() < 0.5 ? "json" : "msgpack";
      const mode = r();
      let body: Uint8Array;
      if (mode < 0.6) body = mutate(r, GOOD_BODIES[Math.floor(r() * GOOD_BODIES.length)], format);
      else if (mode < 0.85)
        body =
          format === "json"
            ? new TextEncoder().encode(JSON.stringify(randomValue(r, 0)) ?? "")
            : (pack(randomValue(r, 0)) as Uint8Array);
      else body = Uint8Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 256));
      const method = r() < 0.85 ? "POST" : ["GET", "PUT", "DELETE", "PATCH"][Math.floor(r() * 4)];
      const ct =
        r() < 0.95
          ? `application/${format}`
          : ["text/plain", "", "application/json; charset=utf-8", "multipart/form-data"][Math.floor(r() * 4)];
      let status = 0;
      let text = "";
      try {
        const res = await fetch(`${server.url}${route}`, {
          method,
          headers: ct === "" ? {} : { "content-type": ct },
          body: method === "GET" ? undefined : body,
        });
        status = res.status;
        const buf = new Uint8Array(await res.arrayBuffer());
        const rct = res.headers.get("content-type") ?? "";
        if (status !== 200) {
          const v = rct.includes("msgpack") ? unpack(buf) : JSON.parse(new TextDecoder().decode(buf));
          const code = v?.error?.code ?? v?.code;
          if (typeof code !== "string")
            text = `no error code: ${new TextDecoder().decode(buf).slice(0, 200)}`;
        }
      } catch (e) {
        text = `request failed: ${(e as Error).message}`;
      }
      if (!ALLOWED.has(status) || text !== "") bad.push(`#${i} ${method} ${route} ${ct} → ${status} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  expect(bad.slice(0, 10)).toEqual([]);
  const after = await fetch(`${server.url}/v1/models/m:predict`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(GOOD_BODIES[0]),
  }).then((x) => x.json());
  expect(after).toEqual(reference);
  expect(await (await fetch(`${server.url}/readyz`)).json()).toEqual({ ready: true });
  expect(server.logs()).not.toContain('"level":"error"');
});

test("random WebSocket frames get per-message errors and the connection stays usable", async () => {
  const r = rng(7);
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream`);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const n = 500;
  let got = 0;
  let lastReply: Record<string, unknown> | null = null;
  const done = new Promise<void>((resolve) => {
    ws.onmessage = (ev) => {
      got++;
      lastReply =
        typeof ev.data === "string" ? JSON.parse(ev.data) : unpack(new Uint8Array(ev.data as ArrayBuffer));
      if (got === n + 1) resolve();
    };
  });
  for (let i = 0; i < n; i++) {
    const base = { id: i, model: "m", op: r() < 0.5 ? "predict" : "explain", ...(GOOD_BODIES[0] as object) };
    const bytes = mutate(r, base, r() < 0.5 ? "json" : "msgpack");
    if (r() < 0.5) ws.send(bytes);
    else ws.send(new TextDecoder().decode(bytes));
  }
  ws.send(JSON.stringify({ id: "final", model: "m", op: "predict", ...(GOOD_BODIES[0] as object) }));
  await done;
  expect(ws.readyState).toBe(WebSocket.OPEN);
  expect((lastReply as unknown as { id: string }).id).toBe("final");
  ws.close();
});
