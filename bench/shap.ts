/**
 * SHAP benchmark: TreeSHAP rows/s on a 500-tree depth-6 model, tabulated ("fast") vs Algorithm 2
 * ("recursive"), beside XGBoost's own `pred_contribs` on the same model when python3-xgboost is
 * installed, plus onnxruntime predict rows/s on the exported model.
 *
 * Model: XGBoost 1.7 `hist`, 500 rounds, depth 6, eta 0.1, trained on a 160,000-row sample of the
 * flights data (vega-datasets flights-3m.parquet; target delay > 15; month, day of month, day of
 * week, hour, minute, distance, origin and destination codes), imported through train/import.
 * Without Python, a random 500-tree depth-6 ensemble on 28 features is used instead. A random
 * oblivious 500×d6 ensemble compares the per-tree (oblivious) tables with the per-leaf ones.
 *
 *   npx bun bench/shap.ts [--rows 2000] [--train-rows 160000] [--random]
 * Prints a table and writes bench/results/shap.json.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pl from "nodejs-polars";
import * as ort from "onnxruntime-node";
import type { Signature } from "../shared/bundle.ts";
import { encodeEnsembleOnnx } from "../shared/onnx/encode.ts";
import { randomEnsemble, randomRows, signatureFor } from "../shared/onnx/random.ts";
import type { TreeEnsemble } from "../shared/tree.ts";
import { TreeExplainer } from "../shared/treeshap.ts";
import { FLIGHTS_FEATURES, flightsSample } from "../train/data/flights-sample.ts";
import { importXgboostJson } from "../train/import/xgboost.ts";

const { values: opts } = parseArgs({
  options: {
    rows: { type: "string", default: "2000" },
    "train-rows": { type: "string", default: "160000" },
    random: { type: "boolean", default: false },
  },
});
const ROWS = Number(opts.rows);
const TRAIN_ROWS = Number(opts["train-rows"]);
const PYTHON = "/usr/bin/python3";
const FEATURES: string[] = [...FLIGHTS_FEATURES];

const PY_SCRIPT = `
import json, sys, time
import numpy as np, xgboost as xgb
d, n, f, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x = np.fromfile(d + "/x.f32", dtype=np.float32).reshape(n, f)
y = np.fromfile(d + "/y.f32", dtype=np.float32)
params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.1,
          "max_bin": 256, "nthread": 2, "seed": 0}
t0 = time.perf_counter()
bst = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=500)
train_s = time.perf_counter() - t0
bst.save_model(d + "/model.json")
xe = x[:rows]
out = {"xgboost": xgb.__version__, "train_s": train_s}
for threads in (1, 2):
    bst.set_param({"nthread": threads})
    dm = xgb.DMatrix(xe)
    bst.predict(dm, pred_contribs=True)  # warm-up
    t0 = time.perf_counter()
    c = bst.predict(dm, pred_contribs=True)
    out[f"contribs_s_{threads}t"] = time.perf_counter() - t0
c.astype(np.float64).tofile(d + "/contribs.f64")
json.dump(out, open(d + "/xgb.json", "w"))
`;

function hasXgboost(): boolean {
  return spawnSync(PYTHON, ["-c", "import xgboost"], { stdio: "ignore" }).status === 0;
}

/** Flights sample as float32 rows (codes for origin/destination) and labels. */
function flights(n: number): { x: Float32Array; y: Float32Array } {
  const df = flightsSample(n, 1);
  const f = FEATURES.length;
  const x = new Float32Array(n * f);
  FEATURES.forEach((name, j) => {
    if (name === "origin" || name === "destination") {
      // Airport codes → dictionary indices (sorted), as arbor feeds categoricals.
      const values = df.getColumn(name).toArray() as string[];
      const dict = new Map([...new Set(values)].sort().map((v, i) => [v, i]));
      for (let i = 0; i < n; i++) x[i * f + j] = dict.get(values[i])!;
    } else {
      const col = df.getColumn(name).cast(pl.Float32).toTypedArray() as Float32Array;
      for (let i = 0; i < n; i++) x[i * f + j] = col[i];
    }
  });
  return { x, y: df.getColumn("delayed").cast(pl.Float32).toTypedArray() as Float32Array };
}

