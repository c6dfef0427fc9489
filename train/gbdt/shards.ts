/**
 * Row shards: the rows of a tree are cut once into `threads` contiguous shards of the row-index
 * array, and every node owns one sub-range per shard. The row-heavy steps of growing a tree —
 * building the root's histogram; partitioning nodes by their splits and building each one's
 * smaller child's histogram, a whole depthwise or oblivious level per job (one node for leafwise);
 * a round's margin/gradient pass — run shard by shard: the main thread and `threads − 1` Bun workers
 * claim shards with a compare-and-swap on a shared counter, each shard's histogram lands in its
 * own partial, and the main thread adds the partials in shard order. Which thread ran a shard
 * does not matter, so a model is byte-identical for a given thread count; across thread counts the
 * per-bin sums are associated differently and may differ in the last bits. Partitions never move a
 * row out of its shard, so shard t's region of the index array always holds the rows it started
 * with.
 *
 * Why this shape (flights 160k × 8, 500 rounds, 2-core VM, Bun 1.4): the previous builder cut
 * only the big histogram builds into row chunks and partitioned on the main thread, so ≈ 25% of a
 * fit ran in parallel and 2 threads gained 4-7% over 1. Sharding makes partitions and every
 * histogram over MIN_PARALLEL_ROWS parallel. Workers spin for a while after a job before sleeping
 * in Atomics.wait: a job comes every few tens of µs while a tree grows, and a handoff measured
 * 4-5 µs to a spinning worker against ~30 µs through Atomics.wait. Spinning is not free on this
 * VM (a spinning worker slows the main thread's own work), so it is bounded, and the main thread
 * notifies only a worker that announced it sleeps. Measured on depthwise, 200 rounds, threads 2
 * against 1 back to back (noisy shared machine): 0.68-0.79 of the time; beside XGBoost hist with 2
 * threads, see README (bench/train.ts --repeat).
 */
import { arborError } from "../../shared/errors.ts";
import type { Tree } from "../../shared/tree.ts";
import type { BinnedData } from "./binning.ts";
import { buildHistogramRange } from "./hist-kernel.ts";
import { lossFromSums, lossPartial } from "./metric.ts";
import { gradientsRange } from "./objective.ts";

/** Indices into the control block. */
export const CTRL = {
  seq: 0,
  done: 1,
  stop: 2,
  op: 3,
  output: 4,
  allRows: 5,
  /** OP_SPLIT: nodes in the batch. */
  batch: 6,
  /** (job tag << 8) | next shard to claim. */
  next: 8,
  /** OP_ROUND: leaves in the leaf buffer; 1 = also compute the next gradients; 1 binary, 2 regression. */
  leaves: 9,
  gradients: 10,
  task: 11,
  /** OP_ROUND: rows of the fit. */
  rows: 12,
  /** Workers asleep in Atomics.wait (the main thread notifies only then: a notify costs ~10 µs). */
  sleeping: 13,
  /** OP_ROUND: 1 = also the training log-loss partials, 2 = squared-error partials, 0 = none. */
  metric: 14,
  /** Set by a worker whose shard threw (the shard still counts as done, so nothing waits forever). */
  failed: 15,
  /** OP_ROUND: nodes of the tree in the tree tables (0 = no validation pass), validation metric. */
  treeNodes: 16,
  validMetric: 17,
  /** OP_ROUND: 1 = the tree was grown on a sample: add it to every training row by walking the tree tables. */
  walkTrain: 18,
} as const;

export const OP_HIST = 1;
/**
 * OP_SPLIT: a batch of nodes (a depthwise or oblivious level, or one leafwise split), each
 * partitioned by its own routing table; per node, optionally the histogram of one child.
 */
export const OP_SPLIT = 2;

/** Per batch node in the shared ints: feature, build (0 none, 1 left, 2 right), then ranges and left counts. */
function batchStride(shards: number): number {
  return 2 + 3 * shards;
}
/**
 * OP_ROUND (one output, every row in the tree): add the tree's leaf values to the margins of the
 * shard's rows, compute their next gradients (Σg, Σh per shard), reset the shard's row indices.
 */
