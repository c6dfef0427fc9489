/**
 * The fast path of the commonest KServe V2 infer: one FP32 tensor `input` [N, F] with its JSON
 * `data` flat, every output, JSON reply:
 *
 *   {"id": "…", "inputs": [{"name": "input", "shape": [N, F], "datatype": "FP32", "data": [v, …]}]}
 *
 * ({@link readV2Rows}: keys in any order, `id` optional). The general path (JSON.parse, v2.ts's
 * validation, JSON.stringify of the reply objects) cost a single-row infer 135k instructions where
 * a V1 predict cost 60k (bench/serve-callgrind.ts --v2): the numbers' parse, the objects, the
 * stringify. The reader takes the numbers as json-rows.ts does and gives up (-1) on anything it
 * does not take exactly as the general path would (other keys, a repeated key, escapes, nested
 * `data`, `data` before `shape`, another datatype, a categorical code that is not a short plain
 * integer, a shape that does not fit), which then runs as before: test/serve-v2-json.test.ts
 * compares both.
 * {@link V2Writer} writes the reply bytes that JSON.stringify of the general path's reply writes.
 */
import type { Signature } from "../../shared/bundle.ts";
import type { BatchSlice } from "../model-cache/batcher.ts";
import { freshScratch, growScratch, readValues, skipSpace, stringEnd } from "./json-rows.ts";
import type { FeaturePlan } from "./plan.ts";
import { argmax, classLabels, jsonNumber, replyBuffer } from "./predictions.ts";

const utf8 = new TextEncoder();
const bytesOf = (s: string) => utf8.encode(s);

const KEY_ID = bytesOf("id");
const KEY_INPUTS = bytesOf("inputs");
const KEY_NAME = bytesOf("name");
const KEY_SHAPE = bytesOf("shape");
const KEY_DATATYPE = bytesOf("datatype");
const KEY_DATA = bytesOf("data");
const VALUE_INPUT = bytesOf("input");
const VALUE_FP32 = bytesOf("FP32");
const DATA_OPEN = bytesOf('],"data":[');

/** The request's `id` that {@link readV2Rows} read last (null: none). */
let lastId: string | null = null;

/** The `id` of the body {@link readV2Rows} read last, or null when it had none. */
export function v2RowsId(): string | null {
  return lastId;
}

/** Whether the string whose text is `s[start, end)` is `key`. */
function isText(s: Uint8Array, start: number, end: number, key: Uint8Array): boolean {
  if (end - start !== key.length) return false;
  for (let j = 0; j < key.length; j++) if (s[start + j] !== key[j]) return false;
  return true;
}

/** The text of the key {@link readKey} read last: `s[keyStart, keyEnd)`. */
let keyStart = 0;
let keyEnd = 0;

/** `"key":` from `i` (whitespace around it allowed): the index of its value, or -1. */
function readKey(s: Uint8Array, i: number): number {
  i = skipSpace(s, i);
  if (s[i] !== 0x22 /* " */) return -1;
  keyStart = i + 1;
  keyEnd = stringEnd(s, keyStart);
  if (keyEnd < 0) return -1;
  i = skipSpace(s, keyEnd + 1);
  return s[i] === 0x3a /* : */ ? skipSpace(s, i + 1) : -1;
}

/** Whether the key {@link readKey} read last is `key`. */
function isKey(s: Uint8Array, key: Uint8Array): boolean {
  return isText(s, keyStart, keyEnd, key);
}

/**
 * Read a V2 infer body's rows into json-rows.ts's scratch matrix (row-major float32, `N × F`): N
 * (1 to `maxRows`), or -1 when the general path must decide (see the module comment). The body's
 * `id`, when it has one, is then {@link v2RowsId}.
 */
