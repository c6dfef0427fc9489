/**
 * An in-memory study loop: sample, evaluate, record. Used by the sampler benchmark and tests on
 * closed-form objectives; real studies go through train/tune/study.ts and the registry.
 */
import type { Sampler } from "./samplers/types.ts";
import type { Direction, FrozenTrial, ParamValue, SearchSpace } from "./space.ts";

/** Run `nTrials` sequential trials of `objective` and return every trial. */
export function optimizeInMemory(
  objective: (params: Record<string, ParamValue>) => number,
  space: SearchSpace,
  sampler: Sampler,
  nTrials: number,
  direction: Direction = "minimize",
): FrozenTrial[] {
  const trials: FrozenTrial[] = [];
  for (let number = 0; number < nTrials; number++) {
    const params = sampler.sample(space, trials, { trialNumber: number, direction });
    const value = objective(params);
    trials.push({ number, state: "complete", params, value, intermediateValues: {} });
  }
  return trials;
}

/** Best value after each trial (running minimum or maximum). */
export function bestSoFar(trials: readonly FrozenTrial[], direction: Direction = "minimize"): number[] {
  const out: number[] = [];
  let best = direction === "minimize" ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  for (const t of trials) {
    const v = t.value ?? Number.NaN;
    if (Number.isFinite(v) && (direction === "minimize" ? v < best : v > best)) best = v;
    out.push(best);
  }
  return out;
}
