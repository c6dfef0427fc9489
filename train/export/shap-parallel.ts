/**
 * TreeSHAP over many rows on every core: the rows are cut into one contiguous range per thread
 * (whole blocks of BLOCK_ROWS), the main thread explains the first and Bun workers — each with its
 * own TreeExplainer built from the same ensemble — the others, straight into one shared output.
 * Rows are independent, so the result is bit-identical to a single-threaded explainRows.
 */
import type { TreeEnsemble } from "../../shared/tree.ts";
import { BLOCK_ROWS, type TreeExplainer } from "../../shared/treeshap.ts";

/** Below this many rows per thread, building the workers' explainers costs more than it saves. */
const MIN_ROWS_PER_THREAD = 2_000;

/** What a SHAP worker receives. */
export interface ShapWorkerJob {
  ensemble: TreeEnsemble;
  x: SharedArrayBuffer;
  out: SharedArrayBuffer;
  start: number;
  end: number;
}

/** Rows [start, end) of `x` (row-major) explained into `out` (rowSize values per row). */
export function explainRange(
  explainer: TreeExplainer,
  x: Float32Array,
  out: Float64Array,
  start: number,
  end: number,
): void {
  for (let r = start; r < end; r += BLOCK_ROWS) {
    const n = Math.min(BLOCK_ROWS, end - r);
    explainer.explainBlock(x, r * explainer.numFeatures, n, out, r * explainer.rowSize);
  }
}

/** SHAP values of `rows` row-major rows of `x` with up to `threads` threads (rowSize values per row). */
export async function explainRowsParallel(
  explainer: TreeExplainer,
  ensemble: TreeEnsemble,
  x: Float32Array,
  rows: number,
  threads: number,
): Promise<Float64Array> {
  const t = Math.max(1, Math.min(threads, Math.floor(rows / MIN_ROWS_PER_THREAD)));
  if (t <= 1) return explainer.explainRows(x, rows);
  const xs = new Float32Array(new SharedArrayBuffer(Math.max(4, rows * explainer.numFeatures * 4)));
  xs.set(x.subarray(0, rows * explainer.numFeatures));
  const out = new Float64Array(new SharedArrayBuffer(Math.max(8, rows * explainer.rowSize * 8)));
  const blocks = Math.ceil(rows / BLOCK_ROWS);
  const cut = (i: number) => Math.min(rows, Math.floor((blocks * i) / t) * BLOCK_ROWS);
  const workers: Promise<void>[] = [];
  for (let i = 1; i < t; i++) {
    const job: ShapWorkerJob = {
      ensemble,
      x: xs.buffer as SharedArrayBuffer,
      out: out.buffer as SharedArrayBuffer,
      start: cut(i),
      end: cut(i + 1),
    };
    workers.push(
      new Promise<void>((resolve, reject) => {
        const w = new Worker(new URL("./shap-worker.ts", import.meta.url).href);
        w.onmessage = (e: MessageEvent<{ error?: string }>) => {
          w.terminate();
          if (e.data.error) reject(new Error(`SHAP worker: ${e.data.error}`));
          else resolve();
        };
        w.onerror = (e) => {
          w.terminate();
          reject(new Error(`SHAP worker: ${e.message}`));
        };
        w.postMessage(job);
      }),
    );
  }
  explainRange(explainer, xs, out, 0, cut(1));
  await Promise.all(workers);
  return out;
}
