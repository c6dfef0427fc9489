/**
 * Serving soak benchmark: `npx bun bench/serve-soak.ts [--seconds 90] [--connections 32] [--clients 100]
 * [--phases steady,reload,slow-bodies,slow-readers] [--quick]`.
 * Does the server's memory, file descriptors and /metrics page stay bounded under long load? Four
 * phases (--phases: some of them, in this order), each on a fresh server of one process (`--workers 1`, so /proc/PID is the whole server)
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
 *      during the hold and after it; its RSS slope is fitted on the second half of the hold;
 *   4. slow readers: for --seconds, --clients raw HTTP connections each pipeline PIPELINED predicts
 *      of BIG_ROWS rows of a 20-class model (msgpack in, JSON out: ~10 MB replies; every other one
 *      writes a single predict) and never read, and
 *      WS_CLIENTS raw /v1/stream connections each send such a predict and then a 2 MB message every
 *      WS_SEND_MS without reading; a connection the server closes is replaced a second later. The
 *      server is on its default budgets (ARBOR_SERVE_REPLY_BUDGET_BYTES, ..._BODY_BUDGET_BYTES) with
 *      ARBOR_SERVE_MAX_ROWS raised to BIG_ROWS: peak RSS, peaks of arbor_serve_reply_bytes_unsent,
 *      arbor_serve_request_body_bytes_held and arbor_serve_ws_parked_messages (and whether they are
 *      back to 0 after the clients left), arbor_serve_slow_readers_closed_total, the requests and
 *      messages answered by status (503: refused), whether a plain predict answers 200 during the
 *      hold and after it, and whether a reading client's big predict arrives whole during the hold.
 * --quick: 20 s phases (a smoke run). No figure is asserted: the exit code is 1 only when a server
 * fails (does not start, dies, exits non-zero on SIGTERM, a plain predict is not answered 200, or
 * phase 4's reading client does not get its whole reply). Every process and the temp folder are
 * cleaned up, also on Ctrl-C. Phases 1 and 2 need `wrk` (`apt-get install -y wrk`). Writes
 * bench/results/serve-soak.json (--quick: serve-soak-quick.json; --phases: the phases' names are
 * appended, e.g. serve-soak-quick-slow-readers.json).
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
  publishProduction,
  type ServeProcess,
  startServe,
  WIDE_MODEL,
  wsFrame,
  wsRawClient,
} from "../test/serve-fixtures.ts";
import { luaString, machineTicks } from "./wrk-tools.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    /** Length of each phase (phase 3: how long the slow bodies are held); default 90, --quick 20. */
    seconds: { type: "string" },
    connections: { type: "string", default: "32" },
    /** Slow-body clients of phase 3, non-reading HTTP clients of phase 4. */
    clients: { type: "string", default: "100" },
    /** Comma-separated phases to run (PHASE_NAMES); default all. */
    phases: { type: "string" },
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
const PHASE_NAMES = ["steady", "reload", "slow-bodies", "slow-readers"] as const;
type PhaseName = (typeof PHASE_NAMES)[number];
const PHASES: readonly PhaseName[] =
  values.phases === undefined
    ? PHASE_NAMES
    : PHASE_NAMES.filter((p) => values.phases?.split(",").includes(p));
