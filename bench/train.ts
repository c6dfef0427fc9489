/**
 * Training benchmark: flights (vega-datasets flights-3m.parquet, target delay > 15; month, day of
 * month, day of week, hour, minute, distance, origin and destination as categoricals) and a
 * synthetic N × 28 set with 2% NaN, for each growth policy; 80/20 train/test.
 *
 *   npx bun bench/train.ts [--rows 3000000] [--synthetic-rows 1000000] [--rounds 500]
 *     [--growth leafwise,depthwise,oblivious] [--datasets flights,synthetic] [--threads N (default: cores)]
 *     [--xgb] [--xgb-threads 2] [--cat-codes] [--cat-smooth X] [--xgb-categorical]
 *     [--repeat N (interleaved runs; medians, and the median of same-moment arbor/XGBoost ratios)] [--out bench/results/train.json]
 *
 * Prints a table and writes JSON. `--xgb` also runs /work/shared/tools/xgb-reference.py (XGBoost
 * hist, 2 threads, same rounds/depth/eta, 256 bins) on the same train/test rows when python3-xgboost
 * is installed, and reports the time ratio. The reference sees origin and destination as integer
 * codes (it takes numeric columns only); `--cat-codes` makes arbor treat them as numeric codes too,
 * for a like-for-like comparison of the split algorithm. `--xgb-categorical` (with --xgb) also runs
 * XGBoost with native categorical splits on them once (bench/xgb-categorical.py).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { GrowthPolicy, ModelType } from "../shared/bundle.ts";
import { createLogger } from "../shared/logger.ts";
import { flightsSample } from "../train/data/flights-sample.ts";
import { type Dataset, frameToDataset } from "../train/gbdt/dataset.ts";
import { auc } from "../train/gbdt/metric.ts";
import { predictMarginColumns } from "../train/gbdt/predict.ts";
import { Rng } from "../train/gbdt/rng.ts";
import { trainGbdt } from "../train/gbdt/train.ts";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "3000000" },
    "synthetic-rows": { type: "string", default: "1000000" },
    rounds: { type: "string", default: "500" },
    growth: { type: "string", default: "leafwise,depthwise,oblivious" },
    datasets: { type: "string", default: "flights,synthetic" },
    threads: { type: "string", default: String(os.availableParallelism()) },
    xgb: { type: "boolean", default: false },
    "xgb-threads": { type: "string", default: "2" },
    "cat-codes": { type: "boolean", default: false },
    "cat-smooth": { type: "string" },
    repeat: { type: "string", default: "1" },
    "xgb-categorical": { type: "boolean", default: false },
    out: { type: "string", default: "bench/results/train.json" },
  },
});
const logger = createLogger({ name: "bench", level: "warn" });
const rounds = Number(args.rounds);
const threads = Number(args.threads);
const repeat = Math.max(1, Number(args.repeat));
const catSmooth = args["cat-smooth"] === undefined ? undefined : Number(args["cat-smooth"]);
// The reference tools live in the shared/ folder beside the checkout (../shared/tools).
const XGB = path.resolve(import.meta.dir, "..", "..", "shared", "tools", "xgb-reference.py");

/** Rows of a Dataset by index. */
function take(d: Dataset, rows: Uint32Array): Dataset {
  const columns = d.columns.map((c) => {
    const out = new Float32Array(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = c[rows[i]];
    return out;
  });
  const label = new Float64Array(rows.length);
  for (let i = 0; i < rows.length; i++) label[i] = d.label[rows[i]];
  return { ...d, numRows: rows.length, columns, label, weight: null };
}

/** Seeded 80/20 split. */
function trainTest(d: Dataset, seed: number): [Dataset, Dataset] {
  const rng = new Rng(seed);
  const order = new Uint32Array(d.numRows);
  for (let i = 0; i < order.length; i++) order[i] = i;
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  const cut = Math.floor(d.numRows * 0.8);
  return [take(d, order.subarray(0, cut).sort()), take(d, order.subarray(cut).sort())];
}

function flights(rows: number): Dataset {
  const d = frameToDataset(flightsSample(rows, 1), { target: "delayed", task: "binary" }, logger);
  if (!args["cat-codes"]) return d;
  return {
    ...d,
    features: d.features.map((f) => (f.type === "categorical" ? { name: f.name, type: "numeric" } : f)),
  };
}

function synthetic(n: number): Dataset {
  const F = 28;
  const rng = new Rng(7);
  const columns = Array.from({ length: F }, () => new Float32Array(n));
  const label = new Float64Array(n);
  const w = Float64Array.from({ length: F }, () => rng.next() * 2 - 1);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let f = 0; f < F; f++) {
      const x = rng.next() * 2 - 1;
      columns[f][i] = rng.next() < 0.02 ? Number.NaN : x;
      s += w[f] * x;
    }
    s += Math.sin(3 * columns[0][i] || 0) + (columns[1][i] || 0) * (columns[2][i] || 0) * 2;
    label[i] = s + (rng.next() - 0.5) * 2 > 0 ? 1 : 0;
  }
  return {
    numRows: n,
    features: columns.map((_, f) => ({ name: `f${f}`, type: "numeric" })),
    columns,
    label,
    weight: null,
    task: "binary",
    target: "y",
    classes: ["0", "1"],
  };
}

