/**
 * The serve tier end to end: a real `node serve/main.ts` process on port 0, real sockets (Bun's
 * fetch and WebSocket), real onnxruntime. Every route in JSON and msgpack; predictions compared
 * with onnxruntime run in-process on the same bundle and rows.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { pack, unpack } from "msgpackr";
import { InferenceSession, Tensor } from "onnxruntime-node";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import type { Signature } from "../shared/bundle.ts";
import {
  pointLabel,
  publishFixture,
  publishLabelled,
  type ServeProcess,
  startServe,
} from "./serve-fixtures.ts";

let dir: string;
let store: ArtifactStore;
let server: ServeProcess;
const models: Record<string, { signature: Signature; onnx: Uint8Array; session: InferenceSession }> = {};

async function fixture(
  name: string,
  version: number,
  task: "binary" | "regression" | "multiclass",
  seed: number,
  cats: number[],
) {
  const f = await publishLabelled(store, name, version, task, seed, cats);
  models[`${name}@${version}`] = {
    signature: f.signature,
    onnx: f.onnx,
    session: await InferenceSession.create(f.onnx),
  };
  return f;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  await fixture("flights", 1, "binary", 11, [0, 0, 4]);
  const v2 = await publishFixture(store, {
    name: "flights",
    version: 2,
    task: "binary",
    numFeatures: 6,
    numTrees: 20,
    depth: 4,
    seed: 12,
    categories: [0, 0, 4],
  });
  models["flights@2"] = {
    signature: v2.signature,
    onnx: v2.onnx,
    session: await InferenceSession.create(v2.onnx),
  };
  await pointLabel(store, "flights", "staging", 2, v2.manifestSha256);
  await fixture("house", 1, "regression", 21, []);
  await fixture("iris", 1, "multiclass", 31, [0, 3]);
  server = await startServe(["--store", pathToFileURL(dir).href, "--labels", "production,staging"]);
});

afterAll(async () => {
  const code = await server?.stop();
  expect(code).toBe(0);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Row = Record<string, number | string | null>;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field below.
type Json = any;

async function getJson(route: string): Promise<Json> {
  const res = await fetch(`${server.url}${route}`);
  return await res.json();
}

/** Rows with a mix of numbers, category strings, nulls and unknown categories. */
function rows(sig: Signature, n: number, seed: number): Row[] {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const out: Row[] = [];
  for (let i = 0; i < n; i++) {
    const r: Row = {};
    for (const f of sig.features) {
      const u = rnd();
      if (u < 0.1) r[f.name] = null;
      else if (f.type === "categorical")
        r[f.name] = u < 0.15 ? "never-seen" : f.categories![Math.floor(rnd() * f.categories!.length)];
      else r[f.name] = Math.round((rnd() * 5 - 2.5) * 1000) / 1000;
    }
    out.push(r);
  }
  return out;
}

/** The ONNX input matrix for `rs`, built independently of the server's code. */
function matrix(sig: Signature, rs: Row[]): Float32Array {
  const f = sig.features.length;
  const x = new Float32Array(rs.length * f);
  rs.forEach((r, i) => {
    sig.features.forEach((spec, j) => {
      const v = r[spec.name];
      let code = Number.NaN;
      if (v === null) code = Number.NaN;
      else if (spec.type === "categorical") {
        const k = spec.categories!.indexOf(String(v));
        code = k < 0 ? Number.NaN : k;
      } else code = Number(v);
      x[i * f + j] = code;
    });
  });
  return x;
}

async function offline(key: string, rs: Row[]) {
  const m = models[key];
  const out = await m.session.run({
    input: new Tensor("float32", matrix(m.signature, rs), [rs.length, m.signature.features.length]),
  });
  return out;
}

