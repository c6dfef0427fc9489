/**
 * KServe V2 / Open Inference Protocol bodies: model metadata and `infer` (JSON `data`). Inputs are
 * either one FP32 tensor `[N, F]` in signature order (categoricals as codes, the ONNX contract), or
 * one tensor per feature named by the feature (shape `[N]` or `[N, 1]`; BYTES for categorical
 * strings). SHAP is the optional output `treeshap_output` `[N, F+1]` (bias last; `[N, K, F+1]` for
 * multiclass), as Triton's FIL backend exposes it.
 */

import { shapMatrix } from "../explain.ts";
import type { ModelSlot } from "../model-cache/slot.ts";
import { clientError } from "./client-error.ts";
import { argmax, classLabels } from "./predictions.ts";
import { checkExplainRows, FLOAT32_MAX, type RowMatrix, rowsFromColumns } from "./rows.ts";
import type { ServeCore } from "./service.ts";

const NUMERIC_TYPES = new Set([
  "FP32",
  "FP64",
  "FP16",
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "UINT8",
  "UINT16",
  "UINT32",
  "UINT64",
  "BOOL",
]);
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** `GET /v2/models/{name}[/versions/{v}]`. */
export function v2ModelMetadata(core: ServeCore, slot: ModelSlot): Record<string, unknown> {
  const f = slot.plan.width;
  const outputs: Record<string, unknown>[] = [
    { name: "margin", datatype: "FP32", shape: [-1, slot.signature.baseScore.length] },
  ];
  if (slot.signature.task === "regression")
    outputs.push({ name: "prediction", datatype: "FP32", shape: [-1, 1] });
  else {
    outputs.push(
      { name: "probabilities", datatype: "FP32", shape: [-1, -1] },
      { name: "label", datatype: "BYTES", shape: [-1] },
    );
  }
  // As shapMatrix returns it: one row of F+1 per output, the output axis only when there are several.
  const k = slot.signature.baseScore.length;
  outputs.push({ name: "treeshap_output", datatype: "FP32", shape: k === 1 ? [-1, f + 1] : [-1, k, f + 1] });
  return {
    name: slot.name,
    versions: core.cache.loadedVersions(slot.name).map((s) => String(s.version)),
    platform: "onnx_onnxv1",
    inputs: [{ name: "input", datatype: "FP32", shape: [-1, f] }],
    outputs,
    parameters: { features: slot.signature.features, task: slot.signature.task },
  };
}

/** Flatten nested arrays (row-major) into `out`. */
function flatten(v: unknown, out: unknown[], depth: number): void {
  if (depth > 4) throw clientError("BAD_SHAPE", "infer: tensor data is nested too deeply");
  if (Array.isArray(v)) for (let i = 0; i < v.length; i++) flatten(v[i], out, depth + 1);
  else out.push(v);
}

const BYTE_SIZES: Record<string, number> = {
  BOOL: 1,
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  UINT32: 4,
  INT32: 4,
  UINT64: 8,
  INT64: 8,
  FP32: 4,
  FP64: 8,
};

/** Reads the binary tensor extension's blobs in input order. */
class BinaryCursor {
  readonly #bytes: Uint8Array;
  #at = 0;
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** The next `size` bytes, copied (aligned for typed-array views). */
  take(size: number, name: string): Uint8Array {
    if (!Number.isInteger(size) || size < 0 || this.#at + size > this.#bytes.length) {
      throw clientError(
        "BAD_SHAPE",
        `infer: input '${name.slice(0, 100)}' binary_data_size ${size} exceeds the body`,
      );
    }
    const out = this.#bytes.slice(this.#at, this.#at + size);
    this.#at += size;
    return out;
  }
}

