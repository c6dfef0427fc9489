/**
 * Histogram buffers and their builder. With threads > 1 the buffers are slots of one
 * SharedArrayBuffer and every build is split by feature range between the main thread and
 * `threads − 1` Bun workers (bins, gradients and row indices are SharedArrayBuffers too), which
 * keeps histograms bit-identical for any thread count. Synchronisation is one Atomics
 * notify/wait pair per build on a shared control block.
 */
import type { BinnedData } from "./binning.ts";
import { buildHistogramRange } from "./hist-kernel.ts";

/** Indices into the control block. */
export const CTRL = { seq: 0, done: 1, stop: 2, slot: 3, start: 4, end: 5, output: 6, allRows: 7 } as const;

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
  f0: number;
  f1: number;
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
  readonly #mainRange: [number, number];

  /** `gh` and `idx` must be SharedArrayBuffer-backed when threads > 1. */
  constructor(data: BinnedData, gh: Float64Array[], idx: Uint32Array, threads: number, slots: number) {
    this.#data = data;
    this.#gh = gh;
    this.slotSize = data.totalBins * 2;
    const ranges = threads > 1 ? featureRanges(data, threads) : [[0, data.numFeatures] as [number, number]];
    this.#mainRange = ranges[0];
    if (ranges.length > 1) {
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
      for (let t = 1; t < ranges.length; t++) {
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
          f0: ranges[t][0],
          f1: ranges[t][1],
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
    if (ctrl === null || slot === undefined) {
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
    Atomics.add(ctrl, CTRL.seq, 1);
    Atomics.notify(ctrl, CTRL.seq);
    const [f0, f1] = this.#mainRange;
    buildHistogramRange(
      this.#hist!,
      slot * this.slotSize,
      d.rowBins,
      d.numFeatures,
      d.offsets,
      d.totalBins,
      this.#gh[output],
      idx,
      start,
      end,
      f0,
      f1,
    );
    const n = this.#workers.length;
    for (;;) {
      const done = Atomics.load(ctrl, CTRL.done);
      if (done >= n) break;
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