async function post(
  route: string,
  body: unknown,
  format: "json" | "msgpack" = "json",
  accept?: string,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${server.url}${route}`, {
    method: "POST",
    headers: {
      "content-type": `application/${format}`,
      accept: accept ?? `application/${format}`,
      ...headers,
    },
    body: format === "json" ? JSON.stringify(body) : pack(body),
  });
  const buf = new Uint8Array(await res.arrayBuffer());
  const ct = res.headers.get("content-type") ?? "";
  const value = ct.includes("msgpack") ? unpack(buf) : JSON.parse(new TextDecoder().decode(buf));
  return { status: res.status, value, headers: res.headers };
}

describe("serve: health, metadata, metrics", () => {
  test("healthz, readyz, version, v2 health and metadata", async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect((await ready.json()) as Json).toEqual({ ready: true });
    const v = await getJson(`/version`);
    expect(v.name).toBe("arbor-serve");
    expect(v.node).toMatch(/^20\./);
    expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(200);
    const meta = await getJson(`/v2`);
    expect(meta.name).toBe("arbor-serve");
    expect(Array.isArray(meta.extensions)).toBe(true);
  });

  test("/metrics has request counts and latency by route, model, version and status; batch sizes; cache", async () => {
    await post("/v1/models/house:predict", { instances: [[1, 2, 3, 4, 5, 6]] });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).toMatch(
      /arbor_serve_requests_total\{route="\/v1\/models\/:name:predict",model="house",version="1",status="200"[^}]*\} [1-9]/,
    );
    expect(text).toContain("arbor_serve_request_duration_seconds_bucket");
    expect(text).toMatch(/arbor_serve_batch_rows_count\{[^}]*\} [1-9]/);
    expect(text).toMatch(/arbor_serve_cache_bytes\{[^}]*\} [1-9]/);
    expect(text).toMatch(/arbor_serve_model_loads_total\{model="flights",result="ok"/);
  });

  test("requests for random model names or versions add no metric series and no load failures", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await post(`/v1/models/zz-random-${i}/versions/3:predict`, { instances: [[1]] });
      expect(r.status).toBe(404);
      expect((await post(`/v1/models/zz-random-${i}:predict`, { instances: [[1]] })).status).toBe(404);
    }
    expect((await post("/v1/models/house/versions/999:predict", { instances: [[1]] })).status).toBe(404);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).not.toContain("zz-random");
    expect(text).not.toMatch(/arbor_serve_model_loads_total\{model="house",result="failed"/);
    expect(text).toMatch(
      /arbor_serve_requests_total\{route="\/v1\/models\/:name:predict",model="",version="",status="404"/,
    );
    const house = await getJson("/v1/models/house");
    expect(house.failures).toEqual([]);
  });

  test("GET /v1/models and /v1/models/{name} show labels, versions and the signature", async () => {
    const list = await getJson(`/v1/models`);
    const names = list.models.map((m: { name: string }) => m.name).sort();
    expect(names).toEqual(["flights", "house", "iris"]);
    const one = await getJson(`/v1/models/flights`);
    expect(one.labels.production.version).toBe(1);
    expect(one.labels.staging.version).toBe(2);
    expect(one.labels.production.state).toBe("ready");
    expect(one.signature.features.length).toBe(6);
    expect(one.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    const missing = await fetch(`${server.url}/v1/models/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as Json).error.code).toBe("MODEL_NOT_FOUND");
  });

  test("V2 model metadata and ready, with and without version", async () => {
    const meta = await getJson(`/v2/models/flights`);
    expect(meta.name).toBe("flights");
    expect(meta.platform).toBe("onnx_onnxv1");
    expect(meta.inputs[0]).toEqual({ name: "input", datatype: "FP32", shape: [-1, 6] });
    expect((await fetch(`${server.url}/v2/models/flights/versions/2`)).status).toBe(200);
    const r = await fetch(`${server.url}/v2/models/flights/ready`);
    expect((await r.json()) as Json).toEqual({ name: "flights", ready: true });
    const bad = await fetch(`${server.url}/v2/models/flights/versions/99/ready`);
    expect(bad.status).toBe(404);
    expect(((await bad.json()) as Json).code).toBe("VERSION_NOT_FOUND");
  });
});