export const OP_ROUND = 3;

/** Leaves an OP_ROUND job takes; a tree with more is applied on the main thread. */
export const ROUND_MAX_LEAVES = 4096;
/** Nodes of a tree the OP_ROUND validation pass takes (a binary tree with ROUND_MAX_LEAVES leaves). */
const ROUND_MAX_NODES = 2 * ROUND_MAX_LEAVES;

/** Layout of the shared control buffer (bytes): each part on cache lines of its own. */
const CTRL_OFFSET = 0;
/** Int32 slots of the control block (every CTRL index must be below it). */
const CTRL_INTS = 32;
if (Math.max(...Object.values(CTRL)) >= CTRL_INTS)
  throw new Error("shards.ts: CTRL index past the control block");
// Per-shard regions hold up to 255 shards: ranges 2 × 4 bytes, sums 2 × 8 bytes per shard.
const RANGES_OFFSET = 1024;
const SUMS_OFFSET = 4096;
const LOSS_OFFSET = 8192;
const VALID_LOSS_OFFSET = 12288;
const CONTROL_BYTES = 16384;

/** Jobs over fewer rows run on the main thread alone, shard by shard: a handoff costs more. */
const MIN_PARALLEL_ROWS = 4096;

/** Job tags are 23 bits so that `tag << 8 | shard` stays a positive int32. */
const TAG_MASK = 0x7fffff;

/** Spins (Atomics.load of the job counter) a worker makes before sleeping in Atomics.wait. */
export const WORKER_SPINS = 100_000;

/** Claim the next shard of job `tag`; −1 when none is left or the job is over. */
export function claimShard(ctrl: Int32Array, tag: number, shards: number): number {
  for (;;) {
    const v = Atomics.load(ctrl, CTRL.next);
    if (v >>> 8 !== tag) return -1;
    const c = v & 0xff;
    if (c >= shards) return -1;
    if (Atomics.compareExchange(ctrl, CTRL.next, v, v + 1) === v) return c;
  }
}

/** Position where shard t of `n` row positions starts. */
export function shardStart(n: number, t: number, shards: number): number {
  return Math.floor((n * t) / shards);
}

/** What a worker receives once. */
export interface ShardWorkerInit {
  control: SharedArrayBuffer;
  rowBins: SharedArrayBuffer;
  colBins: SharedArrayBuffer;
  offsets: SharedArrayBuffer;
  idx: SharedArrayBuffer;
  tmp: SharedArrayBuffer;
  gh: SharedArrayBuffer[];
  /** OP_ROUND inputs: margins, labels, weights (or null). */
  margin: SharedArrayBuffer;
  label: SharedArrayBuffer;
  weight: SharedArrayBuffer | null;
  /** OP_ROUND leaves: per leaf [value, start_0, end_0, ..., start_T−1, end_T−1]. */
  leaves: SharedArrayBuffer;
  /** OP_ROUND validation pass: the validation rows' bins, margins, labels, weights (or null). */
  valid: {
    rowBins: SharedArrayBuffer;
    rows: number;
    margin: SharedArrayBuffer;
    label: SharedArrayBuffer;
    weight: SharedArrayBuffer | null;
  } | null;
  /** OP_ROUND tree tables: routing by bin (node × 256), ints per node (left, child if right, child if left, feature), values. */
  treeLut: SharedArrayBuffer;
  treeInts: SharedArrayBuffer;
  treeValue: SharedArrayBuffer;
  /** One partial histogram per shard. */
  parts: SharedArrayBuffer;
  /** OP_SPLIT: nodes per batch, their ints, routing tables and partial histograms (node × shard). */
  batchCapacity: number;
  batchInts: SharedArrayBuffer;
  batchLuts: SharedArrayBuffer;
  batchParts: SharedArrayBuffer;
  numRows: number;
  numFeatures: number;
  totalBins: number;
  shards: number;
}

function metricCode(metric: "logloss" | "rmse" | null): number {
  return metric === null ? 0 : metric === "logloss" ? 1 : 2;
}

