/**
 * Micro-batching: requests for the same version that arrive within one event-loop turn (or within
 * `maxWaitUs`) share one input matrix and one ORT run. A run is synchronous on the JS thread
 * (ort-session.ts), so one run of 32 rows costs far less than 32 runs of one row: the per-call
 * overhead dominates at batch 1. A batch is run when it is flushed and its waiters are answered
 * right after, in commit order. Off switch: `maxRows <= 1` or `enabled: false` scores each request
 * on its own.
 *
 * Requests write their validated rows straight into the matrix of the batch being filled
 * ({@link Batcher.reserve}, then {@link Batcher.commitTo}), and a matrix goes back to a spare slot
 * once its run has returned, so a single-row request allocates no typed array of its own: each
 * off-heap typed array (anything over 64 bytes; 28 float32 features are 112) costs ~1.4 µs of
 * malloc, ArrayBuffer sweeping and GC here, more than the validation that fills it.
 */

import type { RowTarget } from "../core/rows.ts";

/** Outputs of one ORT run, row-major, for `rows` rows. */
export interface RunOutputs {
  rows: number;
  /** Output name → flat float32 data and row width. */
  tensors: Map<string, { data: Float32Array; width: number }>;
}

/** What a request gets back: the batch outputs and where its rows start. */
export interface BatchSlice {
  outputs: RunOutputs;
  offset: number;
  rows: number;
  /** Rows in the ORT run that scored this request (for the batch-size metric). */
  batchRows: number;
}

/**
 * Room for rows from row `at` of `data`, from {@link Batcher.reserve}. Fill it synchronously and
 * {@link Batcher.commitTo} it before yielding; dropping it (e.g. the rows failed validation) is fine:
 * nothing is queued until the commit.
 */
export interface BatchTarget extends RowTarget {
  /** The matrix of the batch being filled (false: a matrix of its own, scored alone). */
  shared: boolean;
}

/**
 * Gets the outcome of rows committed to a batch ({@link Batcher.commitTo}): one call, `scored`
 * or `failed` (and `failed` after a `scored` that threw). A callback object rather than a
 * promise: on the hot path a request's promises, their reactions and closures were the largest
 * share of its garbage (~0.6 of ~3.4 KB per single-row request), and garbage per request sets how
 * often a young-generation GC stalls every request in flight.
 */
export interface BatchWaiter {
  /** The run returned; the request's rows are rows `offset` to `offset + rows` of `outputs`. */
  scored(outputs: RunOutputs, offset: number, rows: number): void;
  /** The run failed (or `scored` threw). */
  failed(e: unknown): void;
}

/** The batch being filled: its waiters in commit order and the row each one starts at. */
interface PendingBatch {
  waiters: BatchWaiter[];
  offsets: number[];
}

/** Tell one waiter its rows were scored (a waiter that throws is told it failed). */
function answer(w: BatchWaiter, outputs: RunOutputs, offset: number, rows: number): void {
  try {
    w.scored(outputs, offset, rows);
  } catch (e) {
    w.failed(e);
  }
}

/** Answer every waiter of a batch whose run returned `outputs` (commit order: replies keep it). */
function settle(batch: PendingBatch, outputs: RunOutputs): void {
  const { waiters, offsets } = batch;
  const n = waiters.length;
  for (let i = 0; i < n; i++) {
    const end = i + 1 < n ? offsets[i + 1] : outputs.rows;
    answer(waiters[i], outputs, offsets[i], end - offsets[i]);
  }
}

/** A waiter that settles a promise of the request's {@link BatchSlice}. */
function promiseOf(commit: (w: BatchWaiter) => void): Promise<BatchSlice> {
  return new Promise<BatchSlice>((resolve, reject) =>
    commit({
      scored: (outputs, offset, rows) => resolve({ outputs, offset, rows, batchRows: outputs.rows }),
      failed: reject,
    }),
  );
}

/** Options of a {@link Batcher}. */
export interface BatcherOptions {
  enabled: boolean;
  maxRows: number;
  maxWaitUs: number;
  width: number;
  /** Score a row-major matrix (`data` holds exactly `rows` rows), synchronously; throws on failure. */
  run(data: Float32Array, rows: number): RunOutputs;
  /** Called with the row count of every ORT run. */
  onRun?(rows: number): void;
}

/** Rows a batch matrix starts with (it doubles up to maxRows when a batch needs more). */
const INITIAL_ROWS = 64;

