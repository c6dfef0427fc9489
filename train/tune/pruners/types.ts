/** The pruner interface (Optuna's BasePruner), stateless so that any worker can decide. */
import type { Direction, FrozenTrial } from "../space.ts";

/** A pruner decides, from the trial's reported values and the other trials, whether to stop it. */
export interface Pruner {
  readonly name: string;
  readonly options: Record<string, unknown>;
  /**
   * Should `trial` stop after reporting `step`? `others` are the study's other trials (any state)
   * with their intermediate values.
   */
  prune(trial: FrozenTrial, others: readonly FrozenTrial[], step: number, direction: Direction): boolean;
}

/** Value of a trial at `step`, or undefined. */
export function valueAt(trial: FrozenTrial, step: number): number | undefined {
  const v = trial.intermediateValues[String(step)];
  return v === undefined ? undefined : v;
}

/** Optuna's NopPruner. */
export class NopPruner implements Pruner {
  readonly name = "none";
  readonly options = {};
  prune(): boolean {
    return false;
  }
}
