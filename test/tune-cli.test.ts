/**
 * `arbor tune` end to end on real fits: pruning, register/promote gates and exit codes (PGlite,
 * in-process CLI), and two tune processes sharing a study on Postgres with one of them SIGKILLed
 * mid-trial (skipped without DATABASE_URL).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { eq, sql } from "drizzle-orm";
import pl from "nodejs-polars";
import postgres from "postgres";
import { studies } from "../registry/db/schema.ts";
import { openRegistry } from "../registry/index.ts";
import { Rng } from "../train/tune/random.ts";
import { runArbor } from "./helpers/cli.ts";
import { createTestDatabase, POSTGRES_URL, type TestDatabase, testLogger } from "./helpers/db.ts";

const ROOT = path.resolve(import.meta.dir, "..");
let dir: string;

/** A binary problem with signal in two features, noise in the rest, and a categorical column. */
function syntheticFrame(n: number, seed: number): pl.DataFrame {
  const rng = new Rng(seed);
  const a = new Float64Array(n);
  const b = new Float64Array(n);
  const c = new Float64Array(n);
  const city: string[] = [];
  const y: boolean[] = [];
  for (let i = 0; i < n; i++) {
    a[i] = rng.normal();
    b[i] = rng.normal();
    c[i] = rng.normal();
    const k = rng.int(6);
    city.push(`c${k}`);
    const logit = 1.2 * a[i] - 0.8 * b[i] * b[i] + 0.4 * (k - 2.5) + 0.5 * rng.normal();
    y.push(logit > 0);
  }
  return pl.DataFrame({ a, b, c, city, y });
}

