/**
 * KServe V2 infer validation end to end: a real `node serve/main.ts` on port 0 against a file://
 * store of fixture models. Each defect of the V2 audit has a test asserting the status and code of
 * the bad request, and the good paths (binary tensors, per-feature inputs of every datatype, the
 * [N, F] tensor with dictionary codes and NaN) are compared with V1 or in-process onnxruntime.
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
import { publishFixture, publishLabelled, type ServeProcess, startServe } from "./serve-fixtures.ts";

let dir: string;
let store: ArtifactStore;
let server: ServeProcess;
const sessions: Record<string, InferenceSession> = {};

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field below.
type Json = any;

async function fixture(
  name: string,
  task: "binary" | "regression" | "multiclass",
  seed: number,
  cats: number[],
) {
  const f = await publishLabelled(store, name, 1, task, seed, cats);
  sessions[name] = await InferenceSession.create(f.onnx);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-v2-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  // flights: f2 categorical with categories c0..c3; house: regression, all numeric; iris: multiclass.
  await fixture("flights", "binary", 11, [0, 0, 4]);
  await fixture("house", "regression", 21, []);
  await fixture("iris", "multiclass", 31, [0, 3]);
  // iris v2: loaded on demand by the fast-path test (its body is read after the load).
  sessions["iris@2"] = await InferenceSession.create(
    (
      await publishFixture(store, {
        name: "iris",
        version: 2,
        task: "multiclass",
        numFeatures: 6,
        numTrees: 9,
        depth: 3,
        seed: 32,
        categories: [0, 3],
      })
    ).onnx,
  );
  // iris v3: never loaded (a malformed body for it must not load it).
  await publishFixture(store, {
    name: "iris",
    version: 3,
    task: "multiclass",
    numFeatures: 6,
    numTrees: 2,
    depth: 2,
    seed: 33,
    categories: [0, 3],
  });
  // A version in the store that no label names: never loaded unless asked for.
  await publishFixture(store, {
    name: "house",
    version: 2,
    task: "regression",
    numFeatures: 6,
    numTrees: 3,
    depth: 2,
    seed: 22,
  });
  server = await startServe(["--store", pathToFileURL(dir).href]);
});

afterAll(async () => {
  const code = await server?.stop();
  expect(code).toBe(0);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(route: string, body: unknown): Promise<{ status: number; value: Json }> {
  const res = await fetch(`${server.url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, value: await res.json() };
}

/** POST a binary tensor extension body: the JSON header, then `blobs` (header length overridable). */
async function postBinary(
  route: string,
  header: unknown,
  blobs: Uint8Array[],
  headerLength?: string,
): Promise<{ status: number; value: Json }> {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const body = new Uint8Array(h.length + blobs.reduce((n, b) => n + b.length, 0));
  body.set(h, 0);
  let at = h.length;
  for (const b of blobs) {
    body.set(b, at);
    at += b.length;
  }
  const res = await fetch(`${server.url}${route}`, {
    method: "POST",
    headers: {
      "content-type": "application/octet-stream",
      "inference-header-content-length": headerLength ?? String(h.length),
    },
    body,
  });
  const buf = new Uint8Array(await res.arrayBuffer());
  const hl = res.headers.get("inference-header-content-length");
  const text = new TextDecoder().decode(hl === null ? buf : buf.subarray(0, Number(hl)));
  return { status: res.status, value: JSON.parse(text) };
}

const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

