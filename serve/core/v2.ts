/**
 * KServe V2 / Open Inference Protocol bodies: model metadata and `infer` (JSON `data` or the binary
 * tensor extension's blobs). Inputs are either one FP32 tensor `[N, F]` in signature order
 * (categoricals as dictionary codes, the ONNX contract: an integer in [0, categories) or NaN/null),
 * or one tensor per feature named by the feature (shape `[N]` or `[N, 1]`; BYTES for categorical
 * strings; a number for a categorical names the category whose text it is, the V1 rule). Elements
 * must fit the datatype: FP numbers or null (missing), INT and UINT integers in range, BOOL
 * booleans (one byte 0/1 in binary), BYTES strings (valid UTF-8) or null. SHAP is the optional
 * output `treeshap_output` `[N, F+1]` (bias last; `[N, K, F+1]` for multiclass), as Triton's FIL
 * backend exposes it.
 */

import { shapMatrix } from "../explain.ts";
import type { ModelSlot } from "../model-cache/slot.ts";
import { clientError } from "./client-error.ts";
import { type FeaturePlan, FLOAT32_MAX } from "./plan.ts";
import { checkExplainRows, type RowMatrix, rowsFromColumns } from "./rows.ts";
import type { ServeCore } from "./service.ts";
import { V2Reply } from "./v2-json.ts";

/** What the elements of a datatype may be: float (number or null), int, bool, or bytes (strings). */
const FLOAT = 0;
const INT = 1;
const BOOL = 2;
const BYTES = 3;

/** One V2 datatype: its element kind, the inclusive range of an integer type, bytes per element. */
interface Datatype {
  readonly name: string;
  readonly kind: typeof FLOAT | typeof INT | typeof BOOL | typeof BYTES;
  readonly min: number;
  readonly max: number;
  /** Bytes per element in binary form; 0 for BYTES (length-prefixed). */
  readonly size: number;
}

function datatype(name: string, kind: Datatype["kind"], size: number, min = 0, max = 0): Datatype {
  return { name, kind, min, max, size };
}

/**
 * The datatypes an input may have. A Map, not an object, so that a datatype such as "constructor"
 * finds nothing. The 64-bit bounds are rounded to doubles (2^63 - 1 is 2^63 here), as a JSON
 * number of that size is anyway.
 */
