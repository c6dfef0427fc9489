/**
 * The boosting loop: bins once, then per round gradients → K trees → predictions, with row and
 * column subsampling (seeded), early stopping on a validation set, a per-round callback and a
 * throttled progress line on stderr. Same data, options, seed and thread count ⇒ byte-identical
 * ensemble; other thread counts may differ in the last bits (histogram sums, see shards.ts).
 */
import type { FeatureSpec, GrowthPolicy, ModelType, Task } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Tree, TreeEnsemble } from "../../shared/tree.ts";
import { type BinnedData, binColumns, buildBinMappers } from "./binning.ts";
import type { Dataset } from "./dataset.ts";
import { type GrownTree, GrowScratch, growTree } from "./grower.ts";
import { defaultMetric, evaluateMetric, higherIsBetter, type MetricName } from "./metric.ts";
import { baseScore, computeGradients } from "./objective.ts";
import { resolveParams, type TrainOptions, type TrainParams } from "./params.ts";
import { Rng } from "./rng.ts";
import { HistPool, ROUND_MAX_LEAVES } from "./shards.ts";

/** What `onRound` receives after every round (1-based round). */
export interface RoundInfo {
  round: number;
  train: Record<string, number>;
  valid?: Record<string, number>;
}

/** Hooks and extras of a fit. */
export interface TrainHooks {
  /** Called after every round; return "stop" to stop (pruners). */
  onRound?: (info: RoundInfo) => unknown;
  /** Receives a progress line at most once a second and after the last round (CLI: stderr unless --quiet). */
  progress?: (line: string) => void;
  /** Compute the training metric every round (default true; benchmarks turn it off). */
  evalTrain?: boolean;
  /** Early-stopping / reported metric (default by task). */
  metric?: MetricName;
  logger?: Logger;
}

/** A trained model and its story. */
export interface TrainResult {
  ensemble: TreeEnsemble;
  features: FeatureSpec[];
  classes?: string[];
  task: Task;
  objective: string;
  modelType: ModelType;
  growth: GrowthPolicy;
  params: TrainParams;
  metric: MetricName;
  history: RoundInfo[];
  /** 1-based round whose trees were kept (the best on validation with early stopping). */
  bestIteration: number;
  rounds: number;
  seconds: number;
  /** The engine's training margins [N × K] of the kept ensemble (equal to walking its float trees). */
  trainMargin: Float64Array;
  /** The engine's validation margins of the kept ensemble (null without a validation set). */
  validMargin: Float64Array | null;
}

/** Below this many rows per thread, workers cost more than they save. */
const MIN_ROWS_PER_THREAD = 20_000;

/** Objective name per task, as written in the signature. */
export const OBJECTIVES: Record<Task, string> = {
  binary: "binary:logistic",
  multiclass: "multi:softmax",
  regression: "reg:squarederror",
};

/** Bin a dataset (exposed for tests and benchmarks). */
export function binDataset(
  train: Dataset,
  p: Pick<TrainParams, "maxBins" | "binSampleRows" | "seed">,
): BinnedData {
  const mappers = buildBinMappers(train.columns, train.features, train.numRows, {
    maxBins: p.maxBins,
    sampleRows: p.binSampleRows,
    seed: p.seed,
  });
  return binColumns(train.columns, mappers, train.numRows);
}

/** A copy of `a` in a SharedArrayBuffer. */
function sharedCopy(a: Float64Array): Float64Array {
  const out = new Float64Array(new SharedArrayBuffer(8 * Math.max(1, a.length)), 0, a.length);
  out.set(a);
  return out;
}

/** Add a grown tree's leaf values to the training margins. */
function updateTrainMargin(
  grown: GrownTree,
  data: BinnedData,
  idx: Uint32Array,
  allRows: boolean,
  margin: Float64Array,
  k: number,
  out: number,
): void {
  const { tree, leafStart, leafEnd, shards } = grown;
  if (allRows) {
    for (let node = 0; node < tree.kind.length; node++) {
      if (leafStart[node * shards] < 0) continue;
      const v = tree.value[node];
      for (let t = node * shards; t < (node + 1) * shards; t++) {
        for (let i = leafStart[t]; i < leafEnd[t]; i++) margin[idx[i] * k + out] += v;
      }
    }
    return;
  }
  addTreeBins(grown, data, margin, k, out);
}

/**
 * Add a tree's leaf values to margins by routing rows on their bins. Equal to routing the float32
 * values on the thresholds (x <= upper[b] ⇔ bin ≤ b), and several times faster than the float walk.
 * The routing tables are flattened into one array (node × 256 + bin) and the children interleaved
 * (node × 2 + go right), so the walk is typed-array loads only, without a branch on the side.
 */