/** Stable in-place partition of idx[start..end) by lut[bins[base + row]] (tmp[start..] as scratch); returns the left count. */
export function partitionRange(
  idx: Uint32Array,
  tmp: Uint32Array,
  bins: Uint8Array,
  base: number,
  start: number,
  end: number,
  lut: Uint8Array,
  lutBase = 0,
): number {
  let w = start;
  let t = start;
  // Branch-free: both writes always happen and only the cursors move, so a 50/50 split costs no
  // branch mispredictions (idx[w] is at or behind the read cursor, already read). Two rows per
  // iteration, loads first (80k of 160k rows: 0.105 -> 0.093 ms).
  let i = start;
  for (; i + 1 < end; i += 2) {
    const r0 = idx[i];
    const r1 = idx[i + 1];
    const go0 = lut[lutBase + bins[base + r0]];
    const go1 = lut[lutBase + bins[base + r1]];
    idx[w] = r0;
    tmp[t] = r0;
    w += go0;
    t += 1 - go0;
    idx[w] = r1;
    tmp[t] = r1;
    w += go1;
    t += 1 - go1;
  }
  if (i < end) {
    const r = idx[i];
    const go = lut[lutBase + bins[base + r]];
    idx[w] = r;
    tmp[t] = r;
    w += go;
    t += 1 - go;
  }
  idx.set(tmp.subarray(start, t), w);
  return w - start;
}

