/**
 * Split throughput on the 3-million-row flights Parquet file from vega-datasets (date, delay,
 * distance, origin, destination), per strategy, with read, split (planning) and write (gather +
 * Parquet) timed separately. Prints a table and writes bench/results/split.json.
 *
 *   npx bun bench/split.ts [--repeat 3] [--rows N]
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pl from "nodejs-polars";
import { createLogger } from "../shared/logger.ts";
import { readDataset } from "../train/data/read.ts";
import { planSplit, type SplitOptions } from "../train/data/split.ts";
import { takeParts, writeParts } from "../train/data/write.ts";

const FILE = path.resolve(import.meta.dir, "../node_modules/vega-datasets/data/flights-3m.parquet");
const { values } = parseArgs({
  options: { repeat: { type: "string", default: "3" }, rows: { type: "string" } },
});
const repeat = Math.max(1, Number(values.repeat));
const logger = createLogger({ name: "bench", level: "warn" });

interface Scenario {
  label: string;
  options: Omit<SplitOptions, "ratios" | "seed">;
}

const SCENARIOS: Scenario[] = [
  { label: "random", options: { strategy: "random", target: "late" } },
  { label: "stratified late", options: { strategy: "stratified", target: "late" } },
  { label: "stratified origin", options: { strategy: "stratified", target: "origin" } },
  { label: "time date", options: { strategy: "time", target: "late", timeColumn: "date" } },
  { label: "group origin", options: { strategy: "group", target: "late", groupColumn: "origin" } },
  { label: "group destination", options: { strategy: "group", target: "late", groupColumn: "destination" } },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The file as arbor reads it, plus the derived classification target `late` (delay > 15). */
async function load() {
  const t0 = performance.now();
  const ds = await readDataset(FILE, { logger });
  const ms = performance.now() - t0;
  let frame = ds.frame.withColumns(pl.col("delay").gt(15).alias("late"));
  if (values.rows !== undefined) frame = frame.head(Number(values.rows));
  return { ds: { ...ds, frame }, ms };
}

await load(); // warm-up: loads Polars' native code and the file into the page cache
const out = await mkdtemp(path.join(os.tmpdir(), "arbor-bench-split-"));
const results: Record<string, unknown>[] = [];
try {
  for (const sc of SCENARIOS) {
    const read: number[] = [];
    const split: number[] = [];
    const write: number[] = [];
    let rows = 0;
    let sizes: number[] = [];
    for (let r = 0; r < repeat; r++) {
      const { ds, ms } = await load();
      read.push(ms);
      rows = ds.frame.height;
      const options: SplitOptions = { ...sc.options, ratios: [0.7, 0.15, 0.15], seed: 1 };
      let t = performance.now();
      const plan = planSplit(ds.frame, options, logger);
      split.push(performance.now() - t);
      t = performance.now();
      const frames = takeParts(ds.frame, plan);
      await writeParts(frames, out);
      write.push(performance.now() - t);
      sizes = plan.parts.map((p) => p.length);
    }
    const row = {
      strategy: sc.label,
      rows,
      read_ms: Math.round(median(read)),
      split_ms: Math.round(median(split)),
      write_ms: Math.round(median(write)),
      read_rows_per_s: Math.round(rows / (median(read) / 1000)),
      split_rows_per_s: Math.round(rows / (median(split) / 1000)),
      write_rows_per_s: Math.round(rows / (median(write) / 1000)),
      total_rows_per_s: Math.round(rows / ((median(read) + median(split) + median(write)) / 1000)),
      parts: sizes,
    };
    results.push(row);
  }
} finally {
  await rm(out, { recursive: true, force: true });
}

const fmt = (n: number) => `${(n / 1e6).toFixed(2)}M`;
const header = [
  "strategy",
  "rows",
  "read rows/s",
  "split rows/s",
  "write rows/s",
  "total rows/s",
  "train/valid/test",
];
const lines = results.map((r) => [
  String(r.strategy),
  String(r.rows),
  fmt(r.read_rows_per_s as number),
  fmt(r.split_rows_per_s as number),
  fmt(r.write_rows_per_s as number),
  fmt(r.total_rows_per_s as number),
  (r.parts as number[]).join("/"),
]);
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
for (const l of [header, ...lines]) console.log(l.map((c, i) => c.padEnd(widths[i])).join("  "));
console.log(
  `(median of ${repeat} runs; read = sha256 + Parquet decode; write = gather + zstd Parquet of 3 parts)`,
);

const resultsDir = path.resolve(import.meta.dir, "results");
await mkdir(resultsDir, { recursive: true });
await writeFile(
  path.join(resultsDir, "split.json"),
  `${JSON.stringify({ file: "vega-datasets/data/flights-3m.parquet", repeat, cpus: os.cpus().length, bun: Bun.version, results }, null, 2)}\n`,
);
