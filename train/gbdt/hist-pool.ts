/**
 * Histogram buffers and their builder. With threads > 1, a build over enough rows is cut into
 * `threads` equal ROW ranges ("chunks"); the main thread and `threads − 1` Bun workers claim
 * chunks with a compare-and-swap on a shared counter, each chunk is built over all features into
 * its own partial histogram, and the main thread adds the partials in chunk order. Who built a
 * chunk does not matter, so a model is byte-identical for a given thread count; across thread
 * counts the per-bin sums are associated differently and may differ in the last bits.
 *
 * Why this shape (flights 160k × 8, leafwise, 100 rounds, 2-core VM, Bun 1.x):
 * - The old split by FEATURE chunks (2 × threads chunks of 2 features) could not use the kernel's
 *   4-features-per-word path and made every thread walk all rows (gradients, row indices): 2
 *   threads were slower than 1 (leafwise / depthwise / oblivious 1.13 / 0.90 / 0.80 s against
 *   1.01 / 0.79 / 0.66 s).
 * - Node histograms living in a SharedArrayBuffer made the main thread's kernel slower in
 *   training (all builds on main: 464 → 570 ms of histogram time, one run; cause not pinned down),
 *   so node histograms are ordinary arrays; only the partials and the control block are shared.
 *   Main builds its chunks in a private buffer too.
 * - Still a small gain: the big builds are ~25% of a fit, the worker's half reads gradients and
 *   row indices the main thread just wrote (other core's cache), and a wakeup costs ~0.1 ms.
 *   500 rounds, mean of 3-4 interleaved runs: leafwise 3.26 → 3.04 s, depthwise 3.58 → 3.42 s,
 *   oblivious 3.15 → 2.92 s for 1 → 2 threads.
 * - Builds under MIN_PARALLEL_ROWS rows stay on the main thread: waking a worker costs more.
 * - Workers sleep in Atomics.wait between builds; spinning instead slowed the main thread
 *   (measured 1.01 → 1.20 s with a worker spinning the whole fit).
 */
import type { BinnedData } from "./binning.ts";
import { buildHistogramRange } from "./hist-kernel.ts";

/** Indices into the control block. */
export const CTRL = {
  seq: 0,
  done: 1,
  stop: 2,
  start: 4,
  end: 5,
  output: 6,
  allRows: 7,
  /** (job tag << 8) | next chunk to claim. */
  next: 8,
} as const;

/** Byte offset of the control block inside its buffer: a cache line of its own. */
export const CTRL_OFFSET = 2048;

/** Smaller builds run on the main thread alone: waking a worker costs more than it saves. */
const MIN_PARALLEL_ROWS = 16_384;

/** Job tags are 23 bits so that `tag << 8 | chunk` stays a positive int32. */
const TAG_MASK = 0x7fffff;

/** Claim the next chunk of job `tag`; −1 when none is left or the job is over. */
export function claimChunk(ctrl: Int32Array, tag: number, chunks: number): number {
  for (;;) {
    const v = Atomics.load(ctrl, CTRL.next);
    if (v >>> 8 !== tag) return -1;
    const c = v & 0xff;
    if (c >= chunks) return -1;
    if (Atomics.compareExchange(ctrl, CTRL.next, v, v + 1) === v) return c;
  }
}

/** Row range [a, b) of chunk c when rows [start, end) are cut into `chunks` near-equal parts. */
export function chunkRows(start: number, end: number, c: number, chunks: number): [number, number] {
  const n = end - start;
  return [start + Math.floor((n * c) / chunks), start + Math.floor((n * (c + 1)) / chunks)];
}

/** What a worker receives once. */
export interface HistWorkerInit {
  ctrl: SharedArrayBuffer;
  rowBins: SharedArrayBuffer;
  offsets: SharedArrayBuffer;
  idx: SharedArrayBuffer;
  gh: SharedArrayBuffer[];
  /** One partial histogram per chunk. */
  parts: SharedArrayBuffer;
  slotSize: number;
  numFeatures: number;
  totalBins: number;
  chunks: number;
}

/** A pool of histogram buffers plus the (possibly parallel) builder. */
export class HistPool {
  readonly slotSize: number;
  readonly #data: BinnedData;
  readonly #gh: Float64Array[];
  readonly #free: Float64Array[] = [];
  readonly #workers: Worker[] = [];
  readonly #ctrl: Int32Array | null = null;
  readonly #chunks: number;
  readonly #parts: Float64Array[] = [];
  /** Main thread's private build buffer, copied into the chunk's partial. */
  readonly #local: Float64Array;