/** BYTES elements as the binary extension lays them out: u32 LE length + bytes each. */
function bytesElements(...items: (string | Uint8Array)[]): Uint8Array {
  const parts = items.map((s) => (typeof s === "string" ? new TextEncoder().encode(s) : s));
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of parts) {
    view.setUint32(at, p.length, true);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

function expectError(r: { status: number; value: Json }, status: number, code: string): void {
  expect({ status: r.status, code: r.value.code }).toEqual({ status, code });
  expect(typeof r.value.error).toBe("string");
}

const output = (r: { value: Json }, name: string) =>
  r.value.outputs.find((o: { name: string }) => o.name === name);

const FLIGHTS = "/v2/models/flights/infer";
const HOUSE = "/v2/models/house/infer";
/** One flights row: f2 is the category "c1" (code 1). */
const ROW = [1, 2, 1, 0.5, -1, 3];

/** flights as six per-feature binary inputs (f2 BYTES), with their blobs; `over` replaces inputs. */
function perFeature(
  over: Record<string, Record<string, unknown>> = {},
  blobOver: Record<number, Uint8Array> = {},
) {
  const names = ["f0", "f1", "f2", "f3", "f4", "f5"];
  const blobs = names.map((_, j) => blobOver[j] ?? (j === 2 ? bytesElements("c1") : f32(ROW[j])));
  const inputs = names.map((name, j) => ({
    name,
    datatype: j === 2 ? "BYTES" : "FP32",
    shape: [1],
    parameters: { binary_data_size: blobs[j].length },
    ...(over[name] ?? {}),
  }));
  return { inputs, blobs };
}

async function v1Probabilities(instances: unknown[]): Promise<number[][]> {
  const r = await post("/v1/models/flights:predict", { instances });
  expect(r.status).toBe(200);
  return r.value.predictions.map((p: { probabilities: number[] }) => p.probabilities);
}

describe("V2 binary tensor extension", () => {
  test("a valid [N, F] FP32 blob and valid per-feature blobs score like onnxruntime and V1", async () => {
    const x = Float32Array.from([...ROW, Number.NaN, 0, 3, 1, 1, 1]);
    const r = await postBinary(
      FLIGHTS,
      { inputs: [{ name: "input", datatype: "FP32", shape: [2, 6], parameters: { binary_data_size: 48 } }] },
      [new Uint8Array(x.buffer)],
    );
    expect(r.status).toBe(200);
    const ref = await sessions["flights"].run({ input: new Tensor("float32", x, [2, 6]) });
    expect(output(r, "probabilities").data).toEqual(Array.from(ref["probabilities"].data as Float32Array));
    const pf = perFeature();
    const p = await postBinary(FLIGHTS, { inputs: pf.inputs }, pf.blobs);
    expect(p.status).toBe(200);
    expect(output(p, "probabilities").data).toEqual((await v1Probabilities([[1, 2, "c1", 0.5, -1, 3]]))[0]);
  });

  test("FP16 blobs are decoded (half precision; NaN is missing) and score like V1", async () => {
    const f16 = (bits: number) => new Uint8Array(new Uint16Array([bits]).buffer);
    // 1, 2, 0.5, -1 and 3 in half precision; f2 stays BYTES.
    const halves: Record<number, Uint8Array> = {
      0: f16(0x3c00),
      1: f16(0x4000),
      3: f16(0x3800),
      4: f16(0xbc00),
      5: f16(0x4200),
    };
    const fp16 = (n: string) => ({ datatype: "FP16", parameters: { binary_data_size: 2 }, name: n });
    const over = { f0: fp16("f0"), f1: fp16("f1"), f3: fp16("f3"), f4: fp16("f4"), f5: fp16("f5") };
    const pf = perFeature(over, halves);
    const p = await postBinary(FLIGHTS, { inputs: pf.inputs }, pf.blobs);
    expect(p.status).toBe(200);
    expect(output(p, "probabilities").data).toEqual((await v1Probabilities([[1, 2, "c1", 0.5, -1, 3]]))[0]);
    const nan = perFeature(over, { ...halves, 0: f16(0x7e00) });
    const q = await postBinary(FLIGHTS, { inputs: nan.inputs }, nan.blobs);
    expect(q.status).toBe(200);
    expect(output(q, "probabilities").data).toEqual(
      (await v1Probabilities([[null, 2, "c1", 0.5, -1, 3]]))[0],
    );
  });

  test("bytes after the last blob are refused (400 BAD_REQUEST) with their count", async () => {
    const header = {
      inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], parameters: { binary_data_size: 24 } }],
    };
    const r = await postBinary(FLIGHTS, header, [f32(...ROW), f32(7)]);
    expectError(r, 400, "BAD_REQUEST");
    expect(r.value.error).toContain("4 bytes");
    // An Inference-Header-Content-Length request whose inputs are all JSON leaves every byte over.
    const json = { inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], data: ROW }] };
    expectError(await postBinary(FLIGHTS, json, [f32(7, 7)]), 400, "BAD_REQUEST");
    expect((await postBinary(FLIGHTS, json, [])).status).toBe(200);
  });

  test("an input with both 'data' and binary_data_size is refused (400 BAD_REQUEST)", async () => {
    const header = {
      inputs: [
        { name: "input", datatype: "FP32", shape: [1, 6], data: ROW, parameters: { binary_data_size: 24 } },
      ],
    };
    const r = await postBinary(FLIGHTS, header, [f32(...ROW)]);
    expectError(r, 400, "BAD_REQUEST");
    expect(r.value.error).toContain("'data'");
  });

  test("binary_data_size must be a non-negative integer (400 BAD_REQUEST)", async () => {
    for (const size of ["24", -4, 1.5, null, true]) {
      const header = {
        inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], parameters: { binary_data_size: size } }],
      };
      const r = await postBinary(FLIGHTS, header, [f32(...ROW)]);
      expectError(r, 400, "BAD_REQUEST");
      expect(r.value.error).toContain("non-negative integer");
    }
  });

  test("each blob must be shape × element size bytes (422 BAD_SHAPE), so a wrong size cannot shift later inputs", async () => {
    // f0 claims 8 bytes (its 4 and f1's 4): without the per-input check every later input shifted.
    const shifted = perFeature({ f0: { parameters: { binary_data_size: 8 } } });
    const r = await postBinary(FLIGHTS, { inputs: shifted.inputs }, [...shifted.blobs, f32(0)]);
    expectError(r, 422, "BAD_SHAPE");
    expect(r.value.error).toContain("'f0'");
    expect(r.value.error).toContain("4 bytes");
    for (const size of [20, 22]) {
      const short = await postBinary(
        FLIGHTS,
        {
          inputs: [
            { name: "input", datatype: "FP32", shape: [1, 6], parameters: { binary_data_size: size } },
          ],
        },
        [f32(...ROW).subarray(0, size)],
      );
      expectError(short, 422, "BAD_SHAPE");
      expect(short.value.error).toContain("24 bytes");
    }
    // Two BYTES elements where the shape says one.
    const two = bytesElements("c1", "c2");
    const bytes = perFeature({ f2: { parameters: { binary_data_size: two.length } } }, { 2: two });
    const b = await postBinary(FLIGHTS, { inputs: bytes.inputs }, bytes.blobs);
    expectError(b, 422, "BAD_SHAPE");
    expect(b.value.error).toContain("'f2'");
  });

  test("an Inference-Header-Content-Length that is not a length of the body is refused (400)", async () => {
    const header = { inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], data: ROW }] };
    for (const hl of ["abc", "1.5", "-1", "0", "99999999"])
      expectError(await postBinary(FLIGHTS, header, [], hl), 400, "BAD_REQUEST");
    // The right length, written any way but in decimal digits, is refused too.
    const n = new TextEncoder().encode(JSON.stringify(header)).length;
    expect((await postBinary(FLIGHTS, header, [], String(n))).status).toBe(200);
    for (const hl of [`0x${n.toString(16)}`, `${n / 10}e1`, `+${n}`, `${n}.0`])
      expectError(await postBinary(FLIGHTS, header, [], hl), 400, "BAD_REQUEST");
  });

  test("BYTES elements that are not UTF-8 are refused (422 PREDICT_BAD_FEATURE_TYPE)", async () => {
    const bad = bytesElements(new Uint8Array([0xff, 0xfe]));
    const pf = perFeature({ f2: { parameters: { binary_data_size: bad.length } } }, { 2: bad });
    const r = await postBinary(FLIGHTS, { inputs: pf.inputs }, pf.blobs);
    expectError(r, 422, "PREDICT_BAD_FEATURE_TYPE");
    expect(r.value.error).toContain("UTF-8");
  });

  test("a BOOL byte other than 0 or 1 is refused (422 PREDICT_BAD_FEATURE_TYPE)", async () => {
    const pf = perFeature(
      { f0: { datatype: "BOOL", parameters: { binary_data_size: 1 } } },
      { 0: new Uint8Array([2]) },
    );
    expectError(await postBinary(FLIGHTS, { inputs: pf.inputs }, pf.blobs), 422, "PREDICT_BAD_FEATURE_TYPE");
    const ok = perFeature(
      { f0: { datatype: "BOOL", parameters: { binary_data_size: 1 } } },
      { 0: new Uint8Array([1]) },
    );
    const r = await postBinary(FLIGHTS, { inputs: ok.inputs }, ok.blobs);
    expect(r.status).toBe(200);
    expect(output(r, "probabilities").data).toEqual((await v1Probabilities([[1, 2, "c1", 0.5, -1, 3]]))[0]);
  });
});

