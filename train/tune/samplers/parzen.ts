/**
 * Parzen estimators for TPE, after Optuna's `_ParzenEstimator` (optuna/samplers/_tpe/
 * parzen_estimator.py, v3.x–v4.x): a mixture with one kernel per observation plus a prior kernel,
 * truncated Gaussian kernels for numeric parameters (in log space for log parameters, as discrete
 * probability masses for stepped ones), and categorical kernels that put weight 1 on the observed
 * choice on top of a uniform prior share.
 *
 * Numeric kernel that follows a written algorithm; kept in one file on purpose.
 */
import { logSumExp, normalCdf, normalLogPdf, normalPpf, type Rng } from "../random.ts";
import type { Distribution, ParamValue } from "../space.ts";
import { snap } from "../space.ts";

/** Optuna's defaults for the estimator. */
export interface ParzenOptions {
  priorWeight: number;
  considerMagicClip: boolean;
  considerEndpoints: boolean;
  multivariate: boolean;
  /** Multivariate bandwidth scale (Optuna: 0.2). */
  bandwidthFactor?: number;
}

/** Parameter in the estimator's internal (transformed) coordinates. */
interface NumericDim {
  kind: "numeric";
  name: string;
  dist: Extract<Distribution, { type: "float" | "int" }>;
  /** Bounds in internal space (widened by half a step for discrete parameters). */
  low: number;
  high: number;
  /** Step in internal space, or 0 for a continuous parameter. */
  step: number;
  log: boolean;
  mus: Float64Array;
  sigmas: Float64Array;
  /** log of the kernel's mass inside [low, high]. */
  logZ: Float64Array;
}

interface CategoricalDim {
  kind: "categorical";
  name: string;
  choices: readonly ParamValue[];
  /** Kernel × choice log-probabilities, row-major. */
  logP: Float64Array;
  p: Float64Array;
}

type Dim = NumericDim | CategoricalDim;

/** Optuna's `default_weights`: flat for the newest 25 observations, a linear ramp before them. */
export function defaultWeights(n: number): Float64Array {
  const w = new Float64Array(n);
  if (n < 25) {
    w.fill(1);
    return w;
  }
  const ramp = n - 25;
  for (let i = 0; i < ramp; i++) w[i] = ramp === 1 ? 1 / n : 1 / n + ((1 - 1 / n) * i) / (ramp - 1);
  for (let i = ramp; i < n; i++) w[i] = 1;
  return w;
}

/** Map a parameter value to internal coordinates. */
export function toInternal(d: Distribution, value: ParamValue): number {
  if (d.type === "categorical") return d.choices.indexOf(value);
  return d.log ? Math.log(value as number) : (value as number);
}

/** Map an internal coordinate back to a legal parameter value. */
export function fromInternal(d: Distribution, x: number): ParamValue {
  if (d.type === "categorical") return d.choices[Math.max(0, Math.min(d.choices.length - 1, Math.round(x)))];
  return snap(d, d.log ? Math.exp(x) : x);
}

/** log(Φ(b) − Φ(a)) for a ≤ b, accurate in either tail. */
function logMass(a: number, b: number): number {
  // Reflect into the lower tail, where Φ is computed with relative (not absolute) accuracy.
  const diff = a > 0 ? normalCdf(-a) - normalCdf(-b) : normalCdf(b) - normalCdf(a);
  if (diff > 1e-300) return Math.log(diff);
  const mid = Math.max(Math.abs(a), Math.abs(b)) === Math.abs(a) ? b : a;
  return normalLogPdf(mid) + Math.log(Math.max(b - a, 1e-300));
}

/** A fitted mixture over one or more parameters. */
export class ParzenEstimator {
  readonly #dims: Dim[];
  readonly #logWeights: Float64Array;
  readonly #weights: Float64Array;