/** The shared state of a job and the code that runs one shard of it (main thread and workers). */
export class ShardJob {
  readonly ctrl: Int32Array;
  /** Per shard: the node's [start, end) in the row-index array. */
  readonly ranges: Int32Array;
  readonly batchInts: Int32Array;
  readonly batchLuts: Uint8Array;
  readonly batchParts: Float64Array;
  readonly batchCapacity: number;
  /** Main thread, one shard: per batch node, the buffer its histogram is built into directly. */
  targets: (Float64Array | null)[] | null = null;
  /** OP_ROUND: Σg, Σh of each shard's rows. */
  readonly sums: Float64Array;
  /** OP_ROUND: Σ loss, Σ weight of each shard's rows (training metric). */
  readonly loss: Float64Array;
  /** OP_ROUND: Σ loss, Σ weight of each shard's validation rows. */
  readonly validLoss: Float64Array;
  readonly treeLut: Uint8Array;
  readonly treeInts: Int32Array;
  readonly treeValue: Float64Array;
  readonly #valid: {
    rowBins: Uint8Array;
    rows: number;
    margin: Float64Array;
    label: Float64Array;
    weight: Float64Array | null;
  } | null;
  readonly leafBuf: Float64Array;
  readonly parts: Float64Array[];
  readonly shards: number;
  readonly #local: Float64Array;
  readonly #rowBins: Uint8Array;
  readonly #colBins: Uint8Array;
  readonly #offsets: Int32Array;
  readonly #idx: Uint32Array;
  readonly #tmp: Uint32Array;
  readonly #gh: Float64Array[];
  readonly #margin: Float64Array;
  readonly #label: Float64Array;
  readonly #weight: Float64Array | null;
  readonly #numRows: number;
  readonly #numFeatures: number;
  readonly #totalBins: number;

  constructor(init: ShardWorkerInit) {
    const n = init.shards;
    this.shards = n;
    this.ctrl = new Int32Array(init.control, CTRL_OFFSET, CTRL_INTS);
    this.ranges = new Int32Array(init.control, RANGES_OFFSET, 2 * n);
    this.batchCapacity = init.batchCapacity;
    this.batchInts = new Int32Array(init.batchInts);
    this.batchLuts = new Uint8Array(init.batchLuts);
    this.batchParts = new Float64Array(init.batchParts);
    this.sums = new Float64Array(init.control, SUMS_OFFSET, 2 * n);
    this.loss = new Float64Array(init.control, LOSS_OFFSET, 2 * n);
    this.validLoss = new Float64Array(init.control, VALID_LOSS_OFFSET, 2 * n);
    this.treeLut = new Uint8Array(init.treeLut);
    this.treeInts = new Int32Array(init.treeInts);
    this.treeValue = new Float64Array(init.treeValue);
    const v = init.valid;
    this.#valid =
      v === null
        ? null
        : {
            rowBins: new Uint8Array(v.rowBins),
            rows: v.rows,
            margin: new Float64Array(v.margin),
            label: new Float64Array(v.label),
            weight: v.weight === null ? null : new Float64Array(v.weight),
          };
    this.leafBuf = new Float64Array(init.leaves);
    this.#margin = new Float64Array(init.margin);
    this.#label = new Float64Array(init.label);
    this.#weight = init.weight === null ? null : new Float64Array(init.weight);
    const slot = init.totalBins * 2;
    this.parts = Array.from({ length: n }, (_, t) => new Float64Array(init.parts, t * slot * 8, slot));
    // Kernels write a private buffer, copied into the shared partial: building straight into
    // SharedArrayBuffer-backed histograms ran slower (measured with the earlier hist-pool.ts).
    this.#local = new Float64Array(slot);
    this.#rowBins = new Uint8Array(init.rowBins);
    this.#colBins = new Uint8Array(init.colBins);
    this.#offsets = new Int32Array(init.offsets);
    this.#idx = new Uint32Array(init.idx);
    this.#tmp = new Uint32Array(init.tmp);
    this.#gh = init.gh.map((b) => new Float64Array(b));
    this.#numRows = init.numRows;
    this.#numFeatures = init.numFeatures;
    this.#totalBins = init.totalBins;
  }

  /**
   * Run shard t of the posted job. Histograms go to parts[t], or straight into `into` when given
   * (a single-shard pool on the main thread).
   */
  run(t: number, into: Float64Array | null = null): void {
    const ctrl = this.ctrl;
    if (ctrl[CTRL.op] === OP_ROUND) {
      this.#round(t);
      return;
    }
    if (ctrl[CTRL.op] === OP_SPLIT) {
      this.#split(t);
      return;
    }
    const target = into ?? this.#local;
    const rows = ctrl[CTRL.allRows] === 1 ? null : this.#idx;
    this.#build(target, rows, this.ranges[2 * t], this.ranges[2 * t + 1]);
    if (into === null) this.parts[t].set(target);
  }

  #build(target: Float64Array, rows: Uint32Array | null, lo: number, hi: number): void {
    const F = this.#numFeatures;
    const gh = this.#gh[this.ctrl[CTRL.output]];
    buildHistogramRange(target, 0, this.#rowBins, F, this.#offsets, this.#totalBins, gh, rows, lo, hi, 0, F);
  }

  /** OP_SPLIT for shard t: every node of the batch in order. */
  #split(t: number): void {
    const n = this.shards;
    const count = this.ctrl[CTRL.batch];
    const ints = this.batchInts;
    const stride = batchStride(n);
    const len = this.#local.length;
    for (let j = 0; j < count; j++) {
      const o = j * stride;
      const f = ints[o];
      const build = ints[o + 1];
      const a = ints[o + 2 + 2 * t];
      const b = ints[o + 3 + 2 * t];
      const nl = partitionRange(
        this.#idx,
        this.#tmp,
        this.#colBins,
        f * this.#numRows,
        a,
        b,
        this.batchLuts,
        j * 256,
      );
      ints[o + 2 + 2 * n + t] = nl;
      if (build === 0) continue;
      const direct = this.targets?.[j] ?? null;
      const target = direct ?? this.#local;
      this.#build(target, this.#idx, build === 1 ? a : a + nl, build === 1 ? a + nl : b);
      if (direct === null) this.batchParts.set(target, (j * n + t) * len);
    }
  }

  /** OP_ROUND for shard t (see OP_ROUND). */
  #round(t: number): void {
    const ctrl = this.ctrl;
    const n = this.shards;
    const idx = this.#idx;
    const margin = this.#margin;
    const leaves = this.leafBuf;
    const stride = 1 + 2 * n;
    const numLeaves = ctrl[CTRL.leaves];
    for (let j = 0; j < numLeaves; j++) {
      const o = j * stride;
      const v = leaves[o];
      const end = leaves[o + 2 + 2 * t];
      for (let i = leaves[o + 1 + 2 * t]; i < end; i++) margin[idx[i]] += v;
    }
    const rows = ctrl[CTRL.rows];
    const a = shardStart(rows, t, n);
    const b = shardStart(rows, t + 1, n);
    const walk = ctrl[CTRL.walkTrain] === 1;
    if (walk) this.#walk(this.#rowBins, margin, a, b);
    const metric = ctrl[CTRL.metric];
    if (metric !== 0) {
      lossPartial(
        metric === 1 ? "logloss" : "rmse",
        margin,
        this.#label,
        this.#weight,
        a,
        b,
        this.loss,
        2 * t,
      );
    }
    if (ctrl[CTRL.gradients] === 1) {
      const task = ctrl[CTRL.task] === 1 ? "binary" : "regression";
      gradientsRange(task, margin, this.#label, this.#weight, this.#gh[0], a, b, this.sums, 2 * t);
    }
    if (!walk) for (let i = a; i < b; i++) idx[i] = i;
    if (ctrl[CTRL.treeNodes] > 0 && this.#valid !== null) this.#validPass(t);
  }

  /** Add the tree in the tree tables to margin[r] of rows [a, b), routing each row on its bins. */
  #walk(bins: Uint8Array, margin: Float64Array, a: number, b: number): void {
    const S = (this.#numFeatures + 3) & ~3;
    const lut = this.treeLut;
    const ints = this.treeInts;
    const value = this.treeValue;
    for (let r = a; r < b; r++) {
      let node = 0;
      const base = r * S;
      while (ints[4 * node] >= 0) {
        node = ints[4 * node + 1 + lut[(node << 8) + bins[base + ints[4 * node + 3]]]];
      }
      margin[r] += value[node];
    }
  }

  /** OP_ROUND, validation rows of shard t: add the tree by routing on bins, then the metric partials. */
  #validPass(t: number): void {
    const v = this.#valid!;
    const n = this.shards;
    const a = shardStart(v.rows, t, n);
    const b = shardStart(v.rows, t + 1, n);
    const margin = v.margin;
    this.#walk(v.rowBins, margin, a, b);
    const metric = this.ctrl[CTRL.validMetric];
    if (metric !== 0) {
      lossPartial(metric === 1 ? "logloss" : "rmse", margin, v.label, v.weight, a, b, this.validLoss, 2 * t);
    }
  }
}

