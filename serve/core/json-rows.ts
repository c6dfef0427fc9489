/**
 * The fast path for the commonest JSON predict body, `{"instances": [[…], …]}` or
 * `{"instances": [{…}, …]}`, read from its bytes straight into float32 rows.
 *
 * Why: V8's JSON.parse converts every number to a correctly rounded double, and a double printed by
 * a client has 16-17 significant digits (a 28-feature row: 2.7 µs, ~35k instructions, a quarter of
 * a 500-tree request's). The model reads float32, whose rounding is almost always decided well
 * before the 17th digit. Here a number is read into an approximate double with a known error bound;
 * when every double within that bound rounds to the same float32, that float32 is the one
 * JSON.parse followed by a Float32Array store gives. Otherwise (near a float32 rounding boundary,
 * powers of ten beyond ±22) the general path runs instead.
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

/** The rows {@link readJsonRows} read last: `rows × plan.width` values, valid until its next call. */
export function jsonRowsScratch(): Float32Array {
  return scratch;
}

/**
 * Read a predict body's rows into {@link jsonRowsScratch} (row-major float32): their count (1 to
 * `maxRows`), or -1 when the general path must decide (see the module comment).
 */
export function readJsonRows(plan: FeaturePlan, s: Uint8Array, maxRows: number): number {
  const width = plan.width;
  const categorical = plan.categorical;
  if (scratch.length > SCRATCH_SIZE) scratch = new Float32Array(SCRATCH_SIZE);
  if (seenScratch.length < width) seenScratch = new Uint8Array(width);
  const seen = seenScratch;
  let i = skipSpace(s, 0);
  if (s[i] !== LBRACE) return -1;
  i = skipSpace(s, i + 1);
  if (!isInstancesKey(s, i)) return -1;
  i = skipSpace(s, i + 11);
  if (s[i] !== COLON) return -1;
  i = skipSpace(s, i + 1);
  if (s[i] !== LBRACKET) return -1;
  i++;
  let rows = 0;
  let out = scratch;
  // One loop for positional rows `[v, …]` and object rows `{"name": v, …}`, the number reader
  // inline (as a function of its own it costs V8 more than the reading: measured 38k vs 21k
  // instructions for a 28-number row).
  for (;;) {
    if (rows >= maxRows) return -1;
    const base = rows * width;
    if (base + width > out.length) {
      const grown = new Float32Array(Math.max(out.length * 2, base + width));
      grown.set(out);
      scratch = out = grown;
    }
    i = skipSpace(s, i);
    const open = s[i++];
    const object = open === LBRACE;
    if (!object && open !== LBRACKET) return -1; // the general path words it
    if (object) seen.fill(0, 0, width);
    const close = object ? RBRACE : RBRACKET;
    let count = 0; // values read
    for (;;) {
      let c = s[i];
      while (c === SPACE || c === LF || c === CR || c === TAB) c = s[++i];
      let f = count;
      if (object) {
        // "name":
        if (c !== QUOTE) return -1;
        const end = stringEnd(s, i + 1);
        if (end < 0) return -1;
        f = plan.nameBytes.find(s, i + 1, end);
        if (f < 0) return -1; // an unknown feature
        i = skipSpace(s, end + 1);
        if (s[i] !== COLON) return -1;
        i = skipSpace(s, i + 1);
        c = s[i];
      } else if (f === width) return -1; // a row too long
      if ((c === MINUS || (c >= ZERO && c <= NINE)) && categorical[f] === 0) {
        const negative = c === MINUS;
        if (negative) c = s[++i];
        // The decimal is (a·10^(digits−9) + b)·10^e10: a the first 9 significant digits, b the
        // next 9 (int32 arithmetic: a short dependency chain, unlike a double accumulator).
        let a = 0;
        let b = 0;
        let digits = 0;
        let e10 = 0;
        let dropped = false;
        if (c === ZERO) {
          c = s[++i];
          if (c >= ZERO && c <= NINE) return -1; // a leading zero: not JSON
        } else if (c > ZERO && c <= NINE) {
          do {
            if (digits < 9) a = (a * 10 + (c - ZERO)) | 0;
            else if (digits < 18) b = (b * 10 + (c - ZERO)) | 0;
            else {
              e10++;
              if (c !== ZERO) dropped = true;
            }
            digits++;
            c = s[++i];
          } while (c >= ZERO && c <= NINE);
        } else return -1;
        if (c === DOT) {
          c = s[++i];
          if (!(c >= ZERO && c <= NINE)) return -1;
          if (digits === 0) {
            // The zeros of 0.00…: not significant.
            while (c === ZERO) {
              e10--;
              c = s[++i];
            }
          }
          while (c >= ZERO && c <= NINE) {
            if (digits < 9) a = (a * 10 + (c - ZERO)) | 0;
            else if (digits < 18) b = (b * 10 + (c - ZERO)) | 0;
            else if (c !== ZERO) dropped = true;
            if (digits < 18) e10--;
            digits++;
            c = s[++i];
          }
        }
        if (c === LOWER_E || c === UPPER_E) {
          c = s[++i];
          const negativeExponent = c === MINUS;
          if (negativeExponent || c === PLUS) c = s[++i];
          if (!(c >= ZERO && c <= NINE)) return -1;
          let e = 0;
          do {
            if (e < 10_000) e = e * 10 + (c - ZERO);
            c = s[++i];
          } while (c >= ZERO && c <= NINE);
          e10 += negativeExponent ? -e : e;
        }
        const m = digits > 9 ? a * POW10[Math.min(digits, 18) - 9] + b : a;
        let v = 0;
        if (m !== 0) {
          if (e10 < -22 || e10 > 22) return -1;
          // Both operands exact: one correctly rounded operation, the double JSON.parse gives.
          v = e10 < 0 ? m / POW10[-e10] : m * POW10[e10];
          if (dropped || m >= EXACT_INTEGER) {
            // Approximate: take it when every double within the error bound is within float32's
            // range (the general path checks the double) and rounds to one float32.
            const hi = v * (1 + APPROX_ERROR);
            const lo = Math.fround(v * (1 - APPROX_ERROR));
            if (hi > FLOAT32_MAX || lo !== Math.fround(hi)) return -1;
            v = lo;
          } else if (v > FLOAT32_MAX) return -1;
        }
        out[base + f] = negative ? -v : v;
      } else if (c === LOWER_N) {
        if (s[i + 1] !== 0x75 || s[i + 2] !== 0x6c || s[i + 3] !== 0x6c) return -1;
        i += 4;
        out[base + f] = Number.NaN;
      } else if (c === QUOTE && categorical[f] === 1) {
        i = category(plan, f, s, i, out, base);
        if (i < 0) return -1;
      } else return -1; // a number for a categorical feature, a string for a numeric one, …
      if (object) {
        if (seen[f] === 0) seen[f] = 1;
        else count--; // a repeated name: the last value counts, as in JSON.parse
      }
      count++;
      c = s[i];
      while (c === SPACE || c === LF || c === CR || c === TAB) c = s[++i];
      i++;
      if (c === close) break;
      if (c !== COMMA) return -1;
    }
    if (count !== width) return -1; // a row too short, or features missing
    rows++;
    i = skipSpace(s, i);
    const c = s[i++];
    if (c === RBRACKET) break;
    if (c !== COMMA) return -1;
  }
  i = skipSpace(s, i);
  if (s[i] !== RBRACE) return -1;
  return skipSpace(s, i + 1) === s.length ? rows : -1;
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
function stringEnd(s: Uint8Array, i: number): number {
  const n = s.length;
  for (; i < n; i++) {
    const c = s[i];
    if (c === QUOTE) return i;
    if (c === BACKSLASH || c < SPACE) return -1;
  }
  return -1;
}

function skipSpace(s: Uint8Array, i: number): number {
  let c = s[i];
  while (c === SPACE || c === LF || c === CR || c === TAB) c = s[++i];
  return i;
}

/** `"instances"` at `i`. */
function isInstancesKey(s: Uint8Array, i: number): boolean {
  for (let j = 0; j < INSTANCES.length; j++) if (s[i + j] !== INSTANCES[j]) return false;
  return true;
}

const INSTANCES = new TextEncoder().encode('"instances"');

// Character codes.
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const QUOTE = 0x22;
const PLUS = 0x2b;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const COLON = 0x3a;
const LBRACKET = 0x5b;
const BACKSLASH = 0x5c;
const RBRACKET = 0x5d;
const UPPER_E = 0x45;
const LOWER_E = 0x65;
const LOWER_N = 0x6e;
const LBRACE = 0x7b;
const RBRACE = 0x7d;

/** 10^0 … 10^22: the powers of ten a double holds exactly. */
const POW10 = Float64Array.from({ length: 23 }, (_, k) => Number(`1e${k}`));
/** Integers up to this are exact in a double. */
const EXACT_INTEGER = 2 ** 53;
/**
 * Relative error bound of an approximate value: a·10^9 + b rounds once (2^-53), the dropped
 * digits past the 18th are < 10^-17 of it, the scaling by an exact power of ten rounds once more,
 * and the correctly rounded double of the decimal is itself within 2^-53: < 4e-16 in all; the
 * bound keeps a 10x margin.
 */
const APPROX_ERROR = 4e-15;
