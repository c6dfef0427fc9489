/**
 * Global feature importance of a TreeEnsemble: total gain, split count, and mean |SHAP| on a sample
 * of rows (summed over outputs for multiclass).
 */
import { NODE_LEAF, type TreeEnsemble } from "./tree.ts";
import { TreeExplainer } from "./treeshap.ts";

/** Importance of one feature. */
export interface FeatureImportance {
  feature: number;
  gain: number;
  splits: number;
  /** Mean |SHAP| over the sample; absent when no sample was given. */
  meanAbsShap?: number;
}

/** Gain and split count per feature (from the trees alone). */
export function splitImportance(ensemble: TreeEnsemble): FeatureImportance[] {
  const out: FeatureImportance[] = Array.from({ length: ensemble.numFeatures }, (_, feature) => ({
    feature,
    gain: 0,
    splits: 0,
  }));
  for (const tree of ensemble.trees) {
    for (let i = 0; i < tree.kind.length; i++) {
      if (tree.kind[i] === NODE_LEAF) continue;
      const f = out[tree.feature[i]];
      f.gain += tree.gain[i];
      f.splits += 1;
    }
  }
  return out;
}

/** Mean |SHAP| per feature over `rows` row-major rows (summed over outputs). */
export function meanAbsShap(
  ensemble: TreeEnsemble,
  x: Float32Array | Float64Array,
  rows: number,
  explainer: TreeExplainer = new TreeExplainer(ensemble),
): Float64Array {
  const f = ensemble.numFeatures;
  const k = ensemble.numOutputs;
  const sums = new Float64Array(f);
  const buf = new Float64Array(explainer.rowSize);
  for (let r = 0; r < rows; r++) {
    explainer.explainRow(x, buf, r * f);
    for (let o = 0; o < k; o++) for (let j = 0; j < f; j++) sums[j] += Math.abs(buf[o * (f + 1) + j]);
  }
  if (rows > 0) for (let j = 0; j < f; j++) sums[j] /= rows;
  return sums;
}

/** Gain, split count and (with a sample) mean |SHAP| per feature. */
export function featureImportance(
  ensemble: TreeEnsemble,
  sample?: { x: Float32Array | Float64Array; rows: number },
  explainer?: TreeExplainer,
): FeatureImportance[] {
  const out = splitImportance(ensemble);
  if (sample && sample.rows > 0) {
    const shap = meanAbsShap(ensemble, sample.x, sample.rows, explainer);
    for (let j = 0; j < out.length; j++) out[j].meanAbsShap = shap[j];
  }
  return out;
}
