/** Evaluation metrics on raw margins (row-major [N × K]). Lower is better except AUC. */
import type { Task } from "../../shared/bundle.ts";

/** Metric names the engine knows. */
export type MetricName = "logloss" | "auc" | "mlogloss" | "rmse";

/** Whether a larger value of the metric is better. */
export function higherIsBetter(metric: MetricName): boolean {
  return metric === "auc";
}

/** The default early-stopping metric of a task. */
export function defaultMetric(task: Task): MetricName {
  return task === "binary" ? "logloss" : task === "multiclass" ? "mlogloss" : "rmse";
}

const EPS = 1e-15;

/**
 * Σ of weighted log-loss (binary) or squared error (regression) over rows [start, end) and Σ of
 * their weights, into out[at], out[at + 1]: the per-shard part of `logloss` / `rmse` (shards.ts).
 */
export function lossPartial(
  metric: "logloss" | "rmse",
  margin: Float64Array,
  label: Float64Array,
  weight: Float64Array | null,
  start: number,
  end: number,
  out: Float64Array,
  at: number,
): void {
  let s = 0;
  let w = 0;
  if (metric === "logloss") {
    for (let i = start; i < end; i++) {
      const p = 1 / (1 + Math.exp(-margin[i]));
      const wi = weight ? weight[i] : 1;
      s -= wi * (label[i] > 0.5 ? Math.log(Math.max(p, EPS)) : Math.log(Math.max(1 - p, EPS)));
      w += wi;
    }
  } else {
    for (let i = start; i < end; i++) {
      const d = margin[i] - label[i];
      const wi = weight ? weight[i] : 1;
      s += wi * d * d;
      w += wi;
    }
  }
  out[at] = s;
  out[at + 1] = w;
}

/** The metric from summed partials (lossPartial). */
export function lossFromSums(metric: "logloss" | "rmse", s: number, w: number): number {
  if (!(w > 0)) return 0;
  return metric === "logloss" ? s / w : Math.sqrt(s / w);
}

const partial = new Float64Array(2);

/** Weighted mean log-loss of binary margins. */
export function logloss(margin: Float64Array, label: Float64Array, weight: Float64Array | null): number {
  lossPartial("logloss", margin, label, weight, 0, label.length, partial, 0);
  return lossFromSums("logloss", partial[0], partial[1]);
}

/** Weighted mean multiclass log-loss of margins [N × K]. */
export function mlogloss(
  margin: Float64Array,
  label: Float64Array,
  k: number,
  weight: Float64Array | null,
): number {
  let s = 0;
  let w = 0;
  for (let i = 0; i < label.length; i++) {
    const o = i * k;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < k; j++) if (margin[o + j] > max) max = margin[o + j];
    let z = 0;
    for (let j = 0; j < k; j++) z += Math.exp(margin[o + j] - max);
    const p = Math.exp(margin[o + label[i]] - max) / z;
    const wi = weight ? weight[i] : 1;
    s -= wi * Math.log(Math.max(p, EPS));
    w += wi;
  }
  return w > 0 ? s / w : 0;
}

/** Weighted root mean squared error. */
export function rmse(pred: Float64Array, label: Float64Array, weight: Float64Array | null): number {
  lossPartial("rmse", pred, label, weight, 0, label.length, partial, 0);
  return lossFromSums("rmse", partial[0], partial[1]);
}

/**
 * Area under the ROC curve (unweighted; ties count ½). Sorts positive and negative scores
 * separately with the native typed-array sort and merges, which is much faster than an index sort
 * with a comparator on millions of rows.
 */
export function auc(score: Float64Array, label: Float64Array): number {
  let np = 0;
  for (let i = 0; i < label.length; i++) if (label[i] > 0.5) np++;
  const nn = label.length - np;
  if (np === 0 || nn === 0) return 0.5;
  const pos = new Float64Array(np);
  const neg = new Float64Array(nn);
  let a = 0;
  let b = 0;
  for (let i = 0; i < label.length; i++) {
    if (label[i] > 0.5) pos[a++] = score[i];
    else neg[b++] = score[i];
  }
  pos.sort();
  neg.sort();
  // For each positive: #negatives below + ½ #negatives equal.
  let sum = 0;
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < np; i++) {
    const s = pos[i];
    while (lo < nn && neg[lo] < s) lo++;
    if (hi < lo) hi = lo;
    while (hi < nn && neg[hi] <= s) hi++;
    sum += lo + 0.5 * (hi - lo);
  }
  return sum / (np * nn);
}

/** Compute a metric of margins for a task. */
export function evaluateMetric(
  metric: MetricName,
  margin: Float64Array,
  label: Float64Array,
  k: number,
  weight: Float64Array | null,
): number {
  switch (metric) {
    case "logloss":
      return logloss(margin, label, weight);
    case "auc":
      return auc(margin, label);
    case "mlogloss":
      return mlogloss(margin, label, k, weight);
    case "rmse":
      return rmse(margin, label, weight);
  }
}
