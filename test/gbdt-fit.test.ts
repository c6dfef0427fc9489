import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { createLogger } from "../shared/logger.ts";
import { predictMarginRow, sigmoid, softmaxInPlace } from "../shared/tree.ts";
import { loadBundle } from "../train/export/load.ts";
import { runOnnx } from "../train/export/score.ts";
import { frameToMatrix } from "../train/gbdt/dataset.ts";
import { auc } from "../train/gbdt/metric.ts";
import { Rng } from "../train/gbdt/rng.ts";
import { runArbor } from "./helpers/cli.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "arbor-fit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const logger = createLogger({ name: "test", level: "silent" });

function cli(argv: string[]) {
  return runArbor(argv, { env: { ARBOR_HOME: path.join(dir, "home") }, cwd: dir });
}

/** x (numeric with nulls), color (string with nulls; "violet" only in valid), z; targets for each task. */
function frame(n: number, seed: number, withUnseen: boolean): pl.DataFrame {
  const rng = new Rng(seed);
  const colors = ["red", "green", "blue", "grey", "teal", "gold"];
  const x: (number | null)[] = [];
  const color: (string | null)[] = [];
  const z: number[] = [];
  const churn: string[] = [];
  const kind: number[] = [];
  const amount: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = rng.next() * 4 - 2;
    const c = withUnseen && i % 50 === 0 ? "violet" : colors[rng.int(colors.length)];
    x.push(rng.next() < 0.05 ? null : a);
    color.push(rng.next() < 0.05 ? null : c);
    z.push(rng.next());
    const s = a + (c === "red" || c === "gold" ? 1.2 : 0) + 0.5 * (rng.next() - 0.5);
    churn.push(s > 0.3 ? "yes" : "no");
    kind.push(s < -0.5 ? 0 : s < 1 ? 1 : 2);
    amount.push(3 * s + rng.next());
  }
  return pl.DataFrame({ x, color, z, churn, kind, amount });
}

const trainFile = path.join(dir, "train.csv");
const validFile = path.join(dir, "valid.csv");
frame(3000, 1, false).writeCSV(trainFile);
const validFrame = frame(800, 2, true);
validFrame.writeCSV(validFile);

async function onnxAgrees(bundleDir: string): Promise<Record<string, unknown>> {
  const bundle = await loadBundle(bundleDir);
  const sig = bundle.signature;
  const features = sig.features.map((f) => f.name);
  const m = frameToMatrix(validFrame.select(...features), sig, logger);
  const { outputs, width } = await runOnnx(bundle.modelBytes, sig, m.data, m.rows, logger);
  const k = bundle.ensemble.numOutputs;
  const margin = new Float64Array(k);
  let maxDiff = 0;
  for (let i = 0; i < m.rows; i++) {
    predictMarginRow(bundle.ensemble, m.data.subarray(i * m.cols, (i + 1) * m.cols), margin);
    if (sig.task === "binary") maxDiff = Math.max(maxDiff, Math.abs(outputs[i * 2 + 1] - sigmoid(margin[0])));
    else if (sig.task === "multiclass") {
      softmaxInPlace(margin);
      for (let j = 0; j < k; j++) maxDiff = Math.max(maxDiff, Math.abs(outputs[i * width + j] - margin[j]));
    } else maxDiff = Math.max(maxDiff, Math.abs(outputs[i] - margin[0]) / Math.max(1, Math.abs(margin[0])));
  }
  expect(maxDiff).toBeLessThan(1e-5);
  return JSON.parse(readFileSync(path.join(bundleDir, "metrics.json"), "utf8")) as Record<string, unknown>;
}

