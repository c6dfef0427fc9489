/**
 * Split finding over a node's histogram (LightGBM/XGBoost formulas without XGBoost's ½):
 *   score(G, H) = T(G)² / (H + λ),  T(G) = sign(G)·max(|G| − α, 0)
 *   gain = score(G_L, H_L) + score(G_R, H_R) − score(G, H)
 * A split needs each child to have ≥ min_data_in_leaf rows and ≥ min_child_weight hessian, and
 * gain > max(min_split_gain, 0). The missing bin is tried on both sides (learned default direction).
 * Categorical: one-vs-rest below max_cat_to_onehot categories, otherwise categories sorted by
 * G/(H + cat_smooth) scanned from both ends up to max_cat_threshold (LightGBM,
 * feature_histogram.cpp); the set that goes left is a set of category codes, exact in ONNX.
 */
import type { BinMapper } from "./binning.ts";
import type { TrainParams } from "./params.ts";

/** The best split of a node (or gain −∞ when none). */
export class SplitInfo {
  gain = Number.NEGATIVE_INFINITY;
  feature = -1;
  categorical = false;
  /** Numeric: the last bin that goes left. */
  bin = 0;
  defaultLeft = false;
  /** Categorical: codes going left, ascending. */
  leftSet: Int32Array | null = null;
  gl = 0;
  hl = 0;
  cl = 0;
  gr = 0;
  hr = 0;
  cr = 0;

  reset(): void {
    this.gain = Number.NEGATIVE_INFINITY;
    this.feature = -1;
    this.categorical = false;
    this.bin = 0;
    this.defaultLeft = false;
    this.leftSet = null;
  }
}

/** L1-thresholded gradient sum. */
export function thresholdL1(g: number, alpha: number): number {
  if (alpha === 0) return g;
  if (g > alpha) return g - alpha;
  if (g < -alpha) return g + alpha;
  return 0;
}

/** score(G, H) of a node. */
export function leafScore(g: number, h: number, lambda: number, alpha: number): number {
  const t = thresholdL1(g, alpha);
  const d = h + lambda;
  return d > 0 ? (t * t) / d : 0;
}

/** Newton leaf weight −T(G)/(H+λ) (before the learning rate). */
export function leafWeight(g: number, h: number, lambda: number, alpha: number): number {
  const d = h + lambda;
  return d > 0 ? -thresholdL1(g, alpha) / d : 0;
}

/** Node totals passed to the split finder. */
export interface NodeTotals {
  g: number;
  h: number;
  c: number;
}

/** Find the best split of a node over the allowed features into `best` (reset first). */
export function findBestSplit(
  hist: Float64Array,
  offsets: Int32Array,
  mappers: readonly BinMapper[],
  featureMask: Uint8Array,
  totals: NodeTotals,
  p: TrainParams,
  best: SplitInfo,
): void {
  best.reset();
  for (let f = 0; f < mappers.length; f++) {
    if (featureMask[f] === 0) continue;
    const m = mappers[f];
    if (m.numBins < 2 && !m.categorical) continue;
    if (m.categorical) categoricalSplit(hist, offsets[f] * 2, m.numBins, f, totals, p, best);
    else numericSplit(hist, offsets[f] * 2, m.numBins, f, totals, p, best);
  }
}