describe("serve: predict over HTTP", () => {
  for (const format of ["json", "msgpack"] as const) {
    test(`binary classifier, objects, ${format}: equals in-process onnxruntime`, async () => {
      const rs = rows(models["flights@1"].signature, 50, 7);
      const { status, value, headers } = await post("/v1/models/flights:predict", { instances: rs }, format);
      expect(status).toBe(200);
      expect(headers.get("content-type")).toBe(`application/${format}`);
      expect(value.model).toBe("flights");
      expect(value.version).toBe(1);
      expect(value.classes).toEqual(["no", "yes"]);
      const ref = await offline("flights@1", rs);
      const p = ref.probabilities.data as Float32Array;
      value.predictions.forEach((pr: { label: string; probabilities: number[] }, i: number) => {
        expect(pr.probabilities[1]).toBe(p[i * 2 + 1]);
        expect(pr.probabilities[0]).toBe(p[i * 2]);
        expect(pr.label).toBe(p[i * 2 + 1] > p[i * 2] ? "yes" : "no");
      });
    });
  }

  test("positional arrays and columnar form give the same predictions as objects", async () => {
    const sig = models["flights@1"].signature;
    const rs = rows(sig, 20, 9);
    const names = sig.features.map((f) => f.name);
    const a = await post("/v1/models/flights:predict", { instances: rs });
    const b = await post("/v1/models/flights:predict", { instances: rs.map((r) => names.map((n) => r[n])) });
    const columns: Record<string, unknown[]> = {};
    for (const n of names) columns[n] = rs.map((r) => r[n]);
    const c = await post("/v1/models/flights:predict", { columns }, "msgpack", "application/json");
    expect(b.value.predictions).toEqual(a.value.predictions);
    expect(c.value.predictions).toEqual(a.value.predictions);
  });

  test("regression and multiclass outputs", async () => {
    const rs = rows(models["house@1"].signature, 10, 3);
    const r = await post("/v1/models/house:predict", { instances: rs });
    const ref = await offline("house@1", rs);
    expect(r.value.predictions).toEqual(Array.from(ref.prediction.data as Float32Array));
    const irs = rows(models["iris@1"].signature, 10, 4);
    const m = await post("/v1/models/iris:predict", { instances: irs }, "msgpack");
    const iref = (await offline("iris@1", irs)).probabilities.data as Float32Array;
    expect(m.value.classes).toEqual(["k0", "k1", "k2"]);
    m.value.predictions.forEach((p: { probabilities: number[] }, i: number) => {
      expect(p.probabilities).toEqual(Array.from(iref.subarray(i * 3, i * 3 + 3)));
    });
  });

  test("explicit versions and labels route to the right version", async () => {
    const rs = rows(models["flights@2"].signature, 5, 5);
    const ref2 = (await offline("flights@2", rs)).probabilities.data as Float32Array;
    for (const route of [
      "/v1/models/flights/versions/2:predict",
      "/v1/models/flights/labels/staging:predict",
    ]) {
      const r = await post(route, { instances: rs });
      expect(r.status).toBe(200);
      expect(r.value.version).toBe(2);
      expect(r.value.predictions[0].probabilities[1]).toBe(ref2[1]);
    }
    const prod = await post("/v1/models/flights/labels/production:predict", { instances: rs });
    expect(prod.value.version).toBe(1);
  });

  test("X-Request-ID is echoed, or generated", async () => {
    const r = await post("/v1/models/house:predict", { instances: [[1, 2, 3, 4, 5, 6]] }, "json", undefined, {
      "x-request-id": "abc-123",
    });
    expect(r.headers.get("x-request-id")).toBe("abc-123");
    const g = await fetch(`${server.url}/healthz`);
    expect(g.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("generated request ids are unique, UUID-shaped, and the ones on the log lines", async () => {
    const debug = await startServe(["--store", pathToFileURL(dir).href, "--log-level", "debug"]);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        const path = i % 4 === 3 ? "/v1/models/nope:predict" : "/v1/models/house:predict";
        const r = await fetch(`${debug.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ instances: [[1, 2, 3, 4, 5, 6]] }),
        });
        await r.arrayBuffer();
        ids.push(r.headers.get("x-request-id") ?? "");
      }
      const sent = await fetch(`${debug.url}/healthz`, { headers: { "x-request-id": "client-7" } });
      expect(sent.headers.get("x-request-id")).toBe("client-7");
      for (const id of ids)
        expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(new Set(ids).size).toBe(ids.length);
      await Bun.sleep(200);
      const logged = debug
        .logs()
        .split("\n")
        .filter((l) => l.includes('"msg":"request"'))
        .map((l) => JSON.parse(l) as { request_id: string; path: string; status: number });
      // Every request has its debug line, with the id its reply carried (404s included).
      for (const id of [...ids, "client-7"])
        expect(logged.filter((l) => l.request_id === id)).toHaveLength(1);
      expect(logged.filter((l) => l.status === 404)).toHaveLength(10);
    } finally {
      await debug.stop();
    }
  });
});

describe("serve: KServe V2 infer", () => {
  test("FP32 [N, F] tensor and per-feature BYTES/FP32 inputs agree with onnxruntime", async () => {
    const sig = models["flights@1"].signature;
    const rs = rows(sig, 8, 13);
    const x = matrix(sig, rs);
    const ref = await offline("flights@1", rs);
    const data = Array.from(x, (v) => (Number.isNaN(v) ? null : v));
    const a = await post("/v2/models/flights/infer", {
      id: "q1",
      inputs: [{ name: "input", shape: [8, 6], datatype: "FP32", data }],
    });
    expect(a.status).toBe(200);
    expect(a.value.id).toBe("q1");
    expect(a.value.model_name).toBe("flights");
    expect(a.value.model_version).toBe("1");
    const probs = a.value.outputs.find((o: { name: string }) => o.name === "probabilities");
    expect(probs.shape).toEqual([8, 2]);
    expect(probs.data).toEqual(Array.from(ref.probabilities.data as Float32Array));
    const inputs = sig.features.map((f) => ({
      name: f.name,
      shape: [8],
      datatype: f.type === "categorical" ? "BYTES" : "FP32",
      data: rs.map((r) => r[f.name]),
    }));
    const b = await post(
      "/v2/models/flights/versions/1/infer",
      { inputs, outputs: [{ name: "probabilities" }, { name: "label" }] },
      "msgpack",
    );
    expect(b.status).toBe(200);
    expect(b.value.outputs.map((o: { name: string }) => o.name)).toEqual(["probabilities", "label"]);
    expect(b.value.outputs[0].data).toEqual(probs.data);
    const bad = await post("/v2/models/flights/infer", {
      inputs: [{ name: "input", shape: [1, 5], datatype: "FP32", data: [1, 2, 3, 4, 5] }],
    });
    expect(bad.status).toBe(422);
    expect(bad.value.code).toBe("BAD_SHAPE");
    expect(typeof bad.value.error).toBe("string");
  });
});

describe("serve: WebSocket /v1/stream", () => {
  test("many pipelined messages in JSON and msgpack, replies carry ids, errors per message", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream`);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const sig = models["flights@1"].signature;
    const rs = rows(sig, 40, 17);
    const ref = (await offline("flights@1", rs)).probabilities.data as Float32Array;
    const replies = new Map<unknown, Record<string, unknown>>();
    const total = 200;
    const done = new Promise<void>((resolve) => {
      ws.onmessage = (ev) => {
        const v =
          typeof ev.data === "string" ? JSON.parse(ev.data) : unpack(new Uint8Array(ev.data as ArrayBuffer));
        replies.set(v.id, v);
        if (replies.size === total + 3) resolve();
      };
    });
    for (let i = 0; i < total; i++) {
      const msg = { id: i, model: "flights", op: "predict", instances: [rs[i % rs.length]] };
      if (i % 2 === 0) ws.send(JSON.stringify(msg));
      else ws.send(pack(msg));
    }
    ws.send(JSON.stringify({ id: "bad-model", model: "nope", op: "predict", instances: [rs[0]] }));
    ws.send(pack({ id: "bad-row", model: "flights", version: 2, op: "predict", instances: [{ f0: 1 }] }));
    ws.send("{not json");
    await done;
    for (let i = 0; i < total; i++) {
      const r = replies.get(i) as { version: number; predictions: { probabilities: number[] }[] };
      expect(r.version).toBe(1);
      expect(r.predictions[0].probabilities[1]).toBe(ref[(i % rs.length) * 2 + 1]);
    }
    expect((replies.get("bad-model") as { error: { code: string } }).error.code).toBe("MODEL_NOT_FOUND");
    expect((replies.get("bad-row") as { error: { code: string } }).error.code).toBe(
      "PREDICT_MISSING_FEATURE",
    );
    expect((replies.get(null) as { error: { code: string } }).error.code).toBe("MALFORMED_BODY");
    ws.close();
  });
});

describe("serve: WebSocket explain and routing fields", () => {
  test("op explain, label and version fields, string ids", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream`);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const rs = rows(models["flights@2"].signature, 2, 43);
    const replies = new Map<string, Json>();
    const done = new Promise<void>((resolve) => {
      ws.onmessage = (ev) => {
        const v =
          typeof ev.data === "string" ? JSON.parse(ev.data) : unpack(new Uint8Array(ev.data as ArrayBuffer));
        replies.set(v.id, v);
        if (replies.size === 7) resolve();
      };
    });
    ws.send(pack({ id: "e", model: "flights", label: "staging", op: "explain", instances: rs, top_k: 3 }));
    // Names and versions are checked as the HTTP routes check them.
    ws.send(JSON.stringify({ id: "n", model: "Bad Name!", op: "predict", instances: rs }));
    ws.send(JSON.stringify({ id: "l", model: "flights", label: "no/label", op: "predict", instances: rs }));
    ws.send(JSON.stringify({ id: "x", model: "flights", version: "2.0", op: "predict", instances: rs }));
    ws.send(JSON.stringify({ id: "o", model: "flights", version: {}, op: "predict", instances: rs }));
    ws.send(JSON.stringify({ id: "v", model: "flights", version: "v2", op: "predict", instances: rs }));
    ws.send(
      JSON.stringify({
        id: "b",
        model: "flights",
        version: 2,
        label: "staging",
        op: "predict",
        instances: rs,
      }),
    );
    await done;
    const e = replies.get("e");
    expect(e.version).toBe(2);
    expect(e.explanations.length).toBe(2);
    expect(Object.keys(e.explanations[0].contributions).length).toBe(3);
    expect(replies.get("v").version).toBe(2);
    expect(replies.get("b").error.code).toBe("BAD_REQUEST");
    expect(replies.get("n").error.code).toBe("MODEL_NOT_FOUND");
    expect(replies.get("n").status).toBe(404);
    expect(replies.get("l").error.code).toBe("LABEL_NOT_FOUND");
    expect(replies.get("x").error.code).toBe("VERSION_NOT_FOUND");
    expect(replies.get("o").error.code).toBe("BAD_REQUEST");
    ws.close();
  });

  test("messages on one stream are answered in the order they came: predicts and explains, any model, version or label, and errors", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream`);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const flights = rows(models["flights@2"].signature, 1, 44);
    const house = rows(models["house@1"].signature, 1, 45);
    const iris = rows(models["iris@1"].signature, 1, 46);
    const n = 90;
    const ids: number[] = [];
    const done = new Promise<void>((resolve) => {
      ws.onmessage = (ev) => {
        const v = JSON.parse(ev.data as string);
        expect(v.error === undefined).toBe(v.id % 9 !== 8);
        ids.push(v.id);
        if (ids.length === n) resolve();
      };
    });
    // Each model version has its own micro-batches, which run one after the other; an explain's
    // reply comes from the explain thread; an error is known at once.
    for (let i = 0; i < n; i++) {
      const kind = i % 9;
      const msg =
        kind === 8
          ? { model: "nope", instances: flights }
          : kind % 4 === 0
            ? { model: "house", instances: house }
            : kind % 4 === 1
              ? { model: "iris", label: "production", instances: iris }
              : { model: "flights", ...(kind === 2 ? { version: 1 } : {}), instances: flights };
      ws.send(JSON.stringify({ id: i, op: i % 5 === 3 ? "explain" : "predict", ...msg }));
    }
    await done;
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => i));
    ws.close();
  });
});

