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
  // Candidate categories (present in the node), and the scan order.
  const used: number[] = [];
  const oneHot = nc <= p.maxCatToOnehot;
  for (let c = 0; c < nc; c++) {
    const h = hist[o + c * 2 + 1];
    if (h > 0 && (oneHot || h * cf >= p.catSmooth)) used.push(c);
  }
  if (used.length < (oneHot ? 1 : 2)) return;
  let bestLocal = best.gain;
  let found: { order: number[]; k: number; missingLeft: boolean; s: number[] } | null = null;
  const consider = (gl: number, hl: number, cl: number): [number, boolean, number[]] | null => {
    let res: [number, boolean, number[]] | null = null;
    for (let ml = 0; ml < (mh > 0 ? 2 : 1); ml++) {
      const g1 = ml ? gl + mg : gl;
      const h1 = ml ? hl + mh : hl;
      const c1 = ml ? cl + mc : cl;
      const g2 = G - g1;
      const h2 = H - h1;
      const c2 = C - c1;
      if (c1 < minDataInLeaf || c2 < minDataInLeaf || h1 < minChildWeight || h2 < minChildWeight) continue;
      const gain = leafScore(g1, h1, lambda, alpha) + leafScore(g2, h2, lambda, alpha) - parent;
      if (gain > floor && gain > bestLocal) {
        bestLocal = gain;
        res = [gain, ml === 1, [g1, h1, c1, g2, h2, c2]];
      }
    }
    return res;
  };
  if (oneHot) {
    for (const c of used) {
      const k = o + c * 2;
      const r = consider(hist[k], hist[k + 1], hist[k + 1] * cf);
      if (r) found = { order: [c], k: 1, missingLeft: r[1], s: r[2] };
    }
  } else {
    const ratio = new Map<number, number>();
    for (const c of used) ratio.set(c, hist[o + c * 2] / (hist[o + c * 2 + 1] + p.catSmooth));
    const asc = [...used].sort((a, b) => ratio.get(a)! - ratio.get(b)! || a - b);
    const maxK = Math.min(p.maxCatThreshold, (used.length + 1) >> 1);
    for (let dir = 0; dir < 2; dir++) {
      const order = dir === 0 ? asc : [...asc].reverse();
      let gl = 0;
      let hl = 0;
      let cl = 0;
      for (let i = 0; i < maxK && i < order.length - 1; i++) {
        const k = o + order[i] * 2;
        gl += hist[k];
        hl += hist[k + 1];
        cl = hl * cf;
        const r = consider(gl, hl, cl);
        if (r) found = { order, k: i + 1, missingLeft: r[1], s: r[2] };
      }
    }
  }
  if (found === null) return;
  const set = Int32Array.from(found.order.slice(0, found.k)).sort();
  best.gain = bestLocal;
  best.feature = f;
  best.categorical = true;
  best.bin = 0;
  best.defaultLeft = found.missingLeft;
  best.leftSet = set;
  [best.gl, best.hl, best.cl, best.gr, best.hr, best.cr] = found.s as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
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
