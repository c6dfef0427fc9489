import { expect, test } from "bun:test";
import type { FeatureSpec, Task } from "../shared/bundle.ts";
import { TreeExplainer } from "../shared/treeshap.ts";
import { explainRowsParallel } from "../train/export/shap-parallel.ts";
import type { Dataset } from "../train/gbdt/dataset.ts";
import { Rng } from "../train/gbdt/rng.ts";
import { trainGbdt } from "../train/gbdt/train.ts";

function data(n: number, task: Task, seed: number): Dataset {
  const rng = new Rng(seed);
  const columns = Array.from({ length: 5 }, () => new Float32Array(n));
  const label = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (const c of columns) c[i] = rng.next() < 0.05 ? Number.NaN : rng.next() * 2 - 1;
    const s = (columns[0][i] || 0) + (columns[1][i] || 0) * (columns[2][i] || 0) + 0.2 * rng.next();
    label[i] = task === "binary" ? (s > 0 ? 1 : 0) : s < -0.3 ? 0 : s < 0.3 ? 1 : 2;
  }
  const features: FeatureSpec[] = columns.map((_, f) => ({ name: `x${f}`, type: "numeric" }));
  const d: Dataset = { numRows: n, features, columns, label, weight: null, task, target: "y" };
  d.classes = task === "binary" ? ["0", "1"] : ["a", "b", "c"];
  return d;
}

test("SHAP over several threads equals one thread, bit for bit (binary and multiclass)", async () => {
  for (const task of ["binary", "multiclass"] as const) {
    const d = data(9_000, task, task === "binary" ? 3 : 4);
    const { ensemble } = trainGbdt(d, null, { task, rounds: 8, growth: "depthwise", maxDepth: 4 });
    const rows = 8_321; // not a multiple of the 64-row blocks
    const x = new Float32Array(rows * 5);
    for (let i = 0; i < rows; i++) for (let f = 0; f < 5; f++) x[i * 5 + f] = d.columns[f][i];
    const explainer = new TreeExplainer(ensemble);
    const one = explainer.explainRows(x, rows);
    for (const threads of [2, 3]) {
      const many = await explainRowsParallel(explainer, ensemble, x, rows, threads);
      expect(many.length).toBe(one.length);
      let diff = 0;
      for (let i = 0; i < one.length; i++) if (many[i] !== one[i]) diff++;
      expect([task, threads, diff]).toEqual([task, threads, 0]);
    }
  }
});
