/**
 * ORT outputs → response predictions. Regression: one number per row. Classifiers: the label with
 * the highest probability plus every class probability, in `classes` order.
 */
import type { Signature } from "../../shared/bundle.ts";
import type { BatchSlice } from "../model-cache/batcher.ts";

/** One classifier prediction. */
export interface ClassPrediction {
  label: string;
  probabilities: number[];
}

/** Class labels of a classifier signature (defaults to "0".."C-1"). */
export function classLabels(signature: Signature, count: number): string[] {
  if (signature.classes && signature.classes.length === count) return signature.classes;
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(String(i));
  return out;
}

/** Index of the highest of `width` probabilities starting at `base` (first one on ties). */
export function argmax(data: Float32Array, base: number, width: number): number {
  let best = 0;
  for (let j = 1; j < width; j++) if (data[base + j] > data[base + best]) best = j;
  return best;
}

/** Predictions of the rows of one request. */
export function formatPredictions(signature: Signature, slice: BatchSlice): (number | ClassPrediction)[] {
  const out: (number | ClassPrediction)[] = new Array(slice.rows);
  const tensors = slice.outputs.tensors;
  const probs = tensors.get("probabilities");
  if (signature.task !== "regression" && probs !== undefined) {
    const c = probs.width;
    const labels = classLabels(signature, c);
    const data = probs.data;
    for (let r = 0; r < slice.rows; r++) {
      const base = (slice.offset + r) * c;
      const p: number[] = new Array(c);
      for (let j = 0; j < c; j++) p[j] = data[base + j];
      out[r] = { label: labels[argmax(data, base, c)], probabilities: p };
    }
    return out;
  }
  const t = tensors.get("prediction") ?? tensors.get("margin")!;
  for (let r = 0; r < slice.rows; r++) out[r] = t.data[(slice.offset + r) * t.width];
  return out;
}