const DATATYPES: ReadonlyMap<string, Datatype> = new Map(
  [
    datatype("FP16", FLOAT, 2),
    datatype("FP32", FLOAT, 4),
    datatype("FP64", FLOAT, 8),
    datatype("INT8", INT, 1, -128, 127),
    datatype("INT16", INT, 2, -32768, 32767),
    datatype("INT32", INT, 4, -2147483648, 2147483647),
    datatype("INT64", INT, 8, -(2 ** 63), 2 ** 63 - 1),
    datatype("UINT8", INT, 1, 0, 255),
    datatype("UINT16", INT, 2, 0, 65535),
    datatype("UINT32", INT, 4, 0, 4294967295),
    datatype("UINT64", INT, 8, 0, 2 ** 64 - 1),
    datatype("BOOL", BOOL, 1),
    datatype("BYTES", BYTES, 0),
  ].map((t) => [t.name, t]),
);
const utf8Encoder = new TextEncoder();
/** Fatal: invalid UTF-8 would otherwise become U+FFFD, an unknown category, a silent missing value. */
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** `GET /v2/models/{name}[/versions/{v}]`. */
export async function v2ModelMetadata(core: ServeCore, slot: ModelSlot): Promise<Record<string, unknown>> {
  const f = slot.plan.width;
  const k = slot.signature.baseScore.length;
  const outputs: Record<string, unknown>[] = [{ name: "margin", datatype: "FP32", shape: [-1, k] }];
  if (slot.signature.task === "regression")
    outputs.push({ name: "prediction", datatype: "FP32", shape: [-1, 1] });
  else {
    outputs.push(
      { name: "probabilities", datatype: "FP32", shape: [-1, slot.signature.classes?.length ?? -1] },
      { name: "label", datatype: "BYTES", shape: [-1] },
    );
  }
  // As shapMatrix returns it: one row of F+1 per output, the output axis only when there are several.
  outputs.push({ name: "treeshap_output", datatype: "FP32", shape: k === 1 ? [-1, f + 1] : [-1, k, f + 1] });
  return {
    name: slot.name,
    // "The model versions that may be explicitly requested": in the store, loaded or not.
    versions: (await core.cache.availableVersions(slot.name)).map(String),
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

/** Reads the binary tensor extension's blobs in input order. */
class BinaryCursor {
  readonly #bytes: Uint8Array;
  #at = 0;
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** Bytes not taken by any input yet. */
  get left(): number {
    return this.#bytes.length - this.#at;
  }

  /** The next `size` bytes (a non-negative integer), copied (aligned for typed-array views). */
  take(size: number, name: string): Uint8Array {
    if (this.#at + size > this.#bytes.length) {
      throw clientError(
        "BAD_SHAPE",
        `infer: input '${name}' binary_data_size ${size} exceeds the body (${this.left} bytes left)`,
      );
    }
    const out = this.#bytes.slice(this.#at, this.#at + size);
    this.#at += size;
    return out;
  }
}

/**
 * Decode one binary input of `count` elements into plain values: numbers (NaN → null, the missing
 * value), booleans for BOOL, strings for BYTES. The byte size of fixed-size types is checked by the
 * caller; BYTES must hold exactly `count` elements.
 */
function binaryValues(bytes: Uint8Array, t: Datatype, name: string, count: number): unknown[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (t.kind === BYTES) {
    const out: unknown[] = [];
    let at = 0;
    while (at < bytes.length) {
      const len = at + 4 > bytes.length ? -1 : view.getUint32(at, true);
      if (len < 0 || at + 4 + len > bytes.length)
        throw clientError("BAD_SHAPE", `infer: input '${name}' has a truncated BYTES element`);
      try {
        out.push(utf8Decoder.decode(bytes.subarray(at + 4, at + 4 + len)));
      } catch (e) {
        throw clientError(
          "PREDICT_BAD_FEATURE_TYPE",
          `infer: input '${name}' element ${out.length} is not valid UTF-8`,
          { cause: e, details: { feature: name, row: out.length } },
        );
      }
      at += 4 + len;
    }
    if (out.length !== count) {
      throw clientError(
        "BAD_SHAPE",
        `infer: input '${name}' holds ${out.length} BYTES elements, its shape says ${count}`,
      );
    }
    return out;
  }
  const out: unknown[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * t.size;
    let v: number;
    switch (t.name) {
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
      case "FP16":
        v = halfToNumber(view.getUint16(at, true));
        break;
      case "BOOL": {
        // The extension's BOOL is one byte, 0 or 1.
        const b = view.getUint8(at);
        if (b > 1) {
          throw clientError(
            "PREDICT_BAD_FEATURE_TYPE",
            `infer: input '${name}' element ${i}: a BOOL byte must be 0 or 1, got ${b}`,
          );
        }
        out[i] = b === 1;
        continue;
      }
      default:
        v = view.getUint8(at);
    }
    // In binary form NaN is the only way to say "missing"; JSON says it with null.
    out[i] = Number.isNaN(v) ? null : v;
  }
  return out;
}

/** An IEEE 754 half-precision value (its 16 bits) as a number; NaN for any NaN. */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return fraction === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * The values of one input, `count` of them: its JSON `data` flattened, or its blob when it has
 * `parameters.binary_data_size` (never both).
 */
function inputData(
  o: Record<string, unknown>,
  name: string,
  t: Datatype,
  count: number,
  cursor: BinaryCursor | null,
): unknown[] {
  const params = o["parameters"];
  const size =
    params !== null && typeof params === "object"
      ? (params as Record<string, unknown>)["binary_data_size"]
      : undefined;
  const data = o["data"];
  if (size === undefined) {
    if (data === undefined)
      throw clientError(
        "BAD_REQUEST",
        `infer: input '${name}' has no 'data' (nor parameters.binary_data_size)`,
      );
    if (!Array.isArray(data))
      throw clientError("BAD_REQUEST", `infer: input '${name}' 'data' must be an array`);
    const flat: unknown[] = [];
    flatten(data, flat, 0);
    if (flat.length !== count)
      throw clientError(
        "BAD_SHAPE",
        `infer: input '${name}' has ${flat.length} values, its shape says ${count}`,
      );
    return flat;
  }
  if (data !== undefined) {
    throw clientError(
      "BAD_REQUEST",
      `infer: input '${name}' has both 'data' and parameters.binary_data_size; send one of them`,
    );
  }
  if (cursor === null)
    throw clientError(
      "BAD_REQUEST",
      `infer: input '${name}' has binary_data_size but the request has no Inference-Header-Content-Length`,
    );
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw clientError(
      "BAD_REQUEST",
      `infer: input '${name}' binary_data_size must be a non-negative integer (got ${JSON.stringify(size).slice(0, 20)})`,
    );
  }
  // Checked per input, so that a wrong size cannot shift the blobs of the inputs after it.
  if (t.size > 0 && size !== count * t.size) {
    throw clientError(
      "BAD_SHAPE",
      `infer: input '${name}' binary_data_size is ${size}, but ${count} ${t.name} values take ${count * t.size} bytes`,
    );
  }
  return binaryValues(cursor.take(size, name), t, name, count);
}

function describeValue(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.slice(0, 20));
  if (v === null || typeof v === "number" || typeof v === "boolean") return String(v);
  return Array.isArray(v) ? "an array" : `a ${typeof v}`;
}