const MODEL_TYPE: Record<GrowthPolicy, ModelType> = {
  leafwise: "lightgbm",
  depthwise: "xgboost",
  oblivious: "catboost",
};

function writeCsv(d: Dataset, file: string): void {
  const names = [...d.features.map((f) => f.name), "y"];
  const lines = [names.join(",")];
  for (let i = 0; i < d.numRows; i++) {
    const row: string[] = [];
    for (const c of d.columns) row.push(Number.isNaN(c[i]) ? "" : String(c[i]));
    row.push(String(d.label[i]));
    lines.push(row.join(","));
  }
  writeFileSync(file, `${lines.join("\n")}\n`);
}

/** Write the CSV pair the XGBoost reference reads; null when python3-xgboost is missing. */
function xgbFiles(
  name: string,
  train: Dataset,
  test: Dataset,
): { dir: string; train: string; test: string } | null {
  if (!existsSync(XGB)) return null;
  try {
    execFileSync("/usr/bin/python3", ["-c", "import xgboost"], { stdio: "ignore" });
  } catch {
    console.error("xgboost reference skipped: python3-xgboost is not installed");
    return null;
  }
  const dir = path.join(os.tmpdir(), `arbor-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const files = { dir, train: path.join(dir, `${name}-train.csv`), test: path.join(dir, `${name}-test.csv`) };
  writeCsv(train, files.train);
  writeCsv(test, files.test);
  return files;
}

function runXgb(files: { train: string; test: string }): Record<string, number> {
  const out = execFileSync("/usr/bin/python3", [
    XGB,
    files.train,
    files.test,
    "--target",
    "y",
    "--task",
    "binary",
    "--rounds",
    String(rounds),
    "--max-depth",
    "6",
    "--eta",
    "0.1",
    "--threads",
    args["xgb-threads"],
  ]).toString();
  return JSON.parse(out.trim().split("\n").pop()!) as Record<string, number>;
}

/** XGBoost with native categorical splits on the categorical columns of `d` (bench/xgb-categorical.py). */
function runXgbCategorical(files: { train: string; test: string }, d: Dataset): Record<string, number> {
  const cats = d.features.filter((f) => f.type === "categorical").map((f) => f.name);
  const out = execFileSync("/usr/bin/python3", [
    path.join(import.meta.dir, "xgb-categorical.py"),
    files.train,
    files.test,
    "--categorical",
    cats.join(","),
    "--rounds",
    String(rounds),
    "--threads",
    args["xgb-threads"],
  ]).toString();
  return JSON.parse(out.trim().split("\n").pop()!) as Record<string, number>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface Row {
  dataset: string;
  growth: GrowthPolicy;
  rows: number;
  features: number;
  rounds: number;
  threads: number;
  /** Median over --repeat runs (each beside its own XGBoost run when --xgb). */
  seconds: number;
  secondsBest: number;
  cpuSeconds: number;
  secondsPerRound: number;
  rowsPerSecond: number;
  testAuc: number;
  xgbSeconds?: number;
  xgbAuc?: number;
  /** Median of arbor ÷ XGBoost seconds, each pair measured at the same moment. */
  ratio?: number;
}

const results: Row[] = [];
for (const name of args.datasets.split(",")) {
  const t0 = performance.now();
  const all = name === "flights" ? flights(Number(args.rows)) : synthetic(Number(args["synthetic-rows"]));
  const [train, test] = trainTest(all, 3);
  console.error(
    `${name}: ${train.numRows} train / ${test.numRows} test rows, ${train.features.length} features (prepared in ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  const files = args.xgb ? xgbFiles(name, train, test) : null;
  const growths = args.growth.split(",") as GrowthPolicy[];
  const runs = new Map<GrowthPolicy, { sec: number[]; cpu: number[]; ratio: number[]; auc: number }>();
  const xgbSec: number[] = [];
  let xgbAuc = Number.NaN;
  for (let rep = 1; rep <= repeat; rep++) {
    // Interleaved: XGBoost, then each growth policy, so every pair shares the machine's moment.
    const xgb = files ? runXgb(files) : null;
    if (xgb) {
      xgbSec.push(xgb.train_s);
      xgbAuc = xgb.auc;
      console.error(`run ${rep}/${repeat} xgboost: ${JSON.stringify(xgb)}`);
    }
    for (const growth of growths) {
      const cpu0 = process.cpuUsage();
      const r = trainGbdt(
        train,
        null,
        {
          task: "binary",
          modelType: MODEL_TYPE[growth],
          growth,
          rounds,
          learningRate: 0.1,
          maxDepth: growth === "leafwise" ? 0 : 6,
          ...(growth === "leafwise" ? { numLeaves: 63 } : {}),
          maxBins: 255,
          ...(catSmooth === undefined ? {} : { catSmooth }),
          threads,
        },
        { evalTrain: false },
      );
      const cpu = process.cpuUsage(cpu0);
      const m = predictMarginColumns(r.ensemble, test.columns, test.numRows);
      const run = runs.get(growth) ?? { sec: [], cpu: [], ratio: [], auc: auc(m, test.label) };
      runs.set(growth, run);
      run.sec.push(r.seconds);
      run.cpu.push((cpu.user + cpu.system) / 1e6);
      if (xgb) run.ratio.push(r.seconds / xgb.train_s);
      const vs = xgb ? ` (${(r.seconds / xgb.train_s).toFixed(2)}x XGBoost)` : "";
      console.error(
        `run ${rep}/${repeat} ${name} ${growth}: ${r.seconds.toFixed(2)} s${vs}, AUC ${run.auc.toFixed(4)}`,
      );
    }
  }
  if (files && args["xgb-categorical"] && train.features.some((f) => f.type === "categorical")) {
    const x = runXgbCategorical(files, train);
    console.error(`xgboost with native categorical splits (enable_categorical): ${JSON.stringify(x)}`);
  }
  if (files) rmSync(files.dir, { recursive: true, force: true });
  for (const growth of growths) {
    const run = runs.get(growth)!;
    const seconds = median(run.sec);
    const row: Row = {
      dataset: name,
      growth,
      rows: train.numRows,
      features: train.features.length,
      rounds,
      threads,
      seconds,
      secondsBest: Math.min(...run.sec),
      cpuSeconds: median(run.cpu),
      secondsPerRound: seconds / rounds,
      rowsPerSecond: (train.numRows * rounds) / seconds,
      testAuc: run.auc,
    };
    if (xgbSec.length > 0) {
      row.xgbSeconds = median(xgbSec);
      row.xgbAuc = xgbAuc;
      row.ratio = median(run.ratio);
    }
    results.push(row);
  }
}

const header = [
  "dataset",
  "growth",
  "rows",
  "feat",
  "rounds",
  "thr",
  "seconds",
  "cpu s",
  "s/round",
  "rows/s",
  "test AUC",
  "xgb s",
  "xgb AUC",
  "arbor/xgb",
];
const table = results.map((r) => [
  r.dataset,
  r.growth,
  String(r.rows),
  String(r.features),
  String(r.rounds),
  String(r.threads),
  r.seconds.toFixed(2),
  r.cpuSeconds.toFixed(2),
  r.secondsPerRound.toFixed(4),
  r.rowsPerSecond.toExponential(2),
  r.testAuc.toFixed(4),
  r.xgbSeconds?.toFixed(2) ?? "-",
  r.xgbAuc?.toFixed(4) ?? "-",
  r.ratio?.toFixed(2) ?? "-",
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
console.log([header, ...table].map((r) => r.map((c, i) => c.padStart(widths[i])).join("  ")).join("\n"));
mkdirSync(path.dirname(args.out), { recursive: true });
writeFileSync(
  args.out,
  `${JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, loadavg: os.loadavg(), results }, null, 2)}\n`,
);
console.error(`wrote ${args.out}`);
