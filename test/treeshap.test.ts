import { describe, expect, test } from "bun:test";
import { featureImportance } from "../shared/importance.ts";
import { randomEnsemble, randomRows } from "../shared/onnx/random.ts";
import {
  categoryGoesLeft,
  NODE_CATEGORICAL,
  NODE_LEAF,
  predictMarginRow,
  type Tree,
  type TreeEnsemble,
} from "../shared/tree.ts";
import { TreeExplainer } from "../shared/treeshap.ts";

/** Path-dependent value function: expected tree output when only the features in `mask` are known. */
function pathValue(tree: Tree, x: ArrayLike<number>, mask: number, node = 0): number {
  if (tree.kind[node] === NODE_LEAF) return tree.value[node];
  const f = tree.feature[node];
  const l = tree.left[node];
  const r = tree.right[node];
  if ((mask & (1 << f)) !== 0) {
    const v = x[f];
    let goLeft: boolean;
    if (Number.isNaN(v)) goLeft = tree.defaultLeft[node] === 1;
    else if (tree.kind[node] === NODE_CATEGORICAL) goLeft = categoryGoesLeft(tree.categories[node]!, v);
    else goLeft = v <= tree.threshold[node];
    return pathValue(tree, x, mask, goLeft ? l : r);
  }
  return (
    (tree.cover[l] * pathValue(tree, x, mask, l) + tree.cover[r] * pathValue(tree, x, mask, r)) /
    tree.cover[node]
  );
}

/** Brute-force Shapley values of one row over all 2^F coalitions: [K][F+1]. */
function bruteForce(e: TreeEnsemble, x: ArrayLike<number>): Float64Array {
  const f = e.numFeatures;
  const out = new Float64Array(e.numOutputs * (f + 1));
  const fact = [1];
  for (let i = 1; i <= f; i++) fact[i] = fact[i - 1] * i;
  for (let t = 0; t < e.trees.length; t++) {
    const o = e.treeOutput[t] * (f + 1);
    const values = new Float64Array(1 << f);
    for (let mask = 0; mask < 1 << f; mask++) values[mask] = pathValue(e.trees[t], x, mask);
    out[o + f] += values[0];
    for (let j = 0; j < f; j++) {
      for (let mask = 0; mask < 1 << f; mask++) {
        if (mask & (1 << j)) continue;
        let s = 0;
        for (let m = mask; m; m &= m - 1) s++;
        out[o + j] += ((fact[s] * fact[f - s - 1]) / fact[f]) * (values[mask | (1 << j)] - values[mask]);
      }
    }
  }
  for (let k = 0; k < e.numOutputs; k++) out[k * (f + 1) + f] += e.baseScore[k];
  return out;
}

const SETUPS = [
  { name: "numeric, 8 features, depth 5", f: 8, cats: [], depth: 5, k: 1 },
  { name: "categorical + NaN, 6 features, depth 6", f: 6, cats: [0, 5, 0, 12, 0, 3], depth: 6, k: 1 },
  { name: "multiclass, 5 features", f: 5, cats: [4, 0, 0, 0, 0], depth: 4, k: 3 },
  { name: "oblivious, 7 features", f: 7, cats: [0, 0, 6], depth: 5, k: 1, oblivious: true },
];

