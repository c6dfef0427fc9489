/**
 * Histogram buffers and their builder. With threads > 1 the buffers are slots of one
 * SharedArrayBuffer and every build is cut into 2 × threads feature-range chunks that the main
 * thread and `threads − 1` Bun workers claim with a compare-and-swap on a shared counter (bins,
 * gradients and row indices are SharedArrayBuffers too). Each feature is always summed by one
 * thread in a fixed order (hist-kernel.ts), so histograms are bit-identical for any thread count.
 *
 * Why claiming instead of a fixed range per thread: on these shared 2-core machines a worker is
 * often descheduled; with fixed ranges the main thread waited for it on every build. With
 * claiming, the main thread takes over the chunks a sleeping worker has not started and waits for
 * at most the one chunk it has.
 *
 * Measured (2-core VM shared by ~8 sessions, load 7-8, Bun 1.4), workers do NOT pay off here, so
 * `arbor fit` defaults to 1 thread:
 * - one 400k × 28 histogram, best of 25: 1 thread 14-15 ms, 2 threads 17-24 ms (the worker did
 *   half the chunks, so both ran; the kernel is load/store bound and the two vCPUs share it);
 * - synthetic 200k × 28, 100 rounds, wall: depthwise 5.1-9.7 s (1) vs 7.7-12.7 s (2); leafwise
 *   10.4-10.9 s (1) vs 14.9-15.7 s (2). Fixed ranges instead of claiming: similar or worse.
 */
import type { BinnedData } from "./binning.ts";
import { buildHistogramRange } from "./hist-kernel.ts";

/** Indices into the control block. */
export const CTRL = {
  seq: 0,
  done: 1,
  stop: 2,
  slot: 3,
  start: 4,
  end: 5,
  output: 6,
  allRows: 7,
  /** (job tag << 8) | next chunk to claim. */
  next: 8,
} as const;

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

/** What a worker receives once. */
export interface HistWorkerInit {
  ctrl: SharedArrayBuffer;
  hist: SharedArrayBuffer;
  rowBins: SharedArrayBuffer;
  offsets: SharedArrayBuffer;
  idx: SharedArrayBuffer;
  gh: SharedArrayBuffer[];
  slotSize: number;
  numFeatures: number;
  totalBins: number;
  chunks: [number, number][];
}

/** Feature ranges of about equal bin counts, one per thread. */
export function featureRanges(data: BinnedData, threads: number): [number, number][] {
  const ranges: [number, number][] = [];
  let f = 0;
  for (let t = 0; t < threads; t++) {
    const target = ((t + 1) * data.totalBins) / threads;
    const f0 = f;
    while (f < data.numFeatures && (data.offsets[f] + data.mappers[f].numBins + 1 <= target || f === f0)) f++;
    if (t === threads - 1) f = data.numFeatures;
    ranges.push([f0, f]);
  }
  return ranges.filter(([a, b]) => b > a);
}

/** A pool of histogram buffers plus the (possibly parallel) builder. */
export class HistPool {
  readonly slotSize: number;
  readonly #data: BinnedData;
  readonly #gh: Float64Array[];
  readonly #free: Float64Array[] = [];
  readonly #slotOf = new Map<Float64Array, number>();
  readonly #workers: Worker[] = [];
  readonly #ctrl: Int32Array | null = null;
  readonly #hist: Float64Array | null = null;
  readonly #chunks: [number, number][];

  /** `gh` and `idx` must be SharedArrayBuffer-backed when threads > 1. */
  constructor(data: BinnedData, gh: Float64Array[], idx: Uint32Array, threads: number, slots: number) {
    this.#data = data;
    this.#gh = gh;
    this.slotSize = data.totalBins * 2;
    this.#chunks = threads > 1 ? featureRanges(data, Math.min(2 * threads, 255)) : [[0, data.numFeatures]];
    if (threads > 1 && this.#chunks.length > 1) {
      const histSab = new SharedArrayBuffer(slots * this.slotSize * 8);
      this.#hist = new Float64Array(histSab);
      for (let s = slots - 1; s >= 0; s--) {
        const view = this.#hist.subarray(s * this.slotSize, (s + 1) * this.slotSize);
        this.#slotOf.set(view, s);
        this.#free.push(view);
      }
      const ctrlSab = new SharedArrayBuffer(64);
      this.#ctrl = new Int32Array(ctrlSab);
      const offsets = new SharedArrayBuffer(data.offsets.byteLength);
      new Int32Array(offsets).set(data.offsets);
      for (let t = 1; t < threads; t++) {
        const w = new Worker(new URL("./hist-worker.ts", import.meta.url).href);
        const init: HistWorkerInit = {
          ctrl: ctrlSab,
          hist: histSab,
          rowBins: data.rowBins.buffer as SharedArrayBuffer,
          offsets,
          idx: idx.buffer as SharedArrayBuffer,
          gh: gh.map((g) => g.buffer as SharedArrayBuffer),
          slotSize: this.slotSize,
          numFeatures: data.numFeatures,
          totalBins: data.totalBins,
          chunks: this.#chunks,
        };
        w.postMessage(init);
        this.#workers.push(w);
      }
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
    const slot = this.#slotOf.get(hist);
    const ctrl = this.#ctrl;
    if (ctrl === null || slot === undefined || end - start < MIN_PARALLEL_ROWS) {
      buildHistogramRange(
        hist,
        0,
        d.rowBins,
        d.numFeatures,
        d.offsets,
        d.totalBins,
        this.#gh[output],
        idx,
        start,
        end,
        0,
        d.numFeatures,
      );
      return;
    }
    ctrl[CTRL.slot] = slot;
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
    const base = slot * this.slotSize;
    const gh = this.#gh[output];
    for (;;) {
      const c = claimChunk(ctrl, tag, chunks.length);
      if (c < 0) break;
      buildHistogramRange(
        this.#hist!,
        base,
        d.rowBins,
        d.numFeatures,
        d.offsets,
        d.totalBins,
        gh,
        idx,
        start,
        end,
        chunks[c][0],
        chunks[c][1],
      );
      Atomics.add(ctrl, CTRL.done, 1);
    }
    for (;;) {
      const done = Atomics.load(ctrl, CTRL.done);
      if (done >= chunks.length) break;
      Atomics.wait(ctrl, CTRL.done, done);
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