/** A pool of histogram buffers plus the shard runner. */
export class HistPool {
  readonly slotSize: number;
  readonly shards: number;
  readonly #job: ShardJob;
  readonly #free: Float64Array[] = [];
  readonly #workers: Worker[] = [];

  /**
   * `gh`, `idx` and `tmp` must be SharedArrayBuffer-backed, as are the bins (binning.ts) and the
   * OP_ROUND inputs in `round`.
   */
  constructor(
    data: BinnedData,
    gh: Float64Array[],
    idx: Uint32Array,
    tmp: Uint32Array,
    threads: number,
    round: {
      margin: Float64Array;
      label: Float64Array;
      weight: Float64Array | null;
      /** Validation rows (one output): margins, labels and weights shared like the training ones. */
      valid: {
        bins: BinnedData;
        margin: Float64Array;
        label: Float64Array;
        weight: Float64Array | null;
      } | null;
    },
  ) {
    this.slotSize = data.totalBins * 2;
    this.shards = Math.max(1, Math.min(threads, 255));
    // Up to 64 nodes per OP_SPLIT batch, fewer when their partial histograms would pass 64 MiB.
    const batchCapacity = Math.max(
      1,
      Math.min(64, Math.floor((64 << 20) / (this.shards * this.slotSize * 8))),
    );
    const offsets = new SharedArrayBuffer(Math.max(4, data.offsets.byteLength));
    new Int32Array(offsets, 0, data.offsets.length).set(data.offsets);
    const init: ShardWorkerInit = {
      control: new SharedArrayBuffer(CONTROL_BYTES),
      rowBins: data.rowBins.buffer as SharedArrayBuffer,
      colBins: data.colBins.buffer as SharedArrayBuffer,
      offsets,
      idx: idx.buffer as SharedArrayBuffer,
      tmp: tmp.buffer as SharedArrayBuffer,
      gh: gh.map((g) => g.buffer as SharedArrayBuffer),
      margin: round.margin.buffer as SharedArrayBuffer,
      label: round.label.buffer as SharedArrayBuffer,
      weight: round.weight === null ? null : (round.weight.buffer as SharedArrayBuffer),
      leaves: new SharedArrayBuffer(ROUND_MAX_LEAVES * (1 + 2 * Math.max(1, Math.min(threads, 255))) * 8),
      valid:
        round.valid === null
          ? null
          : {
              rowBins: round.valid.bins.rowBins.buffer as SharedArrayBuffer,
              rows: round.valid.bins.numRows,
              margin: round.valid.margin.buffer as SharedArrayBuffer,
              label: round.valid.label.buffer as SharedArrayBuffer,
              weight: round.valid.weight === null ? null : (round.valid.weight.buffer as SharedArrayBuffer),
            },
      treeLut: new SharedArrayBuffer(ROUND_MAX_NODES * 256),
      treeInts: new SharedArrayBuffer(ROUND_MAX_NODES * 16),
      treeValue: new SharedArrayBuffer(ROUND_MAX_NODES * 8),
      parts: new SharedArrayBuffer(this.shards * this.slotSize * 8),
      batchCapacity,
      batchInts: new SharedArrayBuffer(batchCapacity * batchStride(this.shards) * 4),
      batchLuts: new SharedArrayBuffer(batchCapacity * 256),
      // One shard: histograms are built straight into the node buffers (ShardJob.targets).
      batchParts: new SharedArrayBuffer(
        this.shards > 1 ? batchCapacity * this.shards * this.slotSize * 8 : 8,
      ),
      numRows: data.numRows,
      numFeatures: data.numFeatures,
      totalBins: data.totalBins,
      shards: this.shards,
    };
    this.#job = new ShardJob(init);
    for (let t = 1; t < this.shards; t++) {
      const w = new Worker(new URL("./shard-worker.ts", import.meta.url).href);
      w.postMessage(init);
      this.#workers.push(w);
    }
  }

