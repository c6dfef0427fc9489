import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { runArbor } from "./helpers/cli.ts";

const FIXTURES = path.join(import.meta.dir, "fixtures", "xgboost");
let dir = "";

/** Path inside the test folder (the commands resolve relative paths against the process cwd). */
const at = (p: string) => path.join(dir, p);

function cli(argv: string[]) {
  return runArbor([...argv, "--quiet"], { env: { ARBOR_HOME: path.join(dir, "home") }, cwd: dir });
}

interface Fixture {
  rows: (number | null)[][];
  prediction: number[] | number[][];
  contribs: number[][] | number[][][];
}

/** The fixture's rows as a CSV with the given column names (empty cell = missing). */
async function fixtureCsv(name: string, columns: string[]): Promise<Fixture> {
  const data = JSON.parse(await readFile(path.join(FIXTURES, `${name}.data.json`), "utf8")) as Fixture;
  const lines = [columns.join(",")];
  for (const row of data.rows) lines.push(row.map((v) => (v === null ? "" : String(v))).join(","));
  await writeFile(path.join(dir, `${name}.csv`), `${lines.join("\n")}\n`);
  return data;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "arbor-import-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("arbor import / predict / explain", () => {
  test("binary: import, predict (CSV) and explain (Parquet) equal XGBoost", async () => {
    const imp = await cli([
      "import",
      "--xgboost",
      path.join(FIXTURES, "binary.model.json"),
      "--out",
      at("bin"),
      "--json",
    ]);
    expect(imp.stderr).toBe("");
    expect(imp.code).toBe(0);
    expect(JSON.parse(imp.stdout).numTrees).toBe(25);
    const names = ["feat_0", "feat_1", "feat_2", "feat_3", "feat_4", "feat_5"];
    const data = await fixtureCsv("binary", names);
    const pred = await cli([
      "predict",
      "--model",
      at("bin"),
      "--data",
      at("binary.csv"),
      "--out",
      at("p.csv"),
    ]);
    expect(pred.code).toBe(0);
    const p = pl.readCSV(path.join(dir, "p.csv"));
    expect(p.columns).toEqual(["label", "probability"]);
    const probs = p.getColumn("probability").toArray() as number[];
    const labels = p.getColumn("label").toArray() as unknown[];
    probs.forEach((v, i) => {
      expect(Math.abs(v - (data.prediction[i] as number))).toBeLessThan(1e-5);
      expect(String(labels[i])).toBe(v >= 0.5 ? "1" : "0");
    });
    const ex = await cli([
      "explain",
      "--model",
      at("bin"),
      "--data",
      at("binary.csv"),
      "--out",
      at("s.parquet"),
      "--json",
    ]);
    expect(ex.code).toBe(0);
    expect(JSON.parse(ex.stdout).importance).toHaveLength(6);
    const s = pl.readParquet(path.join(dir, "s.parquet"));
    expect(s.columns).toEqual([...names, "base_value"]);
    let worst = 0;
    [...names, "base_value"].forEach((c, j) => {
      const col = s.getColumn(c).toArray() as number[];
      col.forEach((v, i) => {
        worst = Math.max(worst, Math.abs(v - (data.contribs[i] as number[])[j]));
      });
    });
    expect(worst).toBeLessThan(1e-5);
  });

  test("multiclass: probability_<class> and <class>:<feature> columns; --top-k", async () => {
    expect(
      (await cli(["import", "--xgboost", path.join(FIXTURES, "multiclass.model.json"), "--out", at("mc")]))
        .code,
    ).toBe(0);
    const names = ["f0", "f1", "f2", "f3", "f4", "f5"];
    const data = await fixtureCsv("multiclass", names);
    expect(
      (await cli(["predict", "--model", at("mc"), "--data", at("multiclass.csv"), "--out", at("p.parquet")]))
        .code,
    ).toBe(0);
    const p = pl.readParquet(path.join(dir, "p.parquet"));
    expect(p.columns).toEqual(["label", "probability_0", "probability_1", "probability_2"]);
    const p2 = p.getColumn("probability_2").toArray() as number[];
    for (let i = 0; i < p2.length; i++) {
      expect(Math.abs(p2[i] - (data.prediction[i] as number[])[2])).toBeLessThan(1e-5);
    }
    expect(
      (await cli(["explain", "--model", at("mc"), "--data", at("multiclass.csv"), "--out", at("s.csv")]))
        .code,
    ).toBe(0);
    const s = pl.readCSV(path.join(dir, "s.csv"));
    expect(s.columns).toContain("1:f3");
    expect(s.columns).toContain("2:base_value");
    const c = s.getColumn("1:f3").toArray() as number[];
    for (let i = 0; i < c.length; i++) {
      expect(Math.abs(c[i] - (data.contribs[i] as number[][])[1][3])).toBeLessThan(1e-5);
    }
    expect(
      (
        await cli([
          "explain",
          "--model",
          at("mc"),
          "--data",
          at("multiclass.csv"),
          "--out",
          at("t.csv"),
          "--top-k",
          "2",
        ])
      ).code,
    ).toBe(0);
    expect(pl.readCSV(path.join(dir, "t.csv")).columns).toEqual([
      "0:top1_feature",
      "0:top1_shap",
      "0:top2_feature",
      "0:top2_shap",
      "0:base_value",
      "1:top1_feature",
      "1:top1_shap",
      "1:top2_feature",
      "1:top2_shap",
      "1:base_value",
      "2:top1_feature",
      "2:top1_shap",
      "2:top2_feature",
      "2:top2_shap",
      "2:base_value",
    ]);
  });

  test("a tampered bundle is refused with STORE_INTEGRITY; missing columns with PREDICT_MISSING_FEATURE", async () => {
    expect(
      (await cli(["import", "--xgboost", path.join(FIXTURES, "regression.model.json"), "--out", at("reg")]))
        .code,
    ).toBe(0);
    await fixtureCsv("regression", ["f0", "f1", "f2", "f3", "f4", "wrong"]);
    const missing = await cli([
      "predict",
      "--model",
      at("reg"),
      "--data",
      at("regression.csv"),
      "--out",
      at("r.csv"),
    ]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("PREDICT_MISSING_FEATURE");
    const sig = path.join(dir, "reg", "signature.json");
    await writeFile(sig, (await readFile(sig, "utf8")).replace('"label"', '"other"'));
    const tampered = await cli([
      "predict",
      "--model",
      at("reg"),
      "--data",
      at("regression.csv"),
      "--out",
      at("r.csv"),
    ]);
    expect(tampered.stderr).toContain("STORE_INTEGRITY");
  });
});
