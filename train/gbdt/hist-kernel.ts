/**
 * The histogram kernel for a feature range, shared by the main thread and the histogram workers.
 * Per feature, bins are summed in row order whatever the range, so a histogram is bit-identical
 * for any number of threads.
 */

/** Zero the feature range [f0, f1) of `hist` and add rows idx[start..end) (or all rows when idx is null). */
export function buildHistogramRange(
  hist: Float64Array,
  histBase: number,
  rowBins: Uint8Array,
  numFeatures: number,
  offsets: Int32Array,
  totalBins: number,
  gh: Float64Array,
  idx: Uint32Array | null,
  start: number,
  end: number,
  f0: number,
  f1: number,
): void {
  const lo = histBase + offsets[f0] * 2;
  const hi = histBase + (f1 < numFeatures ? offsets[f1] : totalBins) * 2;
  hist.fill(0, lo, hi);
  const F = numFeatures;
  for (let i = start; i < end; i++) {
    const r = idx === null ? i : idx[i];
    const g = gh[2 * r];
    const h = gh[2 * r + 1];
    const base = r * F;
    for (let f = f0; f < f1; f++) {
      const k = histBase + ((offsets[f] + rowBins[base + f]) << 1);
      hist[k] += g;
      hist[k + 1] += h;
    }
  }
}