/** house's six inputs as JSON, f0 of `datatype` with `data`, the others FP32. */
function houseInputs(datatype: string, data: unknown[]) {
  return ["f0", "f1", "f2", "f3", "f4", "f5"].map((name, j) =>
    j === 0
      ? { name, datatype, shape: [data.length], data }
      : { name, datatype: "FP32", shape: [data.length], data: data.map((_, i) => i + j * 0.25) },
  );
}

describe("V2 datatypes of per-feature JSON inputs", () => {
  const valid: [string, unknown[], number[]][] = [
    ["FP16", [0.5, null], [0.5, Number.NaN]],
    ["FP32", [-1.25, null], [-1.25, Number.NaN]],
    ["FP64", [2.5, null], [2.5, Number.NaN]],
    ["INT8", [-128, 127], [-128, 127]],
    ["INT16", [-3, 2], [-3, 2]],
    ["INT32", [-2147483648, 7], [-2147483648, 7]],
    ["INT64", [-9, 9], [-9, 9]],
    ["UINT8", [0, 255], [0, 255]],
    ["UINT16", [65535, 1], [65535, 1]],
    ["UINT32", [4294967295, 2], [4294967295, 2]],
    ["UINT64", [0, 3], [0, 3]],
    ["BOOL", [true, false], [1, 0]],
  ];
  for (const [datatype, data, numbers] of valid) {
    test(`${datatype} values score like V1 with the same numbers`, async () => {
      const r = await post(HOUSE, { inputs: houseInputs(datatype, data) });
      expect(r.status).toBe(200);
      const columns: Record<string, unknown[]> = {};
      for (const inp of houseInputs("FP64", numbers)) columns[inp.name] = inp.data;
      columns["f0"] = numbers.map((v) => (Number.isNaN(v) ? null : v));
      const v1 = await post("/v1/models/house:predict", { columns });
      expect(v1.status).toBe(200);
      expect(output(r, "prediction").data).toEqual(v1.value.predictions);
    });
  }

  test("BYTES names categories; null is missing, like V1", async () => {
    const inputs = ["f0", "f1", "f2", "f3", "f4", "f5"].map((name, j) =>
      j === 2
        ? { name, datatype: "BYTES", shape: [3, 1], data: [["c3"], [null], ["never-seen"]] }
        : { name, datatype: "FP32", shape: [3], data: [ROW[j], ROW[j], ROW[j]] },
    );
    const r = await post(FLIGHTS, { inputs, outputs: [{ name: "probabilities" }] });
    expect(r.status).toBe(200);
    const rows = ["c3", null, "never-seen"].map((c) => [1, 2, c, 0.5, -1, 3]);
    expect(r.value.outputs[0].data).toEqual((await v1Probabilities(rows)).flat());
  });

  const invalid: [string, unknown[]][] = [
    ["INT32", [1.5]],
    ["INT32", [null]],
    ["INT8", [128]],
    ["UINT8", [-5]],
    ["UINT8", [256]],
    ["UINT32", [4294967296]],
    ["BOOL", [2]],
    ["BOOL", [1]],
    ["FP32", ["1"]],
    ["FP64", [true]],
  ];
  for (const [datatype, data] of invalid) {
    test(`${datatype} ${JSON.stringify(data)} is refused (422 PREDICT_BAD_FEATURE_TYPE)`, async () => {
      const r = await post(HOUSE, { inputs: houseInputs(datatype, data) });
      expectError(r, 422, "PREDICT_BAD_FEATURE_TYPE");
      expect(r.value.error).toContain("'f0'");
      expect(r.value.error).toContain(datatype);
    });
  }

  test("BYTES with numbers and FP32 with category strings are refused (422 PREDICT_BAD_FEATURE_TYPE)", async () => {
    const inputs = (datatype: string, v: unknown) =>
      ["f0", "f1", "f2", "f3", "f4", "f5"].map((name, j) =>
        j === 2
          ? { name, datatype, shape: [1], data: [v] }
          : { name, datatype: "FP32", shape: [1], data: [ROW[j]] },
      );
    expectError(await post(FLIGHTS, { inputs: inputs("BYTES", 1) }), 422, "PREDICT_BAD_FEATURE_TYPE");
    expectError(await post(FLIGHTS, { inputs: inputs("FP32", "c1") }), 422, "PREDICT_BAD_FEATURE_TYPE");
    // A number for a categorical names the category whose text it is (the V1 rule): "1" is no category → missing.
    const n = await post(FLIGHTS, { inputs: inputs("INT32", 1), outputs: [{ name: "probabilities" }] });
    expect(n.status).toBe(200);
    expect(n.value.outputs[0].data).toEqual((await v1Probabilities([[1, 2, 1, 0.5, -1, 3]]))[0]);
  });
});