describe("arbor fit", () => {
  test("binary with a string categorical: bundle, metrics, ONNX predicts what the engine predicts", async () => {
    const out = path.join(dir, "binary");
    const r = await cli([
      "fit",
      "--train",
      trainFile,
      "--valid",
      validFile,
      "--target",
      "churn",
      "--task",
      "binary",
      "--rounds",
      "40",
      "--early-stopping",
      "10",
      "--cat-smooth",
      "20",
      "--out",
      out,
      "--quiet",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(out);
    const sig = JSON.parse(readFileSync(path.join(out, "signature.json"), "utf8"));
    expect(sig.classes).toEqual(["no", "yes"]);
    expect(sig.features.map((f: { name: string }) => f.name)).toEqual(["x", "color", "z", "kind", "amount"]);
    expect(sig.features[1].type).toBe("categorical");
    expect(sig.modelType).toBe("lightgbm");
    expect(sig.growth).toBe("leafwise");
    const metrics = (await onnxAgrees(out)) as {
      valid: { auc: number };
      bestIteration: number;
      params: { catSmooth: number; catL2: number };
    };
    expect(metrics.params.catSmooth).toBe(20);
    expect(metrics.params.catL2).toBe(10);
    expect(metrics.valid.auc).toBeGreaterThan(0.95);
    expect(metrics.bestIteration).toBeGreaterThan(0);
  });

  test("multiclass oblivious and regression depthwise, with --json", async () => {
    const mc = path.join(dir, "multi");
    const r1 = await cli([
      "fit",
      "--train",
      trainFile,
      "--valid",
      validFile,
      "--target",
      "kind",
      "--task",
      "multiclass",
      "--model-type",
      "catboost",
      "--learning-rate",
      "0.3",
      "--rounds",
      "30",
      "--out",
      mc,
      "--json",
      "--quiet",
    ]);
    expect(r1.code).toBe(0);
    const summary = JSON.parse(r1.stdout);
    expect(summary.bundle).toBe(mc);
    expect(summary.numTrees).toBe(90);
    expect(summary.valid.accuracy).toBeGreaterThan(0.8);
    await onnxAgrees(mc);

    const rg = path.join(dir, "reg");
    const r2 = await cli([
      "fit",
      "--train",
      trainFile,
      "--valid",
      validFile,
      "--target",
      "amount",
      "--task",
      "regression",
      "--growth",
      "depthwise",
      "--max-depth",
      "4",
      "--rounds",
      "30",
      "--categorical",
      "kind",
      "--out",
      rg,
      "--quiet",
    ]);
    expect(r2.code).toBe(0);
    const m = (await onnxAgrees(rg)) as { valid: { rmse: number }; train: { rmse: number } };
    expect(m.valid.rmse).toBeLessThan(1.5);
  });

  test("bad target and bad options exit with their codes", async () => {
    const out = path.join(dir, "bad");
    const r = await cli([
      "fit",
      "--train",
      trainFile,
      "--target",
      "amount",
      "--task",
      "binary",
      "--out",
      out,
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("FIT_BAD_TARGET");
    // A fit of the churn data with one bad option.
    const badFit = (...extra: string[]) =>
      cli(["fit", "--train", trainFile, "--target", "churn", "--task", "binary", ...extra, "--out", out]);
    const r2 = await badFit("--max-depth", "0", "--growth", "oblivious");
    expect(r2.stderr).toContain("FIT_BAD_OPTION");
    const r3 = await cli(["fit", "--target", "churn", "--task", "binary", "--out", out]);
    expect(r3.stderr).toContain("INVALID_ARGUMENT");
    const r4 = await badFit("--cat-smooth=-1");
    expect(r4.code).toBe(2);
    expect(r4.stderr).toContain("--cat-smooth");
  });

  test("--weight is not a feature; --growth alone gets a usual size; --early-stopping needs validation", async () => {
    const weighted = path.join(dir, "weighted.csv");
    const f = frame(1500, 5, false);
    f.withColumn(
      pl.Series(
        "w",
        Array.from({ length: f.height }, (_, i) => (i % 3) + 0.5),
      ),
    ).writeCSV(weighted);
    const base = ["fit", "--train", weighted, "--target", "churn", "--task", "binary", "--rounds", "5"];
    const out = path.join(dir, "weighted");
    // lightgbm defaults (max depth 0) with --growth depthwise: depth 6, not an error.
    const r = await cli([...base, "--weight", "w", "--growth", "depthwise", "--out", out]);
    expect(r.code).toBe(0);
    const sig = JSON.parse(readFileSync(path.join(out, "signature.json"), "utf8"));
    expect(sig.features.map((x: { name: string }) => x.name)).toEqual(["x", "color", "z", "kind", "amount"]);
    expect(sig.growth).toBe("depthwise");
    const bad = await cli([...base, "--weight", "color", "--out", path.join(dir, "weighted-bad")]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("FIT_BAD_OPTION");
    const missing = await cli([...base, "--weight", "nope", "--out", path.join(dir, "weighted-bad")]);
    expect(missing.stderr).toContain("DATA_UNKNOWN_COLUMN");
    // Early stopping without validation data would be silently ignored: refused instead.
    const early = await cli([...base, "--early-stopping", "5", "--out", path.join(dir, "weighted-bad")]);
    expect(early.code).not.toBe(0);
    expect(early.stderr).toContain("INVALID_ARGUMENT");
    expect(early.stderr).toContain("--early-stopping");
  });

  test("--split reads the split's train and valid parts from the store", async () => {
    const s = await cli(["split", "--data", trainFile, "--target", "churn", "--quiet"]);
    expect(s.code).toBe(0);
    const id = s.stdout.trim();
    const out = path.join(dir, "from-split");
    const r = await cli([
      "fit",
      "--split",
      id,
      "--task",
      "binary",
      "--rounds",
      "20",
      "--out",
      out,
      "--json",
      "--quiet",
    ]);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.data.split).toBe(id);
    expect(summary.valid.auc).toBeGreaterThan(0.9);
    const manifest = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    expect(manifest.lineage.splitId).toBe(id);
  }, 30_000);
});

test("auc helper sanity", () => {
  expect(auc(Float64Array.from([0.1, 0.4, 0.35, 0.8]), Float64Array.from([0, 0, 1, 1]))).toBe(0.75);
});
