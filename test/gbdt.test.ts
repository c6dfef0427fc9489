import { describe, expect, test } from "bun:test";
import type { FeatureSpec, GrowthPolicy, Task } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import { NODE_CATEGORICAL, predictMarginRow, type TreeEnsemble } from "../shared/tree.ts";
import { binColumns, binOf, buildBinMappers, numericMapper } from "../train/gbdt/binning.ts";
import type { Dataset } from "../train/gbdt/dataset.ts";
import { buildHistogram, subtractHistogram } from "../train/gbdt/histogram.ts";
import { auc, evaluateMetric, rmse } from "../train/gbdt/metric.ts";
import { resolveParams } from "../train/gbdt/params.ts";
import { predictMarginColumns } from "../train/gbdt/predict.ts";
import { Rng } from "../train/gbdt/rng.ts";
import { trainGbdt } from "../train/gbdt/train.ts";

const GROWTHS: GrowthPolicy[] = ["leafwise", "depthwise", "oblivious"];

/** Synthetic data: label from a known function of the first features; 3% NaN in every feature. */
function synth(n: number, task: Task, seed: number, numFeatures = 6): Dataset {
  const rng = new Rng(seed);
  const columns = Array.from({ length: numFeatures }, () => new Float32Array(n));
  const label = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let f = 0; f < numFeatures; f++) columns[f][i] = rng.next() < 0.03 ? Number.NaN : rng.next() * 4 - 2;
    const x0 = columns[0][i] || 0;
    const x1 = columns[1][i] || 0;
    const x2 = columns[2][i] || 0;
    const s = 1.5 * x0 + Math.sin(2 * x1) + x2 * x0 + 0.3 * (rng.next() - 0.5);
    label[i] = task === "binary" ? (s > 0 ? 1 : 0) : task === "multiclass" ? (s < -1 ? 0 : s < 1 ? 1 : 2) : s;
  }
  const features: FeatureSpec[] = columns.map((_, f) => ({ name: `x${f}`, type: "numeric" }));
  const d: Dataset = { numRows: n, features, columns, label, weight: null, task, target: "y" };
  if (task === "binary") d.classes = ["0", "1"];
  if (task === "multiclass") d.classes = ["a", "b", "c"];
  return d;
}

function serialize(e: TreeEnsemble): string {
  return JSON.stringify({
    base: Array.from(e.baseScore),
    out: Array.from(e.treeOutput),
    trees: e.trees.map((t) => ({
      kind: Array.from(t.kind),
      feature: Array.from(t.feature),
      threshold: Array.from(t.threshold),
      left: Array.from(t.left),
      right: Array.from(t.right),
      defaultLeft: Array.from(t.defaultLeft),
      categories: t.categories.map((c) => (c ? Array.from(c) : null)),
      value: Array.from(t.value),
      cover: Array.from(t.cover),
      gain: Array.from(t.gain),
    })),
  });
}

function accuracy(margin: Float64Array, label: Float64Array, k: number): number {
  let ok = 0;
  for (let i = 0; i < label.length; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (margin[i * k + j] > margin[i * k + best]) best = j;
    if (best === label[i]) ok++;
  }
  return ok / label.length;
}

describe("binning", () => {
  test("float32 bounds reproduce the bins exactly (x <= upper[b] ⇔ bin ≤ b)", () => {
    const rng = new Rng(3);
    const col = new Float32Array(20_000);
    for (let i = 0; i < col.length; i++)
      col[i] = rng.next() < 0.05 ? Number.NaN : Math.fround((rng.next() - 0.5) * 1e3);
    const m = numericMapper(col, 64);
    expect(m.numBins).toBeLessThanOrEqual(64);
    for (let i = 0; i < col.length; i++) {
      const x = col[i];
      const b = binOf(m, x);
      if (Number.isNaN(x)) {
        expect(b).toBe(m.numBins);
        continue;
      }
      for (let t = 0; t < m.numBins - 1; t++) {
        if (x <= m.upper[t] !== b <= t) throw new Error(`row ${i} x=${x} bin ${b} bound ${t}=${m.upper[t]}`);
      }
      // bounds are float32 values
      expect(Math.fround(m.upper[Math.min(b, m.numBins - 2)])).toBe(m.upper[Math.min(b, m.numBins - 2)]);
    }
  });

  test("few distinct values get one bin each; categorical codes are bins", () => {
    const m = numericMapper(Float32Array.from([3, 1, 2, 2, 1, Number.NaN]), 255);
    expect(m.numBins).toBe(3);
    expect(Array.from(m.upper.subarray(0, 2))).toEqual([1, 2]);
    const cols = [Float32Array.from([0, 2, Number.NaN, 1])];
    const spec: FeatureSpec[] = [{ name: "c", type: "categorical", categories: ["a", "b", "c"] }];
    const mappers = buildBinMappers(cols, spec, 4, { maxBins: 255, sampleRows: 10, seed: 0 });
    const binned = binColumns(cols, mappers, 4);
    expect(Array.from(binned.colBins)).toEqual([0, 2, 3, 1]);
  });
});