/** Decode one binary input into plain values (NaN → null, BYTES → strings). */
function binaryValues(bytes: Uint8Array, datatype: string, name: string): unknown[] {
  if (datatype === "BYTES") {
    const out: unknown[] = [];
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let at = 0;
    while (at < bytes.length) {
      if (at + 4 > bytes.length)
        throw clientError("BAD_SHAPE", `infer: input '${name}' has a truncated BYTES element`);
      const len = view.getUint32(at, true);
      if (at + 4 + len > bytes.length)
        throw clientError("BAD_SHAPE", `infer: input '${name}' has a truncated BYTES element`);
      out.push(utf8Decoder.decode(bytes.subarray(at + 4, at + 4 + len)));
      at += 4 + len;
    }
    return out;
  }
  const size = BYTE_SIZES[datatype];
  if (size === undefined || bytes.length % size !== 0) {
    throw clientError(
      "PREDICT_BAD_FEATURE_TYPE",
      `infer: input '${name}' has datatype ${datatype} and ${bytes.length} bytes`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length / size;
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * size;
    let v: number;
    switch (datatype) {
      case "FP32":
        v = view.getFloat32(at, true);
        break;
      case "FP64":
        v = view.getFloat64(at, true);
        break;
      case "INT64":
        v = Number(view.getBigInt64(at, true));
        break;
      case "UINT64":
        v = Number(view.getBigUint64(at, true));
        break;
      case "INT32":
        v = view.getInt32(at, true);
        break;
      case "UINT32":
        v = view.getUint32(at, true);
        break;
      case "INT16":
        v = view.getInt16(at, true);
        break;
      case "UINT16":
        v = view.getUint16(at, true);
        break;
      case "INT8":
        v = view.getInt8(at);
        break;
      default:
        v = view.getUint8(at);
    }
    // In binary form NaN is the only way to say "missing"; JSON says it with null.
    out[i] = Number.isNaN(v) ? null : v;
  }
  return out;
}

/** The data of one input: JSON `data`, or its blob when it has `parameters.binary_data_size`. */
function inputData(o: Record<string, unknown>, name: string, cursor: BinaryCursor | null): unknown {
  const params = o["parameters"];
  const size =
    params !== null && typeof params === "object"
      ? (params as Record<string, unknown>)["binary_data_size"]
      : undefined;
  if (size === undefined) return o["data"];
  if (cursor === null)
    throw clientError(
      "BAD_REQUEST",
      `infer: input '${name.slice(0, 100)}' has binary_data_size but the request has no Inference-Header-Content-Length`,
    );
  return binaryValues(cursor.take(size as number, name), String(o["datatype"]), name.slice(0, 100));
}

function readInputs(slot: ModelSlot, body: unknown, maxRows: number, binary: Uint8Array | null): RowMatrix {
  const cursor = binary === null ? null : new BinaryCursor(binary);
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw clientError("BAD_REQUEST", "infer: the body must be an object with 'inputs'");
  }
  const inputs = (body as Record<string, unknown>)["inputs"];
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw clientError("BAD_REQUEST", "infer: 'inputs' must be a non-empty array");
  const plan = slot.plan;
  const first = inputs[0] as Record<string, unknown> | null;
  if (inputs.length === 1 && first !== null && typeof first === "object" && first["name"] === "input") {
    const shape = first["shape"];
    const datatype = first["datatype"];
    if (typeof datatype !== "string" || !NUMERIC_TYPES.has(datatype)) {
      throw clientError(
        "PREDICT_BAD_FEATURE_TYPE",
        `infer: input 'input' must be FP32 (got ${String(datatype).slice(0, 20)})`,
      );
    }
    if (
      !Array.isArray(shape) ||
      shape.length !== 2 ||
      shape[1] !== plan.width ||
      !Number.isInteger(shape[0]) ||
      shape[0] < 1
    ) {
      throw clientError("BAD_SHAPE", `infer: input 'input' must have shape [N, ${plan.width}]`);
    }
    const n = shape[0] as number;
    if (n > maxRows) throw clientError("TOO_MANY_ROWS", `infer: ${n} rows, the limit is ${maxRows}`);
    const flat: unknown[] = [];
    flatten(inputData(first, "input", cursor), flat, 0);
    if (flat.length !== n * plan.width) {
      throw clientError(
        "BAD_SHAPE",
        `infer: input 'input' has ${flat.length} values, shape says ${n * plan.width}`,
      );
    }
    const data = new Float32Array(flat.length);
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i];
      if (v === null) data[i] = Number.NaN;
      else if (typeof v === "number" && !Number.isNaN(v) && v <= FLOAT32_MAX && v >= -FLOAT32_MAX)
        data[i] = v;
      else if (typeof v === "boolean") data[i] = v ? 1 : 0;
      else {
        const feature = plan.names[i % plan.width];
        throw clientError(
          typeof v === "number" ? "NON_FINITE_VALUE" : "PREDICT_BAD_FEATURE_TYPE",
          `infer: row ${Math.floor(i / plan.width)}, feature '${feature}': bad value ${String(v).slice(0, 20)}`,
          {
            details: { feature },
          },
        );
      }
    }
    return { rows: n, data };
  }
  const columns: Record<string, unknown[]> = {};
  for (const inp of inputs) {
    if (inp === null || typeof inp !== "object")
      throw clientError("BAD_REQUEST", "infer: each input must be an object");
    const o = inp as Record<string, unknown>;
    const name = o["name"];
    if (typeof name !== "string") throw clientError("BAD_REQUEST", "infer: each input needs a 'name'");
    const dt = o["datatype"];
    if (dt !== "BYTES" && (typeof dt !== "string" || !NUMERIC_TYPES.has(dt))) {
      throw clientError(
        "PREDICT_BAD_FEATURE_TYPE",
        `infer: input '${name.slice(0, 100)}' has unsupported datatype ${String(dt).slice(0, 20)}`,
      );
    }
    const flat: unknown[] = [];
    flatten(inputData(o, name, cursor), flat, 0);
    const shape = o["shape"];
    if (
      !Array.isArray(shape) ||
      shape[0] !== flat.length ||
      shape.length > 2 ||
      (shape.length === 2 && shape[1] !== 1)
    ) {
      throw clientError(
        "BAD_SHAPE",
        `infer: input '${name.slice(0, 100)}' must have shape [N] or [N, 1] matching its data`,
      );
    }
    if (Object.hasOwn(columns, name))
      throw clientError("BAD_REQUEST", `infer: input '${name.slice(0, 100)}' is given twice`);
    columns[name] = flat;
  }
  return rowsFromColumns(plan, columns, maxRows);
}

