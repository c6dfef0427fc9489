/**
 * The fast path for the commonest msgpack predict body, `{"instances": [[…], …]}` or
 * `{"instances": [{…}, …]}`, read from its bytes straight into float32 rows.
 *
 * Why: msgpackr builds a JS array per row and a number per value, which validation (rows.ts) then
 * copies into the batch matrix: for 1000 rows of 28 features that is 28,000 heap numbers of
 * garbage per request. msgpack numbers are binary already, so here they go straight to float32.
 *
 * The reader gives up (returns -1) on anything it does not take exactly as the general path would:
 * other keys, names longer than a fixstr takes (31 bytes), 64-bit integers, booleans, binary
 * or extension values, non-finite values or values beyond float32's range, a number for a
 * categorical feature or a string for a numeric one, an unknown feature, an unknown category whose
 * bytes are not plain ASCII, a row of the wrong length, no rows or too many. The caller then runs
 * msgpackr and the general validation, which answer as they always did. So this changes no answer,
 * only its cost: test/serve-json-rows.test.ts compares both paths on random and mutated bodies.
 */
import { AMBIGUOUS, MISSING } from "./byte-table.ts";
import { freshScratch, growScratch } from "./json-rows.ts";
import { type FeaturePlan, FLOAT32_MAX } from "./plan.ts";

/** Which features an object row named. */
let seenScratch = new Uint8Array(64);

/** `"instances"` as a msgpack fixstr. */
const INSTANCES = Uint8Array.from([0xa9, ...new TextEncoder().encode("instances")]);

/**
 * Read a predict body's rows into the rows scratch (json-rows.ts `rowsScratch`, row-major
 * float32): their count (1 to `maxRows`), or -1 when the general path must decide.
 */
export function readMsgpackRows(plan: FeaturePlan, s: Uint8Array, maxRows: number): number {
  const width = plan.width;
  const categorical = plan.categorical;
  const float32Max = FLOAT32_MAX;
  let out = freshScratch();
  if (seenScratch.length < width) seenScratch = new Uint8Array(width);
  const seen = seenScratch;
  const n = s.length;
  const view = new DataView(s.buffer, s.byteOffset, n);
  // A map of one entry, "instances" (msgpackr writes every map with a 16-bit length by default).
  if (mapLength(s, 0) !== 1) return -1;
  let i = headerSize(s[0]);
  for (let j = 0; j < INSTANCES.length; j++) if (s[i + j] !== INSTANCES[j]) return -1;
  i += INSTANCES.length;
  let rows = 0;
  const total = arrayLength(s, i);
  if (total <= 0 || total > maxRows) return -1;
  i += headerSize(s[i]);
  for (; rows < total; rows++) {
    const base = rows * width;
    if (base + width > out.length) out = growScratch(base + width);
    const h = s[i];
    let count = mapLength(s, i);
    const object = count >= 0;
    if (object) seen.fill(0, 0, width);
    else {
      count = arrayLength(s, i);
      if (count !== width) return -1; // a row of the wrong length, or not a row: the general path words it
    }
    i += headerSize(h);
    let named = 0; // features an object row named
    for (let k = 0; k < count; k++) {
      let f = k;
      if (object) {
        const key = s[i];
        if (key < 0xa0 || key > 0xbf) return -1; // a name that is not a short string
        const end = i + 1 + (key & 0x1f);
        if (end > n) return -1;
        f = plan.nameBytes.find(s, i + 1, end);
        // An unknown feature, or `__proto__`, a key msgpackr renames.
        if (f < 0 || f === plan.protoFeature) return -1;
        if (seen[f] === 0) {
          seen[f] = 1;
          named++;
        }
        i = end;
      }
      const c = s[i];
      let v: number;
      if (c <= 0x7f) {
        v = c; // positive fixint
        i++;
      } else if (c >= 0xe0) {
        v = c - 0x100; // negative fixint
        i++;
      } else if (c === 0xcb) {
        if (i + 9 > n) return -1;
        v = view.getFloat64(i + 1);
        // NaN fails both comparisons; ±Infinity and values beyond float32 fail one.
        if (!(v <= float32Max && v >= -float32Max)) return -1;
        i += 9;
      } else if (c === 0xca) {
        if (i + 5 > n) return -1;
        v = view.getFloat32(i + 1);
        if (!(v <= float32Max && v >= -float32Max)) return -1;
        i += 5;
      } else if (c === 0xcc || c === 0xd0) {
        if (i + 2 > n) return -1;
        v = c === 0xcc ? s[i + 1] : (s[i + 1] << 24) >> 24;
        i += 2;
      } else if (c === 0xcd || c === 0xd1) {
        if (i + 3 > n) return -1;
        v = (s[i + 1] << 8) | s[i + 2];
        if (c === 0xd1) v = (v << 16) >> 16;
        i += 3;
      } else if (c === 0xce || c === 0xd2) {
        if (i + 5 > n) return -1;
        v = (s[i + 1] << 24) | (s[i + 2] << 16) | (s[i + 3] << 8) | s[i + 4];
        if (c === 0xce) v >>>= 0;
        i += 5;
      } else if (c === 0xc0) {
        out[base + f] = Number.NaN; // nil: missing
        i++;
        continue;
      } else if (c >= 0xa0 && c <= 0xbf && categorical[f] === 1) {
        const end = i + 1 + (c & 0x1f);
        if (end > n) return -1;
        const code = plan.categoryBytes[f]!.find(s, i + 1, end);
        if (code === AMBIGUOUS) return -1;
        if (code === MISSING) {
          // Unknown: missing, unless the bytes are not plain ASCII (the general path decodes them).
          for (let j = i + 1; j < end; j++) if (s[j] >= 0x80) return -1;
        }
        out[base + f] = code === MISSING ? Number.NaN : code;
        i = end;
        continue;
      } else return -1; // 64-bit integers, booleans, longer strings, binary, extensions, nested values
      // A number for a categorical feature matches a category by its string form: the general path.
      if (categorical[f] === 1) return -1;
      out[base + f] = v;
    }
    if (object && named !== width) return -1; // features missing
  }
  return i === n ? rows : -1;
}

/** The length of the array whose header is at `i` (fixarray, array 16, array 32); -1 for anything else. */
function arrayLength(s: Uint8Array, i: number): number {
  return containerLength(s, i, 0x90, 0xdc);
}

/** The entries of the map whose header is at `i` (fixmap, map 16, map 32); -1 for anything else. */
function mapLength(s: Uint8Array, i: number): number {
  return containerLength(s, i, 0x80, 0xde);
}

/** The length in the header at `i`: `fix` | n (n < 16), `wide16` and 2 bytes, `wide16 + 1` and 4 bytes. */
function containerLength(s: Uint8Array, i: number, fix: number, wide16: number): number {
  const h = s[i];
  if (h >= fix && h <= fix + 0x0f) return h & 0x0f;
  if (h === wide16 && i + 3 <= s.length) return (s[i + 1] << 8) | s[i + 2];
  if (h === wide16 + 1 && i + 5 <= s.length)
    return ((s[i + 1] << 24) | (s[i + 2] << 16) | (s[i + 3] << 8) | s[i + 4]) >>> 0;
  return -1;
}

/** Bytes of the array or map header starting with `h` (after {@link arrayLength} or {@link mapLength} took it). */
function headerSize(h: number): number {
  return h === 0xdc || h === 0xde ? 3 : h === 0xdd || h === 0xdf ? 5 : 1;
}
