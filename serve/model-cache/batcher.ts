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

/** What a waiter threw from `failed`: reported, and the other waiters are still answered. */
type Report = (e: unknown) => void;

/** Tell one waiter its rows failed. */
function fail(w: BatchWaiter, e: unknown, report: Report): void {
  try {
    w.failed(e);
  } catch (thrown) {
    report(thrown);
  }
}

/** Tell one waiter its rows were scored (a waiter that throws is told it failed). */
function answer(w: BatchWaiter, outputs: RunOutputs, offset: number, rows: number, report: Report): void {
  try {
    w.scored(outputs, offset, rows);
  } catch (e) {
    fail(w, e, report);
  }
}

/** Answer every waiter of a batch whose run returned `outputs` (commit order: replies keep it). */
function settle(batch: PendingBatch, outputs: RunOutputs, report: Report): void {
  const { waiters, offsets } = batch;
  const n = waiters.length;
  for (let i = 0; i < n; i++) {
    const end = i + 1 < n ? offsets[i + 1] : outputs.rows;
    answer(waiters[i], outputs, offsets[i], end - offsets[i], report);
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
  /**
   * A waiter threw from `failed` (a bug in it): the batcher answers the waiters after it all the
   * same, and hands this what was thrown (default: console.error).
   */
  onWaiterError?(e: unknown): void;
}

/** Rows a batch matrix starts with (it doubles up to maxRows when a batch needs more). */
const INITIAL_ROWS = 64;
/** Matrices kept for reuse once their runs have returned. */
const MAX_SPARES = 4;

/** A batch closed before its turn (it filled up): run at the next check phase, in order. */
interface SealedBatch {
  batch: PendingBatch;
  matrix: Float32Array;
  rows: number;
}

/**
 * Coalesces concurrent score calls for one model version. Batches run in the event loop's check
 * phase (setImmediate), never inside the uWS callback that committed rows: a reply written there
 * to another connection cannot be corked (uWS corks only the socket whose callback is running), so
 * each of its writes would be a syscall and a packet of its own. That used to happen whenever a
 * batch filled up while the requests were read: at 256 connections (batches of 256 rows) a worker
 * fell from ~70k to ~16k single-row predicts/s.
 */
export class Batcher {
  readonly #o: BatcherOptions;
  readonly #batching: boolean;
  readonly #report: Report;
  #batch: PendingBatch | null = null;
  #queuedRows = 0;
  /** Matrix of the batch being filled (null until a request reserves rows). */
  #matrix: Float32Array | null = null;
  /** Batches that filled up, waiting for the check phase (oldest first). */
  readonly #sealed: SealedBatch[] = [];
  /** Matrices whose runs have returned, reused by the next batches. */
  readonly #spares: Float32Array[] = [];
  /** When the batch being filled got its first request. */
  #firstAt = 0;
  /** A {@link #tick} is queued. */
  #scheduled = false;
  /**
   * Run the batches that filled up, then the one being filled: after one event-loop turn, or
   * keep turning the loop (each turn polls the sockets, so more requests can join) until
   * `maxWaitUs` has passed since its first request. Timers have 1 ms resolution in Node;
   * setImmediate turns give µs-scale waits.
   */
  readonly #tick = (): void => {
    this.#scheduled = false;
    this.#runSealed();
    if (this.#batch === null) return;
    const waited = (performance.now() - this.#firstAt) * 1000;
    if (waited < this.#o.maxWaitUs && this.#queuedRows < this.#o.maxRows) this.#schedule();
    else this.#flush();
  };

  constructor(options: BatcherOptions) {
    this.#o = options;
    this.#batching = options.enabled && options.maxRows > 1;
    this.#report = options.onWaiterError ?? ((e) => console.error("a batch waiter threw from failed():", e));
  }

  /**
   * Room for `rows` validated rows: in the batch being filled when they fit (closing the current
   * batch first if they do not fit beside it), else a matrix of their own.
   */
  reserve(rows: number): BatchTarget {
    const o = this.#o;
    const width = o.width;
    if (!this.#batching || rows >= o.maxRows) {
      return { data: new Float32Array(rows * width), at: 0, shared: false };
    }
    if (this.#queuedRows + rows > o.maxRows) this.#seal();
    const need = (this.#queuedRows + rows) * width;
    let m = this.#matrix;
    if (m === null) {
      m = this.#spares.pop() ?? null;
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
   * tell `waiter` when they are scored: before this returns if the rows are scored alone (a
   * matrix of their own), else in the check phase that runs their batch.
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
      this.#schedule();
    }
    batch.waiters.push(waiter);
    batch.offsets.push(this.#queuedRows);
    this.#queuedRows += rows;
    if (this.#queuedRows >= this.#o.maxRows) this.#seal();
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
      fail(waiter, e, this.#report);
      return;
    }
    answer(waiter, outputs, 0, rows, this.#report);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#tick);
  }

  /** Close the batch being filled; it runs at the next check phase, before any later batch. */
  #seal(): void {
    const batch = this.#batch;
    const matrix = this.#matrix;
    if (batch === null || matrix === null) return;
    this.#sealed.push({ batch, matrix, rows: this.#queuedRows });
    this.#batch = null;
    this.#queuedRows = 0;
    this.#matrix = null;
    this.#schedule();
  }

  #runSealed(): void {
    // Answering a batch may commit rows (a stream connection resumed): they join a new batch.
    for (let s = this.#sealed.shift(); s !== undefined; s = this.#sealed.shift())
      this.#run(s.batch, s.matrix, s.rows);
  }

  /** Run the batch being filled now. */
  #flush(): void {
    const batch = this.#batch;
    const matrix = this.#matrix;
    if (batch === null || matrix === null) return;
    const total = this.#queuedRows;
    this.#batch = null;
    this.#queuedRows = 0;
    this.#matrix = null;
    this.#run(batch, matrix, total);
  }

  #run(batch: PendingBatch, matrix: Float32Array, total: number): void {
    this.#o.onRun?.(total);
    let outputs: RunOutputs | null = null;
    let error: unknown = null;
    try {
      outputs = this.#o.run(matrix.subarray(0, total * this.#o.width), total);
    } catch (e) {
      error = e;
    }
    // ORT has read the input: a later batch may write into this matrix.
    if (this.#spares.length < MAX_SPARES) this.#spares.push(matrix);
    if (outputs !== null) settle(batch, outputs, this.#report);
    else for (const w of batch.waiters) fail(w, error, this.#report);
  }
}
