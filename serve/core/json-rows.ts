/**
 * The fast path for the commonest JSON predict body, `{"instances": [[…], …]}` or
 * `{"instances": [{…}, …]}`, read from its bytes straight into float32 rows ({@link readValues}
 * also reads a V2 infer tensor's flat `data`: v2-json.ts).
 *
 * Why: V8's JSON.parse converts every number to a correctly rounded double, and a double printed by
 * a client has 16-17 significant digits (a 28-feature row: 2.7 µs, ~35k instructions, a quarter of
 * a 500-tree request's). The model reads float32, whose rounding is almost always decided well
 * before the 17th digit. Here a number is read into an approximate double with a known error bound;
 * when every double within that bound rounds to the same float32, that float32 is the one
 * JSON.parse followed by a Float32Array store gives. Otherwise (near a float32 rounding boundary,
 * powers of ten beyond ±22, exponents of 5 digits or more) the general path runs instead.
 *
 * The reader gives up (returns -1) on anything it does not take exactly as the general path would:
 * other keys, escapes, non-ASCII text it cannot match byte for byte, a value of the wrong type, an
 * unknown feature, a row of the wrong length, too many rows. The caller then runs JSON.parse and the
 * general validation (rows.ts), which answer as they always did. So this changes no answer, only its
 * cost: test/serve-json-rows.test.ts compares both paths on random and mutated bodies.
 */
import { AMBIGUOUS, MISSING } from "./byte-table.ts";
import { type FeaturePlan, FLOAT32_MAX } from "./plan.ts";

/** Values the scratch matrix keeps between calls (64 KiB). */
const SCRATCH_SIZE = 16_384;

/**
 * Where {@link readJsonRows} writes: one per process (it runs synchronously), grown for a large
 * body and let go at the next call, so that one big request does not hold its size for good.
 */
let scratch = new Float32Array(SCRATCH_SIZE);

/**
 * The rows {@link readJsonRows} (or msgpack-rows.ts's reader) read last: `rows × plan.width`
 * values, valid until the next read.
 */
export function rowsScratch(): Float32Array {
  return scratch;
}

/** The scratch matrix for a new body: back to its small size if a big body grew it. */
export function freshScratch(): Float32Array {
  if (scratch.length > SCRATCH_SIZE) scratch = new Float32Array(SCRATCH_SIZE);
  return scratch;
}

/** The scratch matrix grown to hold at least `need` values, keeping those it holds. */
export function growScratch(need: number): Float32Array {
  const grown = new Float32Array(Math.max(scratch.length * 2, need));
  grown.set(scratch);
  scratch = grown;
  return grown;
}

/**
 * Read a predict body's rows into {@link rowsScratch} (row-major float32): their count (1 to
 * `maxRows`), or -1 when the general path must decide (see the module comment).
 */
export function readJsonRows(plan: FeaturePlan, s: Uint8Array, maxRows: number): number {
  const width = plan.width;
  let out = freshScratch();
  let i = skipSpace(s, 0);
  if (s[i] !== 0x7b /* { */) return -1;
  i = skipSpace(s, i + 1);
  if (!isInstancesKey(s, i)) return -1;
  i = skipSpace(s, i + 11);
  if (s[i] !== 0x3a /* : */) return -1;
  i = skipSpace(s, i + 1);
  if (s[i] !== 0x5b /* [ */) return -1;
  i++;
  let rows = 0;
  for (;;) {
    if (rows >= maxRows) return -1;
    const base = rows * width;
    if (base + width > out.length) out = growScratch(base + width);
    i = readValues(plan, s, skipSpace(s, i), out, base, width, false);
    if (i < 0) return -1;
    rows++;
    i = skipSpace(s, i);
    const c = s[i++];
    if (c === 0x5d /* ] */) break;
    if (c !== 0x2c /* , */) return -1;
  }
  i = skipSpace(s, i);
  if (s[i] !== 0x7d /* } */) return -1;
  return skipSpace(s, i + 1) === s.length ? rows : -1;
}

/**
 * The values of a row `[v, …]` or `{"name": v, …}` that opens at `i`, `limit` of them, into
 * `out[base…]`: the index after it, or -1 when the general path must decide. Positional values
 * run through the features in turn, so a row of a V2 tensor's flat `data` may hold several rows of
 * `width` values (`codes`: V2, where categoricals are their codes, integers, and rows are never
 * objects). One loop for both kinds of row, with the number reader inline (V8 would not inline it
 * as a function: too large; as a call per number it made a row of 28 numbers 16-34 % slower).
 */
