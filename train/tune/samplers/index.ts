/** Sampler factory: a name and options (as stored with a study) → a Sampler. */
import { z } from "zod";
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

/** Settings each sampler accepts (unknown keys are refused, so typos do not pass silently). */
export const SAMPLER_OPTION_SCHEMAS: Record<SamplerName, z.ZodType<Record<string, unknown>>> = {
  tpe: z
    .object({
      nStartupTrials: z.number().int().min(0),
      nEiCandidates: z.number().int().min(1),
      multivariate: z.boolean(),
      constantLiar: z.boolean(),
      priorWeight: z.number().positive(),
      considerMagicClip: z.boolean(),
      considerEndpoints: z.boolean(),
      gamma: z.union([z.enum(["default", "hyperopt"]), z.number().gt(0).max(1)]),
      bandwidthFactor: z.number().positive(),
    })
    .partial()
    .strict(),
  random: z.object({}).strict(),
  grid: z
    .object({ pointsPerParam: z.number().int().min(1).max(100) })
    .partial()
    .strict(),
};

/** Validate sampler settings; INVALID_ARGUMENT names the field under `where`. */
export function parseSamplerOptions(name: SamplerName, raw: unknown, where: string): Record<string, unknown> {
  const r = SAMPLER_OPTION_SCHEMAS[name].safeParse(raw ?? {});
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${[where, ...i.path.map(String)].join(".")}: ${i.message}`);
  throw arborError("INVALID_ARGUMENT", problems.join("; "), { details: { problems } });
}