describe("serve: bad input", () => {
  const good = { instances: [{ f0: 1, f1: 2, f2: "c1", f3: 0, f4: 0, f5: 0 }] };
  const cases: [string, string, unknown, number, string, Record<string, string>?][] = [
    ["malformed JSON", "/v1/models/flights:predict", "{oops", 400, "MALFORMED_BODY"],
    // The body is refused before the model is looked up (JSON rows are read with the model's features).
    ["malformed JSON, unknown model", "/v1/models/nope:predict", '{"instances":[[1,', 400, "MALFORMED_BODY"],
    [
      "malformed JSON, version not loaded",
      "/v1/models/flights/versions/99:predict",
      '{"instances":[[1,',
      400,
      "MALFORMED_BODY",
    ],
    [
      "NaN literal",
      "/v1/models/flights:predict",
      '{"instances":[[NaN,1,"c1",1,1,1]]}',
      400,
      "MALFORMED_BODY",
    ],
    [
      "1e999 (Infinity)",
      "/v1/models/flights:predict",
      '{"instances":[[1e999,1,"c1",1,1,1]]}',
      422,
      "NON_FINITE_VALUE",
    ],
    [
      "above float32",
      "/v1/models/flights:predict",
      { instances: [[1e39, 1, "c1", 1, 1, 1]] },
      422,
      "NON_FINITE_VALUE",
    ],
    ["no instances", "/v1/models/flights:predict", { rows: [] }, 400, "BAD_REQUEST"],
    ["empty instances", "/v1/models/flights:predict", { instances: [] }, 400, "BAD_REQUEST"],
    ["not an object", "/v1/models/flights:predict", [1, 2], 400, "BAD_REQUEST"],
    ["wrong width", "/v1/models/flights:predict", { instances: [[1, 2]] }, 422, "BAD_SHAPE"],
    ["row is a number", "/v1/models/flights:predict", { instances: [5] }, 422, "BAD_SHAPE"],
    [
      "unknown feature",
      "/v1/models/flights:predict",
      { instances: [{ ...good.instances[0], zz: 1 }] },
      422,
      "UNKNOWN_FEATURE",
    ],
    [
      "missing feature",
      "/v1/models/flights:predict",
      { instances: [{ f0: 1 }] },
      422,
      "PREDICT_MISSING_FEATURE",
    ],
    [
      "string for numeric",
      "/v1/models/flights:predict",
      { instances: [{ ...good.instances[0], f0: "x" }] },
      422,
      "PREDICT_BAD_FEATURE_TYPE",
    ],
    [
      "bool for numeric",
      "/v1/models/flights:predict",
      { instances: [{ ...good.instances[0], f1: true }] },
      422,
      "PREDICT_BAD_FEATURE_TYPE",
    ],
    [
      "object for categorical",
      "/v1/models/flights:predict",
      { instances: [{ ...good.instances[0], f2: {} }] },
      422,
      "PREDICT_BAD_FEATURE_TYPE",
    ],
    ["ragged columns", "/v1/models/flights:predict", { columns: { f0: [1], f1: [1, 2] } }, 422, "BAD_SHAPE"],
    ["unknown model", "/v1/models/nope:predict", good, 404, "MODEL_NOT_FOUND"],
    ["unknown version", "/v1/models/flights/versions/77:predict", good, 404, "VERSION_NOT_FOUND"],
    ["unknown label", "/v1/models/flights/labels/canary:predict", good, 404, "LABEL_NOT_FOUND"],
    ["unknown verb", "/v1/models/flights:frobnicate", good, 404, "ROUTE_NOT_FOUND"],
    ["unknown route", "/v3/what", good, 404, "ROUTE_NOT_FOUND"],
    [
      "text/plain",
      "/v1/models/flights:predict",
      JSON.stringify(good),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
      { "content-type": "text/plain" },
    ],
    [
      "a compressed body (Content-Encoding)",
      "/v1/models/flights:predict",
      JSON.stringify(good),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
      { "content-encoding": "gzip" },
    ],
  ];
  for (const [name, route, body, status, code, headers] of cases) {
    test(`${name} → ${status} ${code}`, async () => {
      const res = await fetch(`${server.url}${route}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      expect(res.status).toBe(status);
      expect(((await res.json()) as Json).error.code).toBe(code);
    });
  }

  test("GET on a POST route → 405; malformed msgpack → 400; too many rows → 413; NaN in msgpack → 422", async () => {
    const g = await fetch(`${server.url}/v1/models/flights:predict`);
    expect(g.status).toBe(405);
    const m = await fetch(`${server.url}/v1/models/flights:predict`, {
      method: "POST",
      headers: { "content-type": "application/msgpack" },
      body: new Uint8Array([0xc1, 0xff, 0x00]),
    });
    expect(m.status).toBe(400);
    // No Accept preference: the reply uses the request's format.
    expect(m.headers.get("content-type")).toBe("application/msgpack");
    expect(unpack(new Uint8Array(await m.arrayBuffer())).error.code).toBe("MALFORMED_BODY");
    const many = await post(
      "/v1/models/flights:predict",
      { instances: Array.from({ length: 10_001 }, () => [0, 0, null, 0, 0, 0]) },
      "msgpack",
    );
    expect(many.status).toBe(413);
    expect(many.value.error.code).toBe("TOO_MANY_ROWS");
    const nan = await post(
      "/v1/models/flights:predict",
      { instances: [[Number.NaN, 0, null, 0, 0, 0]] },
      "msgpack",
    );
    expect(nan.status).toBe(422);
    expect(nan.value.error.code).toBe("NON_FINITE_VALUE");
    // msgpack rows are read with the model's features too: a malformed body is refused before the
    // unknown model or the version that would have to load.
    for (const path of ["/v1/models/nope:predict", "/v1/models/flights/versions/99:predict"]) {
      const cut = await fetch(`${server.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/msgpack" },
        body: (pack({ instances: [[1, 2, "c1", 3, 4, 5]] }) as Uint8Array).subarray(0, 14),
      });
      expect(cut.status).toBe(400);
      expect(unpack(new Uint8Array(await cut.arrayBuffer())).error.code).toBe("MALFORMED_BODY");
    }
  });
});

