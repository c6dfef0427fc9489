/**
 * Asynchronous successive halving (Li et al., MLSys 2020, "A System for Massively Parallel
 * Hyperparameter Tuning"), as Optuna's SuccessiveHalvingPruner: rung r sits at step
 * minResource · η^(minEarlyStoppingRate + r); a trial reaching a rung continues only if its value
 * there is within the best 1/η of every trial that reached that rung (running ones included), and
 * the first η − 1 trials at a rung continue only if they are the best so far.
 */
import type { Direction, FrozenTrial } from "../space.ts";
import type { Pruner } from "./types.ts";

/** Options; every default is Optuna's. */
export interface AshaOptions {
  /** Steps of the first rung; "auto": 1/100 of the steps of the first finished trial (≥ 1). */
  minResource?: number | "auto";
  reductionFactor?: number;
  minEarlyStoppingRate?: number;
}

/** Optuna's SuccessiveHalvingPruner. */
export class AshaPruner implements Pruner {
  readonly name = "asha";
  readonly options: Required<AshaOptions>;

  constructor(options: AshaOptions = {}) {
    this.options = {
      minResource: options.minResource ?? "auto",
      reductionFactor: options.reductionFactor ?? 4,
      minEarlyStoppingRate: options.minEarlyStoppingRate ?? 0,
    };
  }

  #minResource(others: readonly FrozenTrial[]): number | null {
    if (this.options.minResource !== "auto") return this.options.minResource;
    const done = others.filter((t) => t.state === "complete").sort((a, b) => a.number - b.number)[0];
    if (done === undefined) return null;
    const steps = Object.keys(done.intermediateValues).map(Number);
    if (steps.length === 0) return null;
    return Math.max(1, Math.ceil(Math.max(...steps) / 100));
  }

  prune(trial: FrozenTrial, others: readonly FrozenTrial[], step: number, direction: Direction): boolean {
    const minResource = this.#minResource(others);
    if (minResource === null) return false;
    const eta = this.options.reductionFactor;
    // Only decide when the trial has just reached a rung.
    let rung = -1;
    for (let r = 0; ; r++) {
      const at = minResource * eta ** (this.options.minEarlyStoppingRate + r);
      if (at > step) break;
      if (at === step) {
        rung = r;
        break;
      }
    }
    if (rung < 0) return false;
    const value = trial.intermediateValues[String(step)];
    if (value === undefined) return false;
    if (Number.isNaN(value)) return true;
    const competing = [value];
    for (const t of others) {
      if (t.number === trial.number) continue;
      const v = t.intermediateValues[String(step)];
      if (v !== undefined && !Number.isNaN(v)) competing.push(v);
    }
    const sign = direction === "minimize" ? 1 : -1;
    competing.sort((a, b) => sign * (a - b));
    let idx = Math.floor(competing.length / eta) - 1;
    if (idx < 0) idx = 0;
    return sign * (value - competing[idx]) > 0;
  }
}