export function readValues(
  plan: FeaturePlan,
  s: Uint8Array,
  i: number,
  out: Float32Array,
  base: number,
  limit: number,
  codes: boolean,
): number {
  const width = plan.width;
  const categorical = plan.categorical;
  // Character codes are literals in this file (0x30-0x39 are the digits), and module constants
  // used per number are copied to locals here: optimized code reads a module binding from the
  // module's context, and checks it, at every use (measured: 10.7k → 8.0k instructions for a row
  // of 28 short numbers).
  const pow10 = POW10;
  const float32Max = FLOAT32_MAX;
  if (seenScratch.length < width) seenScratch = new Uint8Array(width);
  const seen = seenScratch;
  const open = s[i++];
  const object = open === 0x7b /* { */ && !codes;
  if (!object && open !== 0x5b /* [ */) return -1; // the general path words it
  if (object) seen.fill(0, 0, width);
  const close = object ? 0x7d /* } */ : 0x5d /* ] */;
  let count = 0; // values read
  let column = 0; // of the next positional value
  for (;;) {
    let c = s[i];
    if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 /* whitespace */) c = s[++i];
    let f = column;
    if (object) {
      // "name":
      if (c !== 0x22 /* " */) return -1;
      const end = stringEnd(s, i + 1);
      if (end < 0) return -1;
      f = plan.nameBytes.find(s, i + 1, end);
      if (f < 0) return -1; // an unknown feature
      i = skipSpace(s, end + 1);
      if (s[i] !== 0x3a /* : */) return -1;
      i = skipSpace(s, i + 1);
      c = s[i];
    } else if (count === limit) return -1; // a row too long
    if ((c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) && categorical[f] === 0) {
      const negative = c === 0x2d /* - */;
      if (negative) c = s[++i];
      // The decimal is (a·10^(digits−9) + b)·10^e10: a the first 9 significant digits, b the
      // next 9 (int32 arithmetic: a short dependency chain, unlike a double accumulator).
      let a = 0;
      let b = 0;
      let digits = 0;
      let e10 = 0;
      let dropped = false;
      if (c === 0x30) {
        c = s[++i];
        if (c >= 0x30 && c <= 0x39) return -1; // a leading zero: not JSON
      } else if (c > 0x30 && c <= 0x39) {
        // One loop per accumulator: no test of the digit count per digit but the loop's own.
        do {
          a = (a * 10 + (c - 0x30)) | 0;
          digits++;
          c = s[++i];
        } while (digits < 9 && c >= 0x30 && c <= 0x39);
        while (digits < 18 && c >= 0x30 && c <= 0x39) {
          b = (b * 10 + (c - 0x30)) | 0;
          digits++;
          c = s[++i];
        }
        while (c >= 0x30 && c <= 0x39) {
          e10++;
          if (c !== 0x30) dropped = true;
          digits++;
          c = s[++i];
        }
      } else return -1;
      if (c === 0x2e /* . */) {
        c = s[++i];
        if (!(c >= 0x30 && c <= 0x39)) return -1;
        if (digits === 0) {
          // The zeros of 0.00…: not significant.
          while (c === 0x30) {
            e10--;
            c = s[++i];
          }
        }
        while (digits < 9 && c >= 0x30 && c <= 0x39) {
          a = (a * 10 + (c - 0x30)) | 0;
          e10--;
          digits++;
          c = s[++i];
        }
        while (digits < 18 && c >= 0x30 && c <= 0x39) {
          b = (b * 10 + (c - 0x30)) | 0;
          e10--;
          digits++;
          c = s[++i];
        }
        while (c >= 0x30 && c <= 0x39) {
          if (c !== 0x30) dropped = true;
          digits++;
          c = s[++i];
        }
      }
      if (c === 0x65 /* e */ || c === 0x45 /* E */) {
        c = s[++i];
        const negativeExponent = c === 0x2d /* - */;
        if (negativeExponent || c === 0x2b /* + */) c = s[++i];
        if (!(c >= 0x30 && c <= 0x39)) return -1;
        let e = 0;
        do {
          // An exponent of 5 digits or more: the general path decides (the digits' own shift of
          // e10 is not bounded: "0." then 10,000 zeros, 1e10000 is 1e-1).
          if (e >= 1000) return -1;
          e = e * 10 + (c - 0x30);
          c = s[++i];
        } while (c >= 0x30 && c <= 0x39);
        e10 += negativeExponent ? -e : e;
      }
      const m = digits > 9 ? a * pow10[Math.min(digits, 18) - 9] + b : a;
      let v = 0;
      if (m !== 0) {
        if (e10 < -22 || e10 > 22) return -1;
        // Both operands exact: one correctly rounded operation, the double JSON.parse gives.
        v = e10 < 0 ? m / pow10[-e10] : m * pow10[e10];
        if (dropped || m >= EXACT_INTEGER) {
          // Approximate: take it when every double within the error bound is within float32's
          // range (the general path checks the double) and rounds to one float32.
          const hi = v * (1 + APPROX_ERROR);
          const lo = Math.fround(v * (1 - APPROX_ERROR));
          if (hi > float32Max || lo !== Math.fround(hi)) return -1;
          v = lo;
        } else if (v > float32Max) return -1;
      }
      out[object ? base + f : base + count] = negative ? -v : v;
    } else if (c === 0x6e /* n */) {
      if (s[i + 1] !== 0x75 || s[i + 2] !== 0x6c || s[i + 3] !== 0x6c) return -1;
      i += 4;
      out[object ? base + f : base + count] = Number.NaN;
    } else if (c === 0x22 /* " */ && categorical[f] === 1 && !codes) {
      i = category(plan, f, s, i, out, base);
      if (i < 0) return -1;
    } else if (codes && categorical[f] === 1 && c >= 0x30 && c <= 0x39) {
      // A category code: a plain integer of at most 6 digits below the category count (what
      // follows it must end the value: a fraction, an exponent, a leading zero send the body to
      // the general path).
      let v = c - 0x30;
      c = s[++i];
      if (v > 0)
        for (let digits = 1; c >= 0x30 && c <= 0x39; digits++) {
          if (digits === 6) return -1;
          v = v * 10 + (c - 0x30);
          c = s[++i];
        }
      if (v >= plan.codes[f]!.size) return -1;
      out[base + count] = v;
    } else return -1; // a number for a categorical feature, a string for a numeric one, …
    if (object) {
      if (seen[f] === 0) seen[f] = 1;
      else count--; // a repeated name: the last value counts, as in JSON.parse
    }
    count++;
    column = column + 1 === width ? 0 : column + 1;
    c = s[i];
    if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 /* whitespace */) c = s[++i];
    i++;
    if (c === close) break;
    if (c !== 0x2c /* , */) return -1;
  }
  if (count !== limit) return -1; // a row too short, or features missing
  return i;
}

