/**
 * A histogram worker: waits on a shared control block, builds its feature range of one histogram
 * slot, reports done. Runs a blocking Atomics.wait loop, so it never returns to its event loop until
 * told to stop.
 */
import { buildHistogramRange } from "./hist-kernel.ts";
import { CTRL, type HistWorkerInit } from "./hist-pool.ts";

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
    seen = Atomics.load(ctrl, CTRL.seq);
    if (Atomics.load(ctrl, CTRL.stop) === 1) break;
    buildHistogramRange(
      hist,
      ctrl[CTRL.slot] * init.slotSize,
      rowBins,
      init.numFeatures,
      offsets,
      init.totalBins,
      gh[ctrl[CTRL.output]],
      ctrl[CTRL.allRows] === 1 ? null : idx,
      ctrl[CTRL.start],
      ctrl[CTRL.end],
      init.f0,
      init.f1,
    );
    Atomics.add(ctrl, CTRL.done, 1);
    Atomics.notify(ctrl, CTRL.done);
  }
};