describe("TreeSHAP", () => {
  for (const s of SETUPS) {
    test(`${s.name}: fast, recursive and auto (oblivious tables) equal brute-force Shapley values`, () => {
      const e = randomEnsemble({
        seed: 21,
        numFeatures: s.f,
        numTrees: 12,
        depth: s.depth,
        numOutputs: s.k,
        categories: s.cats,
        oblivious: s.oblivious,
        earlyLeaf: 0.15,
      });
      const rows = 40;
      const x = randomRows(4, rows, s.f, s.cats, 0.2);
      const fast = new TreeExplainer(e, { algorithm: "fast" });
      const rec = new TreeExplainer(e, { algorithm: "recursive" });
      const auto = new TreeExplainer(e);
      expect(fast.fastTrees).toBe(e.trees.length);
      expect(fast.obliviousTrees).toBe(0);
      expect(rec.fastTrees).toBe(0);
      expect(auto.obliviousTrees).toBe(s.oblivious ? e.trees.length : 0);
      const a = new Float64Array(fast.rowSize);
      const b = new Float64Array(rec.rowSize);
      const c = auto.explainRows(x, rows);
      let maxErr = 0;
      for (let i = 0; i < rows; i++) {
        const row = x.subarray(i * s.f, (i + 1) * s.f);
        const want = bruteForce(e, row);
        fast.explainRow(x, a, i * s.f);
        rec.explainRow(row, b);
        for (let j = 0; j < want.length; j++) {
          const cj = c[i * auto.rowSize + j];
          maxErr = Math.max(
            maxErr,
            Math.abs(a[j] - want[j]),
            Math.abs(b[j] - want[j]),
            Math.abs(cj - want[j]),
          );
        }
      }
      expect(maxErr).toBeLessThan(1e-9);
    });
  }

  test("local accuracy: contributions + base value = raw margin for every row (deep, mixed algorithms)", () => {
    const cats = [0, 7, 0, 0, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const e = randomEnsemble({
      seed: 5,
      numFeatures: 16,
      numTrees: 30,
      depth: 16,
      numOutputs: 2,
      categories: cats,
      earlyLeaf: 0.3,
    });
    const auto = new TreeExplainer(e);
    expect(auto.fastTrees).toBeGreaterThan(0);
    expect(auto.fastTrees).toBeLessThan(e.trees.length);
    const rows = 200;
    const f = cats.length;
    const x = randomRows(8, rows, f, cats, 0.1);
    const phi = auto.explainRows(x, rows);
    const m = new Float64Array(2);
    let worst = 0;
    for (let i = 0; i < rows; i++) {
      predictMarginRow(e, x.subarray(i * f, i * f + f), m);
      for (let k = 0; k < 2; k++) {
        let sum = 0;
        for (let j = 0; j <= f; j++) sum += phi[i * auto.rowSize + k * (f + 1) + j];
        worst = Math.max(worst, Math.abs(sum - m[k]) / Math.max(1, Math.abs(m[k])));
      }
    }
    expect(worst).toBeLessThan(1e-6);
  }, 30_000);

  test("base value is the cover-weighted expectation plus baseScore", () => {
    const e = randomEnsemble({ seed: 2, numFeatures: 3, numTrees: 4, depth: 3 });
    const ex = new TreeExplainer(e);
    const brute = bruteForce(e, new Float32Array([0, 0, 0]));
    expect(ex.expectedValue[0]).toBeCloseTo(brute[3], 12);
  });
});

describe("importance", () => {
  test("gain and split counts add up over the trees; mean |SHAP| is non-negative and zero for unused features", () => {
    const e = randomEnsemble({ seed: 7, numFeatures: 4, numTrees: 10, depth: 3 });
    let gain = 0;
    let splits = 0;
    for (const t of e.trees) {
      for (let i = 0; i < t.kind.length; i++) {
        if (t.kind[i] !== NODE_LEAF) {
          gain += t.gain[i];
          splits++;
        }
      }
    }
    // Feature 4 (an extra, unused column) gets nothing.
    e.numFeatures = 5;
    const imp = featureImportance(e, { x: randomRows(1, 50, 5), rows: 50 });
    expect(imp.reduce((s, f) => s + f.splits, 0)).toBe(splits);
    expect(imp.reduce((s, f) => s + f.gain, 0)).toBeCloseTo(gain, 9);
    expect(imp[4]).toEqual({ feature: 4, gain: 0, splits: 0, meanAbsShap: 0 });
    for (const f of imp) expect(f.meanAbsShap).toBeGreaterThanOrEqual(0);
  });
});