describe("serve: explain and importance", () => {
  test(":explain gives contributions that add up to the ORT margin; top_k keeps the largest", async () => {
    const sig = models["flights@1"].signature;
    const rs = rows(sig, 12, 23);
    const margin = (await offline("flights@1", rs)).margin.data as Float32Array;
    for (const format of ["json", "msgpack"] as const) {
      const r = await post("/v1/models/flights:explain", { instances: rs }, format);
      expect(r.status).toBe(200);
      expect(r.value.version).toBe(1);
      r.value.explanations.forEach((e: Json, i: number) => {
        const sum = Object.values(e.contributions as Record<string, number>).reduce(
          (a, b) => a + b,
          e.base_value,
        );
        expect(Math.abs(sum - margin[i])).toBeLessThan(1e-4);
        expect(Object.keys(e.contributions).sort()).toEqual(sig.features.map((f) => f.name).sort());
        expect(typeof e.prediction.label).toBe("string");
      });
    }
    const top = await post("/v1/models/flights/versions/1:explain", { instances: rs.slice(0, 2), top_k: 2 });
    for (const e of top.value.explanations) {
      const vals = Object.values(e.contributions as Record<string, number>).map(Math.abs);
      expect(vals.length).toBe(2);
      expect(vals[0]).toBeGreaterThanOrEqual(vals[1]);
    }
    const bad = await post("/v1/models/flights:explain", { instances: rs, top_k: 0 });
    expect(bad.value.error.code).toBe("BAD_REQUEST");
  });

  test("multiclass explain has per-class contributions; importance lists every feature", async () => {
    const irs = rows(models["iris@1"].signature, 3, 29);
    const margin = (await offline("iris@1", irs)).margin.data as Float32Array;
    const r = await post("/v1/models/iris:explain", { instances: irs });
    r.value.explanations.forEach((e: Json, i: number) => {
      ["k0", "k1", "k2"].forEach((c, k) => {
        const sum = Object.values(e.contributions[c] as Record<string, number>).reduce(
          (a, b) => a + b,
          e.base_values[c],
        );
        expect(Math.abs(sum - margin[i * 3 + k])).toBeLessThan(1e-4);
      });
    });
    const imp = await getJson("/v1/models/iris/importance");
    expect(imp.model).toBe("iris");
    expect(imp.importance.features.length).toBe(6);
    expect(imp.importance.shap_rows).toBeGreaterThanOrEqual(3);
    expect(typeof imp.importance.features[0].gain).toBe("number");
    const labelled = await fetch(`${server.url}/v1/models/flights/labels/staging/importance`);
    expect(((await labelled.json()) as Json).version).toBe(2);
  });

  test("V2 infer returns treeshap_output [N, F+1] when asked for", async () => {
    const sig = models["house@1"].signature;
    const rs = rows(sig, 4, 31);
    const x = matrix(sig, rs);
    const pred = (await offline("house@1", rs)).prediction.data as Float32Array;
    const data = Array.from(x, (v) => (Number.isNaN(v) ? null : v));
    const shapRows = async () => (await getJson("/v1/models/house/importance")).importance.shap_rows;
    const before = await shapRows();
    const r = await post("/v2/models/house/infer", {
      inputs: [{ name: "input", shape: [4, 6], datatype: "FP32", data }],
      outputs: [{ name: "prediction" }, { name: "treeshap_output" }],
    });
    expect(r.status).toBe(200);
    // Rows explained through V2 count in the importance's mean |SHAP| too.
    expect(await shapRows()).toBe(before + 4);
    const shap = r.value.outputs[1];
    expect(shap.name).toBe("treeshap_output");
    expect(shap.shape).toEqual([4, 7]);
    for (let i = 0; i < 4; i++) {
      const sum = (shap.data as number[]).slice(i * 7, i * 7 + 7).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - pred[i])).toBeLessThan(1e-4);
    }
  });

  test("explain has its own row limit (413 TOO_MANY_ROWS, default 100); predict of the same rows works", async () => {
    const sig = models["house@1"].signature;
    const rs = rows(sig, 101, 41);
    const ex = await post("/v1/models/house:explain", { instances: rs });
    expect(ex.status).toBe(413);
    expect(ex.value.error.code).toBe("TOO_MANY_ROWS");
    expect(ex.value.error.message).toContain("explain limit is 100");
    expect((await post("/v1/models/house:predict", { instances: rs })).status).toBe(200);
    const data = Array.from(matrix(sig, rs), (v) => (Number.isNaN(v) ? null : v));
    const input = { name: "input", shape: [101, 6], datatype: "FP32", data };
    const v2 = await post("/v2/models/house/infer", {
      inputs: [input],
      outputs: [{ name: "treeshap_output" }],
    });
    expect(v2.status).toBe(413);
    expect((await post("/v2/models/house/infer", { inputs: [input] })).status).toBe(200);
  });
});

