/**
 * The `tune` job: its payload schema (the body of `POST /v1/studies`, validated by zod with
 * messages naming the field) and the conversion to the pipeline's options.
 */
import { z } from "zod";
import { MODEL_TYPES, NAME_PATTERN, TASKS } from "../../shared/bundle.ts";
import { TUNE_METRICS, type TuneOptions } from "../tune/pipeline.ts";
import { PRUNER_NAMES } from "../tune/pruners/index.ts";
import { SAMPLER_NAMES } from "../tune/samplers/index.ts";

/** Job kind of a study run. */
export const TUNE_JOB = "tune";

const name = z.string().regex(NAME_PATTERN, "use letters, digits, '-', '_' and '.', 1 to 100 characters");

/** A study request (API body = job payload). Defaults are the CLI's. */
export const tuneRequestSchema = z
  .object({
    split: z.string().regex(/^spl_[0-9a-z]{20}$/, "must be a split id (spl_ + 20 characters)"),
    target: z.string().min(1).optional(),
    task: z.enum(TASKS),
    modelType: z.enum(MODEL_TYPES).default("lightgbm"),
    trials: z.number().int().min(1).max(100_000).default(20),
    timeoutSeconds: z.number().positive().optional(),
    sampler: z.enum(SAMPLER_NAMES).default("tpe"),
    samplerOptions: z.record(z.string(), z.unknown()).optional(),
    pruner: z.enum(PRUNER_NAMES).default("median"),
    metric: z.enum(TUNE_METRICS).optional(),
    name: name.optional(),
    parallel: z.number().int().min(1).max(64).default(1),
    seed: z.number().int().default(0),
    rounds: z.number().int().min(1).max(100_000).default(200),
    earlyStopping: z.number().int().min(0).default(20),
    searchSpace: z.record(z.string(), z.unknown()).optional(),
    categorical: z.array(z.string().min(1)).optional(),
    register: name.optional(),
    promote: name.optional(),
    minMetric: z.number().optional(),
    force: z.boolean().default(false),
    refitOn: z.enum(["train", "train+valid"]).default("train"),
    staleSeconds: z.number().min(1).default(30),
  })
  .strict()
  .refine((r) => r.promote === undefined || r.register !== undefined, {
    path: ["promote"],
    message: "needs register",
  });
export type TuneRequest = z.infer<typeof tuneRequestSchema>;

/** Pipeline options of a request (`target` resolved by the caller from the split). */
export function tuneOptionsOf(
  req: TuneRequest,
  target: string,
  studyName: string,
  jobId: string,
): TuneOptions {
  return {
    splitId: req.split,
    target,
    task: req.task,
    modelType: req.modelType,
    trials: req.trials,
    timeoutSeconds: req.timeoutSeconds,
    sampler: req.sampler,
    samplerOptions: req.samplerOptions,
    pruner: req.pruner,
    metric: req.metric,
    study: studyName,
    parallel: req.parallel,
    seed: req.seed,
    rounds: req.rounds,
    earlyStopping: req.earlyStopping,
    searchSpaceOverride: req.searchSpace,
    categorical: req.categorical,
    register: req.register,
    promote: req.promote,
    minMetric: req.minMetric,
    force: req.force,
    refitOn: req.refitOn,
    staleSeconds: req.staleSeconds,
    jobId,
  };
}