function numericSplit(
  hist: Float64Array,
  o: number,
  nb: number,
  f: number,
  t: NodeTotals,
  p: TrainParams,
  best: SplitInfo,
): void {
  const { lambda, alpha, minDataInLeaf, minChildWeight } = p;
  const G = t.g;
  const H = t.h;
  const C = t.c;
  const parent = leafScore(G, H, lambda, alpha);
  const floor = Math.max(p.minSplitGain, 1e-12);
  const cf = H > 0 ? C / H : 0; // rows per unit of hessian (count estimate, as LightGBM)
  const mo = o + nb * 2;
  const mg = hist[mo];
  const mh = hist[mo + 1];
  const mc = mh * cf;
  let gl = 0;
  let hl = 0;
  let cl = 0;
  for (let b = 0; b < nb - 1; b++) {
    const k = o + b * 2;
    gl += hist[k];
    hl += hist[k + 1];
    cl = hl * cf;
    if (hist[k + 1] === 0 && b > 0) continue; // same split as the previous bin
    if (C - cl < minDataInLeaf) break;
    // Missing goes right.
    if (cl >= minDataInLeaf && hl >= minChildWeight) {
      const gr = G - gl;
      const hr = H - hl;
      const cr = C - cl;
      if (hr >= minChildWeight) {
        const gain = leafScore(gl, hl, lambda, alpha) + leafScore(gr, hr, lambda, alpha) - parent;
        if (gain > floor && gain > best.gain) {
          best.gain = gain;
          best.feature = f;
          best.categorical = false;
          best.bin = b;
          // Without missing rows here, unseen NaN follows the heavier child.
          best.defaultLeft = mc === 0 && hl >= hr;
          best.leftSet = null;
          best.gl = gl;
          best.hl = hl;
          best.cl = cl;
          best.gr = gr;
          best.hr = hr;
          best.cr = cr;
        }
      }
    }
    // Missing goes left.
    if (mh > 0) {
      const gl2 = gl + mg;
      const hl2 = hl + mh;
      const cl2 = cl + mc;
      const gr = G - gl2;
      const hr = H - hl2;
      const cr = C - cl2;
      if (cl2 >= minDataInLeaf && cr >= minDataInLeaf && hl2 >= minChildWeight && hr >= minChildWeight) {
        const gain = leafScore(gl2, hl2, lambda, alpha) + leafScore(gr, hr, lambda, alpha) - parent;
        if (gain > floor && gain > best.gain) {
          best.gain = gain;
          best.feature = f;
          best.categorical = false;
          best.bin = b;
          best.defaultLeft = true;
          best.leftSet = null;
          best.gl = gl2;
          best.hl = hl2;
          best.cl = cl2;
          best.gr = gr;
          best.hr = hr;
          best.cr = cr;
        }
      }
    }
  }
}

/** Scratch of the categorical scan (no allocation per node and feature). */
let catUsed = new Int32Array(256);
let catRatio = new Float64Array(256);
let catTmp = new Int32Array(256);

/**
 * Stable sort of `a` (ascending codes) by key[a[i]], in place; `tmp` is scratch of the same length.
 * Stable on ascending codes equals the order of the comparator (key, code), with no callback per
 * comparison: the comparator sort cost ~10% of a flights fit. Insertion sort for runs of 16, then
 * bottom-up merges.
 */
function sortByKey(a: Int32Array, key: Float64Array, tmp: Int32Array): void {
  const n = a.length;
  const RUN = 16;
  for (let lo = 0; lo < n; lo += RUN) {
    const hi = Math.min(lo + RUN, n);
    for (let i = lo + 1; i < hi; i++) {
      const v = a[i];
      const kv = key[v];
      let j = i - 1;
      while (j >= lo && key[a[j]] > kv) {
        a[j + 1] = a[j];
        j--;
      }
      a[j + 1] = v;
    }
  }
  let src = a;
  let dst = tmp;
  for (let width = RUN; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n);
      const hi = Math.min(lo + 2 * width, n);
      let i = lo;
      let j = mid;
      let k = lo;
      while (i < mid && j < hi) dst[k++] = key[src[j]] < key[src[i]] ? src[j++] : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    const t = src;
    src = dst;
    dst = t;
  }
  if (src !== a) a.set(src.subarray(0, n));
}