const unknown = values.phases?.split(",").filter((p) => !(PHASE_NAMES as readonly string[]).includes(p));
if (PHASES.length === 0 || (unknown !== undefined && unknown.length > 0)) {
  console.error(`bench/serve-soak.ts: --phases takes some of ${PHASE_NAMES.join(",")}`);
  process.exit(2);
}
if ((PHASES.includes("steady") || PHASES.includes("reload")) && Bun.which("wrk") === null) {
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
/**
 * Phase 4: a model whose big predicts have big replies: 20 classes, so ~0.4 KB of JSON a row (a
 * reply of BIG_ROWS rows is ~10 MB, more than the ~4 MB a non-reading client's kernel buffers take);
 * few small trees, so that most of a big predict's cost is its reply.
 */
const BIG_MODEL: FixtureModel = { ...WIDE_MODEL, name: "soak-wide" };
/** Phase 4: rows of a big predict (its ARBOR_SERVE_MAX_ROWS). */
const BIG_ROWS = 25_000;
/**
 * Phase 4: big predicts each even-numbered non-reading HTTP connection writes at once; the odd ones
 * write one. uWS closes a connection at its second request while the first one's reply waits (~0.1
 * s after that reply), so only the single-request ones wait on their replies (until uWS's 10 s
 * timeout) long enough to fill ARBOR_SERVE_REPLY_BUDGET_BYTES.
 */
const PIPELINED = 4;
/** Phase 4: non-reading /v1/stream connections. */
const WS_CLIENTS = 10;
/** Phase 4: bytes of each message a stream client sends after its big predict (a padded predict). */
const WS_MESSAGE_BYTES = 2_000_000;
/** Phase 4: how often each stream client sends one. */
const WS_SEND_MS = 250;
/** Phase 4: how often closed connections are looked for (and replaced, a sweep later). */
const SWEEP_MS = 1000;
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

/** A store of its own for a phase, with version 1 of each of `models` labelled production. */
async function phaseStore(
  phase: string,
  models: readonly FixtureModel[] = [MODEL],
): Promise<{ store: ArtifactStore; uri: string }> {
  const folder = path.join(dir, phase);
  mkdirSync(folder);
  const uri = pathToFileURL(folder).href;
  const store = await openArtifactStore(uri);
  stores.add(store);
  for (const m of models) await publishProduction(store, m);
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
  /** arbor_serve_reply_bytes_unsent (null also from a server without it). */
  replyUnsent: number | null;
  /** arbor_serve_ws_parked_messages. */
  wsParked: number | null;
  /** arbor_serve_slow_readers_closed_total. */
  readersClosed: number | null;
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
      replyUnsent: metricSum(text, "arbor_serve_reply_bytes_unsent"),
      wsParked: metricSum(text, "arbor_serve_ws_parked_messages"),
      readersClosed: metricSum(text, "arbor_serve_slow_readers_closed_total"),
    };
  } catch {
    return {
      t,
      rss: p.rss,
      fds: p.fds,
      metricsBytes: null,
      metricsLines: null,
      loads: null,
      bodyHeld: null,
      replyUnsent: null,
      wsParked: null,
      readersClosed: null,
    };
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
    const held =
      (s.bodyHeld ? `  bodies held ${mb(s.bodyHeld)} MB` : "") +
      (s.replyUnsent ? `  replies unsent ${mb(s.replyUnsent)} MB` : "") +
      (s.wsParked ? `  parked ${s.wsParked}` : "") +
      (s.readersClosed ? `  readers closed ${s.readersClosed}` : "");
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
// Phase 4: clients that do not read, against the process's reply budget.

const BIG_PATH = `/v1/models/${BIG_MODEL.name}:predict`;
const bigInstances = Array.from({ length: BIG_ROWS }, (_, i) => [i % 7, (i % 13) * 0.5, -(i % 5), 1]);
const bigBody = pack({ instances: bigInstances }) as Uint8Array;

/**
 * The TCP state of this machine's IPv4 connections to `port`, by their local port (/proc/net/tcp:
 * 01 ESTABLISHED, 02 SYN_SENT, 08 CLOSE_WAIT...; a connection reset is gone). How a client that
 * does not read sees that the server closed it: node reads no FIN nor RST from a paused socket.
 */
function tcpStates(port: number): Map<number, string> {
  const states = new Map<number, string>();
  const remote = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 3 && f[2].endsWith(remote)) states.set(Number.parseInt(f[1].split(":")[1], 16), f[3]);
  }
  return states;
}

/** A metric's samples whose labels contain `labels`, summed by their status label. */
function byStatus(text: string, name: string, labels = ""): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, "gm"))) {
    if (!m[1].includes(labels)) continue;
    const status = /status="([^"]*)"/.exec(m[1])?.[1] ?? "?";
    out[status] = (out[status] ?? 0) + Number(m[2]);
  }
  return out;
}

/** `after` minus `before`, status by status (those that moved). */
function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) !== 0) out[k] = v - (before[k] ?? 0);
  return out;
}

