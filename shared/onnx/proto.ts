/**
 * Protocol Buffers wire format, just enough for ONNX: varints, fixed 32/64-bit, length-delimited
 * fields and packed repeated scalars. No schema compiler: onnx-proto.ts names the fields.
 * Runtime-neutral (Node and Bun); no dependencies.
 */

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** Growable byte buffer that writes protobuf fields. */
export class ProtoWriter {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;

  constructor(initial = 256) {
    this.#buf = new Uint8Array(initial);
    this.#view = new DataView(this.#buf.buffer);
  }

  #ensure(extra: number): void {
    if (this.#len + extra <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < this.#len + extra) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** Unsigned or non-negative varint; negative numbers are written as 10-byte two's complement. */
  varint(value: number): void {
    if (value < 0) {
      let v = BigInt.asUintN(64, BigInt(value));
      this.#ensure(10);
      while (v >= 0x80n) {
        this.#buf[this.#len++] = Number(v & 0x7fn) | 0x80;
        v >>= 7n;
      }
      this.#buf[this.#len++] = Number(v);
      return;
    }
    this.#ensure(10);
    let v = value;
    while (v >= 0x80) {
      this.#buf[this.#len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.#buf[this.#len++] = v;
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** An int32/int64/enum field. */
  int(field: number, value: number): void {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
  }

  /** A float (fixed32) field. */
  float(field: number, value: number): void {
    this.tag(field, WIRE_I32);
    this.#ensure(4);
    this.#view.setFloat32(this.#len, value, true);
    this.#len += 4;
  }

  /** A length-delimited field with raw bytes. */
  bytes(field: number, data: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(data.length);
    this.#ensure(data.length);
    this.#buf.set(data, this.#len);
    this.#len += data.length;
  }

  string(field: number, value: string): void {
    this.bytes(field, textEncoder.encode(value));
  }

  /** An embedded message, built by `fill` into a fresh writer. */
  message(field: number, fill: (w: ProtoWriter) => void): void {
    const w = new ProtoWriter();
    fill(w);
    this.bytes(field, w.finish());
  }

  /** Packed repeated varints. */
  packedInts(field: number, values: ArrayLike<number>): void {
    if (values.length === 0) return;
    const w = new ProtoWriter(values.length * 2 + 8);
    for (let i = 0; i < values.length; i++) w.varint(values[i]);
    this.bytes(field, w.finish());
  }

  /** Packed repeated floats (fixed32). */
  packedFloats(field: number, values: ArrayLike<number>): void {
    if (values.length === 0) return;
    const data = new Uint8Array(values.length * 4);
    const view = new DataView(data.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
    this.bytes(field, data);
  }

  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

/** One decoded field: number, wire type, and its value (number for varint/fixed, bytes for LEN). */
export interface ProtoField {
  field: number;
  wire: number;
  /** Varint as a JS number (exact below 2^53; int64 negatives come back negative). */
  num: number;
  /** Payload of a LEN field (a view into the input). */
  data: Uint8Array;
  /** Offset of the fixed32/fixed64 payload in the input, for float/double reads. */
  offset: number;
}

/** Thrown for malformed input; the ONNX decoder maps it to ONNX_INVALID. */
export class ProtoError extends Error {}

/** Reads a message field by field. */
export class ProtoReader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos = 0;
  readonly #end: number;

  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#end = buf.length;
  }

  /** True when every byte was read. */
  get done(): boolean {
    return this.#pos >= this.#end;
  }

  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.#pos >= this.#end) throw new ProtoError("truncated varint");
      const b = this.#buf[this.#pos++];
      if (i === 9 && b > 1) throw new ProtoError("varint too long");
      result += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) {
        // 64-bit two's complement negatives (10-byte varints) map back to negative numbers.
        if (i === 9 || result >= 2 ** 63) return Number(BigInt.asIntN(64, BigInt(Math.round(result))));
        return result;
      }
    }
    throw new ProtoError("bad varint");
  }

  /** Next field, or null at the end. */
  next(): ProtoField | null {
    if (this.#pos >= this.#end) return null;
    const key = this.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 0) throw new ProtoError("field number 0");
    const f: ProtoField = { field, wire, num: 0, data: EMPTY, offset: 0 };
    switch (wire) {
      case WIRE_VARINT:
        f.num = this.varint();
        break;
      case WIRE_I64:
        if (this.#pos + 8 > this.#end) throw new ProtoError("truncated fixed64");
        f.offset = this.#pos;
        this.#pos += 8;
        break;
      case WIRE_I32:
        if (this.#pos + 4 > this.#end) throw new ProtoError("truncated fixed32");
        f.offset = this.#pos;
        f.num = this.#view.getFloat32(this.#pos, true);
        this.#pos += 4;
        break;
      case WIRE_LEN: {
        const len = this.varint();
        if (this.#pos + len > this.#end) throw new ProtoError("truncated length-delimited field");
        f.data = this.#buf.subarray(this.#pos, this.#pos + len);
        this.#pos += len;
        break;
      }
      default:
        throw new ProtoError(`unsupported wire type ${wire}`);
    }
    return f;
  }
}

const EMPTY = new Uint8Array(0);

/** UTF-8 text of a LEN field. */
export function fieldString(f: ProtoField): string {
  if (f.wire !== WIRE_LEN) throw new ProtoError(`field ${f.field}: expected a string`);
  try {
    return textDecoder.decode(f.data);
  } catch (e) {
    throw new ProtoError(`field ${f.field}: invalid UTF-8 (${String(e)})`);
  }
}

/** Values of a repeated varint field, packed or not; appends to `out`. */
export function readInts(f: ProtoField, out: number[]): void {
  if (f.wire === WIRE_VARINT) {
    out.push(f.num);
    return;
  }
  if (f.wire !== WIRE_LEN) throw new ProtoError(`field ${f.field}: expected integers`);
  // A packed run is a bare sequence of varints.
  const r = new ProtoReader(f.data);
  while (!r.done) out.push(r.varint());
}

/** Values of a repeated float field, packed or not; appends to `out`. */
export function readFloats(f: ProtoField, out: number[]): void {
  if (f.wire === WIRE_I32) {
    out.push(f.num);
    return;
  }
  if (f.wire !== WIRE_LEN || f.data.length % 4 !== 0)
    throw new ProtoError(`field ${f.field}: expected floats`);
  const v = new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength);
  for (let i = 0; i < f.data.length; i += 4) out.push(v.getFloat32(i, true));
}
