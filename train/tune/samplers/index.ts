/** Sampler factory: a name and options (as stored with a study) → a Sampler. */
import { arborError } from "../../../shared/errors.ts";
import { GridSampler } from "./grid.ts";
import { RandomSampler } from "./random.ts";
import { type TpeOptions, TpeSampler } from "./tpe.ts";
import type { Sampler } from "./types.ts";

export type { SampleContext, Sampler } from "./types.ts";
export { GridSampler, RandomSampler, TpeSampler };

/** Sampler names the CLI and the API accept. */
export const SAMPLER_NAMES = ["tpe", "random", "grid"] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** Build a sampler from its stored description. */
export function createSampler(name: string, options: Record<string, unknown> = {}): Sampler {
  const seed = typeof options["seed"] === "number" ? options["seed"] : 0;
  switch (name) {
    case "tpe":
      return new TpeSampler({ ...(options as TpeOptions), seed });
    case "random":
      return new RandomSampler({ seed });
    case "grid":
      return new GridSampler({
        seed,
        pointsPerParam: typeof options["pointsPerParam"] === "number" ? options["pointsPerParam"] : undefined,
      });
    default:
      throw arborError(
        "INVALID_ARGUMENT",
        `sampler: unknown sampler "${name}" (use ${SAMPLER_NAMES.join(", ")})`,
      );
  }
}
