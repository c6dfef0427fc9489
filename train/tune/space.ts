/**
 * Search-space distributions (Optuna's FloatDistribution, IntDistribution, CategoricalDistribution)
 * and the trial record the samplers and pruners read. Kept JSON-serialisable: the distributions
 * are stored in each trial row so that any worker can rebuild the sampler's view of the study.
 */
import { z } from "zod";
import { arborError } from "../../shared/errors.ts";

/** A parameter value as stored in a trial. */
export type ParamValue = number | string | boolean;

/** Float in [low, high], optionally sampled on a log scale or on a step grid. */
export const floatDistributionSchema = z
  .object({
    type: z.literal("float"),
    low: z.number(),
    high: z.number(),
    log: z.boolean().optional(),
    step: z.number().positive().optional(),
  })
  .refine((d) => d.low <= d.high, { message: "low must be ≤ high" })
  .refine((d) => !d.log || d.low > 0, { message: "a log distribution needs low > 0" })
  .refine((d) => !(d.log && d.step !== undefined), { message: "log and step cannot be combined" });

/** Integer in [low, high], optionally on a log scale or with a step. */
export const intDistributionSchema = z
  .object({
    type: z.literal("int"),
    low: z.number().int(),
    high: z.number().int(),
    log: z.boolean().optional(),
    step: z.number().int().positive().optional(),
  })
  .refine((d) => d.low <= d.high, { message: "low must be ≤ high" })
  .refine((d) => !d.log || d.low >= 1, { message: "a log distribution needs low ≥ 1" })
  .refine((d) => !(d.log && d.step !== undefined && d.step !== 1), {
    message: "log and step cannot be combined",
  });

/** One of a fixed list of choices. */
export const categoricalDistributionSchema = z.object({
  type: z.literal("categorical"),
  choices: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1),
});

/** Any distribution. */
export const distributionSchema = z.union([
  floatDistributionSchema,
  intDistributionSchema,
  categoricalDistributionSchema,
]);
export type Distribution = z.infer<typeof distributionSchema>;
export type FloatDistribution = z.infer<typeof floatDistributionSchema>;
export type IntDistribution = z.infer<typeof intDistributionSchema>;
export type CategoricalDistribution = z.infer<typeof categoricalDistributionSchema>;

/** Parameter name → distribution. Key order is the sampling order. */
export const searchSpaceSchema = z.record(z.string().min(1), distributionSchema);
export type SearchSpace = Record<string, Distribution>;

/** Optimisation direction. */
export type Direction = "minimize" | "maximize";

/** Trial states (Optuna's TrialState, lowercase, as stored in the registry). */
export type TrialStateName = "waiting" | "running" | "complete" | "pruned" | "failed";

/** What samplers and pruners know about a trial (Optuna's FrozenTrial). */
export interface FrozenTrial {
  number: number;
  state: TrialStateName;
  params: Record<string, ParamValue>;
  /** Final objective value (complete trials). */
  value: number | null;
  /** Reported value per step (boosting round). */
  intermediateValues: Record<string, number>;
}

/** Validate a search space given as JSON; the message names the parameter. */
export function parseSearchSpace(raw: unknown, where: string): SearchSpace {
  const result = searchSpaceSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw arborError("INVALID_ARGUMENT", `${where}: invalid search space: ${problems.join("; ")}`, {
      details: { problems },
    });
  }
  return result.data;
}

/** True when `value` is a legal sample of `d`. */
export function contains(d: Distribution, value: ParamValue): boolean {
  if (d.type === "categorical") return d.choices.includes(value);
  if (typeof value !== "number" || !Number.isFinite(value)) return false;
  if (value < d.low || value > d.high) return false;
  return d.type === "float" || Number.isInteger(value);
}

/** Whether the distribution has a single possible value (Optuna skips sampling those). */
export function isSingle(d: Distribution): boolean {
  if (d.type === "categorical") return d.choices.length === 1;
  return d.low === d.high;
}

/** Clamp and round a raw number onto the distribution's grid. */
export function snap(d: FloatDistribution | IntDistribution, x: number): number {
  let v = Math.min(d.high, Math.max(d.low, x));
  const step = d.type === "int" ? (d.step ?? 1) : d.step;
  if (step !== undefined) {
    v = d.low + Math.round((v - d.low) / step) * step;
    if (v > d.high) v -= step;
    if (d.type === "float") v = Number(v.toPrecision(15));
  }
  if (d.type === "int") v = Math.round(v);
  return v;
}
