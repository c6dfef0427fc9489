/**
 * Seeded pseudo-random numbers that give the same sequence on every runtime and platform, so that
 * splits, subsampling and tuning are reproducible for a seed. `Math.random` cannot be seeded.
 *
 * Generator: xoshiro128** 1.0 (Blackman & Vigna, https://prng.di.unimi.it/xoshiro128starstar.c),
 * 32-bit state words so every step stays in exact integer arithmetic (`Math.imul`, `>>> 0`).
 * Its state is filled from the seed with splitmix64, as the authors recommend.
 */

const MASK64 = (1n << 64n) - 1n;

/** One splitmix64 step on a 64-bit state; returns [nextState, output]. */
function splitmix64(state: bigint): [bigint, bigint] {
  const s = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [s, z ^ (z >> 31n)];
}

/** A seeded xoshiro128** generator. */
export class Random {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** `seed`: any safe integer (negative ones too); the same seed always gives the same sequence. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`Random: seed must be a safe integer, got ${seed}`);
    const [state, a] = splitmix64(BigInt.asUintN(64, BigInt(seed)));
    const [, b] = splitmix64(state);
    this.#s0 = Number(a & 0xffffffffn);
    this.#s1 = Number(a >> 32n);
    this.#s2 = Number(b & 0xffffffffn);
    this.#s3 = Number(b >> 32n);
    // An all-zero state would stay zero forever; splitmix64 makes it practically impossible.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** A generator with an explicit state (four 32-bit words), to check against reference vectors. */
  static fromState(s0: number, s1: number, s2: number, s3: number): Random {
    const r = new Random(0);
    r.#s0 = s0 | 0;
    r.#s1 = s1 | 0;
    r.#s2 = s2 | 0;
    r.#s3 = s3 | 0;
    return r;
  }

  /** Next unsigned 32-bit integer. */
  nextUint32(): number {
    const s1 = this.#s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), n ≤ 2^32. Bias is below n / 2^53, i.e. none that matters. */
  nextBelow(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Fisher–Yates shuffle of `a` in place (Durstenfeld's variant), driven by `rng`. */
export function shuffleInPlace(a: Uint32Array | Int32Array, rng: Random): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.nextBelow(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}
