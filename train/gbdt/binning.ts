/**
 * Quantile binning on float32 data (LightGBM/XGBoost "hist" style), uint8 bins.
 *
 * Numeric feature: bin b holds upper[b-1] < x <= upper[b]; the bounds are float32 values taken
 * from the data, so the split "bins 0..b go left" is exactly `x <= upper[b]` in float32, which is
 * what onnxruntime evaluates (float input ⇒ float32 thresholds). The last bin is unbounded.
 * Categorical feature: bin = category code. NaN → the missing bin, numBins (always the last one).
 */
import type { FeatureSpec } from "../../shared/bundle.ts";
import { Rng } from "./rng.ts";

/** How one feature maps to bins. */
export interface BinMapper {
  categorical: boolean;
  /** Number of value bins (the missing bin is index numBins). */
  numBins: number;
  /** Upper bound of each value bin, float32 (numeric only; last = +Infinity). */
  upper: Float32Array;
}

/** A binned dataset: column-major and row-major uint8 bins. */
export interface BinnedData {
  numRows: number;
  numFeatures: number;
  mappers: BinMapper[];
  /** Column-major: feature f's bins are colBins[f*numRows .. (f+1)*numRows). */
  colBins: Uint8Array;
  /**
   * Row-major: row r's bins are rowBins[r*rowStride .. r*rowStride+numFeatures) (histogram
   * building); rows are padded to a multiple of 4 bytes (rowStrideOf) so the kernel reads 4 bins
   * per 32-bit load.
   */
  rowBins: Uint8Array;
  rowStride: number;
  /** Histogram offset (in bins) of each feature; feature f owns numBins+1 slots. */
  offsets: Int32Array;
  totalBins: number;
}

/** Options of {@link buildBinMappers}. */
export interface BinningOptions {
  maxBins: number;
  /** Rows sampled to find the bounds (LightGBM's bin_construct_sample_cnt). */
  sampleRows: number;
  seed: number;
}

/** Bounds of one numeric feature from (sampled) float32 values. */
export function numericMapper(values: Float32Array, maxBins: number): BinMapper {
  let n = 0;
  const sorted = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) if (!Number.isNaN(values[i])) sorted[n++] = values[i];
  const v = sorted.subarray(0, n).sort();
  // Distinct values with their counts.
  const distinct: number[] = [];
  const counts: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i === 0 || v[i] !== v[i - 1]) {
      distinct.push(v[i]);
      counts.push(1);
    } else counts[counts.length - 1]++;
  }
  const upper: number[] = [];
  if (distinct.length <= maxBins) {
    for (const d of distinct) upper.push(d);
  } else {
    // Greedy equal-frequency: close a bin once it reaches the remaining rows / remaining bins.
    let remaining = n;
    let binsLeft = maxBins;
    let acc = 0;
    for (let i = 0; i < distinct.length; i++) {
      acc += counts[i];
      const target = remaining / binsLeft;
      const isLast = i === distinct.length - 1;
      if (!isLast && (acc >= target || distinct.length - 1 - i < binsLeft)) {
        upper.push(distinct[i]);
        remaining -= acc;
        acc = 0;
        binsLeft--;
        if (binsLeft === 1) break;
      }
    }
    upper.push(distinct[distinct.length - 1]);
  }
  if (upper.length === 0) upper.push(0);
  const u = Float32Array.from(upper);
  u[u.length - 1] = Number.POSITIVE_INFINITY;
  return { categorical: false, numBins: u.length, upper: u };
}