  /** Number of helper workers (0 = single-threaded). */
  get workers(): number {
    return this.#workers.length;
  }

  /** A histogram buffer. */
  take(): Float64Array {
    return this.#free.pop() ?? new Float64Array(this.slotSize);
  }

  /** Return a buffer. */
  give(h: Float64Array | null): void {
    if (h !== null) this.#free.push(h);
  }

  /** Histogram of the node with shard ranges [st[t], en[t]) (`allRows`: positions are row numbers). */
  build(
    hist: Float64Array,
    output: number,
    allRows: boolean,
    st: Int32Array,
    en: Int32Array,
    rows: number,
  ): void {
    const ctrl = this.#job.ctrl;
    ctrl[CTRL.op] = OP_HIST;
    ctrl[CTRL.output] = output;
    ctrl[CTRL.allRows] = allRows ? 1 : 0;
    this.#setRanges(st, en);
    this.#dispatch(rows, hist);
  }

  /** Nodes one OP_SPLIT batch takes. */
  get batchCapacity(): number {
    return this.#job.batchCapacity;
  }

  /**
   * Put node j of the next OP_SPLIT batch: partition its shard ranges [st[t], en[t]) by `lut`
   * over feature f, and build the left (`build` 1) or right (2) child's histogram into `hist`.
   */
  batchNode(
    j: number,
    f: number,
    lut: Uint8Array,
    build: 0 | 1 | 2,
    st: Int32Array,
    en: Int32Array,
    hist: Float64Array | null,
  ): void {
    const job = this.#job;
    const n = this.shards;
    const o = j * batchStride(n);
    job.batchInts[o] = f;
    job.batchInts[o + 1] = build;
    for (let t = 0; t < n; t++) {
      job.batchInts[o + 2 + 2 * t] = st[t];
      job.batchInts[o + 3 + 2 * t] = en[t];
    }
    job.batchLuts.set(lut.subarray(0, 256), j * 256);
    this.#batchHists[j] = build === 0 ? null : hist;
  }