export function readV2Rows(plan: FeaturePlan, s: Uint8Array, maxRows: number): number {
  const width = plan.width;
  let out = freshScratch();
  lastId = null;
  let id: string | null = null;
  let sawId = false;
  let sawInputs = false;
  let shapeRows = -1;
  let shapeWidth = -1;
  let i = skipSpace(s, 0);
  if (s[i] !== 0x7b /* { */) return -1;
  for (;;) {
    i = readKey(s, i + 1);
    if (i < 0) return -1;
    if (isKey(s, KEY_ID)) {
      // A string of ASCII (other text: the general path checks its UTF-8); anything else is not
      // echoed by the general path, which then decides.
      if (sawId || s[i] !== 0x22) return -1;
      sawId = true;
      const end = stringEnd(s, i + 1);
      if (end < 0) return -1;
      let text = "";
      for (let j = i + 1; j < end; j++) {
        if (s[j] >= 0x80) return -1;
        text += String.fromCharCode(s[j]);
      }
      id = text;
      i = end + 1;
    } else if (isKey(s, KEY_INPUTS)) {
      if (sawInputs || s[i] !== 0x5b /* [ */) return -1;
      sawInputs = true;
      i = skipSpace(s, i + 1);
      if (s[i] !== 0x7b /* { */) return -1;
      // The one input's keys: each once, all four.
      let seen = 0;
      for (;;) {
        i = readKey(s, i + 1);
        if (i < 0) return -1;
        let bit: number;
        const isName = isKey(s, KEY_NAME);
        if (isName || isKey(s, KEY_DATATYPE)) {
          // "name": "input", "datatype": "FP32"
          bit = isName ? 1 : 2;
          if (s[i] !== 0x22) return -1;
          const vEnd = stringEnd(s, i + 1);
          if (vEnd < 0 || !isText(s, i + 1, vEnd, isName ? VALUE_INPUT : VALUE_FP32)) return -1;
          i = vEnd + 1;
        } else if (isKey(s, KEY_SHAPE)) {
          bit = 4;
          // [N, F]: plain integers.
          if (s[i] !== 0x5b) return -1;
          for (let d = 0; d < 2; d++) {
            i = skipSpace(s, i + 1);
            let c = s[i];
            if (!(c > 0x30 && c <= 0x39)) return -1;
            let v = 0;
            let digits = 0;
            while (c >= 0x30 && c <= 0x39) {
              if (++digits > 9) return -1;
              v = v * 10 + (c - 0x30);
              c = s[++i];
            }
            if (d === 0) shapeRows = v;
            else shapeWidth = v;
            i = skipSpace(s, i);
            if (s[i] !== (d === 0 ? 0x2c /* , */ : 0x5d) /* ] */) return -1;
          }
          i++;
        } else if (isKey(s, KEY_DATA)) {
          // After the shape (as clients write them): room for its rows is known before the values.
          bit = 8;
          if (shapeWidth !== width || shapeRows < 1 || shapeRows > maxRows) return -1;
          const count = shapeRows * width;
          if (count > out.length) out = growScratch(count);
          i = readValues(plan, s, i, out, 0, count, true);
          if (i < 0) return -1;
        } else return -1; // parameters, …
        if ((seen & bit) !== 0) return -1;
        seen |= bit;
        i = skipSpace(s, i);
        const c = s[i];
        if (c === 0x7d /* } */) break;
        if (c !== 0x2c) return -1;
      }
      if (seen !== 15) return -1;
      i = skipSpace(s, i + 1);
      if (s[i] !== 0x5d) return -1; // one input only
      i++;
    } else return -1; // outputs, parameters, …
    i = skipSpace(s, i);
    const c = s[i];
    if (c === 0x7d) break;
    if (c !== 0x2c) return -1;
  }
  if (!sawInputs || skipSpace(s, i + 1) !== s.length) return -1;
  lastId = id;
  return shapeRows;
}

/**
 * A version's V2 infer reply as JSON bytes, for the outputs a request wants (tensors and `label`,
 * not `treeshap_output`, not the binary extension): the bytes JSON.stringify writes of the general
 * path's reply object, from pieces encoded once per version.
 */
export class V2Writer {
  readonly #signature: Signature;
  readonly #head: Uint8Array;
  /** `"label"` strings per class index, as JSON (built on first use). */
  #labels: Uint8Array[] = [];
  readonly #heads = new Map<string, Uint8Array>();

