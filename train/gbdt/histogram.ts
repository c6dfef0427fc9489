/**
 * Gradient histograms: for a node, per feature and bin, (Σg, Σh, count) interleaved in one
 * Float64Array of 3 × totalBins. Built from the node's row indices over the row-major uint8 bins
 * (one pass over the rows touches all F bins of a row in one cache line), then the sibling comes
 * from the subtraction trick: sibling = parent − built child.
 *
 * Measured (flights 160k × 8, 2-core VM, Bun 1.4): row-major building is ~2× faster than the
 * column-major per-feature loop with ordered gradients, because the row gather is shared by all
 * features. Workers were not kept: see train.ts for the numbers.
 */

/** Build a histogram of rows idx[start..end) into `hist` (zeroed here). */
export function buildHistogram(
  hist: Float64Array,
  rowBins: Uint8Array,
  numFeatures: number,
  offsets: Int32Array,
  grad: Float64Array,
  hess: Float64Array,
  idx: Uint32Array,
  start: number,
  end: number,
): void {
  hist.fill(0);
  const F = numFeatures;
  for (let i = start; i < end; i++) {
    const r = idx[i];
    const g = grad[r];
    const h = hess[r];
    const base = r * F;
    for (let f = 0; f < F; f++) {
      const k = (offsets[f] + rowBins[base + f]) * 3;
      hist[k] += g;
      hist[k + 1] += h;
      hist[k + 2] += 1;
    }
  }
}

/** Build the histogram of every row 0..n-1 (the root without subsampling: sequential access). */
export function buildHistogramAll(
  hist: Float64Array,
  rowBins: Uint8Array,
  numFeatures: number,
  offsets: Int32Array,
  grad: Float64Array,
  hess: Float64Array,
  n: number,
): void {
  hist.fill(0);
  const F = numFeatures;
  for (let r = 0; r < n; r++) {
    const g = grad[r];
    const h = hess[r];
    const base = r * F;
    for (let f = 0; f < F; f++) {
      const k = (offsets[f] + rowBins[base + f]) * 3;
      hist[k] += g;
      hist[k + 1] += h;
      hist[k + 2] += 1;
    }
  }
}

/** `into = parent − child`, element-wise (may alias parent). */
export function subtractHistogram(into: Float64Array, parent: Float64Array, child: Float64Array): void {
  for (let i = 0; i < into.length; i++) into[i] = parent[i] - child[i];
}
