/**
 * Training parameters, and the defaults of each `--model-type` (the usual defaults of the library
 * it is named after; explicit options override them).
 */
import type { GrowthPolicy, ModelType, Task } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";

/** Every knob of a fit, resolved. */
export interface TrainParams {
  task: Task;
  modelType: ModelType;
  growth: GrowthPolicy;
  rounds: number;
  learningRate: number;
  /** Depth limit; for leafwise 0 = unlimited; for oblivious the tree depth. */
  maxDepth: number;
  numLeaves: number;
  maxBins: number;
  minChildWeight: number;
  minDataInLeaf: number;
  minSplitGain: number;
  lambda: number;
  alpha: number;
  subsample: number;
  colsample: number;
  earlyStopping: number;
  threads: number;
  seed: number;
  /** Rows sampled to build the bins (LightGBM bin_construct_sample_cnt). */
  binSampleRows: number;
  /** Categorical splits (LightGBM names). */
  maxCatToOnehot: number;
  maxCatThreshold: number;
  catSmooth: number;
  catL2: number;
}

/** Options a caller may set; unset ones come from the model type. */
export type TrainOptions = Partial<TrainParams> & { task: Task };

const BASE = {
  rounds: 100,
  maxBins: 255,
  minSplitGain: 0,
  alpha: 0,
  subsample: 1,
  colsample: 1,
  earlyStopping: 0,
  threads: 1,
  seed: 0,
  binSampleRows: 200_000,
  maxCatToOnehot: 4,
  maxCatThreshold: 32,
  catSmooth: 10,
  catL2: 10,
};

/** Library-like defaults per model type. */
export const MODEL_TYPE_DEFAULTS: Record<
  ModelType,
  Pick<
    TrainParams,
    "growth" | "learningRate" | "maxDepth" | "numLeaves" | "minDataInLeaf" | "lambda" | "minChildWeight"
  >
> = {
  lightgbm: {
    growth: "leafwise",
    learningRate: 0.1,
    maxDepth: 0,
    numLeaves: 31,
    minDataInLeaf: 20,
    lambda: 0,
    minChildWeight: 1e-3,
  },
  xgboost: {
    growth: "depthwise",
    learningRate: 0.3,
    maxDepth: 6,
    numLeaves: 0,
    minDataInLeaf: 1,
    lambda: 1,
    minChildWeight: 1,
  },
  catboost: {
    growth: "oblivious",
    learningRate: 0.03,
    maxDepth: 6,
    numLeaves: 0,
    minDataInLeaf: 1,
    lambda: 3,
    minChildWeight: 1,
  },
};

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Merge options over the model type's defaults and validate (FIT_BAD_OPTION names the option). */
export function resolveParams(options: TrainOptions): TrainParams {
  const modelType = options.modelType ?? "lightgbm";
  const p: TrainParams = {
    ...BASE,
    ...MODEL_TYPE_DEFAULTS[modelType],
    modelType,
    ...defined(options),
  } as TrainParams;
  // A growth policy picked without its size knob gets a usual value instead of the model type's
  // (e.g. --growth depthwise with the lightgbm defaults, whose max depth is 0 = unlimited).
  if (options.maxDepth === undefined && p.maxDepth === 0 && p.growth !== "leafwise") p.maxDepth = 6;
  if (options.numLeaves === undefined && p.numLeaves < 2 && p.growth === "leafwise") p.numLeaves = 31;
  const bad = (name: string, why: string): never => {
    throw arborError("FIT_BAD_OPTION", `fit: ${name} ${why}`);
  };
  if (!Number.isInteger(p.rounds) || p.rounds < 1) bad("rounds", "must be a whole number ≥ 1");
  if (!(p.learningRate > 0 && p.learningRate <= 10)) bad("learning-rate", "must be in (0, 10]");
  if (!Number.isInteger(p.maxDepth) || p.maxDepth < 0 || p.maxDepth > 30) bad("max-depth", "must be 0..30");
  if ((p.growth === "depthwise" || p.growth === "oblivious") && p.maxDepth < 1)
    bad("max-depth", `must be ≥ 1 for ${p.growth}`);
  if (p.growth === "oblivious" && p.maxDepth > 16) bad("max-depth", "must be ≤ 16 for oblivious trees");
  if (p.growth === "leafwise" && (!Number.isInteger(p.numLeaves) || p.numLeaves < 2 || p.numLeaves > 65536)) {
    bad("num-leaves", "must be 2..65536 for leafwise growth");
  }
  if (!Number.isInteger(p.maxBins) || p.maxBins < 2 || p.maxBins > 255) bad("max-bins", "must be 2..255");
  if (!(p.minChildWeight >= 0)) bad("min-child-weight", "must be ≥ 0");
  if (!(p.lambda >= 0)) bad("lambda", "must be ≥ 0");
  if (!(p.alpha >= 0)) bad("alpha", "must be ≥ 0");
  if (!(p.subsample > 0 && p.subsample <= 1)) bad("subsample", "must be in (0, 1]");
  if (!(p.colsample > 0 && p.colsample <= 1)) bad("colsample", "must be in (0, 1]");
  if (!Number.isInteger(p.earlyStopping) || p.earlyStopping < 0)
    bad("early-stopping", "must be a whole number ≥ 0");
  if (!Number.isInteger(p.threads) || p.threads < 1 || p.threads > 256) bad("threads", "must be 1..256");
  if (!Number.isInteger(p.seed)) bad("seed", "must be a whole number");
  return p;
}