function categoricalSplit(
  hist: Float64Array,
  o: number,
  nc: number,
  f: number,
  t: NodeTotals,
  p: TrainParams,
  best: SplitInfo,
): void {
  const { alpha, minDataInLeaf, minChildWeight } = p;
  const lambda = p.lambda + p.catL2;
  const G = t.g;
  const H = t.h;
  const C = t.c;
  const parent = leafScore(G, H, lambda, alpha);
  const floor = Math.max(p.minSplitGain, 1e-12);
  const cf = H > 0 ? C / H : 0;
  const mo = o + nc * 2;
  const mg = hist[mo];
  const mh = hist[mo + 1];
  const mc = mh * cf;
  const sides = mh > 0 ? 2 : 1;
  if (catUsed.length < nc) {
    catUsed = new Int32Array(nc);
    catRatio = new Float64Array(nc);
    catTmp = new Int32Array(nc);
  }
  // Candidate categories (present in the node, and not rare for the sorted scan).
  const oneHot = nc <= p.maxCatToOnehot;
  let nu = 0;
  for (let c = 0; c < nc; c++) {
    const h = hist[o + c * 2 + 1];
    if (h > 0 && (oneHot || h * cf >= p.catSmooth)) catUsed[nu++] = c;
  }
  if (nu < (oneHot ? 1 : 2)) return;
  let bestLocal = best.gain;
  // The best candidate: scan direction, categories taken, missing side and child totals.
  let foundDir = -1;
  let foundK = 0;
  let foundMl = 0;
  let g1b = 0;
  let h1b = 0;
  let c1b = 0;
  const consider = (gl: number, hl: number, cl: number): boolean => {
    let hit = false;
    for (let ml = 0; ml < sides; ml++) {
      const g1 = ml ? gl + mg : gl;
      const h1 = ml ? hl + mh : hl;
      const c1 = ml ? cl + mc : cl;
      const h2 = H - h1;
      const c2 = C - c1;
      if (c1 < minDataInLeaf || c2 < minDataInLeaf || h1 < minChildWeight || h2 < minChildWeight) continue;
      const gain = leafScore(g1, h1, lambda, alpha) + leafScore(G - g1, h2, lambda, alpha) - parent;
      if (gain > floor && gain > bestLocal) {
        bestLocal = gain;
        foundMl = ml;
        g1b = g1;
        h1b = h1;
        c1b = c1;
        hit = true;
      }
    }
    return hit;
  };
  const used = catUsed.subarray(0, nu);
  if (oneHot) {
    for (let i = 0; i < nu; i++) {
      const k = o + used[i] * 2;
      if (consider(hist[k], hist[k + 1], hist[k + 1] * cf)) {
        foundDir = 0;
        foundK = i;
      }
    }
  } else {
    for (let i = 0; i < nu; i++)
      catRatio[used[i]] = hist[o + used[i] * 2] / (hist[o + used[i] * 2 + 1] + p.catSmooth);
    sortByKey(used, catRatio, catTmp.subarray(0, nu));
    const maxK = Math.min(p.maxCatThreshold, (nu + 1) >> 1);
    for (let dir = 0; dir < 2; dir++) {
      let gl = 0;
      let hl = 0;
      for (let i = 0; i < maxK && i < nu - 1; i++) {
        const k = o + used[dir === 0 ? i : nu - 1 - i] * 2;
        gl += hist[k];
        hl += hist[k + 1];
        if (consider(gl, hl, hl * cf)) {
          foundDir = dir;
          foundK = i + 1;
        }
      }
    }
  }
  if (foundDir < 0) return;
  let set: Int32Array;
  if (oneHot) set = Int32Array.of(used[foundK]);
  else {
    set = new Int32Array(foundK);
    for (let i = 0; i < foundK; i++) set[i] = used[foundDir === 0 ? i : nu - 1 - i];
    set.sort();
  }
  best.gain = bestLocal;
  best.feature = f;
  best.categorical = true;
  best.bin = 0;
  best.defaultLeft = foundMl === 1;
  best.leftSet = set;
  best.gl = g1b;
  best.hl = h1b;
  best.cl = c1b;
  best.gr = G - g1b;
  best.hr = H - h1b;
  best.cr = C - c1b;
}

/** Routing table by bin (256 entries, 1 = left) of a split, missing bin included. */
export function splitLut(split: SplitInfo, mapper: BinMapper, lut: Uint8Array): Uint8Array {
  lut.fill(0);
  if (split.categorical) {
    for (const c of split.leftSet!) lut[c] = 1;
  } else {
    for (let b = 0; b <= split.bin; b++) lut[b] = 1;
  }
  lut[mapper.numBins] = split.defaultLeft ? 1 : 0;
  return lut;
}
