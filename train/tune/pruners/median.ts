/**
 * Optuna's MedianPruner (PercentilePruner at 50): after `nStartupTrials` complete trials and
 * `nWarmupSteps` steps, stop a trial whose best value so far is worse than the median of the
 * complete trials' values at the same step.
 */
import type { Direction, FrozenTrial } from "../space.ts";
import { type Pruner, valueAt } from "./types.ts";

/** Options; every default is Optuna's. */
export interface PercentilePrunerOptions {
  percentile?: number;
  nStartupTrials?: number;
  nWarmupSteps?: number;
  intervalSteps?: number;
  nMinTrials?: number;
}

/** Linear-interpolated percentile (numpy's default). */
export function percentile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = (q / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Optuna's PercentilePruner; {@link MedianPruner} is the 50th percentile. */
export class PercentilePruner implements Pruner {
  readonly name: string = "percentile";
  readonly options: Required<PercentilePrunerOptions>;

  constructor(options: PercentilePrunerOptions = {}) {
    this.options = {
      percentile: options.percentile ?? 50,
      nStartupTrials: options.nStartupTrials ?? 5,
      nWarmupSteps: options.nWarmupSteps ?? 0,
      intervalSteps: options.intervalSteps ?? 1,
      nMinTrials: options.nMinTrials ?? 1,
    };
  }

  prune(trial: FrozenTrial, others: readonly FrozenTrial[], step: number, direction: Direction): boolean {
    const o = this.options;
    const complete = others.filter((t) => t.state === "complete" && t.number !== trial.number);
    if (complete.length < o.nStartupTrials) return false;
    if (step <= o.nWarmupSteps) return false;
    if ((step - o.nWarmupSteps) % o.intervalSteps !== 0) return false;
    const minimize = direction === "minimize";
    let best = minimize ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
    for (const [s, v] of Object.entries(trial.intermediateValues)) {
      if (Number(s) > step) continue;
      if (Number.isNaN(v)) return true;
      best = minimize ? Math.min(best, v) : Math.max(best, v);
    }
    const atStep: number[] = [];
    for (const t of complete) {
      const v = valueAt(t, step);
      if (v !== undefined && !Number.isNaN(v)) atStep.push(v);
    }
    if (atStep.length < o.nMinTrials) return false;
    const q = minimize ? o.percentile : 100 - o.percentile;
    const threshold = percentile(atStep, q);
    return minimize ? best > threshold : best < threshold;
  }
}

/** Optuna's MedianPruner. */
export class MedianPruner extends PercentilePruner {
  override readonly name = "median";
  constructor(options: Omit<PercentilePrunerOptions, "percentile"> = {}) {
    super({ ...options, percentile: 50 });
  }
}
