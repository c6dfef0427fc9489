/**
 * Tree-structured Parzen Estimator (Bergstra et al., NeurIPS 2011), following Optuna's TPESampler
 * (optuna/samplers/_tpe/sampler.py, v3.1–v4.x) and its defaults: random sampling for the first
 * `nStartupTrials`, a "good" set of the best γ(n) = min(⌈0.1·n⌉, 25) finished trials, Parzen
 * estimators l(x) over the good set and g(x) over the rest, `nEiCandidates` draws from l(x) and the
 * one that maximises l(x)/g(x) (∝ expected improvement) wins. `multivariate` fits one joint
 * estimator over all parameters (Falkner et al. 2018, BOHB) instead of one per parameter.
 */
import { Rng } from "../random.ts";
import type { Distribution, FrozenTrial, ParamValue, SearchSpace } from "../space.ts";
import { contains, isSingle } from "../space.ts";
import { defaultWeights, ParzenEstimator, type ParzenOptions } from "./parzen.ts";
import { sampleSpaceUniform } from "./random.ts";
import type { SampleContext, Sampler } from "./types.ts";

/** Optuna's `default_gamma`. */
export function defaultGamma(n: number): number {
  return Math.min(Math.ceil(0.1 * n), 25);
}

/** Hyperopt's gamma, for comparison: min(⌈0.25·√n⌉, 25). */
export function hyperoptGamma(n: number): number {
  return Math.min(Math.ceil(0.25 * Math.sqrt(n)), 25);
}

/**
 * arbor's TPE settings (what `arbor tune --sampler tpe` uses): Optuna's algorithm with a joint
 * (multivariate) estimator and the constant liar, as Optuna 5.0 defaults to, a good set of the
 * best 20% instead of 10%, and multivariate bandwidth 0.12 instead of 0.2. Chosen on bench/tune.ts (Branin, Hartmann-6) over
 * seeds 0–99 and 1000–1099, where they beat Optuna's defaults at 25 and 50 trials on both functions.
 */
export const ARBOR_TPE_DEFAULTS: Readonly<TpeOptions> = Object.freeze({
  multivariate: true,
  // Parallel and distributed trials: count running trials as bad so workers spread out (Optuna 5's
  // default). No effect on a sequential study, where no other trial is running at sampling time.
  constantLiar: true,
  gamma: 0.2,
  bandwidthFactor: 0.12,
});

/** TPE options; every default is Optuna's (v3.1–v4.x). */
export interface TpeOptions {
  seed?: number;
  nStartupTrials?: number;
  nEiCandidates?: number;
  multivariate?: boolean;
  /** Count running trials as bad ones, so parallel workers spread out (Optuna's constant_liar). */
  constantLiar?: boolean;
  priorWeight?: number;
  considerMagicClip?: boolean;
  considerEndpoints?: boolean;
  gamma?: "default" | "hyperopt" | number;
  /** Multivariate kernel bandwidth scale (Optuna: 0.2). */
  bandwidthFactor?: number;
}

interface Scored {
  trial: FrozenTrial;
  /** Lexicographic loss: complete trials (rank 0) before pruned ones (ranked by how far they got). */
  rank: number;
  loss: number;
}

/** Optuna's TPESampler. */
export class TpeSampler implements Sampler {
  readonly name = "tpe";
  readonly options: Required<TpeOptions>;
  readonly #parzen: ParzenOptions;