/** A value the input's datatype does not allow (built outside the loops that call it). */
function badElement(t: Datatype, v: unknown, row: number, feature: string): Error {
  let want: string;
  if (t.kind === FLOAT) want = "a number or null";
  else if (t.kind === INT)
    want = `an integer in [${t.min}, ${t.max}] (no missing value; send FP32 with null)`;
  else if (t.kind === BOOL) want = "true or false (no missing value)";
  else want = "a string or null";
  return clientError(
    "PREDICT_BAD_FEATURE_TYPE",
    `infer: row ${row}, feature '${feature}': ${t.name} takes ${want}, got ${describeValue(v)}`,
    { details: { row, feature } },
  );
}

/**
 * A JSON or decoded element of a numeric datatype as a number (NaN for a float type's null), or
 * undefined when the datatype does not allow it.
 */
function elementNumber(v: unknown, t: Datatype): number | undefined {
  if (t.kind === FLOAT) return typeof v === "number" ? v : v === null ? Number.NaN : undefined;
  if (t.kind === INT)
    return typeof v === "number" && Number.isInteger(v) && v >= t.min && v <= t.max ? v : undefined;
  if (t.kind === BOOL) return v === true ? 1 : v === false ? 0 : undefined;
  return undefined;
}

/**
 * Check the values of one per-feature input against its datatype, in place: BOOL becomes 0/1
 * (rowsFromColumns takes numbers, strings and null). Ranges, categories and unknown categories
 * are then rowsFromColumns' V1 rules.
 */
function checkColumn(values: unknown[], t: Datatype, name: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (t.kind === BYTES) {
      if (typeof v !== "string" && v !== null) throw badElement(t, v, i, name);
      continue;
    }
    const x = elementNumber(v, t);
    if (x === undefined) throw badElement(t, v, i, name);
    if (t.kind === BOOL) values[i] = x;
  }
}