function addTreeBins(grown: GrownTree, data: BinnedData, margin: Float64Array, k: number, out: number): void {
  const { tree, luts } = grown;
  const nn = tree.left.length;
  const lut = new Uint8Array(nn * 256);
  const kids = new Int32Array(nn * 2);
  for (let node = 0; node < nn; node++) {
    const l = luts[node];
    if (l) lut.set(l, node * 256);
    kids[2 * node] = tree.right[node];
    kids[2 * node + 1] = tree.left[node];
  }
  const n = data.numRows;
  const F = data.rowStride;
  const rowBins = data.rowBins;
  const { left, feature, value } = tree;
  for (let r = 0; r < n; r++) {
    let node = 0;
    const b = r * F;
    while (left[node] >= 0) node = kids[2 * node + lut[(node << 8) + rowBins[b + feature[node]]]];
    margin[r * k + out] += value[node];
  }
}

/** Train a gradient-boosted ensemble. */
export function trainGbdt(
  train: Dataset,
  valid: Dataset | null,
  options: TrainOptions,
  hooks: TrainHooks = {},
): TrainResult {
  const started = performance.now();
  const p = resolveParams(options);
  if (p.task !== train.task)
    throw arborError("FIT_BAD_OPTION", `fit: task ${p.task} differs from the dataset's ${train.task}`);
  const K = p.task === "multiclass" ? train.classes!.length : 1;
  const N = train.numRows;
  const metric = hooks.metric ?? defaultMetric(p.task);
  const evalTrain = hooks.evalTrain ?? true;
  const data = binDataset(train, p);
  hooks.logger?.info(
    {
      rows: N,
      features: data.numFeatures,
      totalBins: data.totalBins,
      binSeconds: (performance.now() - started) / 1000,
    },
    "binned",
  );

  const base = baseScore(p.task, train.label, train.weight, K);
  // Margins, labels and weights are shared with the shard workers (OP_ROUND, shards.ts).
  const margin = new Float64Array(new SharedArrayBuffer(8 * Math.max(1, N * K)), 0, N * K);
  for (let i = 0; i < N; i++) for (let j = 0; j < K; j++) margin[i * K + j] = base[j];
  const vN = valid?.numRows ?? 0;
  const validBins = valid ? binColumns(valid.columns, data.mappers, vN) : null;
  const vMargin = new Float64Array(new SharedArrayBuffer(8 * Math.max(1, vN * K)), 0, vN * K);
  // With early stopping the kept model is the best round's: keep its margins (one copy per
  // improving round) so callers get metrics without walking the trees again.
  const keepBest = valid !== null && (options.earlyStopping ?? 0) > 0;
  const bestTrain = keepBest ? new Float64Array(N * K) : null;
  const bestValid = keepBest ? new Float64Array(vN * K) : null;
  for (let i = 0; i < vN; i++) for (let j = 0; j < K; j++) vMargin[i * K + j] = base[j];

  // Gradients, row indices, bins, labels and margins live in SharedArrayBuffers for the shard workers.
  const gh = Array.from({ length: K }, () => new Float64Array(new SharedArrayBuffer(16 * N)));
  const idxShared = new Uint32Array(new SharedArrayBuffer(4 * Math.max(1, N)));
  const tmpShared = new Uint32Array(new SharedArrayBuffer(4 * Math.max(1, N)));
  const threads = N < 2 * MIN_ROWS_PER_THREAD ? 1 : p.threads;
  const pool = new HistPool(data, gh, idxShared, tmpShared, threads, {
    margin,
    label: sharedCopy(train.label),
    weight: train.weight ? sharedCopy(train.weight) : null,
    valid:
      valid && validBins && K === 1
        ? {
            bins: validBins,
            margin: vMargin,
            label: sharedCopy(valid.label),
            weight: valid.weight ? sharedCopy(valid.weight) : null,
          }
        : null,
  });
  const scratch = new GrowScratch(idxShared, pool);
  try {
    return boost();
  } finally {
    pool.close();
  }
  /** Hand a tree's leaves to the pool for OP_ROUND; their count, or −1 when there are too many. */
  function writeLeaves(grown: GrownTree): number {
    const { tree, leafStart, leafEnd, shards } = grown;
    let j = 0;
    for (let node = 0; node < tree.kind.length; node++) {
      if (leafStart[node * shards] < 0) continue;
      if (j === ROUND_MAX_LEAVES) return -1;
      const o = node * shards;
      pool.writeLeaf(
        j++,
        tree.value[node],
        leafStart.subarray(o, o + shards),
        leafEnd.subarray(o, o + shards),
      );
    }
    return j;
  }
  function boost(): TrainResult {
    const rng = new Rng(p.seed);
    const sampleSize = p.subsample < 1 ? Math.max(1, Math.floor(N * p.subsample)) : N;
    const allRows = sampleSize === N;
    const numCols = Math.max(1, Math.round(data.numFeatures * p.colsample));
    const featureMask = new Uint8Array(data.numFeatures).fill(1);
    const ghSums = new Float64Array(2 * K);

    const trees: Tree[] = [];
    const treeOutput: number[] = [];
    const history: RoundInfo[] = [];
    const higher = higherIsBetter(metric);
    let best = higher ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
    let bestRound = 0;
    let lastPrint = 0;
    let round = 0;
    // One output: each tree's margin update (by leaf row ranges, or by walking the tree when it
    // was grown on a sample), the next round's gradients, the training and validation metrics and
    // the reset of the row indices run as one job over the row shards.
    const roundTask = K === 1 && p.task !== "multiclass" ? p.task : null;
    let gradientsReady = false;
    let idxReady = false;
    // The training log-loss / RMSE comes from the same job, per shard.
    const lossMetric = metric === "logloss" || metric === "rmse" ? metric : null;
    const roundMetric = evalTrain ? lossMetric : null;
    // [training metric, validation metric] from the round job, NaN when it did not compute them.
    const roundMetrics = new Float64Array(2);
    for (round = 1; round <= p.rounds; round++) {
      if (!gradientsReady) computeGradients(p.task, margin, train.label, train.weight, K, gh, ghSums);
      gradientsReady = false;
      roundMetrics.fill(Number.NaN);
      let validDone = false;
      const sample = allRows ? null : rng.sample(N, sampleSize);
      for (let k = 0; k < K; k++) {
        if (sample) scratch.idx.set(sample);
        else if (!idxReady) for (let i = 0; i < N; i++) scratch.idx[i] = i;
        idxReady = false;
        if (numCols < data.numFeatures) {
          featureMask.fill(0);
          const cols = rng.sample(data.numFeatures, numCols);
          for (let j = 0; j < cols.length; j++) featureMask[cols[j]] = 1;
        }
        const grown = growTree({
          data,
          gh: gh[k],
          output: k,
          numSample: sampleSize,
          allRows,
          allG: ghSums[2 * k],
          allH: ghSums[2 * k + 1],
          featureMask,
          params: p,
          scratch,
        });
        const leaves = roundTask === null ? -1 : allRows ? writeLeaves(grown) : 0;
        const treeNodes = leaves >= 0 && (validBins || !allRows) ? pool.writeTree(grown.tree, grown.luts) : 0;
        if (leaves >= 0 && (allRows || treeNodes > 0)) {
          pool.round({
            rows: N,
            leaves,
            walkTrain: !allRows,
            task: round < p.rounds ? roundTask : null,
            sums: ghSums,
            metric: roundMetric,
            treeNodes,
            validMetric: lossMetric,
            metrics: roundMetrics,
          });
          validDone = treeNodes > 0;
          gradientsReady = round < p.rounds;
          idxReady = allRows;
        } else updateTrainMargin(grown, data, scratch.idx, allRows, margin, K, k);
        if (validBins && !validDone) addTreeBins(grown, validBins, vMargin, K, k);
        trees.push(grown.tree);
        treeOutput.push(k);
      }
      const info: RoundInfo = { round, train: {} };
      if (evalTrain) {
        info.train[metric] = Number.isNaN(roundMetrics[0])
          ? evaluateMetric(metric, margin, train.label, K, train.weight)
          : roundMetrics[0];
      }
      if (valid) {
        const v = Number.isNaN(roundMetrics[1])
          ? evaluateMetric(metric, vMargin, valid.label, K, valid.weight)
          : roundMetrics[1];
        info.valid = { [metric]: v };
        if (higher ? v > best : v < best) {
          best = v;
          bestRound = round;
          bestTrain?.set(margin);
          bestValid?.set(vMargin);
        }
      } else bestRound = round;
      history.push(info);
      if (hooks.progress) {
        const now = performance.now();
        if (now - lastPrint > 1000 || round === p.rounds) {
          lastPrint = now;
          const v = info.valid ? ` valid ${metric} ${info.valid[metric].toFixed(5)}` : "";
          const t = evalTrain ? ` train ${metric} ${info.train[metric].toFixed(5)}` : "";
          hooks.progress(`round ${round}/${p.rounds}${t}${v} ${((now - started) / 1000).toFixed(1)} s`);
        }
      }
      if (hooks.onRound?.(info) === "stop") break;
      if (valid && p.earlyStopping > 0 && round - bestRound >= p.earlyStopping) break;
    }
    const rounds = Math.min(round, p.rounds);
    const keep = valid && p.earlyStopping > 0 ? bestRound : rounds;
    if (hooks.progress && rounds < p.rounds) hooks.progress(`stopped after round ${rounds}; keeping ${keep}`);
    const ensemble: TreeEnsemble = {
      numFeatures: data.numFeatures,
      numOutputs: K,
      baseScore: base,
      trees: trees.slice(0, keep * K),
      treeOutput: Int32Array.from(treeOutput.slice(0, keep * K)),
    };
    const result: TrainResult = {
      ensemble,
      features: train.features,
      task: p.task,
      objective: OBJECTIVES[p.task],
      modelType: p.modelType,
      growth: p.growth,
      params: p,
      metric,
      history,
      bestIteration: keep,
      rounds,
      seconds: (performance.now() - started) / 1000,
      trainMargin: bestTrain ?? margin,
      validMargin: bestValid ?? (valid ? vMargin : null),
    };
    if (train.classes) result.classes = train.classes;
    return result;
  }
}
