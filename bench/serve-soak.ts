/**
 * Serving soak benchmark: `npx bun bench/serve-soak.ts [--seconds 90] [--connections 32] [--clients 100] [--quick]`.
 * Does the server's memory, file descriptors and /metrics page stay bounded under long load? Three
 * phases, each on a fresh server of one process (`--workers 1`, so /proc/PID is the whole server)
 * over its own temp store, sampled every 5 s (VmRSS from /proc/PID/status, open fds from
 * /proc/PID/fd, GET /metrics size in bytes and lines); each prints its samples as it goes, then RSS
 * start, peak and end and the least-squares RSS slope over its second half (MB = 2^20 bytes):
 *   1. steady: wrk single-row predicts, JSON and msgpack alternating, for --seconds;
 *   2. reload churn: the same load while the label moves every 0.5 s to a freshly published version,
 *      with a cache of two versions (ARBOR_SERVE_CACHE_MAX_MODELS=2): loads against the "released ORT
 *      session" log lines, /metrics lines at start and end (a version's series leave after it is
 *      unloaded), RSS per minute and per load, non-2xx replies;
 *   3. slow bodies: --clients raw connections each send most of an 8 MiB body and then trickle the
 *      rest for --seconds, the server on its default ARBOR_SERVE_BODY_BUDGET_BYTES (256 MiB): peak
 *      RSS, the arbor_serve_request_body_bytes_held gauge (peak, and after the clients left), how many
 *      are answered 503 SERVER_BUSY when their bodies end, and whether a plain predict answers 200
 *      during the hold and after it; its RSS slope is fitted on the second half of the hold.
 * --quick: 20 s phases (a smoke run). No figure is asserted: the exit code is 1 only when a server
 * fails (does not start, dies, exits non-zero on SIGTERM, or a plain predict is not answered 200).
 * Every process and the temp folder are cleaned up, also on Ctrl-C. Needs `wrk`
 * (`apt-get install -y wrk`). Writes bench/results/serve-soak.json (--quick: serve-soak-quick.json).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { pack } from "msgpackr";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import {
  type FixtureModel,
  pointLabel,
  publishFixture,
  type ServeProcess,
  startServe,
} from "../test/serve-fixtures.ts";
import { luaString, machineTicks } from "./wrk-tools.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    /** Length of each phase (phase 3: how long the slow bodies are held); default 90, --quick 20. */
    seconds: { type: "string" },
    connections: { type: "string", default: "32" },
    /** Slow-body clients of phase 3. */
    clients: { type: "string", default: "100" },
    quick: { type: "boolean", default: false },
  },
});
const QUICK = values.quick === true;
const SECONDS = Number(values.seconds ?? (QUICK ? 20 : 90));
const CONNS = Number(values.connections);
const CLIENTS = Number(values.clients);
for (const [flag, v, min] of [
  ["--seconds", SECONDS, 10],
  ["--connections", CONNS, 1],
  ["--clients", CLIENTS, 1],
] as const) {
  if (!Number.isInteger(v) || v < min) {
    console.error(`bench/serve-soak.ts: ${flag} must be an integer >= ${min}`);
    process.exit(2);
  }
}
if (Bun.which("wrk") === null) {
  console.error("bench/serve-soak.ts needs wrk on PATH: apt-get install -y wrk");
  process.exit(2);
}

const ROOT = new URL("..", import.meta.url).pathname;
const MB = 2 ** 20;
const SAMPLE_MS = 5000;
/** Seconds of load a server gets before its samples start (JIT, lazy initialisation), as in serve.ts. */
const WARMUP_SECONDS = 2;
/** Phase 2: how often the label moves to a new version. */
const FLIP_MS = 500;
/** Phase 3: each slow client's body (under the 16 MiB ARBOR_SERVE_MAX_BODY_BYTES). */
const BODY_BYTES = 8 * MB;
/**
 * Phase 3: bytes each slow client sends a second. uWS closes a request whose body arrives slower
 * than 16 KiB/s over its 10 s idle timeout (its slowloris guard, HTTP_RECEIVE_THROUGHPUT_BYTES in
 * uWebSockets' HttpContext.h: a byte every few seconds is cut off within ~15 s), so a client that
 * means to hold its body for the whole phase sends twice that.
 */
