/** `arbor fit`: train a gradient-boosted model on a file or a registered split and write a bundle. */
import { availableParallelism } from "node:os";
import path from "node:path";
import { z } from "zod";
import { openRegistry } from "../../registry/index.ts";
import { storeOpener } from "../../registry/store/open.ts";
import { GROWTH_POLICIES, MODEL_TYPES, TASKS } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import { operationLogger } from "../../shared/logger.ts";
import { splitKey } from "../../shared/paths.ts";
import { defineCommand } from "../cli/command.ts";
import { readDataset } from "../data/read.ts";
import { writeBundle } from "../export/bundle.ts";
import { signatureOf } from "../export/signature.ts";
import { type Dataset, frameToDataset, frameToEvalDataset } from "../gbdt/dataset.ts";
import { auc, logloss, mlogloss, rmse } from "../gbdt/metric.ts";
import { predictMarginColumns } from "../gbdt/predict.ts";
import { type TrainResult, trainGbdt } from "../gbdt/train.ts";

const schema = z.object({
  _: z.array(z.string()).max(0, "fit takes no positional arguments"),
  train: z.string().optional(),
  valid: z.string().optional(),
  split: z.string().optional(),
  target: z.string().optional(),
  task: z.enum(TASKS),
  modelType: z.enum(MODEL_TYPES).optional(),
  growth: z.enum(GROWTH_POLICIES).optional(),
  rounds: z.number().int().positive().optional(),
  learningRate: z.number().positive().optional(),
  maxDepth: z.number().int().nonnegative().optional(),
  numLeaves: z.number().int().min(2).optional(),
  maxBins: z.number().int().min(2).max(255).optional(),
  minChildWeight: z.number().nonnegative().optional(),
  lambda: z.number().nonnegative().optional(),
  alpha: z.number().nonnegative().optional(),
  subsample: z.number().positive().max(1).optional(),
  colsample: z.number().positive().max(1).optional(),
  earlyStopping: z.number().int().nonnegative().optional(),
  threads: z.number().int().positive().optional(),
  catSmooth: z.number().nonnegative().optional(),
  catL2: z.number().nonnegative().optional(),
  seed: z.number().int().optional(),
  categorical: z.array(z.string()).optional(),
  weight: z.string().optional(),
  out: z.string(),
});

/** Final metrics of a model on one dataset (margins: the engine's own, or walked from the trees). */
export function datasetMetrics(
  result: TrainResult,
  data: Dataset,
  margin: Float64Array = predictMarginColumns(result.ensemble, data.columns, data.numRows),
): Record<string, number> {
  if (result.task === "binary") {
    return { logloss: logloss(margin, data.label, data.weight), auc: auc(margin, data.label) };
  }
  if (result.task === "regression") return { rmse: rmse(margin, data.label, data.weight) };
  const k = result.ensemble.numOutputs;
  let correct = 0;
  for (let i = 0; i < data.numRows; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (margin[i * k + j] > margin[i * k + best]) best = j;
    if (best === data.label[i]) correct++;
  }
  return { mlogloss: mlogloss(margin, data.label, k, data.weight), accuracy: correct / data.numRows };
}