interface Setup {
  name: string;
  ensemble: TreeEnsemble;
  signature: Signature;
  x: Float32Array;
  xgb?: { contribs: Float64Array; info: Record<string, number | string> };
}

function setup(): Setup {
  if (!opts.random && hasXgboost()) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "arbor-bench-shap-"));
    try {
      const { x, y } = flights(TRAIN_ROWS);
      writeFileSync(path.join(dir, "x.f32"), x);
      writeFileSync(path.join(dir, "y.f32"), y);
      process.stderr.write(`training XGBoost (500 rounds, depth 6) on ${TRAIN_ROWS} flights rows…\n`);
      execFileSync(
        PYTHON,
        ["-c", PY_SCRIPT, dir, String(TRAIN_ROWS), String(FEATURES.length), String(ROWS)],
        {
          stdio: ["ignore", "inherit", "inherit"],
        },
      );
      const { ensemble, signature } = importXgboostJson(readFileSync(path.join(dir, "model.json"), "utf8"), {
        featureNames: FEATURES,
      });
      const c = readFileSync(path.join(dir, "contribs.f64"));
      const contribs = new Float64Array(c.buffer, c.byteOffset, c.byteLength / 8).slice();
      const info = JSON.parse(readFileSync(path.join(dir, "xgb.json"), "utf8")) as Record<
        string,
        number | string
      >;
      return {
        name: "flights xgboost 500×d6",
        ensemble,
        signature,
        x: x.slice(0, ROWS * FEATURES.length),
        xgb: { contribs, info },
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const ensemble = randomEnsemble({ seed: 1, numFeatures: 28, numTrees: 500, depth: 6, earlyLeaf: 0 });
  return {
    name: "random 500×d6, 28 features",
    ensemble,
    signature: signatureFor(ensemble, "binary", []),
    x: randomRows(2, ROWS, 28, [], 0.02),
  };
}

/** CPU-seconds of `fn` (user+system), less sensitive than wall time on a shared machine. */
function timed(fn: () => void): { wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1e6 };
}

const s = setup();
const f = s.ensemble.numFeatures;
const results: Record<string, unknown> = { model: s.name, rows: ROWS, trees: s.ensemble.trees.length };
const table: [string, string, string][] = [];
const MODES = [
  { key: "fast", label: "TreeSHAP fast, explainRows (blocks of 64)", algorithm: "fast", blocked: true },
  { key: "fastPerRow", label: "TreeSHAP fast, explainRow per row", algorithm: "fast", blocked: false },
  { key: "recursive", label: "TreeSHAP recursive (Algorithm 2)", algorithm: "recursive", blocked: false },
] as const;
for (const mode of MODES) {
  let explainer: TreeExplainer | null = null;
  const prep = timed(() => {
    explainer = new TreeExplainer(s.ensemble, { algorithm: mode.algorithm });
  });
  const ex = explainer as unknown as TreeExplainer;
  let out: Float64Array = new Float64Array(ROWS * ex.rowSize);
  const n = mode.algorithm === "fast" ? ROWS : Math.min(ROWS, 500);
  ex.explainRows(s.x.subarray(0, 50 * f), 50); // warm-up
  const t = timed(() => {
    if (mode.blocked) out = ex.explainRows(s.x, n);
    else for (let i = 0; i < n; i++) ex.explainRow(s.x, out, i * f, i * ex.rowSize);
  });
  const msPerRow = (t.wall / n) * 1000;
  results[mode.key] = {
    prepareSeconds: prep.wall,
    msPerRow,
    cpuMsPerRow: (t.cpu / n) * 1000,
    rowsPerSecond: n / t.wall,
  };
  table.push([`${mode.label}`, msPerRow.toFixed(3), (n / t.wall).toFixed(0)]);
  if (s.xgb && mode.key === "fast") {
    let worst = 0;
    for (let i = 0; i < ROWS * (f + 1); i++) worst = Math.max(worst, Math.abs(out[i] - s.xgb.contribs[i]));
    results.maxAbsDiffVsXgboost = worst;
  }
}
if (s.xgb) {
  for (const threads of [1, 2]) {
    const sec = Number(s.xgb.info[`contribs_s_${threads}t`]);
    table.push([
      `XGBoost ${s.xgb.info.xgboost} pred_contribs (${threads} thread)`,
      ((sec / ROWS) * 1000).toFixed(3),
      (ROWS / sec).toFixed(0),
    ]);
    results[`xgboost_${threads}t`] = { msPerRow: (sec / ROWS) * 1000 };
  }
  results.xgboostTrainSeconds = s.xgb.info.train_s;
}