const TRICKLE_BYTES = 32 * 1024;
const F = 28;
/**
 * The model of every phase: 28 features, 200 trees of depth 6 (~0.6 MB of ONNX). Smaller than
 * serve.ts's 500 trees so that publishing a fresh version (~30 ms) and loading it fit well within
 * FLIP_MS on a busy 2-core machine.
 */
const MODEL: FixtureModel = {
  name: "soak",
  version: 1,
  task: "binary",
  numFeatures: F,
  numTrees: 200,
  depth: 6,
  seed: 42,
};
const row = Array.from({ length: F }, (_, i) => Math.fround(Math.sin(i) * 2));
const enc = new TextEncoder();
const bodies = {
  json: enc.encode(JSON.stringify({ instances: [row] })),
  msgpack: pack({ instances: [row] }) as Uint8Array,
};

// ---------------------------------------------------------------------------------------------
// Everything started here, so that `cleanup` (at the end, on an error, on Ctrl-C) stops it all.

const dir = mkdtempSync(path.join(tmpdir(), "arbor-bench-soak-"));
const servers = new Set<ServeProcess>();
const loadProcs = new Set<Bun.Subprocess>();
const sockets = new Set<net.Socket>();
const stores = new Set<ArtifactStore>();
const timers = new Set<ReturnType<typeof setInterval>>();
let interrupted = false;

/** SIGTERM a server and wait for it (SIGKILL after `graceMs`); its exit code, or null if killed. */
async function stopServer(srv: ServeProcess, graceMs: number): Promise<number | null> {
  servers.delete(srv);
  if (srv.proc.exitCode === null && srv.proc.signalCode === null) srv.proc.kill("SIGTERM");
  const kill = setTimeout(() => srv.proc.kill("SIGKILL"), graceMs);
  await srv.proc.exited;
  clearTimeout(kill);
  return srv.proc.signalCode === null ? srv.proc.exitCode : null;
}

async function cleanup(graceMs: number): Promise<void> {
  for (const t of timers) clearInterval(t);
  for (const s of sockets) s.destroy();
  for (const p of loadProcs) p.kill("SIGKILL");
  await Promise.all([...servers].map((s) => stopServer(s, graceMs)));
  for (const s of stores) await s.close();
  stores.clear();
  rmSync(dir, { recursive: true, force: true });
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    console.log(`\n${sig}: stopping the servers and the load, removing ${dir}`);
    void cleanup(3000).finally(() => process.exit(130));
  });
}

/** A server failure: what makes the exit code 1 (figures never do). */
class ServerFailure extends Error {}

/** A store of its own for a phase, with version 1 of MODEL labelled production. */
async function phaseStore(phase: string): Promise<{ store: ArtifactStore; uri: string }> {
  const folder = path.join(dir, phase);
  mkdirSync(folder);
  const uri = pathToFileURL(folder).href;
  const store = await openArtifactStore(uri);
  stores.add(store);
  const f = await publishFixture(store, MODEL);
  await pointLabel(store, MODEL.name, "production", 1, f.manifestSha256);
  return { store, uri };
}

/** One server process on `uri`, logging at info (its default; phase 2 counts its log lines). */
async function serve(uri: string, env: Record<string, string> = {}): Promise<ServeProcess> {
  let srv: ServeProcess;
  try {
    srv = await startServe(["--store", uri, "--workers", "1"], { ARBOR_LOG_LEVEL: "info", ...env });
  } catch (e) {
    throw new ServerFailure(`the server did not start: ${(e as Error).message}`);
  }
  servers.add(srv);
  // Ctrl-C while it was starting: cleanup ran before it was in `servers`.
  if (interrupted) await stopServer(srv, 0);
  return srv;
}

