/**
 * ORT outputs → response predictions. Regression: one number per row. Classifiers: the label with
 * the highest probability plus every class probability, in `classes` order.
 */
import { Packr } from "msgpackr";
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
export function jsonNumber(x: number): string {
  return Number.isFinite(x) ? String(x) : "null";
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * One reused buffer for reply bytes. uWS copies what `end`/`send` get into its own send buffer
 * before returning, so a reply written here is handed over and the next reply may overwrite it: a
 * reply then allocates no string ropes, no flattened copy of them, and no UTF-8 conversion inside
 * uWS (~400 of the ~2,400 bytes of garbage a single-row predict made; garbage per request sets how
 * often a young-generation GC stalls every request in flight). The views handed out are cached
 * by length, since uWS takes a view, not a length.
 */
export class ReplyBuffer {
  /** Buffers past this size are dropped after their reply rather than kept for the next. */
  static readonly KEEP_BYTES = 256 * 1024;
  #buf = new Uint8Array(1024);
  #len = 0;
  #views = new Map<number, Uint8Array>();

  /** Start a reply (the previous reply's view must be out of use). */
  reset(): void {
    this.#len = 0;
    if (this.#buf.length > ReplyBuffer.KEEP_BYTES) this.#replace(new Uint8Array(1024));
  }

  bytes(b: Uint8Array): void {
    this.#room(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  /** Text known to be ASCII (JSON numbers, `null`, punctuation). */
  ascii(s: string): void {
    const n = s.length;
    this.#room(n);
    const buf = this.#buf;
    let at = this.#len;
    for (let i = 0; i < n; i++) buf[at++] = s.charCodeAt(i);
    this.#len = at;
  }

  /** Any text, as UTF-8. */
  text(s: string): void {
    this.#room(s.length * 3);
    this.#len += utf8.encodeInto(s, this.#buf.subarray(this.#len)).written;
  }

  /** One byte. */
  byte(b: number): void {
    this.#room(1);
    this.#buf[this.#len++] = b;
  }

  /** A number as a msgpack float 32 (scores are float32 already: exact, and half a float 64). */
  float32(x: number): void {
    this.#room(5);
    // -0 as 0, as JSON writes it (and msgpackr wrote the scores before).
    FLOAT32_VIEW.setFloat32(0, x === 0 ? 0 : x);
    const buf = this.#buf;
    const at = this.#len;
    buf[at] = 0xca;
    buf[at + 1] = FLOAT32_BYTES[0];
    buf[at + 2] = FLOAT32_BYTES[1];
    buf[at + 3] = FLOAT32_BYTES[2];
    buf[at + 4] = FLOAT32_BYTES[3];
    this.#len = at + 5;
  }

  /** A msgpack array header for `n` items. */
  arrayHeader(n: number): void {
    if (n < 16) this.byte(0x90 | n);
    else for (const b of arrayHeader(n)) this.byte(b);
  }

  /** The reply so far: valid until the next write or reset; hand it over at once. */
  view(): Uint8Array {
    const n = this.#len;
    let v = this.#views.get(n);
    if (v === undefined) {
      if (this.#views.size >= 256) this.#views.clear();
      v = this.#buf.subarray(0, n);
      this.#views.set(n, v);
    }
    return v;
  }

  #room(n: number): void {
    const need = this.#len + n;
    if (need <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buf.subarray(0, this.#len));
    this.#replace(grown);
  }

  #replace(buf: Uint8Array<ArrayBuffer>): void {
    this.#buf = buf;
    this.#views.clear();
  }
}

/** Where {@link ReplyBuffer.float32} puts a float's big-endian bytes. */
const FLOAT32_BYTES = new Uint8Array(4);
const FLOAT32_VIEW = new DataView(FLOAT32_BYTES.buffer);

/** The buffer every V1 predict reply is written into (one thread: one reply at a time). */
export const replyBuffer = new ReplyBuffer();

/** msgpack pieces of a reply that are the same for every reply of a version (keys, labels, names). */
const packr = new Packr({ useRecords: false, variableMapSize: true });
/** msgpack bytes of one value, in an array of their own (packr's are a view of its buffer). */
function packed(value: unknown): Uint8Array {
  return Uint8Array.from(packr.pack(value));
}
const MP_ID = packed("id");
const MP_PREDICTIONS = packed("predictions");

const OPEN = utf8.encode("{");
const PREDICTIONS = utf8.encode('"predictions":[');
const COMMA = utf8.encode(",");
const ROW_END = utf8.encode("]}");

/**
 * A version's V1 predict reply as JSON or msgpack bytes, from pieces encoded once per loaded
 * version: writing it is a handful of copies into {@link ReplyBuffer}, where JSON.stringify of the
 * reply object walks every key and value generically (12k of the 133k instructions a single-row
 * request of the reference model cost on Node 20: bench/serve-callgrind.ts), and the text then had
 * to be converted to UTF-8 for the socket; msgpackr's pack of it built an object per row first
 * (a single-row classifier reply: 620 ns, 223 µs for 1000 rows: bench/predict-replies.ts). Writes exactly what
 * JSON.stringify of {@link PredictReply.value} writes, and msgpack that decodes to that value
 * (its numbers as float 32s, which they are).
 */
export class PredictWriter {
  readonly #signature: Signature;
  /** `{"label":"<class>","probabilities":[` per class index (classifiers; built on first use). */
  #rowHeads: Uint8Array[] = [];
  /** `],"model":…,"version":…[,"classes":[…]]}`. */
  readonly #tail: Uint8Array;
  /** msgpack row heads per class index ({@link #msgpackHeads}) and tail ({@link #msgpackTail}). */
  #mpRowHeads: Uint8Array[] = [];
  #mpTail: Uint8Array | undefined;
  readonly #name: string;
  readonly #version: number;
  readonly #classes: string[] | undefined;

  constructor(signature: Signature, name: string, version: number) {
    this.#signature = signature;
    this.#name = name;
    this.#version = version;
    this.#classes = signature.task === "regression" ? undefined : signature.classes;
    const classes = this.#classes ? `,"classes":${JSON.stringify(this.#classes)}` : "";
    this.#tail = utf8.encode(`],"model":${JSON.stringify(name)},"version":${version}${classes}}`);
  }

  /** The reply as a value (for msgpack, and for anything else that is not this writer's JSON). */
  value(slice: BatchSlice): Record<string, unknown> {
    const predictions = formatPredictions(this.#signature, slice);
    // Built whole (STYLE: no properties added later); `classes` stays the last key.
    return this.#classes
      ? { predictions, model: this.#name, version: this.#version, classes: this.#classes }
      : { predictions, model: this.#name, version: this.#version };
  }

  /**
   * The reply as JSON bytes in the shared {@link ReplyBuffer} (valid until the next reply: hand it
   * to uWS at once); `head` is written right after the opening brace (e.g. `"id":7,`).
   */
  json(slice: BatchSlice, head: string): Uint8Array {
    const out = replyBuffer;
    out.reset();
    out.bytes(OPEN);
    if (head !== "") out.text(head);
    out.bytes(PREDICTIONS);
    const tensors = slice.outputs.tensors;
    const probs = tensors.get("probabilities");
    if (this.#signature.task !== "regression" && probs !== undefined) {
      const c = probs.width;
      const heads = this.#heads(c);
      const data = probs.data;
      for (let r = 0; r < slice.rows; r++) {
        const base = (slice.offset + r) * c;
        if (r > 0) out.bytes(COMMA);
        out.bytes(heads[argmax(data, base, c)]);
        for (let j = 0; j < c; j++) {
          if (j > 0) out.bytes(COMMA);
          out.ascii(jsonNumber(data[base + j]));
        }
        out.bytes(ROW_END);
      }
    } else {
      const t = tensors.get("prediction") ?? tensors.get("margin")!;
      for (let r = 0; r < slice.rows; r++) {
        if (r > 0) out.bytes(COMMA);
        out.ascii(jsonNumber(t.data[(slice.offset + r) * t.width]));
      }
    }
    out.bytes(this.#tail);
    return out.view();
  }

  /**
   * The reply as msgpack bytes in the shared {@link ReplyBuffer} (valid until the next reply);
   * `id` (a stream message's) is its first key unless undefined.
   */
  msgpack(slice: BatchSlice, id: string | number | null | undefined): Uint8Array {
    const out = replyBuffer;
    out.reset();
    out.byte(0x80 | ((id === undefined ? 3 : 4) + (this.#classes ? 1 : 0)));
    if (id !== undefined) {
      out.bytes(MP_ID);
      out.bytes(packr.pack(id));
    }
    out.bytes(MP_PREDICTIONS);
    out.arrayHeader(slice.rows);
    const tensors = slice.outputs.tensors;
    const probs = tensors.get("probabilities");
    if (this.#signature.task !== "regression" && probs !== undefined) {
      const c = probs.width;
      const heads = this.#msgpackHeads(c);
      const data = probs.data;
      for (let r = 0; r < slice.rows; r++) {
        const base = (slice.offset + r) * c;
        out.bytes(heads[argmax(data, base, c)]);
        for (let j = 0; j < c; j++) out.float32(data[base + j]);
      }
    } else {
      const t = tensors.get("prediction") ?? tensors.get("margin")!;
      for (let r = 0; r < slice.rows; r++) out.float32(t.data[(slice.offset + r) * t.width]);
    }
    out.bytes(this.#msgpackTail());
    return out.view();
  }

  /** `{"label": <class>, "probabilities": [` + the array header, per class index (msgpack). */
  #msgpackHeads(count: number): Uint8Array[] {
    if (this.#mpRowHeads.length !== count) {
      const probabilities = Uint8Array.from(arrayHeader(count));
      this.#mpRowHeads = classLabels(this.#signature, count).map((l) =>
        concat([Uint8Array.of(0x82), packed("label"), packed(l), packed("probabilities"), probabilities]),
      );
    }
    return this.#mpRowHeads;
  }

  /** `"model": …, "version": …[, "classes": […]]` (msgpack; built on first use). */
  #msgpackTail(): Uint8Array {
    this.#mpTail ??= concat([
      packed("model"),
      packed(this.#name),
      packed("version"),
      packed(this.#version),
      ...(this.#classes ? [packed("classes"), packed(this.#classes)] : []),
    ]);
    return this.#mpTail;
  }

  #heads(count: number): Uint8Array[] {
    if (this.#rowHeads.length !== count) {
      this.#rowHeads = classLabels(this.#signature, count).map((l) =>
        utf8.encode(`{"label":${JSON.stringify(l)},"probabilities":[`),
      );
    }
    return this.#rowHeads;
  }
}

/**
 * A V1 predict reply kept as the run's outputs until the transport knows the wire format: JSON
 * or msgpack bytes straight from {@link PredictWriter}. `id` (a stream message's)
 * goes first, as in `{id, ...reply}`.
 */
export class PredictReply {
  readonly #writer: PredictWriter;
  readonly #slice: BatchSlice;
  readonly #id: string | number | null | undefined;

  constructor(writer: PredictWriter, slice: BatchSlice, id?: string | number | null) {
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

  /** The JSON bytes, in a buffer the next reply overwrites: hand them over at once. */
  jsonBytes(): Uint8Array {
    return this.#writer.json(this.#slice, this.#id === undefined ? "" : `"id":${JSON.stringify(this.#id)},`);
  }

  /** The msgpack bytes, in a buffer the next reply overwrites: hand them over at once. */
  msgpackBytes(): Uint8Array {
    return this.#writer.msgpack(this.#slice, this.#id);
  }

  /** The JSON text (a copy: for anything that keeps it). */
  json(): string {
    return utf8Decoder.decode(this.jsonBytes());
  }

  /** JSON.stringify of a PredictReply anywhere else writes the same text. */
  toJSON(): Record<string, unknown> {
    return this.value();
  }
}

/** The bytes of a msgpack array header for `n` items. */
function arrayHeader(n: number): number[] {
  if (n < 16) return [0x90 | n];
  if (n < 0x10000) return [0xdc, n >>> 8, n & 0xff];
  return [0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
