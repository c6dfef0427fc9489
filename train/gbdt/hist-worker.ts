/**
 * A histogram worker: waits on a shared control block, claims feature-range chunks of the posted
 * histogram build until none is left, reports each one done. Runs a blocking Atomics.wait loop, so it never returns to its event loop until
 * told to stop.
 */
import { buildHistogramRange } from "./hist-kernel.ts";
import { CTRL, claimChunk, type HistWorkerInit } from "./hist-pool.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<HistWorkerInit>) => {
  const init = event.data;
  const ctrl = new Int32Array(init.ctrl);
  const hist = new Float64Array(init.hist);
  const rowBins = new Uint8Array(init.rowBins);
  const offsets = new Int32Array(init.offsets);
  const idx = new Uint32Array(init.idx);
  const gh = init.gh.map((b) => new Float64Array(b));
  let seen = 0;
  for (;;) {
    Atomics.wait(ctrl, CTRL.seq, seen);
    const tag = Atomics.load(ctrl, CTRL.seq);
    seen = tag;
    if (Atomics.load(ctrl, CTRL.stop) === 1) break;
    const base = ctrl[CTRL.slot] * init.slotSize;
    const g = gh[ctrl[CTRL.output]];
    const rows = ctrl[CTRL.allRows] === 1 ? null : idx;
    const start = ctrl[CTRL.start];
    const end = ctrl[CTRL.end];
    for (;;) {
      const c = claimChunk(ctrl, tag, init.chunks.length);
      if (c < 0) break;
      const [f0, f1] = init.chunks[c];
      buildHistogramRange(
        hist,
        base,
        rowBins,
        init.numFeatures,
        offsets,
        init.totalBins,
        g,
        rows,
        start,
        end,
        f0,
        f1,
      );
      Atomics.add(ctrl, CTRL.done, 1);
      Atomics.notify(ctrl, CTRL.done);
    }
  }
};
