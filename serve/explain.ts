/**
 * Explain glue: SHAP contributions and global importance for a loaded slot. The TreeEnsemble is
 * decoded from the slot's own model.onnx on first use and cached on the slot: a bundle explains
 * itself (covers travel in the ONNX metadata), so explain needs nothing beyond the bundle.
 * Values are in raw-margin space: base_value + Σ contributions = margin.
 */
import { arborError, isArborError } from "../shared/errors.ts";
import { splitImportance } from "../shared/importance.ts";
import { decodeEnsembleOnnx } from "../shared/onnx/decode.ts";
import type { TreeEnsemble } from "../shared/tree.ts";
import { TreeExplainer } from "../shared/treeshap.ts";
import { type ClassPrediction, classLabels } from "./core/predictions.ts";
import type { ModelSlot } from "./model-cache/slot.ts";

/** What a slot keeps for explain: the explainer and running mean-|SHAP| sums. */
interface ExplainState {
  ensemble: TreeEnsemble;
  explainer: TreeExplainer;
  buf: Float64Array;
  absSums: Float64Array;
  rows: number;
}

function stateOf(slot: ModelSlot): ExplainState {
  const cached = slot.explainState;
  // A model that cannot be decoded stays that way: remember the refusal rather than decode the
  // whole ONNX again on every explain or importance request.
  if (cached instanceof Error) throw cached;
  if (cached !== null) return cached as ExplainState;
  let ensemble: TreeEnsemble;
  try {
    ensemble = decodeEnsembleOnnx(slot.modelBytes).ensemble;
  } catch (e) {
    if (!isArborError(e)) throw e;
    const err = arborError("EXPLAIN_UNAVAILABLE", `explain: ${e.message}`, { cause: e });
    slot.explainState = err;
    throw err;
  }
  const explainer = new TreeExplainer(ensemble);
  const state: ExplainState = {
    ensemble,
    explainer,
    buf: new Float64Array(explainer.rowSize),
    absSums: new Float64Array(ensemble.numFeatures),
    rows: 0,
  };
  slot.explainState = state;
  return state;
}

/** Per-row explanations: prediction, base value(s), contributions keyed by feature (top_k by |value|). */
export function explainRows(
  slot: ModelSlot,
  data: Float32Array,
  rows: number,
  topK: number | null,
  predictions: (number | ClassPrediction)[],
): Record<string, unknown>[] {
  const st = stateOf(slot);
  const f = st.ensemble.numFeatures;
  const k = st.ensemble.numOutputs;
  const names = slot.plan.names;
  const outputs = k === 1 ? null : classLabels(slot.signature, k);
  const out: Record<string, unknown>[] = new Array(rows);
  const order = new Int32Array(f);
  for (let r = 0; r < rows; r++) {
    st.explainer.explainRow(data, st.buf, r * f);
    const perOutput: Record<string, number>[] = [];
    const bases: number[] = [];
    const margins: number[] = [];
    for (let o = 0; o < k; o++) {
      const base = o * (f + 1);
      let margin = st.buf[base + f];
      for (let j = 0; j < f; j++) {
        order[j] = j;
        st.absSums[j] += Math.abs(st.buf[base + j]);
        margin += st.buf[base + j];
      }
      let sorted: ArrayLike<number> = order;
      if (topK !== null && topK < f) {
        sorted = Array.from(order)
          .sort((a, b) => Math.abs(st.buf[base + b]) - Math.abs(st.buf[base + a]))
          .slice(0, topK);
      }
      const c: Record<string, number> = {};
      for (let i = 0; i < sorted.length; i++) c[names[sorted[i]]] = st.buf[base + sorted[i]];
      perOutput.push(c);
      bases.push(st.buf[base + f]);
      margins.push(margin);
    }
    st.rows++;
    if (outputs === null) {
      out[r] = {
        prediction: predictions[r],
        base_value: bases[0],
        margin: margins[0],
        contributions: perOutput[0],
      };
    } else {
      const contributions: Record<string, Record<string, number>> = {};
      const baseValues: Record<string, number> = {};
      const marginOut: Record<string, number> = {};
      for (let o = 0; o < k; o++) {
        contributions[outputs[o]] = perOutput[o];
        baseValues[outputs[o]] = bases[o];
        marginOut[outputs[o]] = margins[o];
      }
      out[r] = { prediction: predictions[r], base_values: baseValues, margins: marginOut, contributions };
    }
  }
  return out;
}

/** Global importance: gain and split count from the ensemble, mean |SHAP| over rows explained here. */
export function importanceOf(slot: ModelSlot): Record<string, unknown> {
  const st = stateOf(slot);
  const imp = splitImportance(st.ensemble);
  const features = imp
    .map((x) => ({
      feature: slot.plan.names[x.feature],
      gain: x.gain,
      splits: x.splits,
      mean_abs_shap: st.rows > 0 ? st.absSums[x.feature] / st.rows : null,
    }))
    .sort((a, b) => b.gain - a.gain);
  return { features, shap_rows: st.rows };
}

/** SHAP values as a flat matrix for the V2 `treeshap_output` tensor: [N, F+1] or [N, K, F+1]. */
export function shapMatrix(
  slot: ModelSlot,
  data: Float32Array,
  rows: number,
): { shape: number[]; data: number[] } {
  const st = stateOf(slot);
  const all = st.explainer.explainRows(data, rows);
  const f = st.ensemble.numFeatures;
  const k = st.ensemble.numOutputs;
  // These rows are explained too: GET …/importance averages |SHAP| over them as over V1's.
  const size = st.explainer.rowSize;
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < k; o++) {
      const base = r * size + o * (f + 1);
      for (let j = 0; j < f; j++) st.absSums[j] += Math.abs(all[base + j]);
    }
  }
  st.rows += rows;
  return { shape: k === 1 ? [rows, f + 1] : [rows, k, f + 1], data: Array.from(all) };
}
