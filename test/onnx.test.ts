import { describe, expect, test } from "bun:test";
import * as ort from "onnxruntime-node";
import type { Task } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import { decodeEnsembleOnnx } from "../shared/onnx/decode.ts";
import { encodeEnsembleOnnx } from "../shared/onnx/encode.ts";
import { randomEnsemble, randomRows, rng, signatureFor } from "../shared/onnx/random.ts";
import {
  NODE_NUMERIC,
  predictMarginRow,
  sigmoid,
  softmaxInPlace,
  type TreeEnsemble,
} from "../shared/tree.ts";

/** Rows that also hit every numeric threshold exactly (and its float32 neighbours). */
function rowsWithTies(ensemble: TreeEnsemble, seed: number, n: number, categories: number[]): Float32Array {
  const f = ensemble.numFeatures;
  const x = randomRows(seed, n, f, categories, 0.15);
  const r = rng(seed + 1);
  for (let i = 0; i < n; i += 2) {
    const tree = ensemble.trees[Math.floor(r() * ensemble.trees.length)];
    const node = Math.floor(r() * tree.kind.length);
    if (tree.kind[node] !== NODE_NUMERIC) continue;
    const t = tree.threshold[node];
    const eps = Math.abs(t) * 2 ** -23 + 1e-45;
    x[i * f + tree.feature[node]] = Math.fround([t, t + eps, t - eps][i % 3]);
  }
  return x;
}

const CASES: { task: Task; k: number; cats: number[]; trees: number; depth: number; oblivious?: boolean }[] =
  [
    { task: "binary", k: 1, cats: [0, 4, 0, 40, 0, 3], trees: 300, depth: 6 },
    { task: "multiclass", k: 3, cats: [0, 0, 7, 0], trees: 150, depth: 5 },
    { task: "regression", k: 1, cats: [5, 0, 0, 0, 0], trees: 200, depth: 4, oblivious: true },
  ];

describe("ONNX export", () => {
  for (const c of CASES) {
    test(`${c.task}: onnxruntime equals the TS predictor (NaN, categoricals, ties)`, async () => {
      const ensemble = randomEnsemble({
        seed: 11,
        numFeatures: c.cats.length,
        numTrees: c.trees,
        depth: c.depth,
        numOutputs: c.k,
        categories: c.cats,
        oblivious: c.oblivious,
      });
      const bytes = encodeEnsembleOnnx(ensemble, signatureFor(ensemble, c.task, c.cats));
      const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
      const n = 3000;
      const f = ensemble.numFeatures;
      const x = rowsWithTies(ensemble, 5, n, c.cats);
      const out = await session.run({ input: new ort.Tensor("float32", x, [n, f]) });
      const margin = out.margin.data as Float32Array;
      expect(out.margin.dims).toEqual([n, c.k]);
      const m = new Float64Array(c.k);
      let maxP = 0;
      let maxM = 0;
      for (let i = 0; i < n; i++) {
        predictMarginRow(ensemble, x.subarray(i * f, i * f + f), m);
        for (let j = 0; j < c.k; j++) {
          maxM = Math.max(maxM, Math.abs(m[j] - margin[i * c.k + j]) / Math.max(1, Math.abs(m[j])));
        }
        if (c.task === "binary") {
          const p = out.probabilities.data as Float32Array;
          const p1 = sigmoid(m[0]);
          maxP = Math.max(maxP, Math.abs(p[2 * i + 1] - p1), Math.abs(p[2 * i] - (1 - p1)));
        } else if (c.task === "multiclass") {
          const p = out.probabilities.data as Float32Array;
          softmaxInPlace(m);
          for (let j = 0; j < c.k; j++) maxP = Math.max(maxP, Math.abs(p[i * c.k + j] - m[j]));
        } else {
          const p = out.prediction.data as Float32Array;
          maxP = Math.max(maxP, Math.abs(p[i] - m[0]) / Math.max(1, Math.abs(m[0])));
        }
      }
      expect(maxP).toBeLessThan(1e-6);
      expect(maxM).toBeLessThan(1e-6);
      await session.release();
    });

    test(`${c.task}: encode → decode gives the identical ensemble and signature`, () => {
      const ensemble = randomEnsemble({
        seed: 3,
        numFeatures: c.cats.length,
        numTrees: 20,
        depth: c.depth,
        numOutputs: c.k,
        categories: c.cats,
        oblivious: c.oblivious,
      });
      const signature = signatureFor(ensemble, c.task, c.cats);
      const decoded = decodeEnsembleOnnx(encodeEnsembleOnnx(ensemble, signature));
      expect(decoded.ensemble).toEqual(ensemble);
      expect(decoded.signature).toEqual(signature);
      expect(decoded.metadata["arbor.format"]).toBe("arbor-onnx/1");
    });
  }

  test("a single-leaf tree round-trips and predicts its value", async () => {
    const e = randomEnsemble({ seed: 9, numFeatures: 2, numTrees: 3, depth: 2 });
    const leaf = randomEnsemble({ seed: 10, numFeatures: 2, numTrees: 1, depth: 0 });
    e.trees.splice(1, 0, leaf.trees[0]);
    e.treeOutput = new Int32Array(e.trees.length);
    const bytes = encodeEnsembleOnnx(e, signatureFor(e, "regression", []));
    expect(decodeEnsembleOnnx(bytes).ensemble).toEqual(e);
    const s = await ort.InferenceSession.create(bytes);
    const x = new Float32Array([0.5, Number.NaN]);
    const out = await s.run({ input: new ort.Tensor("float32", x, [1, 2]) });
    expect((out.prediction.data as Float32Array)[0]).toBeCloseTo(
      predictMarginRow(e, x, new Float64Array(1))[0],
      5,
    );
  });

  test("garbage and foreign bytes are ONNX_INVALID", () => {
    for (const bytes of [
      new Uint8Array([1, 2, 3, 255, 255]),
      new Uint8Array(0),
      new TextEncoder().encode("hello"),
    ]) {
      let err: unknown;
      try {
        decodeEnsembleOnnx(bytes);
      } catch (e) {
        err = e;
      }
      expect(isArborError(err, "ONNX_INVALID")).toBe(true);
    }
  });

  test("truncated or corrupted model.onnx either decodes or throws ONNX_INVALID, never anything else", () => {
    const e = randomEnsemble({ seed: 1, numFeatures: 4, numTrees: 5, depth: 3, categories: [0, 5, 0, 0] });
    const bytes = encodeEnsembleOnnx(e, signatureFor(e, "binary", [0, 5, 0, 0]));
    const r = rng(3);
    const other: string[] = [];
    for (let i = 0; i < 600; i++) {
      let b: Uint8Array;
      if (i % 2 === 0) b = bytes.slice(0, Math.floor(r() * bytes.length));
      else {
        b = bytes.slice();
        for (let k = 0; k < 3; k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      }
      try {
        decodeEnsembleOnnx(b);
      } catch (x) {
        if (!isArborError(x, "ONNX_INVALID")) other.push(String(x));
      }
    }
    expect(other).toEqual([]);
  });

  test("a signature that does not match the ensemble is refused", () => {
    const e = randomEnsemble({ seed: 1, numFeatures: 3, numTrees: 2, depth: 2 });
    const sig = signatureFor(e, "binary", []);
    sig.features.pop();
    expect(() => encodeEnsembleOnnx(e, sig)).toThrow(/features/);
  });
});
