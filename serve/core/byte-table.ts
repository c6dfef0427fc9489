/**
 * Strings looked up by their UTF-8 bytes, without decoding them: FNV-1a hash → index, then a byte
 * comparison. Built once per version (json-rows.ts: feature names, each categorical feature's
 * categories).
 */
export class ByteTable {
  readonly #byHash = new Map<number, number>();
  readonly #bytes: Uint8Array[] = [];

  constructor(keys: readonly string[]) {
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    for (let k = 0; k < keys.length; k++) {
      const bytes = enc.encode(keys[k]);
      // A key with a lone surrogate has no UTF-8 form: no bytes can name it (its encoding would
      // name U+FFFD instead).
      if (dec.decode(bytes) !== keys[k]) {
        this.#bytes.push(NO_BYTES);
        continue;
      }
      const h = hash(bytes, 0, bytes.length);
      const seen = this.#byHash.get(h);
      // Two keys with one hash: lookups of that hash give up (AMBIGUOUS), the general path decides.
      this.#byHash.set(h, seen === undefined ? k : AMBIGUOUS);
      this.#bytes.push(bytes);
    }
  }

  /** Index of the key whose UTF-8 bytes are `s[a..b)`; MISSING, or AMBIGUOUS (give up). */
  find(s: Uint8Array, a: number, b: number): number {
    const k = this.#byHash.get(hash(s, a, b));
    if (k === undefined) return MISSING;
    if (k === AMBIGUOUS) return AMBIGUOUS;
    const key = this.#bytes[k];
    if (key.length !== b - a) return MISSING;
    for (let j = 0; j < key.length; j++) if (key[j] !== s[a + j]) return MISSING;
    return k;
  }
}

const NO_BYTES = new Uint8Array(0);

/** {@link ByteTable.find}: no such key. */
export const MISSING = -1;
/** {@link ByteTable.find}: keys share the hash, the caller must decide another way. */
export const AMBIGUOUS = -2;

function hash(s: Uint8Array, a: number, b: number): number {
  let h = 0x811c9dc5;
  for (let i = a; i < b; i++) h = Math.imul(h ^ s[i], 0x01000193);
  return h;
}