  readonly #batchHists: (Float64Array | null)[] = [];

  /**
   * Run the batch of `count` nodes over `rows` rows in all; per node j and shard t, the rows sent
   * left land in nl[j][t]. Histograms are summed in shard order into the buffers given.
   */
  runBatch(count: number, output: number, rows: number, nl: Int32Array[]): void {
    const job = this.#job;
    const n = this.shards;
    const ctrl = job.ctrl;
    ctrl[CTRL.op] = OP_SPLIT;
    ctrl[CTRL.output] = output;
    ctrl[CTRL.allRows] = 0;
    ctrl[CTRL.batch] = count;
    const hists = this.#batchHists;
    if (n === 1) {
      job.targets = hists;
      try {
        job.run(0);
      } finally {
        job.targets = null;
      }
    } else this.#dispatch(rows, null);
    const stride = batchStride(n);
    const m = this.slotSize;
    const parts = job.batchParts;
    for (let j = 0; j < count; j++) {
      const o = j * stride;
      for (let t = 0; t < n; t++) nl[j][t] = job.batchInts[o + 2 + 2 * n + t];
      const hist = hists[j];
      if (n === 1 || hist === null) continue;
      const base = j * n * m;
      hist.set(parts.subarray(base, base + m));
      for (let t = 1; t < n; t++) {
        const p0 = base + t * m;
        for (let i = 0; i < m; i++) hist[i] += parts[p0 + i];
      }
    }
  }

  /**
   * OP_ROUND over `rows` rows (one output, all rows in the tree): `leaves` leaves already written
   * with writeLeaf. With `task`, computes the next gradients and returns their Σg, Σh (summed in
   * shard order) in `sums`. With `metric`, the training metric after this tree goes to
   * `metrics[0]` (partials summed in shard order; with one shard equal to metric.ts's), else NaN.
   * With `treeNodes` > 0 (the tree written with writeTree), the tree is also added to the
   * validation margins, and with `validMetric` their metric goes to `metrics[1]`.
   */
  round(job: {
    rows: number;
    leaves: number;
    /** The tree was grown on a sample: walk it over every training row instead of using leaves. */
    walkTrain: boolean;
    task: "binary" | "regression" | null;
    sums: Float64Array;
    metric: "logloss" | "rmse" | null;
    treeNodes: number;
    validMetric: "logloss" | "rmse" | null;
    metrics: Float64Array;
  }): void {
    const shared = this.#job;
    const ctrl = shared.ctrl;
    ctrl[CTRL.op] = OP_ROUND;
    ctrl[CTRL.rows] = job.rows;
    ctrl[CTRL.leaves] = job.leaves;
    ctrl[CTRL.walkTrain] = job.walkTrain ? 1 : 0;
    ctrl[CTRL.gradients] = job.task === null ? 0 : 1;
    ctrl[CTRL.task] = job.task === "binary" ? 1 : 2;
    ctrl[CTRL.metric] = metricCode(job.metric);
    ctrl[CTRL.treeNodes] = job.treeNodes;
    ctrl[CTRL.validMetric] = job.treeNodes > 0 ? metricCode(job.validMetric) : 0;
    this.#dispatch(job.rows, null);
    job.metrics[0] = this.#sumLoss(shared.loss, job.metric);
    job.metrics[1] = job.treeNodes > 0 ? this.#sumLoss(shared.validLoss, job.validMetric) : Number.NaN;
    if (job.task === null) return;
    let g = 0;
    let h = 0;
    for (let t = 0; t < this.shards; t++) {
      g += shared.sums[2 * t];
      h += shared.sums[2 * t + 1];
    }
    job.sums[0] = g;
    job.sums[1] = h;
  }