/** Bin mappers of every feature, from a seeded row sample. */
export function buildBinMappers(
  columns: readonly Float32Array[],
  features: readonly FeatureSpec[],
  numRows: number,
  options: BinningOptions,
): BinMapper[] {
  const sample =
    numRows > options.sampleRows ? new Rng(options.seed).sample(numRows, options.sampleRows) : null;
  const values = new Float32Array(sample ? sample.length : numRows);
  return features.map((spec, f) => {
    if (spec.type === "categorical") {
      return {
        categorical: true,
        numBins: Math.max(1, spec.categories?.length ?? 0),
        upper: new Float32Array(0),
      };
    }
    const col = columns[f];
    if (sample) for (let i = 0; i < sample.length; i++) values[i] = col[sample[i]];
    return numericMapper(sample ? values : col, options.maxBins);
  });
}

/** Bin of a float32 value under a mapper. */
export function binOf(mapper: BinMapper, x: number): number {
  if (Number.isNaN(x)) return mapper.numBins;
  if (mapper.categorical) return x >= 0 && x < mapper.numBins ? x : mapper.numBins;
  const u = mapper.upper;
  let lo = 0;
  let hi = u.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x <= u[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Bins of one numeric column (its own function so the JIT optimises it on its own). */
function binNumeric(
  col: Float32Array,
  u: Float32Array,
  out: Uint8Array,
  base: number,
  n: number,
  missing: number,
): void {
  for (let r = 0; r < n; r++) {
    const x = col[r];
    let b = 0;
    b = u[b + 127] < x ? b + 128 : b;
    b = u[b + 63] < x ? b + 64 : b;
    b = u[b + 31] < x ? b + 32 : b;
    b = u[b + 15] < x ? b + 16 : b;
    b = u[b + 7] < x ? b + 8 : b;
    b = u[b + 3] < x ? b + 4 : b;
    b = u[b + 1] < x ? b + 2 : b;
    b = u[b] < x ? b + 1 : b;
    out[base + r] = Number.isNaN(x) ? missing : b;
  }
}

/** Bytes per row of `rowBins`: the feature count rounded up to a multiple of 4. */
export function rowStrideOf(numFeatures: number): number {
  return (numFeatures + 3) & ~3;
}

/** Bin every row of every feature. */
export function binColumns(
  columns: readonly Float32Array[],
  mappers: BinMapper[],
  numRows: number,
): BinnedData {
  const F = mappers.length;
  const colBins = new Uint8Array(new SharedArrayBuffer(Math.max(4, F * numRows)), 0, F * numRows);
  // Shared (like colBins) so that the shard workers read them without a copy.
  const S = rowStrideOf(F);
  const rowBins = new Uint8Array(new SharedArrayBuffer(Math.max(4, S * numRows)));
  const offsets = new Int32Array(F);
  let total = 0;
  for (let f = 0; f < F; f++) {
    offsets[f] = total;
    total += mappers[f].numBins + 1;
    const m = mappers[f];
    const col = columns[f];
    const base = f * numRows;
    if (m.categorical) {
      const nb = m.numBins;
      for (let r = 0; r < numRows; r++) {
        const x = col[r];
        const b = x >= 0 && x < nb ? x : nb; // NaN fails both comparisons → missing bin
        colBins[base + r] = b;
      }
    } else {
      // Branchless search over the bounds padded to 256 with +∞: bin = #bounds < x. The branchy
      // binary search cost ~50 ns per value (mispredictions); this is several times faster.
      const u = new Float32Array(256).fill(Number.POSITIVE_INFINITY);
      u.set(m.upper);
      binNumeric(col, u, colBins, base, numRows, m.numBins);
    }
  }
  // Transpose in blocks of rows: writing row-major straight from the per-feature loop strides
  // through the whole matrix once per feature and was the slowest part of binning.
  const BLOCK = 4096;
  for (let r0 = 0; r0 < numRows; r0 += BLOCK) {
    const r1 = Math.min(numRows, r0 + BLOCK);
    for (let f = 0; f < F; f++) {
      const base = f * numRows;
      for (let r = r0; r < r1; r++) rowBins[r * S + f] = colBins[base + r];
    }
  }
  return { numRows, numFeatures: F, mappers, colBins, rowBins, rowStride: S, offsets, totalBins: total };
}