/** Coalesces concurrent score calls for one model version. */
export class Batcher {
  readonly #o: BatcherOptions;
  readonly #batching: boolean;
  #batch: PendingBatch | null = null;
  #queuedRows = 0;
  /** Matrix of the batch being filled (null until a request reserves rows). */
  #matrix: Float32Array | null = null;
  /** A matrix whose run has returned, reused by the next batch. */
  #spare: Float32Array | null = null;
  /** When the batch being filled got its first request. */
  #firstAt = 0;
  /**
   * Flush after one event-loop turn, or keep turning the loop (each turn polls the sockets, so more
   * requests can join) until `maxWaitUs` has passed since the first queued request. Timers have
   * 1 ms resolution in Node; setImmediate turns give µs-scale waits.
   */
  readonly #tick = (): void => {
    if (this.#batch === null) return; // flushed already (it filled up)
    const waited = (performance.now() - this.#firstAt) * 1000;
    if (waited < this.#o.maxWaitUs && this.#queuedRows < this.#o.maxRows) setImmediate(this.#tick);
    else this.#flush();
  };

  constructor(options: BatcherOptions) {
    this.#o = options;
    this.#batching = options.enabled && options.maxRows > 1;
  }

  /**
   * Room for `rows` validated rows: in the batch being filled when they fit (flushing the current
   * batch first if they do not fit beside it), else a matrix of their own.
   */
  reserve(rows: number): BatchTarget {
    const o = this.#o;
    const width = o.width;
    if (!this.#batching || rows >= o.maxRows) {
      return { data: new Float32Array(rows * width), at: 0, shared: false };
    }
    if (this.#queuedRows + rows > o.maxRows) this.#flush();
    const need = (this.#queuedRows + rows) * width;
    let m = this.#matrix;
    if (m === null) {
      m = this.#spare;
      this.#spare = null;
      if (m === null || m.length < need) {
        m = new Float32Array(Math.max(need, Math.min(o.maxRows, INITIAL_ROWS) * width));
      }
      this.#matrix = m;
    } else if (m.length < need) {
      const grown = new Float32Array(Math.min(Math.max(need, m.length * 2), o.maxRows * width));
      grown.set(m.subarray(0, this.#queuedRows * width));
      this.#matrix = m = grown;
    }
    return { data: m, at: this.#queuedRows, shared: true };
  }

  /**
   * Score the `rows` rows written into `target` (which must come from the latest reserve) and
   * tell `waiter` when they are scored — before this returns if the batch is run at once (it
   * filled up, or the rows are scored alone), else when the batch is flushed.
   */
  commitTo(target: BatchTarget, rows: number, waiter: BatchWaiter): void {
    if (!target.shared) {
      this.#direct(target.data, rows, waiter);
      return;
    }
    let batch = this.#batch;
    if (batch === null) {
      batch = this.#batch = { waiters: [], offsets: [] };
      this.#firstAt = performance.now();
      setImmediate(this.#tick);
    }
    batch.waiters.push(waiter);
    batch.offsets.push(this.#queuedRows);
    this.#queuedRows += rows;
    if (this.#queuedRows >= this.#o.maxRows) this.#flush();
  }

  /** {@link commitTo} as a promise of the request's slice. */
  commit(target: BatchTarget, rows: number): Promise<BatchSlice> {
    return promiseOf((w) => this.commitTo(target, rows, w));
  }

  /** Score `rows` rows of a row-major matrix; may share one ORT run with other callers. */
  score(data: Float32Array, rows: number): Promise<BatchSlice> {
    if (!this.#batching || rows >= this.#o.maxRows) return promiseOf((w) => this.#direct(data, rows, w));
    const target = this.reserve(rows);
    target.data.set(data.subarray(0, rows * this.#o.width), target.at * this.#o.width);
    return this.commit(target, rows);
  }

  #direct(data: Float32Array, rows: number, waiter: BatchWaiter): void {
    this.#o.onRun?.(rows);
    let outputs: RunOutputs;
    try {
      outputs = this.#o.run(data, rows);
    } catch (e) {
      waiter.failed(e);
      return;
    }
    answer(waiter, outputs, 0, rows);
  }

  #flush(): void {
    const batch = this.#batch;
    const matrix = this.#matrix;
    if (batch === null || matrix === null) return;
    const total = this.#queuedRows;
    this.#batch = null;
    this.#queuedRows = 0;
    this.#matrix = null;
    this.#o.onRun?.(total);
    let outputs: RunOutputs | null = null;
    let error: unknown = null;
    try {
      outputs = this.#o.run(matrix.subarray(0, total * this.#o.width), total);
    } catch (e) {
      error = e;
    }
    // ORT has read the input: the next batch may write into this matrix.
    if (this.#spare === null || this.#spare.length < matrix.length) this.#spare = matrix;
    if (outputs !== null) settle(batch, outputs);
    else for (const w of batch.waiters) w.failed(error);
  }
}