/** A big predict from a client that reads (fetch): its status, its body, how long it took. */
async function bigPredict(srv: ServeProcess): Promise<{ status: number; body: string; ms: number }> {
  const t = performance.now();
  try {
    const res = await fetch(`${srv.url}${BIG_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/msgpack", accept: "application/json" },
      body: bigBody,
      signal: AbortSignal.timeout(60_000),
    });
    const body = await res.text();
    return { status: res.status, body, ms: Math.round(performance.now() - t) };
  } catch {
    return { status: 0, body: "", ms: Math.round(performance.now() - t) };
  }
}

/** A raw connection of phase 4 that never reads (null: a free slot). */
type Slot = { socket: net.Socket } | null;

async function slowReaders(): Promise<Record<string, unknown>> {
  const { uri } = await phaseStore("readers", [MODEL, BIG_MODEL]);
  const srv = await serve(uri, { ARBOR_SERVE_MAX_ROWS: String(BIG_ROWS) });
  const head = `POST ${BIG_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/msgpack\r\nAccept: application/json\r\nContent-Length: ${bigBody.length}\r\n\r\n`;
  const single = Buffer.concat([Buffer.from(head), bigBody]);
  const pipelined = Buffer.concat(Array.from({ length: PIPELINED }, () => single));
  const wsBig = wsFrame(
    enc.encode(JSON.stringify({ id: 0, model: BIG_MODEL.name, op: "predict", instances: bigInstances })),
    true,
  );
  const wsPadded = pack({ id: 1, model: BIG_MODEL.name, op: "predict", instances: [[1, 2, 3, 4]], pad: "" });
  const wsMessage = wsFrame(
    pack({
      id: 1,
      model: BIG_MODEL.name,
      op: "predict",
      instances: [[1, 2, 3, 4]],
      pad: "x".repeat(WS_MESSAGE_BYTES - wsPadded.length - 4),
    }),
    false,
  );
  const httpSlots: Slot[] = new Array(CLIENTS).fill(null);
  const wsSlots: (Slot | "opening")[] = new Array(WS_CLIENTS).fill(null);
  const http = { connections: 0, requests: 0, closed_by_server: 0 };
  const stream = { connections: 0, failed_upgrades: 0, messages: 0, closed_by_server: 0 };
  let holding = false;
  const drop = (s: net.Socket) => {
    s.destroy();
    sockets.delete(s);
  };
  const openHttp = (i: number) => {
    const socket = net.connect(srv.port, "127.0.0.1");
    sockets.add(socket);
    socket.on("error", () => {});
    socket.pause();
    socket.write(i % 2 === 0 ? pipelined : single);
    httpSlots[i] = { socket };
    http.connections++;
    http.requests += i % 2 === 0 ? PIPELINED : 1;
  };
  const openWs = async (i: number) => {
    wsSlots[i] = "opening";
    try {
      const c = await wsRawClient(srv.port);
      sockets.add(c.socket);
      await c.until(() => c.status() !== "" || c.closed()).catch(() => {});
      c.socket.pause();
      if (!holding || !c.status().includes(" 101 ")) {
        if (holding) stream.failed_upgrades++;
        drop(c.socket);
        wsSlots[i] = null;
        return;
      }
      c.socket.write(wsBig);
      stream.connections++;
      stream.messages++;
      wsSlots[i] = { socket: c.socket };
    } catch {
      stream.failed_upgrades++;
      wsSlots[i] = null;
    }
  };
  /** Replace the connections found closed at the last sweep, then look for closed ones. */
  const sweep = () => {
    if (!holding) return;
    for (let i = 0; i < CLIENTS; i++) if (httpSlots[i] === null) openHttp(i);
    for (let i = 0; i < WS_CLIENTS; i++) if (wsSlots[i] === null) void openWs(i);
    const states = tcpStates(srv.port);
    const gone = (s: net.Socket) =>
      s.destroyed || (s.localPort !== undefined && !["01", "02"].includes(states.get(s.localPort) ?? "gone"));
    for (const [i, slot] of httpSlots.entries())
      if (slot !== null && gone(slot.socket)) {
        http.closed_by_server++;
        drop(slot.socket);
        httpSlots[i] = null;
      }
    for (const [i, slot] of wsSlots.entries())
      if (slot !== null && slot !== "opening" && gone(slot.socket)) {
        stream.closed_by_server++;
        drop(slot.socket);
        wsSlots[i] = null;
      }
  };
  /** Each stream client sends a message, unless its own socket still holds a few unsent. */
  const send = () => {
    for (const slot of wsSlots)
      if (slot !== null && slot !== "opening" && slot.socket.writableLength < 4 * WS_MESSAGE_BYTES) {
        slot.socket.write(wsMessage);
        stream.messages++;
      }
  };
  const open = (slots: readonly (Slot | "opening")[]) =>
    slots.filter((s) => s !== null && s !== "opening").length;
  try {
    // A reading client's big predict on the idle server: what it must get whole during the hold.
    const expected = await bigPredict(srv);
    if (expected.status !== 200)
      throw new ServerFailure(`a big predict answered ${expected.status} on an idle server`);
    const before = await metricsText(srv);
    const steal0 = machineTicks();
    const sampler = startSampler(
      "slow readers",
      srv,
      () =>
        `HTTP open ${open(httpSlots)} (opened ${http.connections}, closed ${http.closed_by_server}), stream open ${open(wsSlots)} (opened ${stream.connections}, closed ${stream.closed_by_server}, messages ${stream.messages})`,
    );
    await Bun.sleep(SAMPLE_MS);
    holding = true;
    const holdEnd = performance.now() + SECONDS * 1000;
    const sweeper = setInterval(sweep, SWEEP_MS);
    const sender = setInterval(send, WS_SEND_MS);
    timers.add(sweeper);
    timers.add(sender);
    sweep();
    const holdFrom = (await sampler.take()).t;
    await Bun.sleep((SECONDS * 1000) / 2);
    const predictDuring = await plainPredict(srv);
    const big = await bigPredict(srv);
    const bigWhole = big.status === 200 && big.body === expected.body;
    await Bun.sleep(Math.max(0, holdEnd - performance.now()));
    clearInterval(sender);
    timers.delete(sender);
    sweep();
    holding = false;
    clearInterval(sweeper);
    timers.delete(sweeper);
    const held = await sampler.take();
    const holdTo = held.t;
    for (const slot of [...httpSlots, ...wsSlots]) if (slot !== null && slot !== "opening") drop(slot.socket);
    // Every gauge back to 0 when the clients are gone (bounded wait).
    const gauges = (text: string) => ({
      reply_bytes_unsent: metricSum(text, "arbor_serve_reply_bytes_unsent"),
      request_body_bytes_held: metricSum(text, "arbor_serve_request_body_bytes_held"),
      ws_parked_messages: metricSum(text, "arbor_serve_ws_parked_messages"),
    });
    const gone = performance.now() + 15_000;
    let text = await metricsText(srv);
    while (Object.values(gauges(text)).some((v) => (v ?? 0) !== 0) && performance.now() < gone) {
      await Bun.sleep(200);
      text = await metricsText(srv);
    }
    const after = gauges(text);
    const predictAfter = await plainPredict(srv);
    await Bun.sleep(SAMPLE_MS);
    const samples = await sampler.stop();
    const whileOn = samples.filter((s) => s.t >= holdFrom && s.t <= holdTo);
    const mem = memoryFigures(samples, procFigures(srv.proc.pid).hwm, steal0, secondHalf(whileOn));
    const peak = (f: (s: Sample) => number | null) => Math.max(0, ...samples.map((s) => f(s) ?? 0));
    const figures = {
      ...mem,
      http_clients: CLIENTS,
      pipelined: PIPELINED,
      rows: BIG_ROWS,
      reply_mb: Number((Buffer.byteLength(expected.body) / MB).toFixed(1)),
      stream_clients: WS_CLIENTS,
      stream_message_mb: Number((WS_MESSAGE_BYTES / MB).toFixed(1)),
      held_seconds: SECONDS,
      rss_while_held_mb: Number((held.rss / MB).toFixed(1)),
      reply_bytes_unsent_peak_mb: Number((peak((s) => s.replyUnsent) / MB).toFixed(1)),
      body_bytes_held_peak_mb: Number((peak((s) => s.bodyHeld) / MB).toFixed(1)),
      ws_parked_peak: peak((s) => s.wsParked),
      slow_readers_closed: metricSum(text, "arbor_serve_slow_readers_closed_total"),
      http,
      stream,
      // What the server answered while the clients were on (the reading client's predict included).
      http_replies: diff(
        byStatus(text, "arbor_serve_requests_total", `model="${BIG_MODEL.name}"`),
        byStatus(before, "arbor_serve_requests_total", `model="${BIG_MODEL.name}"`),
      ),
      stream_replies: diff(
        byStatus(text, "arbor_serve_ws_messages_total"),
        byStatus(before, "arbor_serve_ws_messages_total"),
      ),
      after_clients_left: after,
      predict_status_during: predictDuring,
      predict_status_after: predictAfter,
      big_predict_during: { status: big.status, whole: bigWhole, ms: big.ms, expected_ms: expected.ms },
      log_warnings: warnings(srv),
      samples,
    };
    const mbOf = (v: number | null) => (v === null ? "n/a" : `${mb(v)} MB`);
    console.log(
      `slow readers ${CLIENTS} HTTP clients x ${PIPELINED} pipelined (every other one: 1) ${BIG_ROWS}-row predicts (${figures.reply_mb} MB JSON replies), ` +
        `${WS_CLIENTS} stream clients x a ${BIG_ROWS}-row predict then ${figures.stream_message_mb} MB every ${WS_SEND_MS} ms, held ${SECONDS} s: ` +
        `RSS while held ${figures.rss_while_held_mb} MB; peaks: reply_bytes_unsent ${figures.reply_bytes_unsent_peak_mb} MB, ` +
        `request_body_bytes_held ${figures.body_bytes_held_peak_mb} MB, ws_parked_messages ${figures.ws_parked_peak}; ` +
        `slow_readers_closed_total ${figures.slow_readers_closed ?? "n/a"}`,
    );
    console.log(
      `slow readers HTTP: ${http.connections} connections wrote ${http.requests} requests, ${http.closed_by_server} closed by the server; answered ${JSON.stringify(figures.http_replies)}. ` +
        `Stream: ${stream.connections} connections (${stream.failed_upgrades} failed upgrades) sent ${stream.messages} messages, ${stream.closed_by_server} closed by the server; answered ${JSON.stringify(figures.stream_replies)}`,
    );
    console.log(
      `slow readers after the clients left: reply_bytes_unsent ${mbOf(after.reply_bytes_unsent)}, request_body_bytes_held ${mbOf(after.request_body_bytes_held)}, ws_parked_messages ${after.ws_parked_messages ?? "n/a"}; ` +
        `plain predict during ${predictDuring}, after ${predictAfter}; a reading client's big predict during: ${big.status}, ${bigWhole ? "whole" : "NOT whole"}, ${big.ms} ms (idle: ${expected.ms} ms)`,
    );
    printMemory("slow readers", mem, "while the clients were on");
    if (predictDuring !== 200 || predictAfter !== 200)
      throw new ServerFailure(
        `a plain predict answered ${predictDuring} during the hold and ${predictAfter} after it`,
      );
    if (!bigWhole)
      throw new ServerFailure(
        `a reading client's big predict answered ${big.status} during the hold, ${big.body.length} of ${expected.body.length} bytes${big.status === 200 ? " (different)" : ""}`,
      );
    return figures;
  } finally {
    holding = false;
    for (const slot of [...httpSlots, ...wsSlots]) if (slot !== null && slot !== "opening") drop(slot.socket);
    await finish(srv);
  }
}

// ---------------------------------------------------------------------------------------------

console.log(
  `serve soak: ${PHASES.join(", ")}; ${SECONDS} s per phase, wrk -t1 -c${CONNS}, ${CLIENTS} slow clients; one server process per phase; ` +
    `model ${MODEL.numTrees} trees of depth ${MODEL.depth} on ${F} features; samples every ${SAMPLE_MS / 1000} s; temp ${dir}`,
);
const started = new Date();
const phases: Record<string, unknown> = {};
const failures: string[] = [];
try {
  for (const [phase, name, run] of [
    ["steady", "steady", steady],
    ["reload", "reload", reloadChurn],
    ["slow-bodies", "slow_bodies", slowBodies],
    ["slow-readers", "slow_readers", slowReaders],
  ] as const) {
    if (interrupted) break;
    if (!PHASES.includes(phase)) continue;
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
  const some = PHASES.length < PHASE_NAMES.length ? `-${PHASES.join("-")}` : "";
  const out = path.join(ROOT, `bench/results/serve-soak${QUICK ? "-quick" : ""}${some}.json`);
  writeFileSync(
    out,
    `${JSON.stringify({ date: started.toISOString(), seconds: SECONDS, connections: CONNS, clients: CLIENTS, model: MODEL, big_model: BIG_MODEL, failures, phases }, null, 2)}\n`,
  );
  console.log(
    `wrote ${path.relative(ROOT, out)} (${((Date.now() - started.getTime()) / 1000).toFixed(0)} s)${failures.length > 0 ? `; ${failures.length} server failure(s)` : ""}`,
  );
  process.exitCode = failures.length > 0 ? 1 : 0;
}
