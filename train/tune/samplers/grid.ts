/**
 * Grid search: the cartesian product of a few values per parameter (every choice of a categorical,
 * every integer of a small range, otherwise `pointsPerParam` evenly spaced values, log-spaced for
 * log parameters), visited in a seeded random order like Optuna's GridSampler. Points already
 * taken by a running or finished trial are skipped, so parallel workers do not repeat each other.
 */
import { Rng } from "../random.ts";
import type { Distribution, FrozenTrial, ParamValue, SearchSpace } from "../space.ts";
import { snap } from "../space.ts";
import { sampleSpaceUniform } from "./random.ts";
import type { SampleContext, Sampler } from "./types.ts";

/** The grid values of one distribution. */
export function gridValues(d: Distribution, points: number): ParamValue[] {
  if (d.type === "categorical") return [...d.choices];
  const step = d.type === "int" ? (d.step ?? 1) : d.step;
  if (step !== undefined && !d.log) {
    const n = Math.floor((d.high - d.low) / step + 1e-9) + 1;
    if (n <= points) return Array.from({ length: n }, (_, i) => snap(d, d.low + i * step));
  }
  if (points <= 1 || d.low === d.high)
    return [snap(d, d.log ? Math.sqrt(d.low * d.high) : (d.low + d.high) / 2)];
  const values: ParamValue[] = [];
  for (let i = 0; i < points; i++) {
    const f = i / (points - 1);
    const x = d.log
      ? Math.exp(Math.log(d.low) + f * (Math.log(d.high) - Math.log(d.low)))
      : d.low + f * (d.high - d.low);
    const v = snap(d, x);
    if (!values.includes(v)) values.push(v);
  }
  return values;
}

/** Optuna's GridSampler over an automatically discretised space. */
export class GridSampler implements Sampler {
  readonly name = "grid";
  readonly options: Record<string, unknown>;
  readonly #seed: number;
  readonly #points: number;

  constructor(options: { seed?: number; pointsPerParam?: number } = {}) {
    this.#seed = options.seed ?? 0;
    this.#points = options.pointsPerParam ?? 4;
    this.options = { seed: this.#seed, pointsPerParam: this.#points };
  }

  /** Every grid point, in a fixed seeded order. */
  grid(space: SearchSpace): Record<string, ParamValue>[] {
    let points: Record<string, ParamValue>[] = [{}];
    for (const [name, d] of Object.entries(space)) {
      const values = gridValues(d, this.#points);
      const next: Record<string, ParamValue>[] = [];
      for (const p of points) for (const v of values) next.push({ ...p, [name]: v });
      points = next;
    }
    return new Rng(this.#seed, 0x47524944).shuffle(points);
  }

  #free(space: SearchSpace, trials: readonly FrozenTrial[]): Record<string, ParamValue>[] {
    const key = (p: Record<string, ParamValue>) => JSON.stringify(Object.keys(space).map((n) => p[n]));
    const taken = new Set(trials.filter((t) => t.state !== "waiting").map((t) => key(t.params)));
    return this.grid(space).filter((p) => !taken.has(key(p)));
  }

  sample(space: SearchSpace, trials: readonly FrozenTrial[], ctx: SampleContext): Record<string, ParamValue> {
    const free = this.#free(space, trials);
    // When the grid is used up (a study run past its size), fall back to random points.
    return free[0] ?? sampleSpaceUniform(space, new Rng(this.#seed, ctx.trialNumber));
  }

  isExhausted(space: SearchSpace, trials: readonly FrozenTrial[]): boolean {
    return this.#free(space, trials).length === 0;
  }
}
