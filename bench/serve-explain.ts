/**
 * Predictions beside explanations: `npx bun bench/serve-explain.ts [--seconds 8] [--connections 8]
 * [--rows 100] [--gap-ms 100]`.
 * Does explain traffic hold up predictions? One server process (`--workers 1`) with the bench's
 * 500-tree depth-6 binary model on 28 features; wrk single-row JSON predicts for --seconds, first
 * alone (the baseline), then while one client posts --rows-row explains one after another with
 * --gap-ms between them. Prints predicts' requests/s, p50, p99 and max for both runs (the second as
 * a ratio of the first) and the explains' count and mean latency, and the server's RSS before the
 * first explain and at the end (the explain thread and the model's SHAP tables). Needs `wrk`
 * (`apt-get install -y wrk`). Writes bench/results/serve-explain.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { openArtifactStore } from "../registry/store/open.ts";
import { BENCH_MODEL, publishProduction, startServe } from "../test/serve-fixtures.ts";
import { luaString } from "./wrk-tools.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    seconds: { type: "string", default: "8" },
    connections: { type: "string", default: "8" },
    rows: { type: "string", default: "100" },
    "gap-ms": { type: "string", default: "100" },
  },
});
const SECONDS = Number(values.seconds);
const CONNS = Number(values.connections);
const ROWS = Number(values.rows);
const GAP_MS = Number(values["gap-ms"]);
for (const [flag, v] of [
  ["--seconds", SECONDS],
  ["--connections", CONNS],
  ["--rows", ROWS],
  ["--gap-ms", GAP_MS],
] as const) {
  if (!Number.isInteger(v) || v < (flag === "--gap-ms" ? 0 : 1)) {
    console.error(`bench/serve-explain.ts: ${flag} takes a whole number`);
    process.exit(2);
  }
}
if (Bun.which("wrk") === null) {
  console.error("bench/serve-explain.ts needs wrk on PATH: apt-get install -y wrk");
  process.exit(2);
}

const F = BENCH_MODEL.numFeatures;
const dir = mkdtempSync(path.join(tmpdir(), "arbor-bench-explain-"));
const uri = pathToFileURL(dir).href;
const store = await openArtifactStore(uri);
await publishProduction(store, BENCH_MODEL);
const server = await startServe(["--store", uri, "--workers", "1"], {
  ARBOR_LOG_LEVEL: "warn",
  ARBOR_SERVE_MAX_EXPLAIN_ROWS: String(Math.max(100, ROWS)),
});

const row = (r: number) => Array.from({ length: F }, (_, j) => Math.fround(Math.sin(r * F + j) * 2));
const predictBody = JSON.stringify({ instances: [row(0)] });
const explainBody = JSON.stringify({ instances: Array.from({ length: ROWS }, (_, r) => row(r)) });
const script = path.join(dir, "predict.lua");
writeFileSync(
  script,
  `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = ${luaString(new TextEncoder().encode(predictBody))}
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99), latency.max))
end
`,
);

interface Run {
  reqPerSec: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  explains: number;
  explainMeanMs: number | null;
}

async function explainOnce(): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${server.url}/v1/models/flights:explain`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: explainBody,
  });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`explain answered ${res.status}`);
  return performance.now() - t0;
}

/** wrk predicts for SECONDS; with `explaining`, one client explains in a loop meanwhile. */
async function run(explaining: boolean): Promise<Run> {
  let stop = false;
  const times: number[] = [];
  const explainer = (async () => {
    while (explaining && !stop) {
      times.push(await explainOnce());
      if (GAP_MS > 0) await Bun.sleep(GAP_MS);
    }
  })();
  const proc = Bun.spawn(
    ["wrk", "-t1", `-c${CONNS}`, `-d${SECONDS}s`, "-s", script, `${server.url}/v1/models/flights:predict`],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  stop = true;
  await explainer;
  const m = /RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(out);
  if (!m) throw new Error(`wrk failed: ${out}`);
  const [requests, durationUs, errors, p50, p99, max] = m.slice(1).map(Number);
  return {
    reqPerSec: Math.round(requests / (durationUs / 1e6)),
    errors,
    p50Ms: p50 / 1000,
    p99Ms: p99 / 1000,
    maxMs: max / 1000,
    explains: times.length,
    explainMeanMs: times.length > 0 ? times.reduce((a, b) => a + b, 0) / times.length : null,
  };
}

const line = (label: string, r: Run, base?: Run) =>
  console.log(
    `${label.padEnd(34)} ${String(r.reqPerSec).padStart(7)} req/s${base ? ` (x${(r.reqPerSec / base.reqPerSec).toFixed(2)})` : "        "}` +
      `  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms${base ? ` (x${(r.p99Ms / base.p99Ms).toFixed(1)})` : ""}` +
      `  max ${r.maxMs.toFixed(1)} ms  errors ${r.errors}` +
      (r.explainMeanMs === null ? "" : `  explains ${r.explains}, mean ${r.explainMeanMs.toFixed(0)} ms`),
  );

/** The server's resident memory, MB. */
const rssMb = (): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.proc.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

try {
  await run(false);
  const rssBefore = rssMb();
  // Warm-up: the first explain starts the explain thread and builds the model's tables.
  const first = await explainOnce();
  console.log(`first explain (thread start, tables): ${first.toFixed(0)} ms`);
  for (let i = 0; i < 3; i++) await explainOnce();
  console.log(
    `wrk -t1 -c${CONNS} ${SECONDS} s single-row JSON predicts, 500 trees depth 6; explains of ${ROWS} rows, ${GAP_MS} ms apart`,
  );
  const alone = await run(false);
  line("predicts alone", alone);
  const mixed = await run(true);
  line("predicts while one client explains", mixed, alone);
  const rssAfter = rssMb();
  console.log(
    `server RSS: ${rssBefore.toFixed(0)} MB after predicts only, ${rssAfter.toFixed(0)} MB at the end`,
  );
  mkdirSync(path.join(import.meta.dir, "results"), { recursive: true });
  writeFileSync(
    path.join(import.meta.dir, "results", "serve-explain.json"),
    `${JSON.stringify({ when: new Date().toISOString(), seconds: SECONDS, connections: CONNS, rows: ROWS, gapMs: GAP_MS, first_explain_ms: first, alone, mixed, rss_mb: { before_explains: rssBefore, end: rssAfter } }, null, 2)}\n`,
  );
} finally {
  const code = await server.stop();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  if (code !== 0) {
    console.error(`the server exited ${code} on SIGTERM: ${server.logs().slice(-2000)}`);
    process.exitCode = 1;
  }
}