/** The single `input` tensor [N, F] in signature order, categoricals as dictionary codes (the ONNX contract). */
function readTensor(
  plan: FeaturePlan,
  o: Record<string, unknown>,
  maxRows: number,
  cursor: BinaryCursor | null,
): RowMatrix {
  const shape = o["shape"];
  const t = DATATYPES.get(o["datatype"] as string);
  if (t === undefined || t.kind === BYTES) {
    throw clientError(
      "PREDICT_BAD_FEATURE_TYPE",
      `infer: input 'input' must be FP32 or another numeric datatype (got ${String(o["datatype"]).slice(0, 20)})`,
    );
  }
  const width = plan.width;
  if (
    !Array.isArray(shape) ||
    shape.length !== 2 ||
    shape[1] !== width ||
    !Number.isInteger(shape[0]) ||
    shape[0] < 1
  ) {
    throw clientError("BAD_SHAPE", `infer: input 'input' must have shape [N, ${width}] with N >= 1`);
  }
  const n = shape[0] as number;
  if (n > maxRows) throw clientError("TOO_MANY_ROWS", `infer: ${n} rows, the limit is ${maxRows}`);
  const flat = inputData(o, "input", t, n * width, cursor);
  const data = new Float32Array(flat.length);
  for (let i = 0, f = 0; i < flat.length; i++, f = f + 1 === width ? 0 : f + 1) {
    const v = flat[i];
    const x = elementNumber(v, t);
    if (x === undefined) throw badElement(t, v, Math.floor(i / width), plan.names[f]);
    if (v !== null) {
      // NaN fails both comparisons; ±Infinity and values beyond float32 fail one.
      if (!(x <= FLOAT32_MAX && x >= -FLOAT32_MAX)) throw nonFinite(plan, f, v, Math.floor(i / width));
      if (plan.categorical[f] === 1 && !(Number.isInteger(x) && x >= 0 && x < plan.codes[f]!.size))
        throw badCode(plan, f, x, Math.floor(i / width));
    }
    data[i] = x;
  }
  return { rows: n, data };
}

function nonFinite(plan: FeaturePlan, f: number, v: unknown, row: number): Error {
  const feature = plan.names[f];
  return clientError(
    "NON_FINITE_VALUE",
    `infer: row ${row}, feature '${feature}': ${describeValue(v)} is not a finite float32; send null for missing`,
    { details: { row, feature } },
  );
}

function badCode(plan: FeaturePlan, f: number, x: number, row: number): Error {
  const feature = plan.names[f];
  return clientError(
    "PREDICT_BAD_FEATURE_TYPE",
    `infer: row ${row}, feature '${feature}' (categorical): ${x} is not a category code; send an integer in [0, ${plan.codes[f]!.size}) or null (NaN) for missing`,
    { details: { row, feature } },
  );
}

/** An infer body's rows (and the binary extension's blobs): the general path (v2-json.ts: the fast one). */
export function readInputs(
  plan: FeaturePlan,
  body: unknown,
  maxRows: number,
  binary: Uint8Array | null,
): RowMatrix {
  const cursor = binary === null ? null : new BinaryCursor(binary);
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw clientError("BAD_REQUEST", "infer: the body must be an object with 'inputs'");
  }
  const inputs = (body as Record<string, unknown>)["inputs"];
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw clientError("BAD_REQUEST", "infer: 'inputs' must be a non-empty array");
  const first = inputs[0] as Record<string, unknown> | null;
  let m: RowMatrix;
  if (inputs.length === 1 && first !== null && typeof first === "object" && first["name"] === "input") {
    m = readTensor(plan, first, maxRows, cursor);
  } else {
    // No prototype: an input named `__proto__` is a feature name like any other.
    const columns: Record<string, unknown[]> = Object.create(null);
    for (const inp of inputs) {
      if (inp === null || typeof inp !== "object")
        throw clientError("BAD_REQUEST", "infer: each input must be an object");
      const o = inp as Record<string, unknown>;
      const raw = o["name"];
      if (typeof raw !== "string") throw clientError("BAD_REQUEST", "infer: each input needs a 'name'");
      const name = raw.slice(0, 100);
      const t = DATATYPES.get(o["datatype"] as string);
      if (t === undefined) {
        throw clientError(
          "PREDICT_BAD_FEATURE_TYPE",
          `infer: input '${name}' has unsupported datatype ${String(o["datatype"]).slice(0, 20)}`,
        );
      }
      const shape = o["shape"];
      if (
        !Array.isArray(shape) ||
        !Number.isInteger(shape[0]) ||
        shape[0] < 1 ||
        shape.length > 2 ||
        (shape.length === 2 && shape[1] !== 1)
      ) {
        throw clientError("BAD_SHAPE", `infer: input '${name}' must have shape [N] or [N, 1] with N >= 1`);
      }
      if (Object.hasOwn(columns, raw))
        throw clientError("BAD_REQUEST", `infer: input '${name}' is given twice`);
      const values = inputData(o, name, t, shape[0] as number, cursor);
      checkColumn(values, t, name);
      columns[raw] = values;
    }
    m = rowsFromColumns(plan, columns, maxRows);
  }
  if (cursor !== null && cursor.left > 0) {
    throw clientError(
      "BAD_REQUEST",
      `infer: ${cursor.left} bytes are left over after the inputs' binary data; the binary_data_size values must add up to the body after the JSON header`,
    );
  }
  return m;
}

