/** The sampler interface (Optuna's BaseSampler, reduced to what a stateless, distributed study needs). */
import type { Direction, FrozenTrial, ParamValue, SearchSpace } from "../space.ts";

/** What a sampler is told about the trial it samples for. */
export interface SampleContext {
  /** The new trial's number; samplers derive their random stream from (seed, number). */
  trialNumber: number;
  direction: Direction;
}

/**
 * A sampler proposes parameters from the study's history alone. It keeps no state between calls,
 * so any process that reads the same trials from the registry proposes the same point.
 */
export interface Sampler {
  readonly name: string;
  /** Options as stored with the study (for `studies show` and for resuming). */
  readonly options: Record<string, unknown>;
  sample(space: SearchSpace, trials: readonly FrozenTrial[], ctx: SampleContext): Record<string, ParamValue>;
  /** True when the sampler has nothing left to propose (grid search done). */
  isExhausted?(space: SearchSpace, trials: readonly FrozenTrial[]): boolean;
}