/** `POST /v2/models/{name}[/versions/{v}]/infer`. */
export async function v2Infer(
  core: ServeCore,
  slot: ModelSlot,
  body: unknown,
  binary: Uint8Array | null = null,
): Promise<{ value: Record<string, unknown>; blobs: Uint8Array[] }> {
  const m = readInputs(slot, body, core.config.maxRows, binary);
  const b = body as Record<string, unknown>;
  const params = b["parameters"];
  const allBinary =
    params !== null &&
    typeof params === "object" &&
    (params as Record<string, unknown>)["binary_data_output"] === true;
  const binaryOut = new Set<string>();
  const available = [
    "margin",
    ...slot.fetches.filter((f) => f !== "margin"),
    // The label is the argmax of the probabilities: only a model that outputs them has one.
    ...(slot.fetches.includes("probabilities") ? ["label"] : []),
    "treeshap_output",
  ];
  let wanted = available.filter((n) => n !== "treeshap_output");
  if (b["outputs"] !== undefined) {
    if (!Array.isArray(b["outputs"])) throw clientError("BAD_REQUEST", "infer: 'outputs' must be an array");
    wanted = [];
    for (const o of b["outputs"] as unknown[]) {
      const name = o !== null && typeof o === "object" ? (o as Record<string, unknown>)["name"] : undefined;
      if (typeof name !== "string" || !available.includes(name)) {
        throw clientError(
          "BAD_REQUEST",
          `infer: unknown output ${JSON.stringify(name ?? null).slice(0, 60)}; available: ${available.join(", ")}`,
        );
      }
      if (wanted.includes(name))
        throw clientError("BAD_REQUEST", `infer: output '${name}' is requested twice`);
      wanted.push(name);
      const op = (o as Record<string, unknown>)["parameters"];
      const flag =
        op !== null && typeof op === "object" ? (op as Record<string, unknown>)["binary_data"] : undefined;
      if (flag === true || (flag === undefined && allBinary)) binaryOut.add(name);
    }
  } else if (allBinary) for (const n of wanted) binaryOut.add(n);
  if (wanted.includes("treeshap_output")) checkExplainRows(m.rows, core.config.maxExplainRows, "infer");
  const s = await slot.scoreAll(m.data, m.rows);
  const outputs: Record<string, unknown>[] = [];
  for (const name of wanted) {
    if (name === "treeshap_output") {
      const shap = shapMatrix(slot, m.data, m.rows);
      outputs.push({ name, datatype: "FP32", shape: shap.shape, data: shap.data });
      continue;
    }
    if (name === "label") {
      const probs = s.outputs.tensors.get("probabilities")!;
      const labels = classLabels(slot.signature, probs.width);
      const data: string[] = new Array(s.rows);
      for (let r = 0; r < s.rows; r++)
        data[r] = labels[argmax(probs.data, (s.offset + r) * probs.width, probs.width)];
      outputs.push({ name, datatype: "BYTES", shape: [s.rows], data });
      continue;
    }
    const t = s.outputs.tensors.get(name)!;
    const start = s.offset * t.width;
    outputs.push({
      name,
      datatype: "FP32",
      shape: [s.rows, t.width],
      data: Array.from(t.data.subarray(start, start + s.rows * t.width)),
    });
  }
  const blobs: Uint8Array[] = [];
  for (let i = 0; i < outputs.length; i++) {
    const o = outputs[i];
    if (!binaryOut.has(o["name"] as string)) continue;
    const blob =
      o["datatype"] === "BYTES"
        ? encodeBytes(o["data"] as string[])
        : new Uint8Array(Float32Array.from(o["data"] as number[]).buffer);
    blobs.push(blob);
    // A new object rather than `delete o.data` (STYLE: no delete; same JSON key order).
    outputs[i] = {
      name: o["name"],
      datatype: o["datatype"],
      shape: o["shape"],
      parameters: { binary_data_size: blob.length },
    };
  }
  const out: Record<string, unknown> = {
    model_name: slot.name,
    model_version: String(slot.version),
    outputs,
  };
  if (typeof b["id"] === "string") out["id"] = b["id"];
  return { value: out, blobs };
}

/** BYTES elements as the binary extension lays them out: u32 LE length + bytes each. */
function encodeBytes(values: string[]): Uint8Array {
  const parts = values.map((v) => utf8Encoder.encode(v));
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
