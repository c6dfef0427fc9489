/**
 * bench/tune.ts parts (2) and (3) on the flights data (vega-datasets flights-3m, a sample):
 *  (2) best validation AUC after 10, 20 and 40 trials, TPE against random (no pruning, so both
 *      samplers get the same budget of full fits);
 *  (3) trials per minute with --parallel 1 and 2 (random sampler, same trials).
 * Runs the real pipeline (split in the store, studies on an embedded PGlite, fits in worker threads).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { openRegistry } from "../registry/index.ts";
import { loadArborConfig } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { COMMANDS } from "../train/cli/commands.ts";
import { runCli } from "../train/cli/dispatch.ts";
import { flightsSample } from "../train/data/flights-sample.ts";
import { runTune, type TuneOptions } from "../train/tune/pipeline.ts";
import { StudyStorage } from "../train/tune/storage.ts";

/** Size of the flights runs (bench/tune.ts flags --rows, --rounds, --flight-seeds). */
export interface FlightsBenchOptions {
  rows: number;
  rounds: number;
  seeds: number;
}

async function makeSplit(home: string, ROWS: number): Promise<string> {
  const file = path.join(home, "flights.parquet");
  flightsSample(ROWS, 7).writeParquet(file);
  let out = "";
  const code = await runCli(
    COMMANDS,
    [
      "split",
      "--data",
      file,
      "--target",
      "delayed",
      "--strategy",
      "stratified",
      "--seed",
      "42",
      "--json",
      "--quiet",
    ],
    {
      stdout: (t) => {
        out += t;
      },
      stderr: () => {},
      env: { ARBOR_HOME: home, ARBOR_LOG_LEVEL: "silent" },
      cwd: home,
    },
  );
  if (code !== 0) throw new Error(`split failed: ${out}`);
  return JSON.parse(out).id as string;
}

/** Run bench parts "2" and/or "3"; returns their JSON. */
export async function flightsBench(
  parts: string[],
  o: FlightsBenchOptions,
): Promise<Record<string, unknown>> {
  const { rows: ROWS, rounds: ROUNDS, seeds: SEEDS } = o;
  const home = await mkdtemp(path.join(os.tmpdir(), "arbor-bench-tune-"));
  const out: Record<string, unknown> = {};
  try {
    const splitId = await makeSplit(home, ROWS);
    const config = loadArborConfig({ ARBOR_HOME: home, ARBOR_LOG_LEVEL: "silent" }, {}, home);
    const logger = createLogger({ name: "bench", level: "silent" });
    const registry = await openRegistry(config, logger);
    const storage = new StudyStorage(registry.db);
    const base: TuneOptions = {
      splitId,
      target: "delayed",
      task: "binary",
      modelType: "lightgbm",
      trials: 40,
      sampler: "tpe",
      pruner: "none",
      parallel: 1,
      seed: 0,
      rounds: ROUNDS,
      earlyStopping: 20,
      force: false,
      refitOn: "train",
      staleSeconds: 60,
    };
    const signal = new AbortController().signal;
    try {
      if (parts.includes("2")) {
        const lines = [
          `Flights (${ROWS} rows, ${ROUNDS} rounds, lightgbm): best validation AUC after 10 / 20 / 40 trials (median of ${SEEDS} seed(s))`,
        ];
        const res: Record<string, number[][]> = {};
        for (const sampler of ["tpe", "random"] as const) {
          res[sampler] = [];
          for (let seed = 0; seed < SEEDS; seed++) {
            const t0 = performance.now();
            const o = await runTune(
              registry,
              config,
              { ...base, sampler, seed, study: `auc-${sampler}-${seed}` },
              { logger, signal },
            );
            const rows = await storage.trials(o.study.id);
            let best = Number.NEGATIVE_INFINITY;
            const curve = rows.map((r) => {
              if (r.state === "complete" && r.value !== null) best = Math.max(best, r.value);
              return best;
            });
            res[sampler].push([curve[9], curve[19], curve[39]]);
            process.stderr.write(
              `  ${sampler} seed ${seed}: ${((performance.now() - t0) / 1000).toFixed(0)} s\n`,
            );
          }
          const med = [0, 1, 2].map((i) => {
            const v = res[sampler].map((r) => r[i]).sort((a, b) => a - b);
            return v[Math.floor((v.length - 1) / 2)];
          });
          lines.push(`  ${sampler.padEnd(7)} ${med.map((v) => v.toFixed(4)).join(" / ")}`);
        }
        console.log(lines.join("\n"));
        out["flightsAuc"] = { rows: ROWS, rounds: ROUNDS, checkpoints: [10, 20, 40], runs: res };
      }
      if (parts.includes("3")) {
        const trials = 12;
        const lines = [
          `Trials per minute (${trials} trials, random sampler, no pruning, ${ROWS} rows, ${ROUNDS} rounds):`,
        ];
        const res: Record<string, number> = {};
        for (const parallel of [1, 2]) {
          const o = await runTune(
            registry,
            config,
            { ...base, sampler: "random", trials, parallel, study: `throughput-${parallel}` },
            { logger, signal },
          );
          // Wall time of the trials alone (first start to last finish), not the refit after them.
          const rows = await storage.trials(o.study.id);
          const first = Math.min(...rows.map((r) => r.startedAt!.getTime()));
          const last = Math.max(...rows.map((r) => r.finishedAt!.getTime()));
          const minutes = (last - first) / 60_000;
          res[`parallel${parallel}`] = trials / minutes;
          lines.push(
            `  --parallel ${parallel}: ${(trials / minutes).toFixed(1)} trials/min (${(minutes * 60).toFixed(1)} s)`,
          );
        }
        console.log(lines.join("\n"));
        out["throughput"] = {
          trials,
          rows: ROWS,
          rounds: ROUNDS,
          cores: os.cpus().length,
          trialsPerMinute: res,
        };
      }
    } finally {
      await registry.close();
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
  return out;
}