async function cli(argv: string[], env: Record<string, string | undefined>) {
  const run = await runArbor(argv, { env: { ...env, ARBOR_LOG_LEVEL: "silent" }, cwd: dir });
  return { ...run, json: /^[[{]/.test(run.stdout.trim()) ? JSON.parse(run.stdout) : null };
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "arbor-tune-test-"));
  syntheticFrame(4000, 1).writeParquet(path.join(dir, "small.parquet"));
  syntheticFrame(30000, 2).writeParquet(path.join(dir, "large.parquet"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("arbor tune on PGlite", () => {
  let db: TestDatabase;
  let splitId: string;
  afterAll(async () => db?.drop());

  test("pruning stops bad trials early on real fits; the best is registered and promoted", async () => {
    db = await createTestDatabase("pglite");
    const split = await cli(
      ["split", "--data", path.join(dir, "small.parquet"), "--target", "y", "--json"],
      db.env,
    );
    expect(split.code).toBe(0);
    splitId = split.json.id;
    const base = ["tune", "--split", splitId, "--task", "binary", "--rounds", "60", "--early-stopping", "0"];
    const r = await cli(
      [
        ...base,
        "--trials",
        "12",
        "--sampler",
        "random",
        "--pruner",
        "median",
        "--study",
        "p1",
        "--register",
        "m",
        "--promote",
        "production",
        "--json",
      ],
      db.env,
    );
    expect(r.code).toBe(0);
    expect(r.json.study.status).toBe("complete");
    expect(r.json.trials.total).toBe(12);
    expect(r.json.trials.pruned).toBeGreaterThan(0);
    expect(r.json.registered).toEqual({ name: "m", version: 1 });
    expect(r.json.promotion.promoted).toBe(true);
    expect(r.json.refit.test.auc).toBeGreaterThan(0.7);
    expect(r.stderr).toContain("ETA");
    const show = await cli(["models", "show", "m", "--json"], db.env);
    expect(show.code).toBe(0);
    expect(JSON.stringify(show.json)).toContain(r.json.study.id);
    // The study report: history, importances, and the chart next to report.json.
    const out = path.join(dir, "report-p1");
    const report = await cli(["studies", "show", "p1", "--out", out, "--json"], db.env);
    expect(report.code).toBe(0);
    expect(report.json.history.length).toBe(12);
    expect(report.json.best.number).toBe(r.json.best.number);
    const shares = report.json.importances.map((i: { importance: number }) => i.importance);
    expect(shares.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 6);
    const svg = await Bun.file(path.join(out, "history.svg")).text();
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("parameter importance");
    expect(await Bun.file(path.join(out, "report.json")).exists()).toBe(true);
    // Each trial's record sits in the store (DESIGN.md layout).
    const record = path.join(db.home, "store", "studies", r.json.study.id, "trials", "0", "metrics.json");
    expect(JSON.parse(await Bun.file(record).text())).toMatchObject({ number: 0, study: r.json.study.id });
    const list = await cli(["studies", "list", "--json"], db.env);
    expect(list.json.map((s: { name: string }) => s.name)).toContain("p1");
  }, 120_000);

  test("gates: --min-metric refuses (exit 4), a worse challenger is refused (exit 5) unless --force", async () => {
    const base = [
      "tune",
      "--split",
      splitId,
      "--task",
      "binary",
      "--rounds",
      "30",
      "--register",
      "m",
      "--promote",
      "production",
    ];
    const high = await cli(
      [...base, "--trials", "2", "--study", "g1", "--min-metric", "0.999", "--json"],
      db.env,
    );
    expect(high.code).toBe(4);
    expect(high.json.promotion).toMatchObject({ promoted: false, code: "MIN_METRIC" });
    // A deliberately weak space: stumps with a tiny learning rate cannot beat the champion.
    const weak = path.join(dir, "weak.json");
    await Bun.write(
      weak,
      JSON.stringify({
        numLeaves: { type: "int", low: 2, high: 2 },
        learningRate: { type: "float", low: 0.001, high: 0.002 },
        colsample: { type: "float", low: 0.3, high: 0.34 },
      }),
    );
    const worse = await cli(
      [...base, "--trials", "1", "--study", "g2", "--search-space", weak, "--json"],
      db.env,
    );
    expect(worse.code).toBe(5);
    expect(worse.json.promotion).toMatchObject({ promoted: false, code: "CHAMPION" });
    const forced = await cli(
      [...base, "--trials", "1", "--study", "g3", "--search-space", weak, "--force", "--json"],
      db.env,
    );
    expect(forced.code).toBe(0);
    expect(forced.json.promotion.promoted).toBe(true);
  }, 120_000);

  test("bad input is named: --promote without --register, unknown split", async () => {
    const a = await cli(["tune", "--split", splitId, "--task", "binary", "--promote", "x"], db.env);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("--promote");
    const c = await cli(
      ["tune", "--split", splitId, "--task", "binary", "--sampler-options", '{"gama":0.2}'],
      db.env,
    );
    expect(c.code).toBe(2);
    expect(c.stderr).toContain("gama");
    const d = await cli(["tune", "--split", splitId, "--task", "regression", "--metric", "auc"], db.env);
    expect(d.code).toBe(2);
    expect(d.stderr).toContain("--metric auc");
    // A target that cannot work fails the study at its first trial, not after the whole budget.
    const e = await cli(
      [
        "tune",
        "--split",
        splitId,
        "--target",
        "a",
        "--task",
        "binary",
        "--trials",
        "50",
        "--study",
        "bad-target",
        "--json",
      ],
      db.env,
    );
    expect(e.code).toBe(2);
    expect(e.json.error.code).toBe("FIT_BAD_TARGET");
    const failed = await cli(
      ["studies", "show", "bad-target", "--json", "--out", path.join(dir, "bad")],
      db.env,
    );
    expect(failed.json.study.status).toBe("failed");
    expect(failed.json.history.length).toBeLessThan(50);
    const b = await cli(
      ["tune", "--split", "spl_00000000000000000000", "--task", "binary", "--json"],
      db.env,
    );
    expect(b.code).toBe(2);
    expect(b.json.error.code).toBe("SPLIT_NOT_FOUND");
  }, 60_000);

  test("no trial completes: exit 3, nothing registered, each failure's reason on stderr", async () => {
    const space = path.join(dir, "no-leaves.json");
    await Bun.write(space, JSON.stringify({ numLeaves: { type: "int", low: 1, high: 1 } }));
    const r = await cli(
      [
        ...["tune", "--split", splitId, "--task", "binary", "--rounds", "10", "--trials", "2"],
        ...["--study", "none-done", "--search-space", space, "--register", "m", "--promote", "production"],
        "--json",
      ],
      db.env,
    );
    expect(r.code).toBe(3);
    expect(r.json.trials).toMatchObject({ total: 2, failed: 2, complete: 0 });
    expect(r.json.registered).toBeNull();
    expect(r.json.promotion).toMatchObject({ promoted: false, code: "NO_TRIAL" });
    expect(r.stderr).toMatch(/trial 0 failed \(.+\) in /);
  }, 60_000);

  test("a complete study whose closer died before its refit is refitted by a rerun, once", async () => {
    const base = ["tune", "--split", splitId, "--task", "binary", "--rounds", "20", "--trials", "2"];
    const first = await cli([...base, "--study", "orphan", "--json"], db.env);
    expect(first.code).toBe(0);
    // As if the closing process died right after closing: no result, a claim nobody renews.
    const setClaim = async (at: string) => {
      const registry = await openRegistry(db.config(), testLogger());
      await registry.db
        .update(studies)
        .set({
          settings: sql`(${studies.settings} - 'result') || jsonb_build_object('refitClaim', jsonb_build_object('worker', 'gone', 'at', ${sql.raw(at)}))`,
        })
        .where(eq(studies.name, "orphan"));
      await registry.close();
    };
    await setClaim("extract(epoch from now())::float8");
    const fresh = await cli([...base, "--study", "orphan", "--register", "orphan", "--json"], db.env);
    expect(fresh.code).toBe(0);
    expect(fresh.json.registered).toBeNull(); // the claim is fresh: its holder may still be refitting
    await setClaim("0");
    const rerun = await cli([...base, "--study", "orphan", "--register", "orphan", "--json"], db.env);
    expect(rerun.code).toBe(0);
    expect(rerun.stderr).toContain("refit never finished");
    expect(rerun.json.registered).toEqual({ name: "orphan", version: 1 });
    const again = await cli([...base, "--study", "orphan", "--register", "orphan", "--json"], db.env);
    expect(again.json.registered).toBeNull();
    expect(again.stderr).toContain("registered (v1)");
  }, 60_000);
});

describe.skipIf(!POSTGRES_URL)("two arbor tune processes on one Postgres", () => {
  if (!POSTGRES_URL) console.warn("skipping the two-process Postgres suite: DATABASE_URL is unset");
  let db: TestDatabase;
  afterAll(async () => db?.drop());

  test("no trial runs twice; a SIGKILLed worker's trial is retried and the study completes", async () => {
    db = await createTestDatabase("postgres");
    const split = await cli(
      ["split", "--data", path.join(dir, "large.parquet"), "--target", "y", "--json"],
      db.env,
    );
    expect(split.code).toBe(0);
    const args = [
      path.join(ROOT, "train", "cli.ts"),
      "tune",
      "--split",
      split.json.id,
      "--task",
      "binary",
      "--study",
      "shared",
      "--trials",
      "10",
      "--rounds",
      "150",
      "--early-stopping",
      "0",
      "--pruner",
      "none",
      "--stale-after",
      "3",
      "--json",
    ];
    const env = { ...process.env, ...db.env, ARBOR_LOG_LEVEL: "silent" };
    const start = () => {
      const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      const done = new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) =>
        child.on("exit", (code, signal) => resolve({ code, signal, out })),
      );
      return { child, done };
    };
    const a = start();
    const b = start();
    const sql = postgres(db.databaseUrl!, { max: 1, onnotice: () => {} });
    try {
      // Wait until A is in the middle of a trial, then kill it without warning.
      let killedTrial: number | null = null;
      for (let i = 0; i < 600 && killedTrial === null; i++) {
        const rows =
          await sql`select number from trials where state = 'running' and worker_id like ${`%:${a.child.pid}:%`}`;
        if (rows.length > 0) killedTrial = rows[0].number as number;
        else await Bun.sleep(100);
      }
      expect(killedTrial).not.toBeNull();
      a.child.kill("SIGKILL");
      const ra = await a.done;
      expect(ra.signal).toBe("SIGKILL");
      const rb = await b.done;
      expect(rb.code).toBe(0);
      const trials = await sql`select number, state, attempts, worker_id from trials order by number`;
      expect(trials.map((t) => t.number)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(trials.every((t) => t.state === "complete")).toBe(true);
      const killed = trials.find((t) => t.number === killedTrial)!;
      expect(killed.attempts).toBe(2);
      expect(String(killed.worker_id)).toContain(`:${b.child.pid}:`);
      // Every other trial ran exactly once.
      expect(trials.filter((t) => t.number !== killedTrial).every((t) => t.attempts === 1)).toBe(true);
      const [study] = await sql`select status, best_trial_number from studies where name = 'shared'`;
      expect(study.status).toBe("complete");
      expect(JSON.parse(rb.out).study.status).toBe("complete");
    } finally {
      a.child.kill("SIGKILL");
      b.child.kill("SIGKILL");
      await sql.end();
    }
  }, 120_000);
});
