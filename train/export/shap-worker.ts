/** A SHAP worker: explains one row range of a shared input into the shared output (shap-parallel.ts). */
import { TreeExplainer } from "../../shared/treeshap.ts";
import { explainRange, type ShapWorkerJob } from "./shap-parallel.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<ShapWorkerJob>) => {
  const job = event.data;
  try {
    const explainer = new TreeExplainer(job.ensemble);
    explainRange(explainer, new Float32Array(job.x), new Float64Array(job.out), job.start, job.end);
    self.postMessage({});
  } catch (e) {
    self.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
};
