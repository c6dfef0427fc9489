/** Objectives: gradients/hessians of the loss in raw-margin space, and the base score (boost from average). */
import type { Task } from "../../shared/bundle.ts";

const EPS = 1e-15;

/** Base score per output from the (weighted) labels: logit of the mean, log priors, or the mean. */
export function baseScore(
  task: Task,
  label: Float64Array,
  weight: Float64Array | null,
  k: number,
): Float64Array {
  const out = new Float64Array(k);
  let w = 0;
  if (task === "multiclass") {
    const counts = new Float64Array(k);
    for (let i = 0; i < label.length; i++) {
      const wi = weight ? weight[i] : 1;
      counts[label[i]] += wi;
      w += wi;
    }
    for (let j = 0; j < k; j++) out[j] = Math.log(Math.max(counts[j] / w, EPS));
    return out;
  }
  let s = 0;
  for (let i = 0; i < label.length; i++) {
    const wi = weight ? weight[i] : 1;
    s += wi * label[i];
    w += wi;
  }
  const mean = w > 0 ? s / w : 0;
  if (task === "binary") {
    const p = Math.min(Math.max(mean, 1e-7), 1 - 1e-7);
    out[0] = Math.log(p / (1 - p));
  } else out[0] = mean;
  return out;
}

/**
 * Binary or regression gradients of rows [start, end) into `g` (interleaved g, h), with their Σg
 * and Σh in row order written to sums[at], sums[at + 1] (shards.ts runs one range per shard).
 */
export function gradientsRange(
  task: "binary" | "regression",
  margin: Float64Array,
  label: Float64Array,
  weight: Float64Array | null,
  g: Float64Array,
  start: number,
  end: number,
  sums: Float64Array,
  at: number,
): void {
  let sg = 0;
  let sh = 0;
  if (task === "binary") {
    for (let i = start; i < end; i++) {
      const p = 1 / (1 + Math.exp(-margin[i]));
      const wi = weight ? weight[i] : 1;
      const gi = (p - label[i]) * wi;
      const hi = Math.max(p * (1 - p), 1e-16) * wi;
      g[2 * i] = gi;
      g[2 * i + 1] = hi;
      sg += gi;
      sh += hi;
    }
  } else {
    for (let i = start; i < end; i++) {
      const wi = weight ? weight[i] : 1;
      const gi = (margin[i] - label[i]) * wi;
      g[2 * i] = gi;
      g[2 * i + 1] = wi;
      sg += gi;
      sh += wi;
    }
  }
  sums[at] = sg;
  sums[at + 1] = sh;
}

/**
 * Gradients and hessians for every row (weighted), interleaved: gh[k][2i] = g, gh[k][2i+1] = h.
 * Multiclass: softmax g = p − y, h = p(1 − p) (LightGBM's factor-free form), floored at 1e-16.
 * `sums` (length 2k) receives Σg, Σh per output over all rows in row order: the root totals of a
 * tree on all rows, without a second pass over the gradients.
 */
export function computeGradients(
  task: Task,
  margin: Float64Array,
  label: Float64Array,
  weight: Float64Array | null,
  k: number,
  gh: Float64Array[],
  sums: Float64Array = new Float64Array(2 * k),
): void {
  const n = label.length;
  if (task !== "multiclass") {
    gradientsRange(task, margin, label, weight, gh[0], 0, n, sums, 0);
  } else {
    sums.fill(0);
    const prob = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      const o = i * k;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < k; j++) if (margin[o + j] > max) max = margin[o + j];
      let z = 0;
      for (let j = 0; j < k; j++) {
        prob[j] = Math.exp(margin[o + j] - max);
        z += prob[j];
      }
      const wi = weight ? weight[i] : 1;
      const y = label[i];
      for (let j = 0; j < k; j++) {
        const p = prob[j] / z;
        const g = (p - (j === y ? 1 : 0)) * wi;
        const h = Math.max(p * (1 - p), 1e-16) * wi;
        gh[j][2 * i] = g;
        gh[j][2 * i + 1] = h;
        sums[2 * j] += g;
        sums[2 * j + 1] += h;
      }
    }
  }
}