/** Stop a phase's server; a non-zero exit on SIGTERM is a failure. */
async function finish(srv: ServeProcess): Promise<void> {
  const code = await stopServer(srv, 15_000);
  if (code !== 0 && !interrupted)
    throw new ServerFailure(
      `the server exited ${code ?? "on SIGKILL"} after SIGTERM: ${srv.logs().slice(-2000)}`,
    );
}

// ---------------------------------------------------------------------------------------------
// Load: wrk, single-row predicts alternating JSON and msgpack.

interface WrkResult {
  requests: number;
  seconds: number;
  /** Replies with a status of 400 or above (wrk's errors.status). */
  non2xx: number;
  /** Connect, read, write and timeout errors. */
  socketErrors: number;
  p50us: number;
  p99us: number;
}

const PREDICT_PATH = `/v1/models/${MODEL.name}:predict`;
const WRK_SCRIPT = path.join(dir, "predict.lua");
writeFileSync(
  WRK_SCRIPT,
  `local reqs = {}
init = function(args)
  reqs[1] = wrk.format("POST", "${PREDICT_PATH}", { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }, ${luaString(bodies.json)})
  reqs[2] = wrk.format("POST", "${PREDICT_PATH}", { ["Content-Type"] = "application/msgpack", ["Accept"] = "application/msgpack" }, ${luaString(bodies.msgpack)})
end
local i = 0
request = function()
  i = i % 2 + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
`,
);

async function wrk(srv: ServeProcess, seconds: number): Promise<WrkResult> {
  if (interrupted) throw new Error("interrupted");
  const proc = Bun.spawn(
    ["wrk", "-t1", `-c${CONNS}`, `-d${seconds}s`, "-s", WRK_SCRIPT, `${srv.url}${PREDICT_PATH}`],
    { stdout: "pipe", stderr: "pipe" },
  );
  loadProcs.add(proc);
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  loadProcs.delete(proc);
  const m = /RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(out);
  if (m === null) throw new Error(`wrk failed: ${out}${await new Response(proc.stderr).text()}`);
  const [requests, durationUs, non2xx, socketErrors, p50us, p99us] = m.slice(1).map(Number);
  return { requests, seconds: durationUs / 1e6, non2xx, socketErrors, p50us, p99us };
}

function wrkLine(w: WrkResult): string {
  return `${w.requests} requests (${Math.round(w.requests / w.seconds)}/s), non-2xx ${w.non2xx}, socket errors ${w.socketErrors}, p50 ${(w.p50us / 1000).toFixed(2)} ms, p99 ${(w.p99us / 1000).toFixed(1)} ms`;
}

// ---------------------------------------------------------------------------------------------
// Sampling: /proc and GET /metrics every SAMPLE_MS.

interface Sample {
  /** Seconds since the phase's sampling started. */
  t: number;
  rss: number;
  fds: number;
  /** GET /metrics; null when the scrape failed (timed out under load, say). */
  metricsBytes: number | null;
  metricsLines: number | null;
  /** arbor_serve_model_loads_total{result="ok"} (every model summed). */
  loads: number | null;
  /** arbor_serve_request_body_bytes_held. */
  bodyHeld: number | null;
}

/** VmRSS and VmHWM (peak RSS of the process's life) in bytes, and open fds. */
function procFigures(pid: number): { rss: number; hwm: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** Sum of a metric's samples whose labels contain `labels` (null if the page has none). */
function metricSum(text: string, name: string, labels = ""): number | null {
  let sum: number | null = null;
  for (const m of text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "gm"))) {
    if (labels !== "" && !(m[1] ?? "").includes(labels)) continue;
    sum = (sum ?? 0) + Number(m[2]);
  }
  return sum;
}