describe("histograms", () => {
  test("subtraction trick equals a direct build", () => {
    const d = synth(3000, "binary", 5);
    const mappers = buildBinMappers(d.columns, d.features, d.numRows, {
      maxBins: 255,
      sampleRows: 200_000,
      seed: 0,
    });
    const b = binColumns(d.columns, mappers, d.numRows);
    const rng = new Rng(9);
    const gh = new Float64Array(2 * d.numRows);
    for (let i = 0; i < gh.length; i++) gh[i] = i % 2 === 0 ? rng.next() - 0.5 : rng.next();
    const idx = new Uint32Array(d.numRows);
    let nl = 0;
    const right: number[] = [];
    for (let r = 0; r < d.numRows; r++) {
      if (rng.next() < 0.3) idx[nl++] = r;
      else right.push(r);
    }
    idx.set(right, nl);
    const size = b.totalBins * 2;
    const parent = new Float64Array(size);
    const left = new Float64Array(size);
    const direct = new Float64Array(size);
    buildHistogram(parent, b.rowBins, b.numFeatures, b.offsets, gh, idx, 0, d.numRows);
    buildHistogram(left, b.rowBins, b.numFeatures, b.offsets, gh, idx, 0, nl);
    buildHistogram(direct, b.rowBins, b.numFeatures, b.offsets, gh, idx, nl, d.numRows);
    const sub = new Float64Array(size);
    subtractHistogram(sub, parent, left);
    for (let i = 0; i < size; i++) expect(Math.abs(sub[i] - direct[i])).toBeLessThan(1e-9);
  });
});

