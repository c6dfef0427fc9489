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

/** A number as JSON writes it (`null` for NaN and ±Infinity, as JSON.stringify). */
function jsonNumber(x: number): string {
  return Number.isFinite(x) ? String(x) : "null";
}

/**
 * A version's V1 predict reply as JSON text, from pieces built once per loaded version: writing it
 * is a handful of string concatenations, where JSON.stringify of the reply object walks every key
 * and value generically (12k of the 133k instructions a single-row request of the reference model
 * cost on Node 20: bench/serve-callgrind.ts).
 * Writes exactly what JSON.stringify of {@link PredictReply.value} writes.
 */
export class PredictJson {
  readonly #signature: Signature;
  /** `{"label":"<class>","probabilities":[` per class index (classifiers; built on first use). */
  #rowHeads: string[] = [];
  /** `],"model":…,"version":…[,"classes":[…]]}`. */
  readonly #tail: string;
  readonly #name: string;
  readonly #version: number;
  readonly #classes: string[] | undefined;

  constructor(signature: Signature, name: string, version: number) {
    this.#signature = signature;
    this.#name = name;
    this.#version = version;
    this.#classes = signature.task === "regression" ? undefined : signature.classes;
    const classes = this.#classes ? `,"classes":${JSON.stringify(this.#classes)}` : "";
    this.#tail = `],"model":${JSON.stringify(name)},"version":${version}${classes}}`;
  }

  /** The reply as a value (for msgpack, and for anything else that is not this writer's JSON). */
  value(slice: BatchSlice): Record<string, unknown> {
    const predictions = formatPredictions(this.#signature, slice);
    // Built whole (STYLE: no properties added later); `classes` stays the last key.
    return this.#classes
      ? { predictions, model: this.#name, version: this.#version, classes: this.#classes }
      : { predictions, model: this.#name, version: this.#version };
  }

  /** The reply as JSON text; `head` is written right after the opening brace (e.g. `"id":7,`). */
  json(slice: BatchSlice, head: string): string {
    let s = `{${head}"predictions":[`;
    const tensors = slice.outputs.tensors;
    const probs = tensors.get("probabilities");
    if (this.#signature.task !== "regression" && probs !== undefined) {
      const c = probs.width;
      const heads = this.#heads(c);
      const data = probs.data;
      for (let r = 0; r < slice.rows; r++) {
        const base = (slice.offset + r) * c;
        if (r > 0) s += ",";
        s += heads[argmax(data, base, c)];
        for (let j = 0; j < c; j++) s += j === 0 ? jsonNumber(data[base]) : `,${jsonNumber(data[base + j])}`;
        s += "]}";
      }
    } else {
      const t = tensors.get("prediction") ?? tensors.get("margin")!;
      for (let r = 0; r < slice.rows; r++) {
        const x = jsonNumber(t.data[(slice.offset + r) * t.width]);
        s += r === 0 ? x : `,${x}`;
      }
    }
    return s + this.#tail;
  }

  #heads(count: number): string[] {
    if (this.#rowHeads.length !== count) {
      this.#rowHeads = classLabels(this.#signature, count).map(
        (l) => `{"label":${JSON.stringify(l)},"probabilities":[`,
      );
    }
    return this.#rowHeads;
  }
}

/**
 * A V1 predict reply kept as the run's outputs until the transport knows the wire format: JSON
 * text straight from {@link PredictJson}, or the value for msgpack. `id` (a stream message's) goes
 * first, as in `{id, ...reply}`.
 */
export class PredictReply {
  readonly #writer: PredictJson;
  readonly #slice: BatchSlice;
  readonly #id: string | number | null | undefined;

  constructor(writer: PredictJson, slice: BatchSlice, id?: string | number | null) {
    this.#writer = writer;
    this.#slice = slice;
    this.#id = id;
  }

  /** The same reply with a stream message's id as its first key. */
  withId(id: string | number | null): PredictReply {
    return new PredictReply(this.#writer, this.#slice, id);
  }

  value(): Record<string, unknown> {
    const v = this.#writer.value(this.#slice);
    return this.#id === undefined ? v : { id: this.#id, ...v };
  }

  json(): string {
    return this.#writer.json(this.#slice, this.#id === undefined ? "" : `"id":${JSON.stringify(this.#id)},`);
  }

  /** JSON.stringify of a PredictReply anywhere else writes the same text. */
  toJSON(): Record<string, unknown> {
    return this.value();
  }
}