  constructor(options: TpeOptions = {}) {
    this.options = {
      seed: options.seed ?? 0,
      nStartupTrials: options.nStartupTrials ?? 10,
      nEiCandidates: options.nEiCandidates ?? 24,
      multivariate: options.multivariate ?? false,
      constantLiar: options.constantLiar ?? false,
      priorWeight: options.priorWeight ?? 1,
      considerMagicClip: options.considerMagicClip ?? true,
      considerEndpoints: options.considerEndpoints ?? false,
      gamma: options.gamma ?? "default",
      bandwidthFactor: options.bandwidthFactor ?? 0.2,
    };
    this.#parzen = {
      priorWeight: this.options.priorWeight,
      considerMagicClip: this.options.considerMagicClip,
      considerEndpoints: this.options.considerEndpoints,
      multivariate: this.options.multivariate,
      bandwidthFactor: this.options.bandwidthFactor,
    };
  }

  sample(space: SearchSpace, trials: readonly FrozenTrial[], ctx: SampleContext): Record<string, ParamValue> {
    const rng = new Rng(this.options.seed, ctx.trialNumber, 0x545045);
    const scored = this.#score(trials, ctx);
    const finished = scored.filter((s) => s.trial.state !== "running").length;
    if (finished < this.options.nStartupTrials) return sampleSpaceUniform(space, rng);

    const out: Record<string, ParamValue> = {};
    const names: string[] = [];
    for (const [name, d] of Object.entries(space)) {
      if (isSingle(d)) out[name] = d.type === "categorical" ? d.choices[0] : d.low;
      else names.push(name);
    }
    if (names.length === 0) return out;
    if (this.options.multivariate) {
      Object.assign(out, this.#sampleGroup(names, space, scored, rng));
    } else {
      for (const name of names) Object.assign(out, this.#sampleGroup([name], space, scored, rng));
    }
    return out;
  }

  /** Sample the parameters `names` jointly from l(x)/g(x). */
  #sampleGroup(names: string[], space: SearchSpace, scored: Scored[], rng: Rng): Record<string, ParamValue> {
    const dists: Distribution[] = names.map((n) => space[n]);
    // Only trials that hold a legal value for every parameter of the group are observations.
    const usable = scored.filter((s) =>
      names.every((n, j) => n in s.trial.params && contains(dists[j], s.trial.params[n])),
    );
    const g0 = this.options.gamma;
    const gamma =
      g0 === "hyperopt"
        ? hyperoptGamma
        : typeof g0 === "number"
          ? (n: number) => Math.min(Math.ceil(g0 * n), 25)
          : defaultGamma;
    const nBelow = gamma(usable.length);
    const below = usable.slice(0, nBelow).sort((a, b) => a.trial.number - b.trial.number);
    const above = usable.slice(nBelow).sort((a, b) => a.trial.number - b.trial.number);
    const rows = (set: Scored[]) => set.map((s) => names.map((n) => s.trial.params[n]));
    const l = new ParzenEstimator(names, dists, rows(below), defaultWeights(below.length), this.#parzen);
    const g = new ParzenEstimator(names, dists, rows(above), defaultWeights(above.length), this.#parzen);
    const candidates = l.sample(rng, this.options.nEiCandidates);
    const ll = l.logPdf(candidates);
    const lg = g.logPdf(candidates);
    let best = 0;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < candidates.length; i++) {
      const s = ll[i] - lg[i];
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    const out: Record<string, ParamValue> = {};
    names.forEach((n, j) => {
      out[n] = candidates[best][j];
    });
    return out;
  }

  /** Finished trials ordered best first, as Optuna's `_split_trials` sees them. */
  #score(trials: readonly FrozenTrial[], ctx: SampleContext): Scored[] {
    const sign = ctx.direction === "maximize" ? -1 : 1;
    const out: Scored[] = [];
    for (const t of trials) {
      if (t.state === "complete" && t.value !== null && Number.isFinite(t.value)) {
        out.push({ trial: t, rank: Number.NEGATIVE_INFINITY, loss: sign * t.value });
      } else if (t.state === "pruned") {
        // A pruned trial ranks after every complete one; among pruned, the one that ran longer first.
        const steps = Object.keys(t.intermediateValues).map(Number);
        if (steps.length === 0) {
          out.push({ trial: t, rank: Number.POSITIVE_INFINITY, loss: 0 });
        } else {
          const last = Math.max(...steps);
          const v = t.intermediateValues[String(last)];
          out.push({ trial: t, rank: -last, loss: Number.isFinite(v) ? sign * v : Number.POSITIVE_INFINITY });
        }
      } else if (t.state === "running" && this.options.constantLiar && t.number !== ctx.trialNumber) {
        out.push({ trial: t, rank: Number.POSITIVE_INFINITY, loss: Number.POSITIVE_INFINITY });
      }
    }
    return out.sort((a, b) => a.rank - b.rank || a.loss - b.loss || a.trial.number - b.trial.number);
  }
}