  /** `gh` and `idx` must be SharedArrayBuffer-backed when threads > 1. */
  constructor(data: BinnedData, gh: Float64Array[], idx: Uint32Array, threads: number) {
    this.#data = data;
    this.#gh = gh;
    this.slotSize = data.totalBins * 2;
    this.#chunks = Math.min(threads, 255);
    this.#local = new Float64Array(threads > 1 ? this.slotSize : 0);
    if (threads <= 1) return;
    const ctrlSab = new SharedArrayBuffer(2 * CTRL_OFFSET);
    this.#ctrl = new Int32Array(ctrlSab, CTRL_OFFSET, 16);
    const partsSab = new SharedArrayBuffer(this.#chunks * this.slotSize * 8);
    for (let c = 0; c < this.#chunks; c++) {
      this.#parts.push(new Float64Array(partsSab, c * this.slotSize * 8, this.slotSize));
    }
    const offsets = new SharedArrayBuffer(data.offsets.byteLength);
    new Int32Array(offsets).set(data.offsets);
    for (let t = 1; t < threads; t++) {
      const w = new Worker(new URL("./hist-worker.ts", import.meta.url).href);
      const init: HistWorkerInit = {
        ctrl: ctrlSab,
        rowBins: data.rowBins.buffer as SharedArrayBuffer,
        offsets,
        idx: idx.buffer as SharedArrayBuffer,
        gh: gh.map((g) => g.buffer as SharedArrayBuffer),
        parts: partsSab,
        slotSize: this.slotSize,
        numFeatures: data.numFeatures,
        totalBins: data.totalBins,
        chunks: this.#chunks,
      };
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

  /** Build the histogram of rows idx[start..end) (all rows in order when `idx` is null) of output k. */
  build(hist: Float64Array, output: number, idx: Uint32Array | null, start: number, end: number): void {
    const d = this.#data;
    const ctrl = this.#ctrl;
    const gh = this.#gh[output];
    if (ctrl === null || end - start < MIN_PARALLEL_ROWS) {
      buildHistogramRange(
        hist,
        0,
        d.rowBins,
        d.numFeatures,
        d.offsets,
        d.totalBins,
        gh,
        idx,
        start,
        end,
        0,
        d.numFeatures,
      );
      return;
    }
    ctrl[CTRL.start] = start;
    ctrl[CTRL.end] = end;
    ctrl[CTRL.output] = output;
    ctrl[CTRL.allRows] = idx === null ? 1 : 0;
    Atomics.store(ctrl, CTRL.done, 0);
    const tag = (ctrl[CTRL.seq] + 1) & TAG_MASK;
    Atomics.store(ctrl, CTRL.next, tag << 8);
    Atomics.store(ctrl, CTRL.seq, tag);
    Atomics.notify(ctrl, CTRL.seq);
    const chunks = this.#chunks;
    const parts = this.#parts;
    const local = this.#local;
    for (;;) {
      const c = claimChunk(ctrl, tag, chunks);
      if (c < 0) break;
      const [a, b] = chunkRows(start, end, c, chunks);
      buildHistogramRange(
        local,
        0,
        d.rowBins,
        d.numFeatures,
        d.offsets,
        d.totalBins,
        gh,
        idx,
        a,
        b,
        0,
        d.numFeatures,
      );
      parts[c].set(local);
      Atomics.add(ctrl, CTRL.done, 1);
    }
    // The other chunks are being built right now: spin (sleeping would add a wakeup).
    while (Atomics.load(ctrl, CTRL.done) < chunks);
    // Partials are added in chunk order, whoever built them.
    hist.set(parts[0]);
    const n = this.slotSize;
    for (let c = 1; c < chunks; c++) {
      const part = parts[c];
      for (let j = 0; j < n; j++) hist[j] += part[j];
    }
  }

  /** Stop the workers. */
  close(): void {
    const ctrl = this.#ctrl;
    if (ctrl === null) return;
    Atomics.store(ctrl, CTRL.stop, 1);
    Atomics.add(ctrl, CTRL.seq, 1);
    Atomics.notify(ctrl, CTRL.seq);
    for (const w of this.#workers) w.terminate();
  }
}
