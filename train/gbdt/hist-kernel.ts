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
  // Two rows per iteration: their loads overlap. Per bin, rows are still added in order i, i+1, so
  // the sums are bit-identical to the one-row loop (measured 6.1-7.5 → 5.2-5.6 ms for 180k × 28).
  let i = start;
  for (; i + 1 < end; i += 2) {
    const r0 = idx === null ? i : idx[i];
    const r1 = idx === null ? i + 1 : idx[i + 1];
    const g0 = gh[2 * r0];
    const h0 = gh[2 * r0 + 1];
    const g1 = gh[2 * r1];
    const h1 = gh[2 * r1 + 1];
    const b0 = r0 * F;
    const b1 = r1 * F;
    for (let f = f0; f < f1; f++) {
      const o = histBase + (offsets[f] << 1);
      const k0 = o + (rowBins[b0 + f] << 1);
      const k1 = o + (rowBins[b1 + f] << 1);
      hist[k0] += g0;
      hist[k0 + 1] += h0;
      hist[k1] += g1;
      hist[k1 + 1] += h1;
    }
  }
  for (; i < end; i++) {
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
