import { describe, expect, test } from "bun:test";
import * as ort from "onnxruntime-node";
import type { FeatureSpec, GrowthPolicy, Signature, Task } from "../shared/bundle.ts";
import { decodeEnsembleOnnx } from "../shared/onnx/decode.ts";
import { encodeEnsembleOnnx } from "../shared/onnx/encode.ts";
import { rng } from "../shared/onnx/random.ts";
import { predictMarginRow, sigmoid, softmaxInPlace } from "../shared/tree.ts";
import { TreeExplainer } from "../shared/treeshap.ts";
import type { Dataset } from "../train/gbdt/dataset.ts";
import { trainGbdt } from "../train/gbdt/train.ts";

/** 5 numeric features (5% NaN) and one categorical with 12 codes (NaN = missing). */
function data(n: number, task: Task, seed: number): Dataset {
  const r = rng(seed);
  const f = 6;
  const columns = Array.from({ length: f }, () => new Float32Array(n));
  const label = new Float64Array(n);
  const effect = [1.2, -0.8, 0.3, 2, -1.5, 0, 0.7, -0.4, 1.1, -2, 0.5, 0.9];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 5; j++) columns[j][i] = r() < 0.05 ? Number.NaN : Math.fround(r() * 4 - 2);
    columns[5][i] = r() < 0.05 ? Number.NaN : Math.floor(r() * 12);
    const c = Number.isNaN(columns[5][i]) ? 0 : effect[columns[5][i]];
    const s = (columns[0][i] || 0) * 1.3 + Math.sin(2 * (columns[1][i] || 0)) + c + 0.3 * (r() - 0.5);
    label[i] =
      task === "binary" ? (s > 0.2 ? 1 : 0) : task === "multiclass" ? (s < -1 ? 0 : s < 1 ? 1 : 2) : s;
  }
  const features: FeatureSpec[] = columns.map((_, j) =>
    j === 5
      ? { name: "cat", type: "categorical", categories: Array.from({ length: 12 }, (_, c) => `c${c}`) }
      : { name: `x${j}`, type: "numeric" },
  );
  const d: Dataset = { numRows: n, features, columns, label, weight: null, task, target: "y" };
  if (task === "binary") d.classes = ["0", "1"];
  if (task === "multiclass") d.classes = ["a", "b", "c"];
  return d;
}

const GROWTHS: GrowthPolicy[] = ["leafwise", "depthwise", "oblivious"];
const TASKS: Task[] = ["binary", "multiclass", "regression"];

describe("engine trees through ONNX and TreeSHAP", () => {
  for (const growth of GROWTHS) {
    for (const task of TASKS) {
      test(`${growth} ${task}: ORT = TS predictor (1e-6), decode round-trips, SHAP adds up`, async () => {
        const train = data(3000, task, 1);
        const result = trainGbdt(train, null, {
          task,
          growth,
          rounds: 25,
          maxDepth: 5,
          numLeaves: 24,
          seed: 3,
        });
        const e = result.ensemble;
        const signature: Signature = {
          format: "arbor-bundle/1",
          task,
          target: "y",
          features: result.features,
          classes: result.classes,
          objective: result.objective,
          baseScore: [...e.baseScore],
          growth,
          numTrees: e.trees.length,
          source: "arbor",
        };
        const bytes = encodeEnsembleOnnx(e, signature);
        expect(decodeEnsembleOnnx(bytes).ensemble).toEqual(e);
        const test = data(2000, task, 2);
        const n = test.numRows;
        const f = test.columns.length;
        const x = new Float32Array(n * f);
        for (let j = 0; j < f; j++) for (let i = 0; i < n; i++) x[i * f + j] = test.columns[j][i];
        const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
        const out = await session.run({ input: new ort.Tensor("float32", x, [n, f]) });
        const k = e.numOutputs;
        const m = new Float64Array(k);
        const explainer = new TreeExplainer(e);
        const phi = new Float64Array(explainer.rowSize);
        let maxP = 0;
        let maxShap = 0;
        for (let i = 0; i < n; i++) {
          predictMarginRow(e, x.subarray(i * f, i * f + f), m);
          explainer.explainRow(x, phi, i * f);
          for (let o = 0; o < k; o++) {
            let sum = 0;
            for (let j = 0; j <= f; j++) sum += phi[o * (f + 1) + j];
            maxShap = Math.max(maxShap, Math.abs(sum - m[o]) / Math.max(1, Math.abs(m[o])));
          }
          if (task === "binary") {
            maxP = Math.max(
              maxP,
              Math.abs((out.probabilities.data as Float32Array)[2 * i + 1] - sigmoid(m[0])),
            );
          } else if (task === "multiclass") {
            softmaxInPlace(m);
            for (let o = 0; o < k; o++) {
              maxP = Math.max(maxP, Math.abs((out.probabilities.data as Float32Array)[i * k + o] - m[o]));
            }
          } else {
            maxP = Math.max(
              maxP,
              Math.abs((out.prediction.data as Float32Array)[i] - m[0]) / Math.max(1, Math.abs(m[0])),
            );
          }
        }
        expect(maxP).toBeLessThan(1e-6);
        expect(maxShap).toBeLessThan(1e-6);
        await session.release();
      }, 30_000);
    }
  }
});