describe("V2 single [N, F] input tensor", () => {
  test("valid dictionary codes and NaN give the same predictions as V1 with category strings and null", async () => {
    const codes = [0, 1, 2, 3, null];
    const data = codes.flatMap((c) => [1, 2, c, 0.5, -1, 3]);
    const r = await post(FLIGHTS, { inputs: [{ name: "input", datatype: "FP32", shape: [5, 6], data }] });
    expect(r.status).toBe(200);
    const v1 = await v1Probabilities(codes.map((c) => [1, 2, c === null ? null : `c${c}`, 0.5, -1, 3]));
    expect(output(r, "probabilities").data).toEqual(v1.flat());
    // NaN in binary form is the missing value too.
    const x = Float32Array.from([1, 2, Number.NaN, 0.5, -1, 3]);
    const b = await postBinary(
      FLIGHTS,
      { inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], parameters: { binary_data_size: 24 } }] },
      [new Uint8Array(x.buffer)],
    );
    expect(b.status).toBe(200);
    expect(output(b, "probabilities").data).toEqual(v1[4]);
  });

  test("a categorical code outside [0, categories) or not an integer is refused (422 PREDICT_BAD_FEATURE_TYPE)", async () => {
    for (const c of [99, 4, -1, 1.5]) {
      const data = [...ROW, 1, 2, c, 0.5, -1, 3];
      const r = await post(FLIGHTS, { inputs: [{ name: "input", datatype: "FP32", shape: [2, 6], data }] });
      expectError(r, 422, "PREDICT_BAD_FEATURE_TYPE");
      expect(r.value.error).toContain("row 1");
      expect(r.value.error).toContain("'f2'");
    }
    const x = Float32Array.from([1, 2, 99, 0.5, -1, 3]);
    const b = await postBinary(
      FLIGHTS,
      { inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], parameters: { binary_data_size: 24 } }] },
      [new Uint8Array(x.buffer)],
    );
    expectError(b, 422, "PREDICT_BAD_FEATURE_TYPE");
  });

  test("the tensor's datatype is enforced on its elements", async () => {
    const tensor = (datatype: string, data: unknown[]) => ({
      inputs: [{ name: "input", datatype, shape: [1, 6], data }],
    });
    const bad: [string, unknown[], number, string][] = [
      ["INT32", [1.5, 2, 1, 0, -1, 3], 422, "PREDICT_BAD_FEATURE_TYPE"],
      ["UINT8", [1, 2, 1, 0, -1, 3], 422, "PREDICT_BAD_FEATURE_TYPE"],
      ["BOOL", [true, 2, 1, 0, 1, 1], 422, "PREDICT_BAD_FEATURE_TYPE"],
      ["FP32", [true, 2, 1, 0.5, -1, 3], 422, "PREDICT_BAD_FEATURE_TYPE"],
      ["FP32", ["1", 2, 1, 0.5, -1, 3], 422, "PREDICT_BAD_FEATURE_TYPE"],
      ["FP64", [1e300, 2, 1, 0.5, -1, 3], 422, "NON_FINITE_VALUE"],
      ["BYTES", ["1", "2", "c1", "0", "-1", "3"], 422, "PREDICT_BAD_FEATURE_TYPE"],
    ];
    for (const [datatype, data, status, code] of bad) {
      const r = await post(FLIGHTS, tensor(datatype, data));
      expect([datatype, r.status, r.value.code]).toEqual([datatype, status, code]);
    }
    const ints = await post(FLIGHTS, tensor("INT32", [1, 2, 1, 0, -1, 3]));
    expect(ints.status).toBe(200);
    expect(output(ints, "probabilities").data).toEqual((await v1Probabilities([[1, 2, "c1", 0, -1, 3]]))[0]);
    const bools = await post(FLIGHTS, tensor("BOOL", [true, false, true, false, true, true]));
    expect(bools.status).toBe(200);
    expect(output(bools, "probabilities").data).toEqual((await v1Probabilities([[1, 0, "c1", 0, 1, 1]]))[0]);
  });
});