describe("serve: parity with the offline CLI", () => {
  test("predictions equal `arbor predict` on the same bundle and rows", async () => {
    const sig = models["flights@1"].signature;
    const rs = rows(sig, 30, 37);
    const data = path.join(dir, "rows.ndjson");
    const out = path.join(dir, "preds.csv");
    await Bun.write(data, `${rs.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const cli = Bun.spawn(
      [
        "bun",
        "train/cli.ts",
        "predict",
        "--model",
        path.join(dir, "models/flights/v1"),
        "--data",
        data,
        "--out",
        out,
        "--quiet",
      ],
      {
        cwd: path.join(import.meta.dir, ".."),
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, DATABASE_URL: "" },
      },
    );
    const code = await cli.exited;
    expect(code, await new Response(cli.stderr).text()).toBe(0);
    const lines = (await Bun.file(out).text()).trim().split("\n");
    const header = lines[0].split(",");
    const pi = header.indexOf("probability");
    const li = header.indexOf("label");
    const served = await post("/v1/models/flights:predict", { instances: rs });
    lines.slice(1).forEach((line, i) => {
      const cells = line.split(",");
      const p = served.value.predictions[i];
      expect(Math.abs(Number(cells[pi]) - p.probabilities[1])).toBeLessThan(1e-6);
      expect(cells[li].replace(/"/g, "")).toBe(p.label);
    });
  });
});

describe("serve: KServe V2 binary tensor extension", () => {
  test("FP32 input blob in, binary FP32 and BYTES outputs back", async () => {
    const sig = models["flights@1"].signature;
    const rs = rows(sig, 5, 41);
    const x = matrix(sig, rs);
    const ref = await offline("flights@1", rs);
    const header = new TextEncoder().encode(
      JSON.stringify({
        inputs: [
          { name: "input", shape: [5, 6], datatype: "FP32", parameters: { binary_data_size: x.byteLength } },
        ],
        outputs: [{ name: "probabilities", parameters: { binary_data: true } }, { name: "label" }],
      }),
    );
    const body = new Uint8Array(header.length + x.byteLength);
    body.set(header, 0);
    body.set(new Uint8Array(x.buffer), header.length);
    const res = await fetch(`${server.url}/v2/models/flights/infer`, {
      method: "POST",
      headers: {
        "content-type": "application/octet-stream",
        "inference-header-content-length": String(header.length),
      },
      body,
    });
    expect(res.status).toBe(200);
    const hl = Number(res.headers.get("inference-header-content-length"));
    const buf = new Uint8Array(await res.arrayBuffer());
    const head: Json = JSON.parse(new TextDecoder().decode(buf.subarray(0, hl)));
    expect(head.outputs[0].parameters.binary_data_size).toBe(40);
    expect(head.outputs[0].data).toBeUndefined();
    const probs = new Float32Array(buf.slice(hl, hl + 40).buffer);
    expect(Array.from(probs)).toEqual(Array.from(ref.probabilities.data as Float32Array));
    expect(head.outputs[1].data.length).toBe(5);
    const bad = await fetch(`${server.url}/v2/models/flights/infer`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": "9999" },
      body,
    });
    expect(bad.status).toBe(400);
  });
});