// onnxruntime predict on the exported model, batch 10,000 (rows repeated), one intra-op thread.
const session = await ort.InferenceSession.create(encodeEnsembleOnnx(s.ensemble, s.signature), {
  intraOpNumThreads: 1,
});
const batch = 10_000;
const xb = new Float32Array(batch * f);
for (let i = 0; i < batch; i++) xb.set(s.x.subarray((i % ROWS) * f, (i % ROWS) * f + f), i * f);
const input = new ort.Tensor("float32", xb, [batch, f]);
await session.run({ input });
const t0 = performance.now();
const reps = 5;
for (let r = 0; r < reps; r++) await session.run({ input });
const ortSec = (performance.now() - t0) / 1000;
table.push([
  "onnxruntime predict (batch 10k, 1 thread)",
  ((ortSec / (reps * batch)) * 1000).toFixed(4),
  ((reps * batch) / ortSec).toFixed(0),
]);
results.ortRowsPerSecond = (reps * batch) / ortSec;
await session.release();

// Oblivious trees (CatBoost-style, the engine's `oblivious` growth): per-tree tables vs per-leaf tables.
{
  const obl = randomEnsemble({ seed: 4, numFeatures: 28, numTrees: 500, depth: 6, oblivious: true });
  const xo = randomRows(5, ROWS, 28, [], 0.02);
  for (const [key, label, algorithm] of [
    ["obliviousTables", "oblivious 500×d6: per-tree tables (auto)", "auto"],
    ["obliviousPerLeaf", "oblivious 500×d6: per-leaf tables (fast)", "fast"],
  ] as const) {
    const ex = new TreeExplainer(obl, { algorithm });
    ex.explainRows(xo.subarray(0, 50 * 28), 50);
    const t = timed(() => ex.explainRows(xo, ROWS));
    const msPerRow = (t.wall / ROWS) * 1000;
    results[key] = { msPerRow, cpuMsPerRow: (t.cpu / ROWS) * 1000, obliviousTrees: ex.obliviousTrees };
    table.push([label, msPerRow.toFixed(3), (ROWS / t.wall).toFixed(0)]);
  }
}

const fast = results.fast as { msPerRow: number };
const rec = results.recursive as { msPerRow: number };
results.fastSpeedupVsRecursive = rec.msPerRow / fast.msPerRow;
if (s.xgb)
  results.fastSpeedupVsXgboost1t = (results.xgboost_1t as { msPerRow: number }).msPerRow / fast.msPerRow;

console.log(`model: ${s.name}, ${ROWS} rows explained`);
console.log(`${"what".padEnd(46)} ${"ms/row".padStart(9)} ${"rows/s".padStart(10)}`);
for (const [what, ms, rps] of table) console.log(`${what.padEnd(46)} ${ms.padStart(9)} ${rps.padStart(10)}`);
console.log(`fast vs recursive: ${(results.fastSpeedupVsRecursive as number).toFixed(2)}×`);
if (s.xgb) {
  console.log(
    `fast vs XGBoost pred_contribs (1 thread): ${(results.fastSpeedupVsXgboost1t as number).toFixed(2)}×`,
  );
  console.log(
    `max |arbor SHAP − XGBoost pred_contribs|: ${(results.maxAbsDiffVsXgboost as number).toExponential(2)}`,
  );
}
const outDir = path.join(import.meta.dir, "results");
mkdirSync(outDir, { recursive: true });
writeFileSync(path.join(outDir, "shap.json"), `${JSON.stringify(results, null, 2)}\n`);
