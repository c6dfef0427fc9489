/**
 * A histogram worker: sleeps on a shared control block, claims row-range chunks of the posted
 * histogram build until none is left, builds each over all features into the chunk's partial
 * histogram and reports it done. Runs a blocking Atomics.wait loop, so it never returns to its
 * event loop until told to stop.
 */
import { buildHistogramRange } from "./hist-kernel.ts";
import { CTRL, CTRL_OFFSET, chunkRows, claimChunk, type HistWorkerInit } from "./hist-pool.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<HistWorkerInit>) => {
  const init = event.data;
  const ctrl = new Int32Array(init.ctrl, CTRL_OFFSET, 16);
  const rowBins = new Uint8Array(init.rowBins);
  const offsets = new Int32Array(init.offsets);
  const idx = new Uint32Array(init.idx);
  const gh = init.gh.map((b) => new Float64Array(b));
  const parts = Array.from(
    { length: init.chunks },
    (_, c) => new Float64Array(init.parts, c * init.slotSize * 8, init.slotSize),
  );
  let seen = 0;
  for (;;) {
    Atomics.wait(ctrl, CTRL.seq, seen);
    const tag = Atomics.load(ctrl, CTRL.seq);
    seen = tag;
    if (Atomics.load(ctrl, CTRL.stop) === 1) break;
    const g = gh[ctrl[CTRL.output]];
    const rows = ctrl[CTRL.allRows] === 1 ? null : idx;
    const start = ctrl[CTRL.start];
    const end = ctrl[CTRL.end];
    for (;;) {
      const c = claimChunk(ctrl, tag, init.chunks);
      if (c < 0) break;
      const [a, b] = chunkRows(start, end, c, init.chunks);
      const n = init.numFeatures;
      buildHistogramRange(parts[c], 0, rowBins, n, offsets, init.totalBins, g, rows, a, b, 0, n);
      Atomics.add(ctrl, CTRL.done, 1);
    }
  }
};
