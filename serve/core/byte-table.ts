/**
 * Strings looked up by their UTF-8 bytes, without decoding them: FNV-1a hash → index, then a byte
 * comparison. Built once per version (json-rows.ts: feature names, each categorical feature's
 * categories).
 */
export class ByteTable {
  readonly #byHash = new Map<number, number>();
  /** Every key's bytes, one after the other (one buffer: tables of 10^5 categories stay small). */
  readonly #bytes: Uint8Array;
  /** Key k is `#bytes[#starts[k] .. #starts[k + 1])`. */
  readonly #starts: Int32Array;

  constructor(keys: readonly string[]) {
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    const encoded = keys.map((key) => {
      const bytes = enc.encode(key);
      // A key with a lone surrogate has no UTF-8 form: no bytes can name it (its encoding would
      // name U+FFFD instead).
      return dec.decode(bytes) === key ? bytes : null;
    });
    this.#starts = new Int32Array(keys.length + 1);
    for (let k = 0; k < keys.length; k++) this.#starts[k + 1] = this.#starts[k] + (encoded[k]?.length ?? 0);
    this.#bytes = new Uint8Array(this.#starts[keys.length]);
    for (let k = 0; k < keys.length; k++) {
      const bytes = encoded[k];
      if (bytes === null) continue;
      this.#bytes.set(bytes, this.#starts[k]);
      const h = hash(bytes, 0, bytes.length);
      // Two keys with one hash: lookups of that hash give up (AMBIGUOUS), the general path decides.
      this.#byHash.set(h, this.#byHash.has(h) ? AMBIGUOUS : k);
    }
  }

  /** Index of the key whose UTF-8 bytes are `s[a..b)`; MISSING, or AMBIGUOUS (give up). */
  find(s: Uint8Array, a: number, b: number): number {
    const k = this.#byHash.get(hash(s, a, b));
    if (k === undefined) return MISSING;
    if (k === AMBIGUOUS) return AMBIGUOUS;
    const from = this.#starts[k];
    if (this.#starts[k + 1] - from !== b - a) return MISSING;
    const key = this.#bytes;
    for (let j = 0; j < b - a; j++) if (key[from + j] !== s[a + j]) return MISSING;
    return k;
  }
}

/** {@link ByteTable.find}: no such key. */
export const MISSING = -1;
/** {@link ByteTable.find}: keys share the hash, the caller must decide another way. */
export const AMBIGUOUS = -2;

function hash(s: Uint8Array, a: number, b: number): number {
  let h = 0x811c9dc5;
  for (let i = a; i < b; i++) h = Math.imul(h ^ s[i], 0x01000193);
  return h;
}