describe("V2 infer: missing data, outputs, metadata, routes", () => {
  test("an input without 'data' says so (400 BAD_REQUEST)", async () => {
    const r = await post(FLIGHTS, { inputs: [{ name: "input", datatype: "FP32", shape: [1, 6] }] });
    expectError(r, 400, "BAD_REQUEST");
    expect(r.value.error).toContain("'data'");
    const pf = await post(HOUSE, {
      inputs: houseInputs("FP32", [1]).map((inp, j) => (j === 3 ? { ...inp, data: undefined } : inp)),
    });
    expectError(pf, 400, "BAD_REQUEST");
    expect(pf.value.error).toContain("'f3'");
  });

  test("zero rows are refused the same way in both input forms (422 BAD_SHAPE)", async () => {
    const tensor = await post(FLIGHTS, {
      inputs: [{ name: "input", datatype: "FP32", shape: [0, 6], data: [] }],
    });
    const columns = await post(HOUSE, { inputs: houseInputs("FP32", []) });
    for (const r of [tensor, columns]) {
      expectError(r, 422, "BAD_SHAPE");
      expect(r.value.error).toContain("N >= 1");
    }
  });

  test("an output requested twice is refused (400 BAD_REQUEST)", async () => {
    const r = await post(FLIGHTS, {
      inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], data: ROW }],
      outputs: [{ name: "label" }, { name: "probabilities" }, { name: "label" }],
    });
    expectError(r, 400, "BAD_REQUEST");
    expect(r.value.error).toContain("'label'");
  });

  test("an output asking for Triton's classification extension is refused (400), not answered as a plain tensor", async () => {
    const r = await post(FLIGHTS, {
      inputs: [{ name: "input", datatype: "FP32", shape: [1, 6], data: ROW }],
      outputs: [{ name: "probabilities", parameters: { classification: 2 } }],
    });
    expectError(r, 400, "BAD_REQUEST");
    expect(r.value.error).toContain("classification");
  });

  test("an input named __proto__ is an unknown feature like any other (422 UNKNOWN_FEATURE)", async () => {
    const r = await post(HOUSE, {
      inputs: [...houseInputs("FP32", [1]), { name: "__proto__", datatype: "FP32", shape: [1], data: [1] }],
    });
    expectError(r, 422, "UNKNOWN_FEATURE");
    expect(r.value.error).toContain("'__proto__'");
  });

  test("metadata declares the outputs' shapes per task, as infer returns them", async () => {
    const shape = async (model: string, output: string) => {
      const meta = (await (await fetch(`${server.url}/v2/models/${model}`)).json()) as Json;
      return meta.outputs.find((o: { name: string }) => o.name === output).shape;
    };
    const shapShape = (model: string) => shape(model, "treeshap_output");
    expect(await shapShape("house")).toEqual([-1, 7]);
    expect(await shapShape("flights")).toEqual([-1, 7]);
    expect(await shapShape("iris")).toEqual([-1, 3, 7]);
    expect(await shape("flights", "probabilities")).toEqual([-1, 2]);
    expect(await shape("iris", "probabilities")).toEqual([-1, 3]);
    const r = await post("/v2/models/iris/infer", {
      inputs: [{ name: "input", datatype: "FP32", shape: [2, 6], data: [...ROW, ...ROW] }],
      outputs: [{ name: "treeshap_output" }],
    });
    expect(r.status).toBe(200);
    expect(r.value.outputs[0].shape).toEqual([2, 3, 7]);
  });

  test("metadata lists the versions that may be requested: those in the store, loaded or not", async () => {
    const meta = (await (await fetch(`${server.url}/v2/models/house`)).json()) as Json;
    expect(meta.versions).toEqual(["1", "2"]);
    const v1 = (await (await fetch(`${server.url}/v1/models/house`)).json()) as Json;
    expect(v1.versions.map((v: { version: number }) => v.version)).toEqual([1]); // v2 not loaded
  });

  test("GET /v2/models/ (no model name) is 404 ROUTE_NOT_FOUND", async () => {
    for (const route of ["/v2/models/", "/v2/models/flights/"]) {
      const res = await fetch(`${server.url}${route}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as Json).code).toBe("ROUTE_NOT_FOUND");
    }
  });
});

describe("V2 msgpack bodies", () => {
  test("a bin value in a msgpack body is still readable after the version it names has loaded", async () => {
    // house v2 is loaded by this request: the body is read after the load, when uWS has taken
    // back the bytes it lent (a bin value used to be a view into them: 500 INTERNAL).
    const res = await fetch(`${server.url}/v2/models/house/versions/2/infer`, {
      method: "POST",
      headers: { "content-type": "application/msgpack", accept: "application/json" },
      body: pack({
        inputs: [{ name: "f0", shape: [1], datatype: new Uint8Array([0x41, 0x42, 0x43]), data: [1] }],
      }),
    });
    const value = (await res.json()) as Json;
    expect({ status: res.status, code: value.code }).toEqual({
      status: 422,
      code: "PREDICT_BAD_FEATURE_TYPE",
    });
    expect(value.error).toContain("65,66,67");
  });
});

describe("V2 JSON infer end to end (v2-json.ts's fast path, and the general path where it gives up)", () => {
  /** POST a JSON text as is; the reply decoded by its Content-Type. */
  async function postText(route: string, text: string, accept = "application/json") {
    const res = await fetch(`${server.url}${route}`, {
      method: "POST",
      headers: { "content-type": "application/json", accept },
      body: text,
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const msgpack = res.headers.get("content-type") === "application/msgpack";
    return {
      status: res.status,
      value: (msgpack ? unpack(bytes) : JSON.parse(new TextDecoder().decode(bytes))) as Json,
    };
  }

  test("a version loaded on demand, the reply in JSON and in msgpack: onnxruntime's outputs, the id echoed", async () => {
    // f1 is categorical (3 categories): codes 2 and 0; null is missing.
    const data = [...ROW, 0.25, 0, null, 7, 8, -9];
    const x = Float32Array.from(data, (v) => (v === null ? Number.NaN : v));
    const ref = await sessions["iris@2"].run({ input: new Tensor("float32", x, [2, 6]) });
    const body = JSON.stringify({
      id: "q-7",
      inputs: [{ name: "input", shape: [2, 6], datatype: "FP32", data }],
    });
    const route = "/v2/models/iris/versions/2/infer";
    const json = await postText(route, body);
    expect(json.status).toBe(200);
    expect(json.value).toMatchObject({ model_name: "iris", model_version: "2", id: "q-7" });
    expect(json.value.outputs.map((o: { name: string }) => o.name)).toEqual([
      "margin",
      "probabilities",
      "label",
    ]);
    expect(output(json, "margin")).toEqual({
      name: "margin",
      datatype: "FP32",
      shape: [2, 3],
      data: Array.from(ref.margin.data as Float32Array),
    });
    expect(output(json, "probabilities").data).toEqual(Array.from(ref.probabilities.data as Float32Array));
    expect(output(json, "label")).toMatchObject({ datatype: "BYTES", shape: [2] });
    // Now loaded: the rows go the fast way; msgpack replies carry the same value.
    const again = await postText(route, body);
    expect(again).toEqual(json);
    expect(await postText(route, body, "application/msgpack")).toEqual(json);
  });

  test("a malformed body is 400 whatever the model; a good one for an unknown model or version is 404", async () => {
    const good = JSON.stringify({ inputs: [{ name: "input", shape: [1, 6], datatype: "FP32", data: ROW }] });
    for (const route of ["/v2/models/nope/infer", "/v2/models/flights/versions/99/infer", FLIGHTS]) {
      expectError(await postText(route, `${good.slice(0, -3)}`), 400, "MALFORMED_BODY");
    }
    // Refused before its version is loaded: iris v3 stays unloaded.
    expectError(await postText("/v2/models/iris/versions/3/infer", good.slice(0, -3)), 400, "MALFORMED_BODY");
    const loaded = (await (await fetch(`${server.url}/v1/models/iris`)).json()) as Json;
    expect(loaded.versions.map((v: { version: number }) => v.version)).not.toContain(3);
    expectError(await postText("/v2/models/nope/infer", good), 404, "MODEL_NOT_FOUND");
    expect((await postText("/v2/models/flights/versions/99/infer", good)).status).toBe(404);
    expect((await postText(FLIGHTS, good)).status).toBe(200);
  });
});