/** Which features an object row named. */
let seenScratch = new Uint8Array(64);

/** A categorical value `"…"` at `i` into `out[base + f]` (its code, NaN when unknown): the index after it, or -1. */
function category(
  plan: FeaturePlan,
  f: number,
  s: Uint8Array,
  i: number,
  out: Float32Array,
  base: number,
): number {
  const end = stringEnd(s, i + 1);
  if (end < 0) return -1;
  const code = plan.categoryBytes[f]!.find(s, i + 1, end);
  if (code === AMBIGUOUS) return -1;
  if (code === MISSING) {
    // Unknown: missing, unless the bytes are not plain ASCII (the general path checks their UTF-8).
    for (let j = i + 1; j < end; j++) if (s[j] >= 0x80) return -1;
  }
  out[base + f] = code === MISSING ? Number.NaN : code;
  return end + 1;
}

/** The index of the quote closing a string whose text starts at `i`; -1 at an escape or a control character. */
export function stringEnd(s: Uint8Array, i: number): number {
  const n = s.length;
  for (; i < n; i++) {
    const c = s[i];
    if (c === 0x22 /* " */) return i;
    if (c === 0x5c /* backslash */ || c < 0x20 /* space */) return -1;
  }
  return -1;
}

export function skipSpace(s: Uint8Array, i: number): number {
  let c = s[i];
  if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 /* whitespace */) c = s[++i];
  return i;
}

/** `"instances"` at `i`. */
function isInstancesKey(s: Uint8Array, i: number): boolean {
  for (let j = 0; j < INSTANCES.length; j++) if (s[i + j] !== INSTANCES[j]) return false;
  return true;
}

const INSTANCES = new TextEncoder().encode('"instances"');

/** 10^0 … 10^22: the powers of ten a double holds exactly. */
const POW10 = Float64Array.from({ length: 23 }, (_, k) => Number(`1e${k}`));
/** Integers up to this are exact in a double. */
const EXACT_INTEGER = 2 ** 53;
/**
 * Relative error bound of an approximate value: a·10^k + b rounds at most twice (the product,
 * the sum: 2^-53 each), the dropped digits past the 18th are < 10^-17 of it, the scaling by an
 * exact power of ten rounds once more, and the correctly rounded double of the decimal is itself
 * within 2^-53 of it: < 5e-16 in all; the bound keeps a margin of 8.
 */
const APPROX_ERROR = 4e-15;