  /**
   * @param observations one row per observed trial, values in parameter order (external values)
   * @param weights observation weights (before the prior is appended)
   */
  constructor(
    names: readonly string[],
    dists: readonly Distribution[],
    observations: readonly ParamValue[][],
    weights: Float64Array,
    options: ParzenOptions,
  ) {
    const n = observations.length;
    const nKernels = n + 1;
    this.#weights = new Float64Array(nKernels);
    let total = 0;
    for (let i = 0; i < n; i++) {
      this.#weights[i] = weights[i];
      total += weights[i];
    }
    this.#weights[n] = n === 0 ? 1 : options.priorWeight;
    total += this.#weights[n];
    this.#logWeights = new Float64Array(nKernels);
    for (let k = 0; k < nKernels; k++) {
      this.#weights[k] /= total;
      this.#logWeights[k] = Math.log(this.#weights[k]);
    }
    this.#dims = dists.map((d, j) =>
      d.type === "categorical"
        ? categoricalDim(names[j], d.choices, observations, j, options.priorWeight)
        : numericDim(names[j], d, observations, j, options, dists.length),
    );
  }

  /** Draw `count` parameter sets from the mixture (one kernel per set, shared by all parameters). */
  sample(rng: Rng, count: number): ParamValue[][] {
    const out: ParamValue[][] = [];
    for (let s = 0; s < count; s++) {
      const k = rng.choice(this.#weights);
      const row: ParamValue[] = [];
      for (const dim of this.#dims) {
        if (dim.kind === "categorical") {
          const c = dim.choices.length;
          row.push(dim.choices[rng.choice(dim.p.subarray(k * c, (k + 1) * c))]);
        } else {
          row.push(
            fromInternal(dim.dist, sampleTruncated(rng, dim.mus[k], dim.sigmas[k], dim.low, dim.high)),
          );
        }
      }
      out.push(row);
    }
    return out;
  }

  /** log density (or mass) of each parameter set under the mixture. */
  logPdf(rows: readonly ParamValue[][]): Float64Array {
    const nKernels = this.#weights.length;
    const out = new Float64Array(rows.length);
    const terms = new Float64Array(nKernels);
    for (let r = 0; r < rows.length; r++) {
      terms.set(this.#logWeights);
      for (let j = 0; j < this.#dims.length; j++) {
        const dim = this.#dims[j];
        if (dim.kind === "categorical") {
          const c = dim.choices.length;
          const idx = dim.choices.indexOf(rows[r][j]);
          for (let k = 0; k < nKernels; k++) terms[k] += dim.logP[k * c + idx];
        } else {
          const x = toInternal(dim.dist, rows[r][j]);
          for (let k = 0; k < nKernels; k++) terms[k] += kernelLogPdf(dim, k, x);
        }
      }
      out[r] = logSumExp(terms);
    }
    return out;
  }
}

function kernelLogPdf(dim: NumericDim, k: number, x: number): number {
  const mu = dim.mus[k];
  const sigma = dim.sigmas[k];
  if (dim.step > 0) {
    const lo = Math.max(x - dim.step / 2, dim.low);
    const hi = Math.min(x + dim.step / 2, dim.high);
    return logMass((lo - mu) / sigma, (hi - mu) / sigma) - dim.logZ[k];
  }
  return normalLogPdf((x - mu) / sigma) - Math.log(sigma) - dim.logZ[k];
}

/** Inverse-CDF draw from N(mu, sigma²) truncated to [low, high]. */
function sampleTruncated(rng: Rng, mu: number, sigma: number, low: number, high: number): number {
  const a = (low - mu) / sigma;
  const b = (high - mu) / sigma;
  let z: number;
  if (a > 0) {
    // Upper tail: sample the mirrored lower tail for precision.
    const pa = normalCdf(-b);
    const pb = normalCdf(-a);
    z = -normalPpf(pa + (pb - pa) * rng.next());
  } else {
    const pa = normalCdf(a);
    const pb = normalCdf(b);
    z = normalPpf(pa + (pb - pa) * rng.next());
  }
  if (!Number.isFinite(z)) z = rng.uniform(a, b);
  return Math.min(high, Math.max(low, mu + sigma * z));
}

function numericDim(
  name: string,
  d: Extract<Distribution, { type: "float" | "int" }>,
  observations: readonly ParamValue[][],
  j: number,
  options: ParzenOptions,
  nParams: number,
): NumericDim {
  const log = d.log === true;
  const rawStep = d.type === "int" ? (d.step ?? 1) : d.step;
  // Optuna widens discrete bounds by half a step so every grid value gets an equal share of mass.
  let low: number;
  let high: number;
  let step = 0;
  if (log) {
    low = d.type === "int" ? Math.log(d.low - 0.5) : Math.log(d.low);
    high = d.type === "int" ? Math.log(d.high + 0.5) : Math.log(d.high);
  } else if (rawStep !== undefined) {
    low = d.low - rawStep / 2;
    high = d.high + rawStep / 2;
    step = rawStep;
  } else {
    low = d.low;
    high = d.high;
  }
  const n = observations.length;
  const range = high - low;
  const mus = new Float64Array(n + 1);
  const sigmas = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) mus[i] = Math.min(high, Math.max(low, toInternal(d, observations[i][j])));
  mus[n] = 0.5 * (low + high);
  if (options.multivariate) {
    const sigma = (options.bandwidthFactor ?? 0.2) * Math.max(n, 1) ** (-1 / (nParams + 4)) * range;
    sigmas.fill(sigma, 0, n);
  } else {
    // Distance to the farther neighbour among the sorted means (prior included), bounds as endpoints.
    const order = Array.from({ length: n + 1 }, (_, i) => i).sort((p, q) => mus[p] - mus[q] || p - q);
    const sorted = [low, ...order.map((i) => mus[i]), high];
    const sortedSigmas = new Float64Array(n + 1);
    for (let i = 1; i <= n + 1; i++)
      sortedSigmas[i - 1] = Math.max(sorted[i] - sorted[i - 1], sorted[i + 1] - sorted[i]);
    if (!options.considerEndpoints && sorted.length >= 4) {
      sortedSigmas[0] = sorted[2] - sorted[1];
      sortedSigmas[n] = sorted[sorted.length - 2] - sorted[sorted.length - 3];
    }
    for (let r = 0; r <= n; r++) sigmas[order[r]] = sortedSigmas[r];
  }
  // Optuna's "magic clip": no kernel narrower than range / min(100, 1 + kernels) nor wider than the range.
  const minSigma = options.considerMagicClip ? range / Math.min(100, 1 + (n + 1)) : 1e-12;
  for (let i = 0; i < n; i++) sigmas[i] = Math.min(range, Math.max(minSigma, sigmas[i]));
  sigmas[n] = range;
  const logZ = new Float64Array(n + 1);
  for (let k = 0; k <= n; k++) logZ[k] = logMass((low - mus[k]) / sigmas[k], (high - mus[k]) / sigmas[k]);
  return { kind: "numeric", name, dist: d, low, high, step, log, mus, sigmas, logZ };
}

function categoricalDim(
  name: string,
  choices: readonly ParamValue[],
  observations: readonly ParamValue[][],
  j: number,
  priorWeight: number,
): CategoricalDim {
  const n = observations.length;
  const c = choices.length;
  const p = new Float64Array((n + 1) * c).fill(priorWeight / (n + 1));
  for (let i = 0; i < n; i++) {
    const idx = choices.indexOf(observations[i][j]);
    if (idx >= 0) p[i * c + idx] += 1;
  }
  const logP = new Float64Array(p.length);
  for (let k = 0; k <= n; k++) {
    let s = 0;
    for (let i = 0; i < c; i++) s += p[k * c + i];
    for (let i = 0; i < c; i++) {
      p[k * c + i] /= s;
      logP[k * c + i] = Math.log(p[k * c + i]);
    }
  }
  return { kind: "categorical", name, choices, logP, p };
}
