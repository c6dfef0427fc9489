import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { openArtifactStore } from "../registry/store/open.ts";
import { type ErrorCode, isArborError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { Random, shuffleInPlace } from "../shared/random.ts";
import type { Dataset } from "../train/data/read.ts";
import { buildReport, type SplitReport, stableReport } from "../train/data/report.ts";
import {
  allocate,
  parseRatios,
  planSplit,
  type SplitOptions,
  type SplitPlan,
  stratifiedSizes,
} from "../train/data/split.ts";
import { takeParts, writeParts } from "../train/data/write.ts";
import { startGcsServer } from "./gcs-server.ts";
import { runArbor } from "./helpers/cli.ts";
import { createTestDatabase, databaseKinds, type TestDatabase } from "./helpers/db.ts";

const logger = createLogger({ name: "test", level: "silent" });
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "arbor-split-test-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A synthetic frame: `cls` has three unbalanced classes (plus a few nulls), `t` is a datetime with
 * many ties in shuffled file order, `g` has 40 groups of uneven sizes, `y` is continuous.
 */
function frame(n: number, seed = 1): pl.DataFrame {
  const rng = new Random(seed);
  const cls: (string | null)[] = [];
  const t = new Float64Array(n);
  const tn = new Int32Array(n);
  const g: string[] = [];
  const y = new Float64Array(n);
  const v = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng.nextFloat();
    cls.push(u < 0.6 ? "a" : u < 0.9 ? "b" : u < 0.995 ? "c" : null);
    tn[i] = rng.nextBelow(Math.max(1, Math.floor(n / 7))); // ~7 rows per timestamp
    t[i] = Date.UTC(2024, 0, 1) + tn[i] * 60_000;
    const k = Math.floor(40 * rng.nextFloat() ** 2); // skewed group sizes
    g.push(`g${k}`);
    y[i] = rng.nextFloat() * 100;
    v[i] = rng.nextBelow(200);
  }
  return pl.DataFrame({
    cls,
    t: pl
      .Series(
        "t",
        Array.from(t, (ms) => new Date(ms)),
      )
      .cast(pl.Datetime("ms")),
    tn,
    g,
    y,
    v,
    bin: pl.Series(
      "bin",
      Array.from(v, (x) => x % 2 === 0),
    ),
  });
}

const base: SplitOptions = { strategy: "random", target: "cls", ratios: [0.7, 0.15, 0.15], seed: 7 };

function plan(df: pl.DataFrame, options: Partial<SplitOptions>): SplitPlan {
  return planSplit(df, { ...base, ...options }, logger);
}

function codeOf(fn: () => unknown): ErrorCode | "ok" {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (isArborError(e)) return e.code;
    throw e;
  }
}

function column<T>(df: pl.DataFrame, name: string): T[] {
  return df.getColumn(name).toArray() as T[];
}

/** Every row in exactly one part. */
function expectPartition(p: SplitPlan, n: number): void {
  const seen = new Uint8Array(n);
  for (const part of p.parts) for (const i of part) seen[i]++;
  expect(seen.every((x) => x === 1)).toBe(true);
}

