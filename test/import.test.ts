import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { isArborError } from "../shared/errors.ts";
import { encodeEnsembleOnnx } from "../shared/onnx/encode.ts";
import { predictMarginRow, sigmoid, softmaxInPlace } from "../shared/tree.ts";
import { TreeExplainer } from "../shared/treeshap.ts";
import { importXgboostJson, prevFloat32 } from "../train/import/xgboost.ts";

const DIR = path.join(import.meta.dir, "fixtures", "xgboost");

interface Fixture {
  rows: (number | null)[][];
  margin: number[] | number[][];
  prediction: number[] | number[][];
  contribs: number[][] | number[][][];
}

function load(name: string) {
  const model = readFileSync(path.join(DIR, `${name}.model.json`), "utf8");
  const data = JSON.parse(readFileSync(path.join(DIR, `${name}.data.json`), "utf8")) as Fixture;
  const f = data.rows[0].length;
  const x = new Float32Array(data.rows.length * f);
  data.rows.forEach((row, i) => {
    row.forEach((v, j) => {
      x[i * f + j] = v === null ? Number.NaN : v;
    });
  });
  return { model, data, x, f, n: data.rows.length };
}

describe("XGBoost import", () => {
  for (const name of ["binary", "multiclass", "regression", "categorical"]) {
    test(`${name}: predictions, ONNX and SHAP equal XGBoost 1.7.4`, async () => {
      const { model, data, x, f, n } = load(name);
      const { ensemble, signature } = importXgboostJson(model);
      const k = ensemble.numOutputs;
      expect(ensemble.numFeatures).toBe(f);
      const explainer = new TreeExplainer(ensemble);
      const m = new Float64Array(k);
      const phi = new Float64Array(explainer.rowSize);
      let maxPred = 0;
      let maxShap = 0;
      const bytes = encodeEnsembleOnnx(ensemble, signature);
      const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
      const out = await session.run({ input: new ort.Tensor("float32", x, [n, f]) });
      let maxOrt = 0;
      for (let i = 0; i < n; i++) {
        predictMarginRow(ensemble, x.subarray(i * f, i * f + f), m);
        explainer.explainRow(x, phi, i * f);
        const wantMargin = k > 1 ? (data.margin[i] as number[]) : [data.margin[i] as number];
        const wantContribs = k > 1 ? (data.contribs[i] as number[][]) : [data.contribs[i] as number[]];
        for (let o = 0; o < k; o++) {
          maxPred = Math.max(maxPred, Math.abs(m[o] - wantMargin[o]));
          for (let j = 0; j <= f; j++)
            maxShap = Math.max(maxShap, Math.abs(phi[o * (f + 1) + j] - wantContribs[o][j]));
        }
        if (signature.task === "binary") {
          const p = sigmoid(m[0]);
          maxPred = Math.max(maxPred, Math.abs(p - (data.prediction[i] as number)));
          maxOrt = Math.max(maxOrt, Math.abs((out.probabilities.data as Float32Array)[2 * i + 1] - p));
        } else if (signature.task === "multiclass") {
          softmaxInPlace(m);
          for (let o = 0; o < k; o++) {
            maxPred = Math.max(maxPred, Math.abs(m[o] - (data.prediction[i] as number[])[o]));
            maxOrt = Math.max(maxOrt, Math.abs((out.probabilities.data as Float32Array)[i * k + o] - m[o]));
          }
        } else {
          maxPred = Math.max(maxPred, Math.abs(m[0] - (data.prediction[i] as number)));
          maxOrt = Math.max(maxOrt, Math.abs((out.prediction.data as Float32Array)[i] - m[0]));
        }
      }
      expect(maxPred).toBeLessThan(1e-5);
      expect(maxShap).toBeLessThan(1e-5);
      expect(maxOrt).toBeLessThan(1e-5);
      await session.release();
    });
  }

  test("feature names come from the model, or from --feature-names", () => {
    const { model } = load("binary");
    expect(importXgboostJson(model).signature.features.map((s) => s.name)).toEqual([
      "feat_0",
      "feat_1",
      "feat_2",
      "feat_3",
      "feat_4",
      "feat_5",
    ]);
    const names = ["a", "b", "c", "d", "e", "f"];
    expect(importXgboostJson(model, { featureNames: names }).signature.features.map((s) => s.name)).toEqual(
      names,
    );
    expect(() => importXgboostJson(model, { featureNames: ["a"] })).toThrow(/feature-names/);
    const cat = importXgboostJson(load("categorical").model).signature.features[4];
    expect(cat.type).toBe("categorical");
  });

  test("unsupported objectives and non-models are refused with IMPORT_UNSUPPORTED", () => {
    const { model } = load("regression");
    const bad = model.replace('"reg:squarederror"', '"count:poisson"');
    let err: unknown;
    try {
      importXgboostJson(bad);
    } catch (e) {
      err = e;
    }
    expect(isArborError(err, "IMPORT_UNSUPPORTED")).toBe(true);
    expect(() => importXgboostJson("{}")).toThrow(/learner/);
  });

  test("prevFloat32 turns x < c into x <= prev(c) exactly", () => {
    for (const c of [0.5, -0.5, 0, 1e-30, -3.25, 123456.78]) {
      const p = prevFloat32(c);
      const cf = Math.fround(c);
      expect(p).toBeLessThan(cf);
      expect(Math.fround(p)).toBe(p);
      // No float32 strictly between p and c.
      expect(Math.fround((p + cf) / 2) === p || Math.fround((p + cf) / 2) === cf).toBe(true);
    }
  });
});