/** `POST /v2/models/{name}[/versions/{v}]/infer`. */
export async function v2Infer(
  core: ServeCore,
  slot: ModelSlot,
  body: unknown,
  binary: Uint8Array | null = null,
  /** Whether the client has left (its SHAP job is then dropped before it runs). */
  gone?: () => boolean,
): Promise<{ value: Record<string, unknown> | V2Reply; blobs: Uint8Array[] }> {
  const m = readInputs(slot.plan, body, core.config.maxRows, binary);
  const b = body as Record<string, unknown>;
  const params = b["parameters"];
  const allBinary =
    params !== null &&
    typeof params === "object" &&
    (params as Record<string, unknown>)["binary_data_output"] === true;
  const binaryOut = new Set<string>();
  const available = [...slot.v2Outputs, "treeshap_output"];
  let wanted: readonly string[] = slot.v2Outputs;
  if (b["outputs"] !== undefined) {
    if (!Array.isArray(b["outputs"])) throw clientError("BAD_REQUEST", "infer: 'outputs' must be an array");
    const requested: string[] = [];
    for (const o of b["outputs"] as unknown[]) {
      const name = o !== null && typeof o === "object" ? (o as Record<string, unknown>)["name"] : undefined;
      if (typeof name !== "string" || !available.includes(name)) {
        throw clientError(
          "BAD_REQUEST",
          `infer: unknown output ${JSON.stringify(name ?? null).slice(0, 60)}; available: ${available.join(", ")}`,
        );
      }
      if (requested.includes(name))
        throw clientError("BAD_REQUEST", `infer: output '${name}' is requested twice`);
      requested.push(name);
      const op = (o as Record<string, unknown>)["parameters"];
      const opts = op !== null && typeof op === "object" ? (op as Record<string, unknown>) : {};
      if (opts["classification"] !== undefined) {
        // Triton's classification extension (top-k "score:index:label" strings) is not served:
        // answering the plain tensor instead would hand the client a datatype it did not ask for.
        throw clientError(
          "BAD_REQUEST",
          `infer: output '${name}': the classification extension is not supported; request 'probabilities' and 'label' instead`,
        );
      }
      const flag = opts["binary_data"];
      if (flag === true || (flag === undefined && allBinary)) binaryOut.add(name);
    }
    wanted = requested;
  } else if (allBinary) for (const n of wanted) binaryOut.add(n);
  let shap: { shape: number[]; data: number[] } | null = null;
  if (wanted.includes("treeshap_output")) {
    checkExplainRows(m.rows, core.config.maxExplainRows, "infer");
    shap = await shapMatrix(slot, m.data, m.rows, gone);
  }
  const s = await slot.scoreAll(m.data, m.rows);
  const id = typeof b["id"] === "string" ? b["id"] : null;
  if (shap === null && binaryOut.size === 0)
    return { value: new V2Reply(slot.v2Writer, s, wanted, id, slot.name, slot.version), blobs: [] };
  const outputs: Record<string, unknown>[] = [];
  for (const name of wanted) {
    if (name === "treeshap_output" && shap !== null)
      outputs.push({ name, datatype: "FP32", shape: shap.shape, data: shap.data });
    else outputs.push(slot.v2Writer.output(s, name));
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
  if (id !== null) out["id"] = id;
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
