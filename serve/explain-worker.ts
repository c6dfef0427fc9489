/**
 * The explain thread (serve/explain.ts's ExplainPool): TreeSHAP off the event loop. It keeps one
 * TreeExplainer per loaded slot (by key; the model bytes come with a key's first job, and a
 * `forget` drops the key when the slot's session is released) and answers each job with the
 * rows' SHAP matrix, transferred, or with the reason the model cannot be explained.
 */
import { parentPort } from "node:worker_threads";
import { isArborError } from "../shared/errors.ts";
import { decodeEnsembleOnnx } from "../shared/onnx/decode.ts";
import { TreeExplainer } from "../shared/treeshap.ts";

/** A job: explain `rows` rows of `x` with the explainer of `key` (built from `model` on first use). */
export interface ExplainJob {
  id: number;
  key: number;
  model: Uint8Array | null;
  x: Float32Array;
  rows: number;
}

/** The answer to a job: the SHAP matrix (rows × rowSize), or why there is none. */
export type ExplainAnswer =
  | { id: number; shap: Float64Array; rowSize: number }
  | { id: number; error: string; unexplainable: boolean };

const port = parentPort;
if (port === null) throw new Error("serve/explain-worker.ts runs as a worker thread");
const explainers = new Map<number, TreeExplainer>();

port.on("message", (m: ExplainJob | { forget: number }) => {
  if ("forget" in m) {
    explainers.delete(m.forget);
    return;
  }
  let explainer = explainers.get(m.key);
  try {
    if (explainer === undefined) {
      if (m.model === null) throw new Error(`explain thread: no model for key ${m.key}`);
      explainer = new TreeExplainer(decodeEnsembleOnnx(m.model).ensemble);
      explainers.set(m.key, explainer);
    }
  } catch (e) {
    // A model that does not decode (an ArborError) cannot be explained; anything else is a bug.
    const answer: ExplainAnswer = { id: m.id, error: (e as Error).message, unexplainable: isArborError(e) };
    port.postMessage(answer);
    return;
  }
  try {
    const shap = explainer.explainRows(m.x, m.rows);
    const answer: ExplainAnswer = { id: m.id, shap, rowSize: explainer.rowSize };
    port.postMessage(answer, [shap.buffer as ArrayBuffer]);
  } catch (e) {
    port.postMessage({ id: m.id, error: (e as Error).message, unexplainable: false } satisfies ExplainAnswer);
  }
});
