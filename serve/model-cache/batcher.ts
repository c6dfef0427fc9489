/**
 * Micro-batching: requests for the same version that arrive within one event-loop turn (or within
 * `maxWaitUs`) are copied into one input matrix and scored with one ORT run. onnxruntime-node runs
 * a session synchronously on the JS thread (its `run` is a setImmediate around a native call), so
 * one run of 32 rows costs far less than 32 runs of one row: the per-call overhead dominates at
 * batch 1. Off switch: `maxRows <= 1` or `enabled: false` scores each request on its own.
 */

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

interface Pending {
  data: Float32Array;
  rows: number;
  resolve: (s: BatchSlice) => void;
  reject: (e: unknown) => void;
}

/** Options of a {@link Batcher}. */
export interface BatcherOptions {
  enabled: boolean;
  maxRows: number;
  maxWaitUs: number;
  width: number;
  /** Score a row-major matrix. */
  run(data: Float32Array, rows: number): Promise<RunOutputs>;
  /** Called with the row count of every ORT run. */
  onRun?(rows: number): void;
}

/** Coalesces concurrent score calls for one model version. */
export class Batcher {
  readonly #o: BatcherOptions;
  #queue: Pending[] = [];
  #queuedRows = 0;
  #scheduled = false;
  #firstAt = 0;
  /**
   * Flush after one event-loop turn, or keep turning the loop (each turn polls the sockets, so more
   * requests can join) until `maxWaitUs` has passed since the first queued request. Timers have
   * 1 ms resolution in Node; setImmediate turns give µs-scale waits.
   */
  readonly #tick = (): void => {
    if (this.#queue.length === 0) {
      this.#scheduled = false;
      return;
    }
    const waited = (performance.now() - this.#firstAt) * 1000;
    if (waited < this.#o.maxWaitUs && this.#queuedRows < this.#o.maxRows) setImmediate(this.#tick);
    else this.#flush();
  };

  constructor(options: BatcherOptions) {
    this.#o = options;
  }

  /** Score `rows` rows; may share one ORT run with other callers. */
  score(data: Float32Array, rows: number): Promise<BatchSlice> {
    const o = this.#o;
    if (!o.enabled || o.maxRows <= 1 || rows >= o.maxRows) return this.#direct(data, rows);
    return new Promise<BatchSlice>((resolve, reject) => {
      if (this.#queuedRows + rows > o.maxRows) this.#flush();
      this.#queue.push({ data, rows, resolve, reject });
      this.#queuedRows += rows;
      if (this.#queuedRows >= o.maxRows) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        this.#firstAt = performance.now();
        setImmediate(this.#tick);
      }
    });
  }

  async #direct(data: Float32Array, rows: number): Promise<BatchSlice> {
    this.#o.onRun?.(rows);
    const outputs = await this.#o.run(data, rows);
    return { outputs, offset: 0, rows, batchRows: rows };
  }

  #flush(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    if (queue.length === 0) return;
    const total = this.#queuedRows;
    this.#queue = [];
    this.#queuedRows = 0;
    if (queue.length === 1) {
      const p = queue[0];
      this.#direct(p.data, p.rows).then(p.resolve, p.reject);
      return;
    }
    const width = this.#o.width;
    const data = new Float32Array(total * width);
    let at = 0;
    for (let i = 0; i < queue.length; i++) {
      data.set(queue[i].data, at * width);
      at += queue[i].rows;
    }
    this.#o.onRun?.(total);
    this.#o.run(data, total).then(
      (outputs) => {
        let offset = 0;
        for (let i = 0; i < queue.length; i++) {
          const p = queue[i];
          p.resolve({ outputs, offset, rows: p.rows, batchRows: total });
          offset += p.rows;
        }
      },
      (e) => {
        for (let i = 0; i < queue.length; i++) queue[i].reject(e);
      },
    );
  }
}
