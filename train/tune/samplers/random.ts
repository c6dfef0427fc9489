/** Random search: every parameter independently, uniform (log-uniform for log parameters). */
import { Rng } from "../random.ts";
import type { Distribution, FrozenTrial, ParamValue, SearchSpace } from "../space.ts";
import { snap } from "../space.ts";
import type { SampleContext, Sampler } from "./types.ts";

/** One independent uniform draw from `d`. */
export function sampleUniform(d: Distribution, rng: Rng): ParamValue {
  if (d.type === "categorical") return d.choices[rng.int(d.choices.length)];
  if (d.log) {
    // Integers get half a unit on each side so that the end values are as likely as the others.
    const lo = d.type === "int" ? d.low - 0.5 : d.low;
    const hi = d.type === "int" ? d.high + 0.5 : d.high;
    return snap(d, Math.exp(rng.uniform(Math.log(lo), Math.log(hi))));
  }
  const step = d.type === "int" ? (d.step ?? 1) : d.step;
  if (step !== undefined) {
    const n = Math.floor((d.high - d.low) / step + 1e-9) + 1;
    return snap(d, d.low + rng.int(n) * step);
  }
  return snap(d, rng.uniform(d.low, d.high));
}

/** Draw every parameter of `space` independently. */
export function sampleSpaceUniform(space: SearchSpace, rng: Rng): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  for (const [name, d] of Object.entries(space)) out[name] = sampleUniform(d, rng);
  return out;
}

/** Optuna's RandomSampler. */
export class RandomSampler implements Sampler {
  readonly name = "random";
  readonly options: Record<string, unknown>;
  readonly #seed: number;

  constructor(options: { seed?: number } = {}) {
    this.#seed = options.seed ?? 0;
    this.options = { seed: this.#seed };
  }

  sample(
    space: SearchSpace,
    _trials: readonly FrozenTrial[],
    ctx: SampleContext,
  ): Record<string, ParamValue> {
    return sampleSpaceUniform(space, new Rng(this.#seed, ctx.trialNumber, 0x52414e44));
  }
}
