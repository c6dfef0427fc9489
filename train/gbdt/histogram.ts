/**
 * Gradient histograms: for a node, per feature and bin, (Σg, Σh) interleaved in one Float64Array
 * of 2 × totalBins. Built from the node's row indices over the row-major uint8 bins (one pass over
 * the rows touches all F bins of a row in one cache line), with gradients and hessians interleaved
 * in one array `gh` (one cache line per row instead of two). The sibling comes from the
 * subtraction trick: sibling = parent − built child. The kernel is in hist-kernel.ts (shared with
 * the workers); the builder, single- or multi-threaded, in shards.ts.
 *
 * Like LightGBM (≥ v3), bins hold no row count: counts are estimated as h × (rows / Σh) of the
 * node where min_data_in_leaf needs them; partitions count rows exactly.
 *
 * Measured on 200k × 28, 2-core VM, Bun 1.4 (10 builds, ms): (g, h, count) with separate g/h
 * arrays 94; (g, h) with separate arrays 78; (g, h) with interleaved gh 65-75; column-major
 * per-feature loop with ordered gradients 77-220; Float32 histogram 91-133.
 */
import { buildHistogramRange } from "./hist-kernel.ts";

/** Build a histogram of rows idx[start..end) over every feature into `hist` (zeroed here). */
export function buildHistogram(
  hist: Float64Array,
  rowBins: Uint8Array,
  numFeatures: number,
  offsets: Int32Array,
  gh: Float64Array,
  idx: Uint32Array,
  start: number,
  end: number,
): void {
  const totalBins = hist.length >> 1;
  buildHistogramRange(hist, 0, rowBins, numFeatures, offsets, totalBins, gh, idx, start, end, 0, numFeatures);
}

/** `into = parent − child`, element-wise (may alias parent). */
export function subtractHistogram(into: Float64Array, parent: Float64Array, child: Float64Array): void {
  for (let i = 0; i < into.length; i++) into[i] = parent[i] - child[i];
}