  #sumLoss(parts: Float64Array, metric: "logloss" | "rmse" | null): number {
    if (metric === null) return Number.NaN;
    let s = 0;
    let w = 0;
    for (let t = 0; t < this.shards; t++) {
      s += parts[2 * t];
      w += parts[2 * t + 1];
    }
    return lossFromSums(metric, s, w);
  }

  /**
   * Write a tree for OP_ROUND's walks (routing tables by bin, as train.ts addTreeBins); returns
   * its node count, or 0 when the tree is too big for the tables.
   */
  writeTree(tree: Tree, luts: (Uint8Array | null)[]): number {
    const nn = tree.left.length;
    if (nn > ROUND_MAX_NODES) return 0;
    const job = this.#job;
    for (let node = 0; node < nn; node++) {
      const l = luts[node];
      if (l) job.treeLut.set(l.subarray(0, 256), node * 256);
      job.treeInts[4 * node] = tree.left[node];
      job.treeInts[4 * node + 1] = tree.right[node];
      job.treeInts[4 * node + 2] = tree.left[node];
      job.treeInts[4 * node + 3] = tree.feature[node];
      job.treeValue[node] = tree.value[node];
    }
    return nn;
  }

  /** Write leaf j of an OP_ROUND job: its value and its row range in every shard. */
  writeLeaf(j: number, value: number, st: Int32Array, en: Int32Array): void {
    const n = this.shards;
    const buf = this.#job.leafBuf;
    const o = j * (1 + 2 * n);
    buf[o] = value;
    for (let t = 0; t < n; t++) {
      buf[o + 1 + 2 * t] = st[t];
      buf[o + 2 + 2 * t] = en[t];
    }
  }

  #setRanges(st: Int32Array, en: Int32Array): void {
    const r = this.#job.ranges;
    for (let t = 0; t < this.shards; t++) {
      r[2 * t] = st[t];
      r[2 * t + 1] = en[t];
    }
  }

  /** Run the posted job over every shard, then sum the partials into `hist` in shard order. */
  #dispatch(rows: number, hist: Float64Array | null): void {
    const job = this.#job;
    const n = this.shards;
    if (n === 1) {
      job.run(0, hist);
      return;
    }
    if (rows < MIN_PARALLEL_ROWS) {
      for (let t = 0; t < n; t++) job.run(t);
    } else {
      const ctrl = job.ctrl;
      Atomics.store(ctrl, CTRL.done, 0);
      const tag = (ctrl[CTRL.seq] + 1) & TAG_MASK;
      Atomics.store(ctrl, CTRL.next, tag << 8);
      Atomics.store(ctrl, CTRL.seq, tag);
      if (Atomics.load(ctrl, CTRL.sleeping) > 0) Atomics.notify(ctrl, CTRL.seq);
      for (;;) {
        const t = claimShard(ctrl, tag, n);
        if (t < 0) break;
        job.run(t);
        Atomics.add(ctrl, CTRL.done, 1);
      }
      // The other shards are being run right now: spin (sleeping would add a wakeup).
      while (Atomics.load(ctrl, CTRL.done) < n);
      if (Atomics.load(ctrl, CTRL.failed) === 1) {
        throw arborError("INTERNAL", "fit: a training worker failed (its error is on stderr)");
      }
    }
    if (hist === null) return;
    const parts = job.parts;
    hist.set(parts[0]);
    const m = this.slotSize;
    for (let t = 1; t < n; t++) {
      const part = parts[t];
      for (let j = 0; j < m; j++) hist[j] += part[j];
    }
  }

  /** Stop the workers. */
  close(): void {
    if (this.#workers.length === 0) return;
    const ctrl = this.#job.ctrl;
    Atomics.store(ctrl, CTRL.stop, 1);
    Atomics.add(ctrl, CTRL.seq, 1);
    Atomics.notify(ctrl, CTRL.seq);
    for (const w of this.#workers) w.terminate();
  }
}
