/**
 * KServe V2 / Open Inference Protocol bodies: model metadata and `infer` (JSON `data`). Inputs are
 * either one FP32 tensor `[N, F]` in signature order (categoricals as codes, the ONNX contract), or
 * one tensor per feature named by the feature (shape `[N]` or `[N, 1]`; BYTES for categorical
 * strings). SHAP is the optional output `treeshap_output` `[N, F+1]` (bias last; `[N, K, F+1]` for
 * multiclass), as Triton's FIL backend exposes it.
 */
import { arborError } from "../../shared/errors.ts";
import { shapMatrix } from "../explain.ts";
import type { ModelSlot } from "../model-cache/slot.ts";
import { classLabels } from "./predictions.ts";
import { type RowMatrix, rowsFromColumns } from "./rows.ts";
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
const FLOAT32_MAX = 3.4028234663852886e38;

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
  outputs.push({ name: "treeshap_output", datatype: "FP32", shape: [-1, f + 1] });
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
  if (depth > 4) throw arborError("BAD_SHAPE", "infer: tensor data is nested too deeply");
  if (Array.isArray(v)) for (let i = 0; i < v.length; i++) flatten(v[i], out, depth + 1);
  else out.push(v);
}

function readInputs(slot: ModelSlot, body: unknown, maxRows: number): RowMatrix {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw arborError("BAD_REQUEST", "infer: the body must be an object with 'inputs'");
  }
  const inputs = (body as Record<string, unknown>)["inputs"];
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw arborError("BAD_REQUEST", "infer: 'inputs' must be a non-empty array");
  const plan = slot.plan;
  const first = inputs[0] as Record<string, unknown> | null;
  if (inputs.length === 1 && first !== null && typeof first === "object" && first["name"] === "input") {
    const shape = first["shape"];
    const datatype = first["datatype"];
    if (typeof datatype !== "string" || !NUMERIC_TYPES.has(datatype)) {
      throw arborError(
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
      throw arborError("BAD_SHAPE", `infer: input 'input' must have shape [N, ${plan.width}]`);
    }
    const n = shape[0] as number;
    if (n > maxRows) throw arborError("TOO_MANY_ROWS", `infer: ${n} rows, the limit is ${maxRows}`);
    const flat: unknown[] = [];
    flatten(first["data"], flat, 0);
    if (flat.length !== n * plan.width) {
      throw arborError(
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
        throw arborError(
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
      throw arborError("BAD_REQUEST", "infer: each input must be an object");
    const o = inp as Record<string, unknown>;
    const name = o["name"];
    if (typeof name !== "string") throw arborError("BAD_REQUEST", "infer: each input needs a 'name'");
    const dt = o["datatype"];
    if (dt !== "BYTES" && (typeof dt !== "string" || !NUMERIC_TYPES.has(dt))) {
      throw arborError(
        "PREDICT_BAD_FEATURE_TYPE",
        `infer: input '${name.slice(0, 100)}' has unsupported datatype ${String(dt).slice(0, 20)}`,
      );
    }
    const flat: unknown[] = [];
    flatten(o["data"], flat, 0);
    const shape = o["shape"];
    if (
      !Array.isArray(shape) ||
      shape[0] !== flat.length ||
      shape.length > 2 ||
      (shape.length === 2 && shape[1] !== 1)
    ) {
      throw arborError(
        "BAD_SHAPE",
        `infer: input '${name.slice(0, 100)}' must have shape [N] or [N, 1] matching its data`,
      );
    }
    if (Object.hasOwn(columns, name))
      throw arborError("BAD_REQUEST", `infer: input '${name.slice(0, 100)}' is given twice`);
    columns[name] = flat;
  }
  return rowsFromColumns(plan, columns, maxRows);
}

/** `POST /v2/models/{name}[/versions/{v}]/infer`. */
export async function v2Infer(
  core: ServeCore,
  slot: ModelSlot,
  body: unknown,
): Promise<Record<string, unknown>> {
  const m = readInputs(slot, body, core.config.maxRows);
  const b = body as Record<string, unknown>;
  const available = [
    "margin",
    ...slot.fetches.filter((f) => f !== "margin"),
    ...(slot.signature.task === "regression" ? [] : ["label"]),
    "treeshap_output",
  ];
  let wanted = available.filter((n) => n !== "treeshap_output");
  if (b["outputs"] !== undefined) {
    if (!Array.isArray(b["outputs"])) throw arborError("BAD_REQUEST", "infer: 'outputs' must be an array");
    wanted = [];
    for (const o of b["outputs"] as unknown[]) {
      const name = o !== null && typeof o === "object" ? (o as Record<string, unknown>)["name"] : undefined;
      if (typeof name !== "string" || !available.includes(name)) {
        throw arborError(
          "BAD_REQUEST",
          `infer: unknown output ${JSON.stringify(name ?? null).slice(0, 60)}; available: ${available.join(", ")}`,
        );
      }
      wanted.push(name);
    }
  }
  const s = await slot.score(m.data, m.rows);
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
      for (let r = 0; r < s.rows; r++) {
        const base = (s.offset + r) * probs.width;
        let best = 0;
        for (let j = 1; j < probs.width; j++) if (probs.data[base + j] > probs.data[base + best]) best = j;
        data[r] = labels[best];
      }
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
  const out: Record<string, unknown> = {
    model_name: slot.name,
    model_version: String(slot.version),
    outputs,
  };
  if (typeof b["id"] === "string") out["id"] = b["id"];
  return out;
}