  constructor(signature: Signature, name: string, version: number) {
    this.#signature = signature;
    this.#head = bytesOf(
      `{"model_name":${JSON.stringify(name)},"model_version":${JSON.stringify(String(version))},"outputs":[`,
    );
  }

  /** One output of the reply as a value (what JSON.stringify writes {@link json}'s part of). */
  output(slice: BatchSlice, name: string): Record<string, unknown> {
    if (name === "label") {
      const probs = slice.outputs.tensors.get("probabilities")!;
      const labels = classLabels(this.#signature, probs.width);
      const data: string[] = new Array(slice.rows);
      for (let r = 0; r < slice.rows; r++)
        data[r] = labels[argmax(probs.data, (slice.offset + r) * probs.width, probs.width)];
      return { name, datatype: "BYTES", shape: [slice.rows], data };
    }
    const t = slice.outputs.tensors.get(name)!;
    const start = slice.offset * t.width;
    return {
      name,
      datatype: "FP32",
      shape: [slice.rows, t.width],
      data: Array.from(t.data.subarray(start, start + slice.rows * t.width)),
    };
  }

  /** The reply as JSON bytes in the shared reply buffer (valid until the next reply: send at once). */
  json(slice: BatchSlice, wanted: readonly string[], id: string | null): Uint8Array {
    const out = replyBuffer;
    out.reset();
    out.bytes(this.#head);
    const rows = slice.rows;
    for (let o = 0; o < wanted.length; o++) {
      const name = wanted[o];
      if (o > 0) out.byte(0x2c /* , */);
      out.bytes(this.#outputHead(name));
      if (name === "label") {
        const probs = slice.outputs.tensors.get("probabilities")!;
        const c = probs.width;
        const labels = this.#labelBytes(c);
        out.ascii(String(rows));
        out.bytes(DATA_OPEN);
        for (let r = 0; r < rows; r++) {
          if (r > 0) out.byte(0x2c);
          out.bytes(labels[argmax(probs.data, (slice.offset + r) * c, c)]);
        }
      } else {
        const t = slice.outputs.tensors.get(name)!;
        out.ascii(`${rows},${t.width}`);
        out.bytes(DATA_OPEN);
        const data = t.data;
        const start = slice.offset * t.width;
        const end = start + rows * t.width;
        for (let j = start; j < end; j++) {
          if (j > start) out.byte(0x2c);
          out.ascii(jsonNumber(data[j]));
        }
      }
      out.byte(0x5d /* ] */);
      out.byte(0x7d /* } */);
    }
    out.byte(0x5d);
    if (id !== null) out.text(`,"id":${JSON.stringify(id)}`);
    out.byte(0x7d);
    return out.view();
  }

  /** `{"name":…,"datatype":…,"shape":[` of an output (built on first use). */
  #outputHead(name: string): Uint8Array {
    let head = this.#heads.get(name);
    if (head === undefined) {
      const datatype = name === "label" ? "BYTES" : "FP32";
      head = bytesOf(`{"name":${JSON.stringify(name)},"datatype":"${datatype}","shape":[`);
      this.#heads.set(name, head);
    }
    return head;
  }

  #labelBytes(count: number): Uint8Array[] {
    if (this.#labels.length !== count)
      this.#labels = classLabels(this.#signature, count).map((l) => bytesOf(JSON.stringify(l)));
    return this.#labels;
  }
}

/**
 * A V2 infer reply kept as the run's outputs until the transport knows the wire format: JSON bytes
 * straight from {@link V2Writer}; any other format encodes {@link value}.
 */
export class V2Reply {
  readonly #writer: V2Writer;
  readonly #slice: BatchSlice;
  readonly #wanted: readonly string[];
  readonly #id: string | null;
  readonly #name: string;
  readonly #version: string;

  constructor(
    writer: V2Writer,
    slice: BatchSlice,
    wanted: readonly string[],
    id: string | null,
    name: string,
    version: number,
  ) {
    this.#writer = writer;
    this.#slice = slice;
    this.#wanted = wanted;
    this.#id = id;
    this.#name = name;
    this.#version = String(version);
  }

  value(): Record<string, unknown> {
    const outputs = this.#wanted.map((name) => this.#writer.output(this.#slice, name));
    return this.#id === null
      ? { model_name: this.#name, model_version: this.#version, outputs }
      : { model_name: this.#name, model_version: this.#version, outputs, id: this.#id };
  }

  /** The JSON bytes, in a buffer the next reply overwrites: hand them over at once. */
  jsonBytes(): Uint8Array {
    return this.#writer.json(this.#slice, this.#wanted, this.#id);
  }

  /** JSON.stringify of a V2Reply anywhere else writes the same text. */
  toJSON(): Record<string, unknown> {
    return this.value();
  }
}
