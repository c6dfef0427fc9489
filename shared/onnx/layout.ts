/**
 * Names and constants of arbor's ONNX layout, shared by the encoder and the decoder.
 *
 * Graph: `input` float32 [N,F] → Cast(double) → ai.onnx.ml TreeEnsemble (opset 5, double splits and
 * leaf weights, SUM) → Add(base_score, double) → `margin` (Cast float32) and, by task,
 * Sigmoid/Softmax → `probabilities`, or Identity → `prediction`.
 *
 * Why double inside: float32 input values and float32 thresholds are exact in double, so routing is
 * bit-identical to the TypeScript predictor, while the leaf sum runs in float64 like
 * `predictMarginRow`; the float32 summation of the old TreeEnsembleRegressor drifts by ~1e-6 over
 * 500 trees. Covers, gains and the node order travel in metadata_props (TreeEnsemble-5 has no
 * per-leaf hit rates), so any model.onnx rebuilds the full TreeEnsemble for SHAP.
 */

export const ONNX_INPUT = "input";
export const ONNX_MARGIN = "margin";
export const ONNX_PROBABILITIES = "probabilities";
export const ONNX_PREDICTION = "prediction";

export const IR_VERSION = 10;
export const OPSET_ONNX = 21;
export const OPSET_ML = 5;
export const ML_DOMAIN = "ai.onnx.ml";

/** TreeEnsemble-5 `nodes_modes` values. */
export const MODE_LEQ = 0;
export const MODE_MEMBER = 6;

/** metadata_props keys. */
export const META_FORMAT = "arbor.format";
export const META_SIGNATURE = "arbor.signature";
/** base64 of Uint8 per node in arbor order (all trees concatenated): 1 = leaf, 0 = split. */
export const META_LAYOUT = "arbor.layout";
/** base64 of Float64 covers per node in arbor order. */
export const META_COVER = "arbor.cover";
/** base64 of Float64 gains per node in arbor order. */
export const META_GAIN = "arbor.gain";
export const META_NUM_FEATURES = "arbor.num_features";
export const FORMAT_VERSION = "arbor-onnx/1";

/** base64 of a typed array's bytes (Buffer exists in Node and Bun). */
export function toBase64(a: ArrayBufferView): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
}

/** Bytes of a base64 string, copied into a fresh, aligned buffer. */
export function fromBase64(s: string): Uint8Array {
  const b = Buffer.from(s, "base64");
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}