async function metricsText(srv: ServeProcess): Promise<string> {
  const res = await fetch(`${srv.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return await res.text();
}

async function sample(srv: ServeProcess, t0: number): Promise<Sample> {
  if (srv.proc.exitCode !== null || srv.proc.signalCode !== null)
    throw new ServerFailure(
      `the server died (exit ${srv.proc.exitCode}, signal ${srv.proc.signalCode}): ${srv.logs().slice(-2000)}`,
    );
  const p = procFigures(srv.proc.pid);
  const t = (performance.now() - t0) / 1000;
  try {
    const text = await metricsText(srv);
    return {
      t,
      rss: p.rss,
      fds: p.fds,
      metricsBytes: Buffer.byteLength(text),
      metricsLines: text.split("\n").filter((l) => l !== "").length,
      loads: metricSum(text, "arbor_serve_model_loads_total", 'result="ok"'),
      bodyHeld: metricSum(text, "arbor_serve_request_body_bytes_held"),
    };
  } catch {
    return { t, rss: p.rss, fds: p.fds, metricsBytes: null, metricsLines: null, loads: null, bodyHeld: null };
  }
}

const mb = (bytes: number) => (bytes / MB).toFixed(1);

/**
 * Samples `srv` every SAMPLE_MS, printing a progress line each time (with `note()`), until
 * `stop()`, which takes a last sample and returns them all.
 */
function startSampler(
  phase: string,
  srv: ServeProcess,
  note: () => string = () => "",
): { take(): Promise<Sample>; stop(): Promise<Sample[]> } {
  const samples: Sample[] = [];
  const t0 = performance.now();
  let stopped = false;
  let wake = () => {};
  const take = async () => {
    const s = await sample(srv, t0);
    samples.push(s);
    const metrics =
      s.metricsBytes === null
        ? "/metrics scrape failed"
        : `/metrics ${s.metricsBytes} B ${s.metricsLines} lines`;
    const held = s.bodyHeld ? `  bodies held ${mb(s.bodyHeld)} MB` : "";
    console.log(
      `${phase.padEnd(11)} t=${s.t.toFixed(0).padStart(4)} s  RSS ${mb(s.rss).padStart(6)} MB  fds ${String(s.fds).padStart(4)}  ${metrics}${held}  ${note()}`,
    );
    return s;
  };
  const loop = (async () => {
    for (;;) {
      await take();
      if (stopped) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, SAMPLE_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  })();
  // A failure surfaces in stop(); until then keep it from being an unhandled rejection.
  loop.catch(() => {});
  return {
    take,
    stop: async () => {
      stopped = true;
      wake();
      await loop;
      return samples.sort((a, b) => a.t - b.t);
    },
  };
}

/** Least-squares slope of ys over xs. */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** The second half of a phase's samples (at least two), which the slopes are fitted on. */
function secondHalf(samples: readonly Sample[]): Sample[] {
  return samples.slice(Math.min(Math.floor(samples.length / 2), Math.max(0, samples.length - 2)));
}

/**
 * The figures every phase reports: RSS, fds, /metrics, and the machine's noise; the RSS slope is
 * fitted on `fitted` (default: the phase's second half).
 */
function memoryFigures(
  samples: readonly Sample[],
  hwm: number,
  steal0: [number, number],
  fitted: readonly Sample[] = secondHalf(samples),
) {
  const half = fitted;
  const first = samples[0];
  const last = samples[samples.length - 1];
  const scraped = samples.filter((s) => s.metricsBytes !== null);
  const round1 = (v: number) => Number(v.toFixed(1));
  const [steal1, total1] = machineTicks();
  return {
    samples: samples.length,
    rss_start_mb: round1(first.rss / MB),
    rss_peak_sampled_mb: round1(Math.max(...samples.map((s) => s.rss)) / MB),
    rss_hwm_mb: round1(hwm / MB),
    rss_end_mb: round1(last.rss / MB),
    rss_slope_mb_per_min: Number(
      (
        (slope(
          half.map((s) => s.t),
          half.map((s) => s.rss),
        ) *
          60) /
        MB
      ).toFixed(2),
    ),
    fds_start: first.fds,
    fds_peak: Math.max(...samples.map((s) => s.fds)),
    fds_end: last.fds,
    metrics_bytes_start: scraped[0]?.metricsBytes ?? null,
    metrics_bytes_end: scraped[scraped.length - 1]?.metricsBytes ?? null,
    metrics_lines_start: scraped[0]?.metricsLines ?? null,
    metrics_lines_peak: scraped.length === 0 ? null : Math.max(...scraped.map((s) => s.metricsLines ?? 0)),
    metrics_lines_end: scraped[scraped.length - 1]?.metricsLines ?? null,
    scrapes_failed: samples.length - scraped.length,
    steal_pct: Math.round((100 * (steal1 - steal0[0])) / Math.max(1, total1 - steal0[1])),
    loadavg_1m: round1(loadavg()[0]),
  };
}

function printMemory(phase: string, f: ReturnType<typeof memoryFigures>, fitted = ""): void {
  console.log(
    `${phase.padEnd(11)} RSS start ${f.rss_start_mb} MB, peak ${f.rss_peak_sampled_mb} MB (VmHWM ${f.rss_hwm_mb}), end ${f.rss_end_mb} MB; slope over the 2nd half${fitted === "" ? "" : ` ${fitted}`} ${f.rss_slope_mb_per_min} MB/min; ` +
      `fds ${f.fds_start} -> ${f.fds_end} (peak ${f.fds_peak}); /metrics ${f.metrics_bytes_start} -> ${f.metrics_bytes_end} B, ${f.metrics_lines_start} -> ${f.metrics_lines_end} lines (peak ${f.metrics_lines_peak})` +
      `${f.scrapes_failed > 0 ? `, ${f.scrapes_failed} scrapes failed` : ""}; steal ${f.steal_pct} %, load average ${f.loadavg_1m}`,
  );
}

/** Lines of the server's log (JSON on stderr) at warn or above, deduplicated by message. */
function warnings(srv: ServeProcess): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of srv.logs().split("\n")) {
    const m = /"level":"(warn|error|fatal)".*?"msg":"((?:[^"\\]|\\.)*)"/.exec(line);
    if (m !== null) out[`${m[1]}: ${m[2]}`] = (out[`${m[1]}: ${m[2]}`] ?? 0) + 1;
  }
  return out;
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

async function plainPredict(srv: ServeProcess): Promise<number> {
  try {
    const res = await fetch(`${srv.url}${PREDICT_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: bodies.json,
      signal: AbortSignal.timeout(30_000),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: steady load.

async function steady(): Promise<Record<string, unknown>> {
  const { uri } = await phaseStore("steady");
  const srv = await serve(uri);
  try {
    await wrk(srv, WARMUP_SECONDS);
    const steal0 = machineTicks();
    const sampler = startSampler("steady", srv);
    const load = await wrk(srv, SECONDS);
    const samples = await sampler.stop();
    const mem = memoryFigures(samples, procFigures(srv.proc.pid).hwm, steal0);
    console.log(`steady      wrk: ${wrkLine(load)}`);
    printMemory("steady", mem);
    return { ...mem, wrk: load, log_warnings: warnings(srv), samples };
  } finally {
    await finish(srv);
  }
}

// ---------------------------------------------------------------------------------------------
// Phase 2: the label moved to a new version every FLIP_MS under the same load.

async function reloadChurn(): Promise<Record<string, unknown>> {
  const { store, uri } = await phaseStore("reload");
  const srv = await serve(uri, { ARBOR_SERVE_CACHE_MAX_MODELS: "2" });
  try {
    await wrk(srv, WARMUP_SECONDS);
    let version = 1;
    let flips = 0;
    const logs = () => srv.logs();
    const steal0 = machineTicks();
    const sampler = startSampler(
      "reload",
      srv,
      () =>
        `moves ${flips}, loaded ${count(logs(), '"loaded model version"')}, released ${count(logs(), '"released ORT session"')}`,
    );
    const loading = wrk(srv, SECONDS);
    const end = performance.now() + SECONDS * 1000;
    let publishMs = 0;
    while (performance.now() < end && !interrupted) {
      const t = performance.now();
      version++;
      const f = await publishFixture(store, { ...MODEL, version, seed: MODEL.seed + version });
      await pointLabel(store, MODEL.name, "production", version, f.manifestSha256);
      flips++;
      publishMs += performance.now() - t;
      await Bun.sleep(Math.max(0, FLIP_MS - (performance.now() - t)));
    }
    const load = await loading;
    // Let the last move land (bounded) so that the last sample sees the label on it.
    const settle = performance.now() + 10_000;
    let servedLast = false;
    while (!servedLast && performance.now() < settle) {
      const body = (await (await fetch(`${srv.url}/v1/models`)).json()) as {
        models: { name: string; labels: Record<string, number | null> }[];
      };
      servedLast = body.models.some((m) => m.name === MODEL.name && m.labels.production === version);
      if (!servedLast) await Bun.sleep(200);
    }
    // A released version's series are retired 1 s later (FORGET_AFTER_MS in
    // serve/model-cache/cache.ts), exported by the next scrape and dropped by the one after.
    await Bun.sleep(1500);
    const samples = await sampler.stop();
    const mem = memoryFigures(samples, procFigures(srv.proc.pid).hwm, steal0);
    // The sampler's last scrape exported the retired series for the last time: this one shows
    // what stays (the versions still loaded).
    const text = await metricsText(srv);
    const versionsInMetrics = new Set(
      [...text.matchAll(/^arbor_serve_requests_total\{[^}]*version="([^"]*)"/gm)].map((m) => m[1]),
    ).size;
    const half = secondHalf(samples).filter((s) => s.loads !== null);
    const perLoad = slope(
      half.map((s) => s.loads ?? 0),
      half.map((s) => s.rss),
    );
    const figures = {
      ...mem,
      label_moves: flips,
      publish_ms_mean: Math.round(publishMs / Math.max(1, flips)),
      label_on_last_version: servedLast,
      loads_ok: metricSum(text, "arbor_serve_model_loads_total", 'result="ok"'),
      loads_failed: metricSum(text, "arbor_serve_model_loads_total", 'result="failed"') ?? 0,
      loaded_log_lines: count(logs(), '"loaded model version"'),
      released_log_lines: count(logs(), '"released ORT session"'),
      cache_entries_end: metricSum(text, "arbor_serve_cache_entries"),
      versions_in_request_series_end: versionsInMetrics,
      metrics_lines_settled: text.split("\n").filter((l) => l !== "").length,
      rss_slope_kib_per_load: Number((perLoad / 1024).toFixed(1)),
      wrk: load,
      log_warnings: warnings(srv),
      samples,
    };
    console.log(`reload      wrk: ${wrkLine(load)}`);
    console.log(
      `reload      ${flips} label moves (publish ${figures.publish_ms_mean} ms each), loads ok ${figures.loads_ok}, failed ${figures.loads_failed}; ` +
        `log: ${figures.loaded_log_lines} "loaded model version", ${figures.released_log_lines} "released ORT session"; ` +
        `cache entries at the end ${figures.cache_entries_end}; after the moves /metrics has ${figures.metrics_lines_settled} lines, ${versionsInMetrics} versions in arbor_serve_requests_total; ` +
        `RSS per load over the 2nd half ${figures.rss_slope_kib_per_load} KiB; label on the last version: ${servedLast}`,
    );
    printMemory("reload", mem);
    return figures;
  } finally {
    await finish(srv);
  }
}

// ---------------------------------------------------------------------------------------------
// Phase 3: slow bodies against the process's body budget.

interface SlowClient {
  socket: net.Socket;
  /** Body bytes written so far. */
  sent: number;
  /** What the server answered (the status line and body), if anything. */
  reply: string;
  /** Closed by the server before its body ended. */
  cutOff: boolean;
  finished: boolean;
}

async function slowBodies(): Promise<Record<string, unknown>> {
  const { uri } = await phaseStore("slow");
  const srv = await serve(uri);
  // The body: spaces (JSON whitespace), then a single-row predict request.
  const tail = bodies.json;
  const room = BODY_BYTES - tail.length;
  // Leave room for the whole hold's trickle and some timer drift.
  const firstBytes = room - (SECONDS + 10) * TRICKLE_BYTES;
  const first = Buffer.alloc(firstBytes, 0x20);
  const trickle = Buffer.alloc(TRICKLE_BYTES, 0x20);
  const head = `POST ${PREDICT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${BODY_BYTES}\r\n\r\n`;
  const clients: SlowClient[] = [];
  try {
    const steal0 = machineTicks();
    const sampler = startSampler("slow bodies", srv, () => {
      const open = clients.filter((c) => !c.socket.destroyed).length;
      const cut = clients.filter((c) => c.cutOff).length;
      return `clients open ${open}${cut > 0 ? `, cut off by the server ${cut}` : ""}`;
    });
    await Bun.sleep(SAMPLE_MS);
    for (let i = 0; i < CLIENTS; i++) {
      const c: SlowClient = {
        socket: net.connect(srv.port, "127.0.0.1"),
        sent: 0,
        reply: "",
        cutOff: false,
        finished: false,
      };
      sockets.add(c.socket);
      c.socket.on("error", () => {});
      c.socket.on("data", (d) => {
        c.reply += d.toString("latin1");
      });
      c.socket.on("close", () => {
        if (!c.finished) c.cutOff = true;
      });
      c.socket.write(head);
      c.socket.write(first);
      c.sent = firstBytes;
      clients.push(c);
    }
    const holdFrom = (await sampler.take()).t;
    const ticker = setInterval(() => {
      for (const c of clients) {
        if (c.socket.destroyed || c.sent + TRICKLE_BYTES > room) continue;
        c.socket.write(trickle);
        c.sent += TRICKLE_BYTES;
      }
    }, 1000);
    timers.add(ticker);
    await Bun.sleep((SECONDS * 1000) / 2);
    const predictDuring = await plainPredict(srv);
    await Bun.sleep((SECONDS * 1000) / 2);
    clearInterval(ticker);
    timers.delete(ticker);
    const held = await sampler.take();
    const holdTo = held.t;
    // End every body; the server answers each at its end (200, or 503 SERVER_BUSY if refused).
    for (const c of clients) {
      if (c.socket.destroyed) continue;
      c.finished = true;
      c.socket.write(Buffer.alloc(room - c.sent, 0x20));
      c.socket.write(tail);
    }
    const answered = performance.now() + 30_000;
    while (
      clients.some((c) => c.finished && !c.socket.destroyed && !/\r\n\r\n/.test(c.reply)) &&
      performance.now() < answered
    )
      await Bun.sleep(100);
    const replied = await sampler.take();
    const statuses: Record<string, number> = {};
    let serverBusy = 0;
    for (const c of clients) {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(c.reply)?.[1] ?? (c.cutOff ? "cut off" : "no reply");
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status === "503" && c.reply.includes("SERVER_BUSY")) serverBusy++;
    }
    for (const c of clients) {
      c.finished = true;
      c.socket.destroy();
      sockets.delete(c.socket);
    }
    // The gauge gives every byte back when the clients are gone (bounded wait).
    const gone = performance.now() + 10_000;
    let after = metricSum(await metricsText(srv), "arbor_serve_request_body_bytes_held");
    while (after !== 0 && performance.now() < gone) {
      await Bun.sleep(200);
      after = metricSum(await metricsText(srv), "arbor_serve_request_body_bytes_held");
    }
    const predictAfter = await plainPredict(srv);
    await Bun.sleep(SAMPLE_MS);
    const samples = await sampler.stop();
    // The slope while the bodies are held (the phase's second half holds the replies' spike).
    const holding = samples.filter((s) => s.t >= holdFrom && s.t <= holdTo);
    const mem = memoryFigures(samples, procFigures(srv.proc.pid).hwm, steal0, secondHalf(holding));
    const figures = {
      ...mem,
      clients: CLIENTS,
      body_mib: BODY_BYTES / MB,
      held_seconds: SECONDS,
      rss_while_held_mb: Number((held.rss / MB).toFixed(1)),
      rss_after_replies_mb: Number((replied.rss / MB).toFixed(1)),
      body_bytes_held_peak_mb: Number((Math.max(...samples.map((s) => s.bodyHeld ?? 0)) / MB).toFixed(1)),
      body_bytes_held_after: after,
      statuses,
      server_busy: serverBusy,
      predict_status_during: predictDuring,
      predict_status_after: predictAfter,
      log_warnings: warnings(srv),
      samples,
    };
    console.log(
      `slow bodies ${CLIENTS} clients x ${BODY_BYTES / MB} MiB held ${SECONDS} s: RSS while held ${figures.rss_while_held_mb} MB, after the replies ${figures.rss_after_replies_mb} MB; ` +
        `arbor_serve_request_body_bytes_held peak ${figures.body_bytes_held_peak_mb} MB, ${after} B after the clients left; ` +
        `replies ${JSON.stringify(statuses)} (${serverBusy} SERVER_BUSY); plain predict during ${predictDuring}, after ${predictAfter}`,
    );
    printMemory("slow bodies", mem, "while the bodies were held");
    if (predictDuring !== 200 || predictAfter !== 200)
      throw new ServerFailure(
        `a plain predict answered ${predictDuring} during the hold and ${predictAfter} after it`,
      );
    return figures;
  } finally {
    for (const c of clients) {
      c.socket.destroy();
      sockets.delete(c.socket);
    }
    await finish(srv);
  }
}

// ---------------------------------------------------------------------------------------------

console.log(
  `serve soak: ${SECONDS} s per phase, wrk -t1 -c${CONNS}, ${CLIENTS} slow clients; one server process per phase; ` +
    `model ${MODEL.numTrees} trees of depth ${MODEL.depth} on ${F} features; samples every ${SAMPLE_MS / 1000} s; temp ${dir}`,
);
const started = new Date();
const phases: Record<string, unknown> = {};
const failures: string[] = [];
try {
  for (const [name, run] of [
    ["steady", steady],
    ["reload", reloadChurn],
    ["slow_bodies", slowBodies],
  ] as const) {
    if (interrupted) break;
    try {
      phases[name] = await run();
    } catch (e) {
      if (interrupted) break;
      // A server failure fails the run; anything else (wrk missing a figure, say) is the bench's own.
      if (!(e instanceof ServerFailure)) throw e;
      failures.push(`${name}: ${e.message}`);
      console.error(`${name}: SERVER FAILURE: ${e.message}`);
    }
  }
} finally {
  if (!interrupted) await cleanup(15_000);
}
if (!interrupted) {
  mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
  const out = path.join(
    ROOT,
    QUICK ? "bench/results/serve-soak-quick.json" : "bench/results/serve-soak.json",
  );
  writeFileSync(
    out,
    `${JSON.stringify({ date: started.toISOString(), seconds: SECONDS, connections: CONNS, clients: CLIENTS, model: MODEL, failures, phases }, null, 2)}\n`,
  );
  console.log(
    `wrote ${path.relative(ROOT, out)} (${((Date.now() - started.getTime()) / 1000).toFixed(0)} s)${failures.length > 0 ? `; ${failures.length} server failure(s)` : ""}`,
  );
  process.exitCode = failures.length > 0 ? 1 : 0;
}