describe("shared/random", () => {
  test("xoshiro128** matches the reference output for state (1,2,3,4)", () => {
    const r = Random.fromState(1, 2, 3, 4);
    const out = [r.nextUint32(), r.nextUint32(), r.nextUint32(), r.nextUint32()];
    // First outputs of the C reference implementation (prng.di.unimi.it/xoshiro128starstar.c).
    expect(out.slice(0, 2)).toEqual([11520, 0]);
    expect(out[2]).toBe(5927040);
    expect(out[3]).toBe(70819200);
  });

  test("same seed → same sequence; shuffle is a permutation", () => {
    const a = new Random(42);
    const b = new Random(42);
    for (let i = 0; i < 100; i++) expect(a.nextUint32()).toBe(b.nextUint32());
    const x = Uint32Array.from({ length: 1000 }, (_, i) => i);
    shuffleInPlace(x, new Random(3));
    expect(Array.from(x).sort((p, q) => p - q)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(Array.from(x.slice(0, 10))).not.toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const f = new Random(1);
    for (let i = 0; i < 1000; i++) {
      const u = f.nextFloat();
      expect(u >= 0 && u < 1).toBe(true);
    }
  });
});

describe("ratios", () => {
  test("largest remainder: sizes sum to n and each is within 1 of n·ratio", () => {
    for (const n of [3, 10, 101, 9999]) {
      for (const r of [
        [0.7, 0.15, 0.15],
        [0.5, 0.25, 0.25],
        [0.34, 0.33, 0.33],
      ]) {
        const s = allocate(n, r);
        expect(s[0] + s[1] + s[2]).toBe(n);
        for (let k = 0; k < 3; k++) expect(Math.abs(s[k] - n * r[k])).toBeLessThan(1);
      }
    }
  });

  test("parseRatios: default, valid, and SPLIT_BAD_RATIOS", () => {
    expect(parseRatios(undefined)).toEqual([0.7, 0.15, 0.15]);
    expect(parseRatios(["0.8", "0.1", "0.1"])).toEqual([0.8, 0.1, 0.1]);
    for (const bad of [
      ["0.5", "0.5"],
      ["0.5", "0.3", "0.3"],
      ["1", "0", "0"],
      ["a", "b", "c"],
      ["0.9", "0.2", "-0.1"],
    ]) {
      expect(codeOf(() => parseRatios(bad))).toBe("SPLIT_BAD_RATIOS");
    }
  });
});

describe("stratified sizes", () => {
  test("random class mixes: each class within ±1 of its share per part, part totals exact", () => {
    const rng = new Random(11);
    const ratioSets = [
      [0.7, 0.15, 0.15],
      [0.6, 0.3, 0.1],
      [0.34, 0.33, 0.33],
      [0.9, 0.05, 0.05],
    ];
    for (let it = 0; it < 2000; it++) {
      const classes = Array.from({ length: 2 + rng.nextBelow(30) }, () =>
        rng.nextBelow(rng.nextFloat() < 0.3 ? 5 : 500),
      );
      const r = ratioSets[it % ratioSets.length];
      const sizes = stratifiedSizes(classes, r);
      const totals = [0, 0, 0];
      classes.forEach((nc, c) => {
        expect(sizes[c][0] + sizes[c][1] + sizes[c][2]).toBe(nc);
        for (let k = 0; k < 3; k++) {
          expect(Math.abs(sizes[c][k] - nc * r[k])).toBeLessThanOrEqual(1);
          totals[k] += sizes[c][k];
        }
      });
      expect(totals).toEqual(
        allocate(
          classes.reduce((a, b) => a + b, 0),
          r,
        ),
      );
    }
  });
});

describe("strategies", () => {
  const df = frame(5000);
  const n = df.height;

  test("random: exact part sizes, a partition, deterministic for a seed", () => {
    const a = plan(df, {});
    expectPartition(a, n);
    expect(a.parts.map((p) => p.length)).toEqual([3500, 750, 750]);
    expect(plan(df, {}).assignmentSha256).toBe(a.assignmentSha256);
    expect(plan(df, { seed: 8 }).assignmentSha256).not.toBe(a.assignmentSha256);
    for (const p of a.parts) for (let i = 1; i < p.length; i++) expect(p[i]).toBeGreaterThan(p[i - 1]);
  });

  test("stratified: every class within ±1 row of its exact share in every part (many seeds and ratios)", () => {
    const cls = column<string | null>(df, "cls");
    const counts = new Map<string, number>();
    for (const c of cls) counts.set(String(c), (counts.get(String(c)) ?? 0) + 1);
    for (const ratios of [
      [0.7, 0.15, 0.15],
      [0.6, 0.3, 0.1],
      [0.34, 0.33, 0.33],
    ] as [number, number, number][]) {
      for (const seed of [1, 2, 3]) {
        const p = plan(df, { strategy: "stratified", ratios, seed });
        expectPartition(p, n);
        p.parts.forEach((part, k) => {
          const inPart = new Map<string, number>();
          for (const i of part) inPart.set(String(cls[i]), (inPart.get(String(cls[i])) ?? 0) + 1);
          for (const [c, total] of counts) {
            expect(Math.abs((inPart.get(c) ?? 0) - total * ratios[k])).toBeLessThanOrEqual(1);
          }
        });
      }
    }
    // The part totals are the random split's, exactly.
    const p = plan(df, { strategy: "stratified" });
    expect(p.parts.map((x) => x.length)).toEqual(allocate(n, [0.7, 0.15, 0.15]));
    // Booleans and small integer codes are classes too.
    expectPartition(plan(df, { strategy: "stratified", target: "bin" }), n);
  });

  test("time: ordered by time, earliest to train, ties never straddle a cut", () => {
    for (const col of ["t", "tn"]) {
      const p = plan(df, { strategy: "time", timeColumn: col });
      expectPartition(p, n);
      const tv = column<number | Date>(df, col).map(Number);
      const ranges = p.parts.map((part) => {
        for (let i = 1; i < part.length; i++) {
          expect(tv[part[i]]).toBeGreaterThanOrEqual(tv[part[i - 1]]);
          // stable: equal times keep file order
          if (tv[part[i]] === tv[part[i - 1]]) expect(part[i]).toBeGreaterThan(part[i - 1]);
        }
        return [tv[part[0]], tv[part[part.length - 1]]];
      });
      expect(ranges[0][1]).toBeLessThan(ranges[1][0]);
      expect(ranges[1][1]).toBeLessThan(ranges[2][0]);
      // Sizes stay close to the ratios (within one run of equal times, ~7 rows here).
      expect(Math.abs(p.parts[0].length - 3500)).toBeLessThan(40);
      expect(Math.abs(p.parts[2].length - 750)).toBeLessThan(40);
    }
  });

  test("time: ISO-8601 text (as CSV gives dates) is ordered as time, UTC offsets applied", () => {
    const y = [1, 2, 3, 4, 5, 6];
    const opts = { target: "y", strategy: "time", timeColumn: "t", ratios: [0.5, 0.25, 0.25] } as const;
    const texts = [
      ["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-05", "2024-01-04", "2024-01-06"],
      ["2024-01-01 03:00:00", "2024-01-01 01:00:00", "2024-01-01 02:00:00.5", "2024-01-01 05:00:00"],
      // 04:00+02:00 is 02:00 UTC: before 03:00Z, although it sorts after it as text.
      [
        "2024-01-01T03:00:00+00:00",
        "2024-01-01T01:00:00+00:00",
        "2024-01-01T04:00:00+02:00",
        "2024-01-01T05:00:00+00:00",
      ],
    ];
    const expected = [
      [[1, 2, 0], [4, 3], [5]],
      [[1, 2], [0], [3]],
      [[1, 2], [0], [3]],
    ];
    texts.forEach((t, k) => {
      const df = pl.DataFrame({ t, y: y.slice(0, t.length) });
      expect(plan(df, opts).parts.map((p) => Array.from(p))).toEqual(expected[k]);
    });
    // Text that is not ISO time (or mixes shapes) is still refused.
    for (const t of [
      ["2024-13-45", "2024-01-02", "2024-01-03", "2024-01-04"],
      ["2024-01-01", "2024-01-02T01:00:00", "b", "c"],
    ]) {
      const df = pl.DataFrame({ t, y: [1, 2, 3, 4] });
      expect(codeOf(() => plan(df, opts))).toBe("DATA_BAD_COLUMN_TYPE");
    }
  });

  test("group: no group in two parts; sizes near the ratios; deterministic", () => {
    const g = column<string>(df, "g");
    const p = plan(df, { strategy: "group", groupColumn: "g" });
    expectPartition(p, n);
    const partOf = new Map<string, number>();
    p.parts.forEach((part, k) => {
      for (const i of part) {
        const prev = partOf.get(g[i]);
        if (prev !== undefined) expect(prev).toBe(k);
        partOf.set(g[i], k);
      }
    });
    expect(new Set(partOf.values()).size).toBe(3);
    expect(p.groups).toBe(new Set(g).size);
    expect(plan(df, { strategy: "group", groupColumn: "g" }).assignmentSha256).toBe(p.assignmentSha256);
    expect(Math.abs(p.parts[0].length / n - 0.7)).toBeLessThan(0.1);
  });
});

describe("bad input", () => {
  const df = frame(600);

  test("unknown target, time or group column → DATA_UNKNOWN_COLUMN", () => {
    expect(codeOf(() => plan(df, { target: "nope" }))).toBe("DATA_UNKNOWN_COLUMN");
    expect(codeOf(() => plan(df, { strategy: "time", timeColumn: "nope" }))).toBe("DATA_UNKNOWN_COLUMN");
    expect(codeOf(() => plan(df, { strategy: "group", groupColumn: "nope" }))).toBe("DATA_UNKNOWN_COLUMN");
    // Also when the strategy does not use them (the report does).
    expect(codeOf(() => plan(df, { strategy: "random", timeColumn: "nope" }))).toBe("DATA_UNKNOWN_COLUMN");
    expect(codeOf(() => plan(df, { strategy: "stratified", groupColumn: "nope" }))).toBe(
      "DATA_UNKNOWN_COLUMN",
    );
  });

  test("missing --time-column / --group-column → SPLIT_MISSING_COLUMN_OPTION", () => {
    expect(codeOf(() => plan(df, { strategy: "time" }))).toBe("SPLIT_MISSING_COLUMN_OPTION");
    expect(codeOf(() => plan(df, { strategy: "group" }))).toBe("SPLIT_MISSING_COLUMN_OPTION");
  });

  test("stratifying a continuous target → SPLIT_STRATIFY_CONTINUOUS", () => {
    expect(codeOf(() => plan(df, { strategy: "stratified", target: "y" }))).toBe("SPLIT_STRATIFY_CONTINUOUS");
    expect(codeOf(() => plan(df, { strategy: "stratified", target: "v" }))).toBe("SPLIT_STRATIFY_CONTINUOUS");
    const f = pl.DataFrame({ y: [0.5, 1, 1, 0, 0, 1] });
    expect(codeOf(() => plan(f, { strategy: "stratified", target: "y" }))).toBe("SPLIT_STRATIFY_CONTINUOUS");
  });

  test("stratifying a single-class target → SPLIT_STRATIFY_SINGLE_CLASS", () => {
    const f = pl.DataFrame({ y: Array.from({ length: 50 }, () => "same") });
    expect(codeOf(() => plan(f, { strategy: "stratified", target: "y" }))).toBe(
      "SPLIT_STRATIFY_SINGLE_CLASS",
    );
  });

  test("ratios that leave a part empty → SPLIT_EMPTY_PART; bad ratios → SPLIT_BAD_RATIOS", () => {
    const f = pl.DataFrame({ y: [1, 2, 3, 4], g: ["a", "a", "a", "b"] });
    expect(codeOf(() => plan(f, { target: "y", ratios: [0.9, 0.05, 0.05] }))).toBe("SPLIT_EMPTY_PART");
    expect(codeOf(() => plan(f, { target: "y", ratios: [0.5, 0.5, 0.5] }))).toBe("SPLIT_BAD_RATIOS");
    // Ties keep all rows of one time in one part, which can empty a part.
    const ties = pl.DataFrame({ y: [1, 2, 3, 4, 5, 6], t: [1, 1, 1, 1, 1, 2] });
    expect(codeOf(() => plan(ties, { target: "y", strategy: "time", timeColumn: "t" }))).toBe(
      "SPLIT_EMPTY_PART",
    );
  });

  test("group column with fewer than three groups → SPLIT_TOO_FEW_GROUPS", () => {
    const f = pl.DataFrame({ y: [1, 2, 3, 4], g: ["a", "a", "a", "b"] });
    expect(codeOf(() => plan(f, { target: "y", strategy: "group", groupColumn: "g" }))).toBe(
      "SPLIT_TOO_FEW_GROUPS",
    );
  });

  test("nested columns are refused as targets or groups → DATA_BAD_COLUMN_TYPE", () => {
    const f = pl.DataFrame({ y: [1, 2, 3, 4], l: [[1], [2], [3], [4]] });
    expect(codeOf(() => plan(f, { target: "l" }))).toBe("DATA_BAD_COLUMN_TYPE");
    expect(codeOf(() => plan(f, { target: "y", strategy: "group", groupColumn: "l" }))).toBe(
      "DATA_BAD_COLUMN_TYPE",
    );
  });

  test("time column of the wrong type or with nulls", () => {
    expect(codeOf(() => plan(df, { strategy: "time", timeColumn: "g" }))).toBe("DATA_BAD_COLUMN_TYPE");
    const f = pl.DataFrame({ y: [1, 2, 3, 4], t: [1, null, 3, 4] });
    expect(codeOf(() => plan(f, { target: "y", strategy: "time", timeColumn: "t" }))).toBe(
      "DATA_NULL_VALUES",
    );
  });
});

describe("determinism of the written files", () => {
  test("same frame, options and seed → same parquet bytes and the same report", async () => {
    const df = frame(3000, 5);
    const dataset: Dataset = {
      frame: df,
      sourceUri: "file:///synthetic",
      format: "parquet",
      fingerprint: "sha256:0",
      bytes: 0,
      schema: {},
    };
    const options: SplitOptions = { ...base, strategy: "stratified", timeColumn: "t", groupColumn: "g" };
    const run = async (sub: string) => {
      const out = path.join(dir, sub);
      rmSync(out, { recursive: true, force: true });
      (await import("node:fs")).mkdirSync(out, { recursive: true });
      const p = planSplit(df, options, logger);
      const frames = takeParts(df, p);
      const files = await writeParts(frames, out);
      const report = buildReport({ id: sub, name: null, dataset, options, plan: p, frames, files, logger });
      return { files, report };
    };
    const a = await run("a");
    const b = await run("b");
    for (let k = 0; k < 3; k++) {
      expect(readFileSync(a.files[k].file).equals(readFileSync(b.files[k].file))).toBe(true);
      expect(a.files[k].sha256).toBe(b.files[k].sha256);
    }
    expect(stableReport(a.report)).toEqual(stableReport(b.report));
    // The report carries what the issue asks for.
    const train = a.report.parts.train;
    expect(train.rows + a.report.parts.valid.rows + a.report.parts.test.rows).toBe(3000);
    expect(Object.keys(train.classes ?? {}).sort()).toEqual(["a", "b", "c", "null"]);
    expect(typeof train.time?.min).toBe("string");
    expect(train.groups).toBeGreaterThan(0);
    // The files hold the planned rows.
    const back = pl.readParquet(a.files[1].file);
    expect(back.height).toBe(a.report.parts.valid.rows);
    expect(back.columns).toEqual(df.columns);
  });
});

// PGlite's first open (initdb) alone takes ~3 s; bunfig's timeout does not reach every run.
for (const kind of databaseKinds()) {
  describe(`arbor split / splits (CLI on ${kind}, file store)`, () => {
    let db: TestDatabase;
    let home: string;
    let data: string;

    function cli(argv: string[]) {
      return runArbor(argv, { env: { ...db.env, ARBOR_LOG_LEVEL: "silent" }, cwd: dir });
    }

    const storeFile = (id: string, file: string) => path.join(home, "store", "splits", id, file);

    beforeAll(async () => {
      db = await createTestDatabase(kind);
      home = db.home;
      data = path.join(dir, `cli-${kind}.parquet`);
      frame(2000, 9).writeParquet(data);
    });
    afterAll(() => db.drop());

    test("split → id; same input twice → same assignment and bytes; list, show, delete, purge", async () => {
      const argv = ["split", "--data", data, "--target", "cls", "--strategy", "stratified", "--seed", "3"];
      const first = await cli([...argv, "--name", "demo"]);
      expect(first.stderr).toContain("stored split");
      expect(first.code).toBe(0);
      const id1 = first.stdout.trim();
      expect(id1).toMatch(/^spl_[0-9a-z]{20}$/);
      const second = await cli([...argv, "--json", "--quiet"]);
      expect(second.code).toBe(0);
      const report = JSON.parse(second.stdout) as SplitReport;
      const id2 = report.id;
      expect(id2).not.toBe(id1);
      const stored1 = JSON.parse(readFileSync(storeFile(id1, "split.json"), "utf8")) as SplitReport;
      expect(stableReport(stored1)).toEqual(stableReport(report));
      for (const f of ["train.parquet", "valid.parquet", "test.parquet"]) {
        expect(readFileSync(storeFile(id1, f)).equals(readFileSync(storeFile(id2, f)))).toBe(true);
      }
      expect(report.source.fingerprint).toBe(
        `sha256:${createHash("sha256").update(readFileSync(data)).digest("hex")}`,
      );
      expect(report.source.schema.t).toBe("Datetime(ms)");
      expect(report.parts.train.rows + report.parts.valid.rows + report.parts.test.rows).toBe(2000);
      expect(pl.readParquet(storeFile(id1, "valid.parquet")).height).toBe(report.parts.valid.rows);

      const list = await cli(["splits", "list"]);
      expect(list.code).toBe(0);
      expect(list.stdout).toContain(id1);
      expect(list.stdout).toContain(id2);
      const named = JSON.parse((await cli(["splits", "list", "--name", "demo", "--json"])).stdout) as {
        id: string;
      }[];
      expect(named.map((r) => r.id)).toEqual([id1]);

      const show = await cli(["splits", "show", id1]);
      expect(show.code).toBe(0);
      for (const word of ["train", "valid", "test", "CLASSES", "sha256:", "stratified"])
        expect(show.stdout).toContain(word);
      const shown = JSON.parse((await cli(["splits", "show", id1, "--json"])).stdout) as {
        report: SplitReport;
      };
      expect(shown.report.parts.test.rows).toBe(report.parts.test.rows);
      // The schema keeps the file's column order, though the registry stores the report as jsonb.
      const columns = Object.keys(report.source.schema);
      expect(shown.report.source.column_names).toEqual(columns);
      expect(show.stdout).toContain(
        `schema    ${columns.map((c) => `${c} ${report.source.schema[c]}`).join(", ")}`,
      );

      expect((await cli(["splits", "delete", id1])).code).toBe(0);
      expect((await cli(["splits", "list"])).stdout).not.toContain(id1);
      expect((await cli(["splits", "list", "--all"])).stdout).toContain(id1);
      expect(existsSync(storeFile(id1, "train.parquet"))).toBe(true);

      expect((await cli(["splits", "delete", id2, "--purge"])).code).toBe(0);
      expect(existsSync(storeFile(id2, "train.parquet"))).toBe(false);
      const gone = await cli(["splits", "show", id2]);
      expect(gone.code).toBe(2);
      expect(gone.stderr).toContain("SPLIT_NOT_FOUND");
    }, 120_000);

    test("time and group strategies through the CLI: report ranges and group counts", async () => {
      const time = await cli([
        "split",
        "--data",
        data,
        "--target",
        "y",
        "--strategy",
        "time",
        "--time-column",
        "t",
        "--json",
      ]);
      expect(time.code).toBe(0);
      const r = JSON.parse(time.stdout) as SplitReport;
      expect(String(r.parts.train.time?.max) < String(r.parts.valid.time?.min)).toBe(true);
      expect(String(r.parts.valid.time?.max) < String(r.parts.test.time?.min)).toBe(true);
      expect(r.target.kind).toBe("continuous");
      expect(r.parts.train.classes).toBeUndefined();
      const group = await cli([
        "split",
        "--data",
        data,
        "--target",
        "cls",
        "--strategy",
        "group",
        "--group-column",
        "g",
        "--json",
      ]);
      expect(group.code).toBe(0);
      const g = JSON.parse(group.stdout) as SplitReport;
      expect(g.parts.train.groups! + g.parts.valid.groups! + g.parts.test.groups!).toBe(g.groups_total!);
      const show = await cli(["splits", "show", g.id]);
      expect(show.stdout).toContain("GROUPS");
    }, 120_000);

    test("time strategy on a CSV with ISO text times: ordered and reported by parsed time", async () => {
      // 09:00+06:00 is 03:00 UTC: in the middle of train, though it is train's largest text.
      const times = ["04:00:00Z", "08:00:00Z", "01:00:00Z", "09:00:00+06:00", "07:00:00Z", "06:00:00Z"];
      const all = [...times, "02:00:00Z", "05:00:00Z"].map((h) => `2024-01-01T${h.replace("Z", "+00:00")}`);
      const csv = path.join(dir, "iso-times.csv");
      writeFileSync(csv, `t,y\n${all.map((t, i) => `${t},${i}`).join("\n")}\n`);
      const r = await cli([
        "split",
        "--data",
        csv,
        "--target",
        "y",
        "--strategy",
        "time",
        "--time-column",
        "t",
      ]);
      expect(r.code).toBe(0);
      const shown = JSON.parse((await cli(["splits", "show", r.stdout.trim(), "--json"])).stdout) as {
        report: SplitReport;
      };
      const { train, valid, test: testPart } = shown.report.parts;
      // 8 rows at 0.7/0.15/0.15 → 6/1/1 by UTC time: train 01:00 … 06:00, valid 07:00, test 08:00.
      expect([train.rows, valid.rows, testPart.rows]).toEqual([6, 1, 1]);
      expect(train.time).toEqual({ min: "2024-01-01T01:00:00+00:00", max: "2024-01-01T06:00:00+00:00" });
      expect(valid.time?.min).toBe("2024-01-01T07:00:00+00:00");
      expect(testPart.time?.min).toBe("2024-01-01T08:00:00+00:00");
    }, 120_000);

    test("bad input exits 2 with one line naming the code", async () => {
      const cases: [string[], ErrorCode][] = [
        [["--data", path.join(dir, "missing.csv"), "--target", "cls"], "DATA_NOT_FOUND"],
        [["--data", data, "--target", "nope"], "DATA_UNKNOWN_COLUMN"],
        [["--data", data, "--target", "cls", "--ratios", "0.5,0.5,0.5"], "SPLIT_BAD_RATIOS"],
        [["--data", data, "--target", "cls", "--strategy", "time"], "SPLIT_MISSING_COLUMN_OPTION"],
        [["--data", data, "--target", "y", "--strategy", "stratified"], "SPLIT_STRATIFY_CONTINUOUS"],
        [["--data", path.join(dir, "x.xlsx"), "--target", "cls"], "DATA_UNSUPPORTED_FORMAT"],
        [["--data", data, "--target", "cls", "--name", "bad name!"], "INVALID_ARGUMENT"],
        [["--data", data, "--target", "cls", "--time-column", "nope"], "DATA_UNKNOWN_COLUMN"],
        [
          ["--data", data, "--target", "cls", "--strategy", "group", "--group-column", "nope"],
          "DATA_UNKNOWN_COLUMN",
        ],
        [["--data", data, "--target", "cls", "--ratios", "1,0,0"], "SPLIT_BAD_RATIOS"],
      ];
      const before = JSON.parse((await cli(["splits", "list", "--all", "--json"])).stdout).length;
      const folders = () => readdirSync(path.join(home, "store", "splits")).length;
      const foldersBefore = folders();
      for (const [args, expected] of cases) {
        const r = await cli(["split", ...args]);
        expect(r.code).toBe(2);
        const lines = r.stderr.trim().split("\n");
        expect(lines.at(-1)).toContain(expected);
        expect(r.stderr).not.toContain("    at "); // no stack trace
      }
      // Nothing half-written: no new row, no new files.
      expect(JSON.parse((await cli(["splits", "list", "--all", "--json"])).stdout).length).toBe(before);
      expect(folders()).toBe(foldersBefore);
    }, 120_000);
  });
}

describe("arbor split with gs:// data and a gs:// store (real GCS client, test server)", () => {
  test("download, split, upload the parts and split.json, record the row", async () => {
    const gcs = await startGcsServer({ buckets: ["bkt"] });
    const db = await createTestDatabase("pglite");
    try {
      const env = {
        ...db.env,
        ARBOR_STORE: "gs://bkt/arbor",
        STORAGE_EMULATOR_HOST: gcs.url,
        ARBOR_GCS_PROJECT: "arbor-test",
        ARBOR_LOG_LEVEL: "silent",
      };
      const upload = await openArtifactStore("gs://bkt/raw", {
        gcsEndpoint: gcs.url,
        gcsProject: "arbor-test",
      });
      await upload.put("flights.parquet", frame(1500, 4).writeParquet());
      await upload.close();
      const { code, stdout, stderr } = await runArbor(
        ["split", "--data", "gs://bkt/raw/flights.parquet", "--target", "cls", "--strategy", "stratified"],
        { env, cwd: dir },
      );
      expect(stderr).not.toContain("arbor:");
      expect(code).toBe(0);
      const id = stdout.trim();
      expect(gcs.objectNames("bkt")).toEqual(
        expect.arrayContaining(
          ["test.parquet", "train.parquet", "valid.parquet", "split.json"].map(
            (f) => `arbor/splits/${id}/${f}`,
          ),
        ),
      );
      const shown = await runArbor(["splits", "show", id, "--json"], { env, cwd: dir });
      expect(shown.code).toBe(0);
      const report = (JSON.parse(shown.stdout) as { report: SplitReport }).report;
      expect(report.source.uri).toBe("gs://bkt/raw/flights.parquet");
      expect(report.parts.train.rows + report.parts.valid.rows + report.parts.test.rows).toBe(1500);
    } finally {
      await db.drop();
      await gcs.close();
    }
  }, 120_000);
});