/** `arbor fit`. */
export const fitCommand = defineCommand({
  name: "fit",
  summary: "train gradient-boosted trees on a file or a split and write a model bundle",
  flags: [
    {
      name: "train",
      type: "string",
      placeholder: "URI",
      description: "training data (csv, parquet, ndjson)",
    },
    {
      name: "valid",
      type: "string",
      placeholder: "URI",
      description: "validation data (metrics, early stopping)",
    },
    {
      name: "split",
      type: "string",
      placeholder: "ID",
      description: "a registered split instead of --train/--valid",
    },
    {
      name: "target",
      type: "string",
      placeholder: "COL",
      description: "target column (default with --split: the split's)",
    },
    { name: "task", type: "string", choices: TASKS, required: true, description: "what to predict" },
    {
      name: "model-type",
      type: "string",
      choices: MODEL_TYPES,
      description: "defaults of that library (default lightgbm)",
    },
    { name: "growth", type: "string", choices: GROWTH_POLICIES, description: "tree growth policy" },
    { name: "rounds", type: "integer", description: "boosting rounds (default 100)" },
    { name: "learning-rate", type: "number", placeholder: "X", description: "shrinkage per tree" },
    {
      name: "max-depth",
      type: "integer",
      description: "depth limit (oblivious: the depth; leafwise: 0 = none)",
    },
    { name: "num-leaves", type: "integer", description: "leaves per tree (leafwise)" },
    { name: "max-bins", type: "integer", description: "bins per feature, ≤ 255 (default 255)" },
    {
      name: "min-child-weight",
      type: "number",
      placeholder: "X",
      description: "least hessian sum per child",
    },
    { name: "lambda", type: "number", placeholder: "X", description: "L2 regularisation of leaf values" },
    { name: "alpha", type: "number", placeholder: "X", description: "L1 regularisation of leaf values" },
    {
      name: "subsample",
      type: "number",
      placeholder: "X",
      description: "row fraction per round (default 1)",
    },
    {
      name: "colsample",
      type: "number",
      placeholder: "X",
      description: "feature fraction per tree (default 1)",
    },
    { name: "early-stopping", type: "integer", description: "stop after N rounds without validation gain" },
    {
      name: "threads",
      type: "integer",
      description: "histogram threads (default: number of cores)",
    },
    {
      name: "cat-smooth",
      type: "number",
      description:
        "categorical splits: smoothing of each category's G/(H + s) and the fewest rows a category needs to be ordered (LightGBM cat_smooth, default 10)",
    },
    {
      name: "cat-l2",
      type: "number",
      description: "categorical splits: extra L2 on categorical splits (LightGBM cat_l2, default 10)",
    },
    { name: "seed", type: "integer", description: "seed of sampling (default 0)" },
    { name: "categorical", type: "list", placeholder: "COL,...", description: "extra categorical columns" },
    {
      name: "weight",
      type: "string",
      placeholder: "COL",
      description: "column of non-negative sample weights (training rows; not a feature)",
    },
    {
      name: "out",
      type: "string",
      placeholder: "DIR",
      required: true,
      description: "bundle folder to write",
    },
  ],
  schema,
  examples: [
    "arbor fit --train data.parquet --valid valid.parquet --target churned --task binary --out ./model",
    "arbor fit --split spl_0123456789abcdefghij --task binary --model-type xgboost --rounds 300 --out ./model",
  ],
  async run(ctx, args) {
    const logger = operationLogger(ctx.logger, "fit");
    if ((args.split === undefined) === (args.train === undefined)) {
      throw arborError("INVALID_ARGUMENT", "fit: give either --train (and optionally --valid) or --split");
    }
    if (args.split !== undefined && args.valid !== undefined) {
      throw arborError(
        "INVALID_ARGUMENT",
        "fit: --valid cannot be combined with --split (the split has one)",
      );
    }
    if (
      args.earlyStopping !== undefined &&
      args.earlyStopping > 0 &&
      args.split === undefined &&
      args.valid === undefined
    ) {
      throw arborError(
        "INVALID_ARGUMENT",
        "fit: --early-stopping needs validation data (--valid, or --split whose valid part is used)",
      );
    }
    const openStore = storeOpener(ctx.config);
    let trainUri = args.train;
    let validUri = args.valid;
    let target = args.target;
    if (args.split !== undefined) {
      const registry = await openRegistry(ctx.config, logger);
      ctx.onClose(() => registry.close());
      const split = await registry.splits.get(args.split);
      trainUri = `${ctx.config.store}/${splitKey(split.id, "train.parquet")}`;
      validUri = `${ctx.config.store}/${splitKey(split.id, "valid.parquet")}`;
      target ??= split.target;
    }
    if (target === undefined) throw arborError("INVALID_ARGUMENT", "fit: --target is required with --train");
    ctx.say(`reading ${trainUri}`);
    const trainData = await readDataset(trainUri!, { logger, openStore });
    const train = frameToDataset(
      trainData.frame,
      {
        target,
        task: args.task,
        ...(args.categorical ? { categorical: args.categorical } : {}),
        ...(args.weight !== undefined ? { weight: args.weight } : {}),
      },
      logger,
    );
    let valid: Dataset | null = null;
    if (validUri !== undefined) {
      const frame = (await readDataset(validUri, { logger, openStore })).frame;
      valid = frameToEvalDataset(frame, train, logger);
    }
    ctx.say(
      `training on ${train.numRows} rows × ${train.features.length} features${valid ? `, validating on ${valid.numRows}` : ""}`,
    );
    const {
      _,
      train: _t,
      valid: _v,
      split: _s,
      target: _g,
      categorical: _c,
      weight: _w,
      out: _o,
      ...options
    } = args;
    // Shard workers pay off on 2 cores: partitions and histograms run per row shard (train/gbdt/shards.ts).
    const threads = options.threads ?? Math.min(availableParallelism(), 256);
    const result = trainGbdt(
      train,
      valid,
      { ...options, threads },
      { progress: (line) => ctx.say(line), logger },
    );
    const metrics = {
      task: result.task,
      metric: result.metric,
      train: datasetMetrics(result, train, result.trainMargin),
      ...(valid && result.validMargin ? { valid: datasetMetrics(result, valid, result.validMargin) } : {}),
      bestIteration: result.bestIteration,
      rounds: result.rounds,
      numTrees: result.ensemble.trees.length,
      seconds: result.seconds,
      rows: { train: train.numRows, ...(valid ? { valid: valid.numRows } : {}) },
      params: result.params,
      history: result.history,
      data: { train: trainData.fingerprint, ...(args.split ? { split: args.split } : {}) },
    };
    const signature = signatureOf(result, target);
    const dir = path.resolve(args.out);
    const lineage = {
      dataFingerprint: trainData.fingerprint,
      params: { ...result.params },
      ...(args.split ? { splitId: args.split } : {}),
    };
    await writeBundle(dir, { ensemble: result.ensemble, signature, metrics, lineage });
    logger.info({ dir, seconds: result.seconds, trees: result.ensemble.trees.length }, "fit done");
    const summary = { bundle: dir, ...metrics, history: undefined, params: undefined };
    return { json: summary, text: dir };
  },
});