describe("training", () => {
  const train = synth(6000, "binary", 1);
  const test_ = synth(3000, "binary", 2);

  for (const growth of GROWTHS) {
    test(`binary ${growth}: learns the function; float trees reproduce the engine's margins exactly`, () => {
      const r = trainGbdt(train, test_, {
        task: "binary",
        growth,
        rounds: 40,
        learningRate: 0.2,
        maxDepth: growth === "leafwise" ? 0 : 4,
        numLeaves: 15,
      });
      const m = predictMarginColumns(r.ensemble, test_.columns, test_.numRows);
      expect(auc(m, test_.label)).toBeGreaterThan(0.93);
      expect(r.ensemble.trees.length).toBe(40);
      // Float32 thresholds route every training row like its bins: same margins, bit for bit.
      const own = predictMarginColumns(r.ensemble, train.columns, train.numRows);
      let diff = 0;
      for (let i = 0; i < own.length; i++) if (own[i] !== r.trainMargin[i]) diff++;
      for (let i = 0; i < m.length; i++) if (m[i] !== r.validMargin![i]) diff++;
      expect(diff).toBe(0);
      // shared/tree.ts's row predictor agrees (the one ONNX parity is checked against).
      const out = new Float64Array(1);
      for (let i = 0; i < 200; i++) {
        predictMarginRow(
          r.ensemble,
          test_.columns.map((c) => c[i]),
          out,
        );
        expect(out[0]).toBe(m[i]);
      }
      // Leaf values are float32 and covers are hessian sums (root cover = Σh of all rows).
      for (const t of r.ensemble.trees) for (const v of t.value) expect(Math.fround(v)).toBe(v);
      if (growth === "oblivious") {
        const t = r.ensemble.trees[0];
        expect(t.kind.length).toBe(31); // depth 4, full
      }
      if (growth === "leafwise")
        for (const t of r.ensemble.trees) expect((t.kind.length + 1) / 2).toBeLessThanOrEqual(15);
    });
  }

  test("regression: RMSE falls round after round", () => {
    const d = synth(4000, "regression", 3);
    const r = trainGbdt(d, null, { task: "regression", rounds: 30, learningRate: 0.3, modelType: "xgboost" });
    const curve = r.history.map((h) => h.train.rmse);
    for (let i = 1; i < curve.length; i++) expect(curve[i]).toBeLessThanOrEqual(curve[i - 1] + 1e-12);
    expect(curve[curve.length - 1]).toBeLessThan(0.5 * curve[0]);
    const t = synth(2000, "regression", 4);
    const m = predictMarginColumns(r.ensemble, t.columns, t.numRows);
    expect(rmse(m, t.label, null)).toBeLessThan(0.6);
  });

  for (const growth of GROWTHS) {
    test(`multiclass ${growth}: K trees per round, accurate`, () => {
      const d = synth(4000, "multiclass", 5);
      const r = trainGbdt(d, null, {
        task: "multiclass",
        growth,
        rounds: 20,
        learningRate: 0.3,
        maxDepth: 4,
        numLeaves: 15,
      });
      expect(r.ensemble.numOutputs).toBe(3);
      expect(r.ensemble.trees.length).toBe(60);
      expect(Array.from(r.ensemble.treeOutput.subarray(0, 6))).toEqual([0, 1, 2, 0, 1, 2]);
      const t = synth(2000, "multiclass", 6);
      expect(accuracy(predictMarginColumns(r.ensemble, t.columns, t.numRows), t.label, 3)).toBeGreaterThan(
        0.85,
      );
    });
  }

  test("missing values take the learned direction", () => {
    // y = 1 exactly when x is NaN or x > 0.5: NaN must go with the high side.
    const n = 4000;
    const rng = new Rng(7);
    const x = new Float32Array(n);
    const label = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      x[i] = rng.next() < 0.2 ? Number.NaN : rng.next();
      label[i] = Number.isNaN(x[i]) || x[i] > 0.5 ? 1 : 0;
    }
    const d: Dataset = {
      numRows: n,
      features: [{ name: "x", type: "numeric" }],
      columns: [x],
      label,
      weight: null,
      task: "binary",
      target: "y",
      classes: ["0", "1"],
    };
    for (const growth of GROWTHS) {
      const r = trainGbdt(d, null, { task: "binary", growth, rounds: 10, learningRate: 0.5, maxDepth: 3 });
      const m = predictMarginColumns(r.ensemble, [Float32Array.from([Number.NaN, 0.9, 0.1])], 3);
      expect(m[0]).toBeGreaterThan(1);
      expect(m[1]).toBeGreaterThan(1);
      expect(m[2]).toBeLessThan(-1);
    }
  });

  test("categorical splits learn a categorical signal (a set of codes goes left)", () => {
    const n = 6000;
    const rng = new Rng(11);
    const c = new Float32Array(n);
    const noise = new Float32Array(n);
    const label = new Float64Array(n);
    const positive = new Set([1, 4, 6, 9]);
    for (let i = 0; i < n; i++) {
      c[i] = rng.int(12);
      noise[i] = rng.next();
      label[i] = positive.has(c[i]) !== rng.next() < 0.05 ? 1 : 0;
    }
    const cats = Array.from({ length: 12 }, (_, i) => `k${i}`);
    const d: Dataset = {
      numRows: n,
      features: [
        { name: "c", type: "categorical", categories: cats },
        { name: "z", type: "numeric" },
      ],
      columns: [c, noise],
      label,
      weight: null,
      task: "binary",
      target: "y",
      classes: ["0", "1"],
    };
    const r = trainGbdt(d, null, { task: "binary", rounds: 5, learningRate: 0.5, numLeaves: 4 });
    const root = r.ensemble.trees[0];
    expect(root.kind[0]).toBe(NODE_CATEGORICAL);
    const set = Array.from(root.categories[0]!);
    const expected = set.every((v) => positive.has(v)) ? [1, 4, 6, 9] : [0, 2, 3, 5, 7, 8, 10, 11];
    expect(set).toEqual(expected);
    const codes = Float32Array.from({ length: 12 }, (_, i) => i);
    const m = predictMarginColumns(r.ensemble, [codes, new Float32Array(12).fill(0.5)], 12);
    expect(
      auc(
        m,
        Float64Array.from({ length: 12 }, (_, i) => (positive.has(i) ? 1 : 0)),
      ),
    ).toBe(1);
  });

  test("sample weights: zero-weight rows are ignored", () => {
    const d = synth(4000, "binary", 13);
    const flipped = Float64Array.from(d.label);
    const weight = new Float64Array(d.numRows);
    for (let i = 0; i < d.numRows; i++) {
      if (i % 2 === 0) weight[i] = 1;
      else flipped[i] = 1 - flipped[i]; // poisoned rows, weight 0
    }
    const r = trainGbdt({ ...d, label: flipped, weight }, null, {
      task: "binary",
      rounds: 30,
      learningRate: 0.3,
    });
    const t = synth(2000, "binary", 14);
    expect(auc(predictMarginColumns(r.ensemble, t.columns, t.numRows), t.label)).toBeGreaterThan(0.9);
  });

  test("early stopping keeps the best iteration; onRound can stop", () => {
    const d = synth(2000, "binary", 15);
    for (let i = 0; i < d.numRows; i++) if (i % 3 === 0) d.label[i] = 1 - d.label[i]; // heavy noise → overfit
    const v = synth(1000, "binary", 16);
    const r = trainGbdt(d, v, {
      task: "binary",
      rounds: 300,
      learningRate: 0.5,
      numLeaves: 63,
      minDataInLeaf: 1,
      earlyStopping: 5,
    });
    expect(r.rounds).toBeLessThan(300);
    expect(r.rounds - r.bestIteration).toBe(5);
    expect(r.ensemble.trees.length).toBe(r.bestIteration);
    // The margins handed back are those of the kept (best) ensemble.
    const kept = predictMarginColumns(r.ensemble, v.columns, v.numRows);
    expect(Array.from(kept)).toEqual(Array.from(r.validMargin!));
    expect(Array.from(predictMarginColumns(r.ensemble, d.columns, d.numRows))).toEqual(
      Array.from(r.trainMargin),
    );
    const best = Math.min(...r.history.map((h) => h.valid!.logloss));
    expect(r.history[r.bestIteration - 1].valid!.logloss).toBe(best);
    const seen: number[] = [];
    const s = trainGbdt(
      d,
      v,
      { task: "binary", rounds: 50 },
      {
        onRound: (info) => {
          seen.push(info.round);
          return info.round === 7 ? "stop" : undefined;
        },
      },
    );
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(s.ensemble.trees.length).toBe(7);
  });

  test("deterministic: same data, options and seed give byte-identical ensembles", () => {
    const d = synth(3000, "binary", 17);
    const opts = { task: "binary" as const, rounds: 15, subsample: 0.7, colsample: 0.6, seed: 42 };
    for (const growth of GROWTHS) {
      const a = serialize(trainGbdt(d, null, { ...opts, growth, maxDepth: 4 }).ensemble);
      const b = serialize(trainGbdt(d, null, { ...opts, growth, maxDepth: 4 }).ensemble);
      expect(a).toBe(b);
      const c = serialize(trainGbdt(d, null, { ...opts, growth, maxDepth: 4, seed: 43 }).ensemble);
      expect(c).not.toBe(a);
    }
  });

  test("row shards: byte-identical per thread count, near-equal across counts, margins match the trees", () => {
    // 2 threads cut the rows into 2 shards whose partial histograms (and gradient sums) are added
    // at the end: the same sums associated differently, so 1 vs 2 threads may differ in the last
    // bits. All rows of a binary or regression fit also update margins and gradients per shard.
    const binary = synth(45_000, "binary", 19);
    const regression = synth(45_000, "regression", 20);
    regression.weight = Float64Array.from({ length: regression.numRows }, (_, i) => 0.5 + (i % 3));
    const multiclass = synth(45_000, "multiclass", 21);
    const binaryValid = synth(9_000, "binary", 22);
    const regressionValid = synth(9_000, "regression", 23);
    const cases: [Dataset, Record<string, number>, Dataset | null][] = [
      [binary, {}, binaryValid],
      [binary, { subsample: 0.9 }, binaryValid],
      [regression, {}, regressionValid],
      [multiclass, {}, null],
    ];
    for (const [d, extra, v] of cases) {
      for (const growth of GROWTHS) {
        const opts = { task: d.task, growth, rounds: 4, maxDepth: 4, numLeaves: 15, seed: 1, ...extra };
        const one = trainGbdt(d, v, { ...opts, threads: 1 });
        const two = trainGbdt(d, v, { ...opts, threads: 2 });
        const label = `${d.task} ${growth} ${JSON.stringify(extra)}`;
        expect([label, serialize(trainGbdt(d, v, { ...opts, threads: 2 }).ensemble)]).toEqual([
          label,
          serialize(two.ensemble),
        ]);
        const m1 = predictMarginColumns(one.ensemble, d.columns, d.numRows);
        const m2 = predictMarginColumns(two.ensemble, d.columns, d.numRows);
        let worst = 0;
        let drift = 0;
        for (let i = 0; i < m1.length; i++) {
          worst = Math.max(worst, Math.abs(m1[i] - m2[i]));
          drift = Math.max(drift, Math.abs(two.trainMargin[i] - m2[i]));
        }
        expect([label, worst < 1e-3, drift < 1e-9]).toEqual([label, true, true]);
        // The training metric of each round (computed per shard in the round job) equals the
        // metric of the final margins.
        for (const r of [one, two]) {
          const last = r.history[r.history.length - 1].train;
          const k = d.task === "multiclass" ? 3 : 1;
          const want = evaluateMetric(r.metric, r.trainMargin, d.label, k, d.weight);
          expect([label, Math.abs(last[r.metric] - want) <= 1e-12 * Math.abs(want)]).toEqual([label, true]);
          if (v === null) continue;
          // Validation margins (updated per shard in the round job) equal the trees' predictions,
          // and the recorded validation metric is theirs.
          const pv = predictMarginColumns(r.ensemble, v.columns, v.numRows);
          let vDrift = 0;
          for (let i = 0; i < pv.length; i++) vDrift = Math.max(vDrift, Math.abs(r.validMargin![i] - pv[i]));
          const lastValid = r.history[r.history.length - 1].valid![r.metric];
          const wantValid = evaluateMetric(r.metric, r.validMargin!, v.label, k, v.weight);
          expect([
            label,
            vDrift < 1e-9,
            Math.abs(lastValid - wantValid) <= 1e-12 * Math.abs(wantValid),
          ]).toEqual([label, true, true]);
        }
      }
    }
  });

  test("row shards: 3 threads (more shards than cores) agree with 1", () => {
    const d = synth(60_000, "binary", 24);
    const v = synth(6_000, "binary", 25);
    const opts = { task: "binary" as const, growth: "depthwise" as const, rounds: 3, maxDepth: 5, seed: 2 };
    const one = trainGbdt(d, v, { ...opts, threads: 1 });
    const three = trainGbdt(d, v, { ...opts, threads: 3 });
    expect(serialize(trainGbdt(d, v, { ...opts, threads: 3 }).ensemble)).toBe(serialize(three.ensemble));
    let worst = 0;
    for (let i = 0; i < one.validMargin!.length; i++)
      worst = Math.max(worst, Math.abs(one.validMargin![i] - three.validMargin![i]));
    expect(worst).toBeLessThan(1e-3);
    expect(three.history[2].valid!.logloss).toBeCloseTo(one.history[2].valid!.logloss, 6);
  });

  test("model types set their library's defaults; explicit options win; bad options are named", () => {
    expect(resolveParams({ task: "binary" })).toMatchObject({
      growth: "leafwise",
      numLeaves: 31,
      learningRate: 0.1,
      minDataInLeaf: 20,
    });
    expect(resolveParams({ task: "binary", modelType: "xgboost" })).toMatchObject({
      growth: "depthwise",
      maxDepth: 6,
      learningRate: 0.3,
      lambda: 1,
    });
    expect(resolveParams({ task: "binary", modelType: "catboost", maxDepth: 4 })).toMatchObject({
      growth: "oblivious",
      maxDepth: 4,
      lambda: 3,
    });
    // A growth policy without its size knob gets a usual one, not the other library's 0.
    expect(resolveParams({ task: "binary", growth: "depthwise" })).toMatchObject({ maxDepth: 6 });
    expect(resolveParams({ task: "binary", growth: "oblivious" })).toMatchObject({ maxDepth: 6 });
    expect(resolveParams({ task: "binary", modelType: "xgboost", growth: "leafwise" })).toMatchObject({
      numLeaves: 31,
      maxDepth: 6,
    });
    expect(() => resolveParams({ task: "binary", growth: "depthwise", maxDepth: 0 })).toThrow("max-depth");
    try {
      resolveParams({ task: "binary", maxBins: 300 });
      throw new Error("accepted");
    } catch (e) {
      expect(isArborError(e, "FIT_BAD_OPTION")).toBe(true);
      expect((e as Error).message).toContain("max-bins");
    }
  });
});
