/**
 * Serving benchmark: `npx bun bench/serve.ts [--seconds 5] [--connections 32] [--workers N] [--pin]`
 * (`--workers` defaults to the server's own default, one process per core; `--pin` runs the load
 * generators on core 0 and every server on the other cores, one arbor worker per server core).
 * `--semi-space-mb N` starts the arbor servers with N MiB V8 semi-spaces. Each scenario also
 * prints the server's garbage collections during it (count and mean pause, from GET /metrics).
 * Starts `serve/main.ts` on a temp store holding a 500-tree depth-6 binary model on 28 features
 * ("flights") and a one-tree model ("trivial"), plus a plain uWebSockets.js hello server, then
 * measures with wrk (HTTP) and a Bun WebSocket client (pipelined):
 *   single-row JSON (32 connections, and 512: more than a micro-batch takes), single-row KServe V2
 *   infer (JSON), single-row msgpack, 1000-row msgpack batches, pipelined WebSocket,
 * each beside the hello baseline (ratio) and beside in-process onnxruntime on the same model
 * (latency and CPU beyond ORT's: p50 − the in-process run, CPU − ORT's share per request). Also
 * single-row JSON with micro-batching off. Every server gets 2 s of single-row load before its
 * first measured run (JIT, lazy initialisation). Writes bench/results/serve.json (--quick:
 * serve-quick.json).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { pack, unpack } from "msgpackr";
import pl from "nodejs-polars";
import { Tensor } from "onnxruntime-node";
import { openArtifactStore } from "../registry/store/open.ts";
import { OrtSession, SERVE_SESSION_OPTIONS } from "../serve/model-cache/ort-session.ts";
import { BENCH_MODEL, pointLabel, publishProduction, startServe } from "../test/serve-fixtures.ts";
import { flightsSample } from "../train/data/flights-sample.ts";
import { luaString, machineTicks } from "./wrk-tools.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    seconds: { type: "string", default: "5" },
    connections: { type: "string", default: "32" },
    /** Server processes; default: the server's default (one per core, as `arbor serve` runs). */
    workers: { type: "string" },
    /** Pin the load generators to core 0 and the servers to the other cores (taskset). */
    pin: { type: "boolean", default: false },
    threads: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
    reference: { type: "boolean", default: false },
    profile: { type: "string" },
    /** V8 semi-space of the arbor servers, MiB (default: V8's own). */
    "semi-space-mb": { type: "string" },
  },
});
const SECONDS = Number(values.seconds);
const CONNS = Number(values.connections);
/** Connections of the many-clients scenario: more than a micro-batch takes (256 rows). */
const MANY_CONNS = 512;
/**
 * --pin: wrk and this process (the WebSocket client, in-process ORT) on core 0, every server
 * (arbor, hello, the Python reference) on the other cores, so load generation and serving do not
 * take turns on the same cores; arbor's workers default to one per server core.
 */
const PIN = values.pin === true;
const CORES = availableParallelism();
if (PIN && CORES < 2) throw new Error("--pin needs at least 2 cores");
const WORKERS = Number(values.workers ?? (PIN ? CORES - 1 : CORES));
/** What servers are started under: `taskset -c 1-N` with --pin. */
const LAUNCH = PIN ? ["taskset", "-c", CORES === 2 ? "1" : `1-${CORES - 1}`] : [];
if (PIN) {
  const r = Bun.spawnSync(["taskset", "-a", "-p", "-c", "0", String(process.pid)]);
  if (r.exitCode !== 0) throw new Error(`taskset failed: ${r.stderr}`);
}
const THREADS = Number(values.threads);
/** --quick: only single-row JSON (32 and 512 connections) on the 500-tree model (before/after checks). */
const QUICK = values.quick === true;
/** --profile DIR: run the server under `node --cpu-prof` and write its .cpuprofile into DIR. */
const PROFILE = values.profile;
/**
 * --semi-space-mb N: start the arbor servers with V8 semi-spaces of N MiB (V8's own: 16, starting
 * at 1 and growing), to see what young-generation collections cost (the gc figures per scenario).
 */
const SEMI_SPACE_MB = values["semi-space-mb"] === undefined ? undefined : Number(values["semi-space-mb"]);

/** Node.js flags of the arbor servers: --profile's and --semi-space-mb's. */
function serverNodeArgs(): string[] {
  return [
    ...(PROFILE === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${path.resolve(PROFILE)}`]),
    ...(SEMI_SPACE_MB === undefined
      ? []
      : [`--min-semi-space-size=${SEMI_SPACE_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`]),
  ];
}
/**
 * --reference: also train a real 500-tree depth-6 XGBoost flights model, import it with `arbor import
 * --xgboost`, and load-test it beside the Python reference stack (/work/shared/tools/
 * reference-server.py: FastAPI + uvicorn/uvloop + XGBoost inplace_predict) on the same machine:
 * single-row JSON with one test row sent again and again, then with 1000 distinct test rows in
 * turn (a repeated row lets the CPU's branch predictor learn every tree's path).
 * Needs Debian's python3-xgboost, python3-fastapi, python3-uvicorn, python3-uvloop, python3-httptools.
 */
const REFERENCE = values.reference === true;
// The reference tools live in the shared/ folder beside the checkout (../shared/tools).
/** Complete flights test rows the reference comparison's distinct-rows scenario sends in turn. */
const DISTINCT_ROWS = 1000;
const REFERENCE_SERVER = path.resolve(import.meta.dir, "..", "..", "shared", "tools", "reference-server.py");
const XGB_REFERENCE = path.resolve(import.meta.dir, "..", "..", "shared", "tools", "xgb-reference.py");
const ROOT = new URL("..", import.meta.url).pathname;
const F = BENCH_MODEL.numFeatures;

interface Load {
  /** Server CPU (user+system) per request in µs: robust to other load on a shared machine. */
  cpuUs?: number;
  /**
   * Share of the machine's CPU time the hypervisor gave to other guests during the run (steal,
   * /proc/stat), in %: on a shared VM the same run swings with it (0 % quiet, 10-25 % busy).
   */
  stealPct?: number;
  /** The load generator's own CPU (user+system) per request in µs (wrk only). */
  loadCpuUs?: number;
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  requests: number;
  errors: number;
}

/** Seconds of load a server gets before its first measured run (JIT, lazy initialisation). */
const WARMUP_SECONDS = 2;

/**
 * Run wrk against `url` with a POST body for `seconds`; latencies in µs. An array of bodies is
 * sent in turn (each request built once, up front, so wrk's cost per request stays that of one).
 */
async function wrk(
  url: string,
  body: Uint8Array | readonly Uint8Array[],
  contentType: string,
  connections = CONNS,
  seconds = SECONDS,
): Promise<Load> {
  const script = path.join(tmpdir(), `arbor-bench-${process.pid}-${Math.random().toString(36).slice(2)}.lua`);
  writeFileSync(
    script,
    `wrk.method = "POST"
wrk.headers["Content-Type"] = "${contentType}"
wrk.headers["Accept"] = "${contentType}"
${
  body instanceof Uint8Array
    ? `wrk.body = ${luaString(body)}`
    : `local bodies = { ${body.map(luaString).join(",\n")} }
local requests = {}
local turn = 0
init = function(args)
  for i, b in ipairs(bodies) do requests[i] = wrk.format(nil, nil, nil, b) end
end
request = function()
  turn = turn % #requests + 1
  return requests[turn]
end`
}
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`,
  );
  const proc = Bun.spawn(["wrk", `-t${THREADS}`, `-c${connections}`, `-d${seconds}s`, "-s", script, url], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  rmSync(script, { force: true });
  const m = /RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(out);
  if (!m) throw new Error(`wrk failed: ${out}`);
  const [requests, durationUs, errors, p50, p99, p999] = m.slice(1).map(Number);
  const cpu = proc.resourceUsage()?.cpuTime.total;
  const loadCpuUs = cpu === undefined ? undefined : Number(cpu) / Math.max(1, requests);
  return { rps: requests / (durationUs / 1e6), p50, p99, p999, requests, errors, loadCpuUs };
}

/**
 * The server's own latency histogram for one route and model (status 200, every worker summed):
 * upper bound in seconds → cumulative count, from GET /metrics.
 */
async function serverHistogram(base: string, route: string, model: string): Promise<Map<number, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const buckets = new Map<number, number>();
  const prefix = `arbor_serve_request_duration_seconds_bucket{route="${route}",model="${model}",`;
  for (const line of text.split("\n")) {
    if (!line.startsWith(prefix) || !line.includes('status="200"')) continue;
    const m = /le="([^"]+)"[^}]*} (\d+)/.exec(line);
    if (m === null) continue;
    const le = m[1] === "+Inf" ? Number.POSITIVE_INFINITY : Number(m[1]);
    buckets.set(le, (buckets.get(le) ?? 0) + Number(m[2]));
  }
  return buckets;
}

/** The servers' garbage collections so far (every worker summed), from GET /metrics. */
interface GcTotals {
  minor: number;
  minorSeconds: number;
  major: number;
  majorSeconds: number;
}

async function gcTotals(base: string): Promise<GcTotals> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const t: GcTotals = { minor: 0, minorSeconds: 0, major: 0, majorSeconds: 0 };
  for (const m of text.matchAll(
    /^arbor_nodejs_gc_duration_seconds_(count|sum)\{[^}]*kind="(minor|major)"[^}]*\} (\S+)$/gm,
  )) {
    const key = `${m[2]}${m[1] === "sum" ? "Seconds" : ""}` as keyof GcTotals;
    t[key] += Number(m[3]);
  }
  return t;
}

/** The collections between two {@link gcTotals}: how many, and their mean pause in ms. */
function gcBetween(a: GcTotals, b: GcTotals): string {
  const part = (n: number, sec: number) => `${n}${n > 0 ? ` (${((sec / n) * 1000).toFixed(2)} ms)` : ""}`;
  return `gc minor ${part(b.minor - a.minor, b.minorSeconds - a.minorSeconds)}, major ${part(b.major - a.major, b.majorSeconds - a.majorSeconds)}`;
}

/**
 * What the server itself measured between two histogram scrapes (from uWS handing over the
 * request to the reply written; not the time a request waited in the kernel before the server
 * read it, nor the load generator's own delays): the share within 1 ms and the p99, interpolated
 * within its bucket as Prometheus' histogram_quantile does.
 */
function serverLatency(
  before: Map<number, number>,
  after: Map<number, number>,
): { within1ms: number; p99ms: number } | null {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const delta = bounds.map((le) => (after.get(le) ?? 0) - (before.get(le) ?? 0));
  const total = delta[delta.length - 1] ?? 0;
  if (total === 0) return null;
  const at1 = bounds.indexOf(0.001);
  const within1ms = total === 0 || at1 < 0 ? 0 : delta[at1] / total;
  const rank = 0.99 * total;
  let i = delta.findIndex((c) => c >= rank);
  if (i < 0) i = bounds.length - 1;
  const lo = i === 0 ? 0 : bounds[i - 1];
  const hi = Number.isFinite(bounds[i]) ? bounds[i] : lo;
  const below = i === 0 ? 0 : delta[i - 1];
  const inBucket = delta[i] - below;
  const p99 = inBucket <= 0 ? hi : lo + ((hi - lo) * (rank - below)) / inBucket;
  return { within1ms, p99ms: p99 * 1000 };
}

/** Pipelined WebSocket load: `conns` sockets, `window` messages in flight each, for SECONDS. */
async function wsLoad(url: string, message: Uint8Array, conns = 4, window = 64): Promise<Load> {
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + SECONDS * 1000;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      const sent: number[] = [];
      let closing = false;
      const send = () => {
        sent.push(performance.now());
        ws.send(message);
      };
      ws.onopen = () => {
        for (let i = 0; i < window; i++) send();
      };
      ws.onmessage = (ev) => {
        const t0 = sent.shift()!;
        const now = performance.now();
        latencies.push((now - t0) * 1000);
        if (ev.data instanceof ArrayBuffer && ev.data.byteLength > 5) {
          const v = unpack(new Uint8Array(ev.data));
          if (v?.error) errors++;
        }
        if (now < end) send();
        else if (sent.length === 0 && !closing) {
          closing = true;
          ws.close();
          resolve();
        }
      };
      ws.onerror = () => reject(new Error("websocket error"));
    });
  const started = performance.now();
  await Promise.all(Array.from({ length: conns }, one));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]);
  return {
    rps: latencies.length / seconds,
    p50: q(50),
    p99: q(99),
    p999: q(99.9),
    requests: latencies.length,
    errors,
  };
}

/** In-process onnxruntime: median µs per run at `rows` rows. */
function ortInProcess(onnx: Uint8Array, x: Float32Array, rows: number): number {
  // The server's own session type and options: a synchronous run (serve/model-cache/ort-session.ts).
  const session = new OrtSession(onnx, SERVE_SESSION_OPTIONS);
  const input = new Tensor("float32", x.subarray(0, rows * F), [rows, F]);
  const fetches = session.outputNames;
  for (let i = 0; i < 200; i++) session.run({ input }, fetches);
  const times: number[] = [];
  const n = rows === 1 ? 5000 : 200;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    session.run({ input }, fetches);
    times.push((performance.now() - t) * 1000);
  }
  session.release();
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

/** One hello process listening on `port`; resolves once it listens. */
async function helloProcess(port: number): Promise<Bun.Subprocess> {
  const proc = Bun.spawn([...LAUNCH, "node", "--import", "tsx", "bench/serve-hello.ts"], {
    cwd: ROOT,
    env: { ...process.env, HELLO_PORT: String(port) },
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  while (!/"port":\d+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("hello server exited");
    out += new TextDecoder().decode(value);
  }
  return proc;
}

/**
 * The hello baseline as WORKERS processes on one port, the same setup as arbor's workers. uSockets
 * sets SO_REUSEPORT only for a non-zero port, so pick a free one first (as serve/main.ts does).
 */
async function startHello(): Promise<{ port: number; pids: number[]; stop(): Promise<void> }> {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  const procs: Bun.Subprocess[] = [];
  for (let i = 0; i < WORKERS; i++) procs.push(await helloProcess(port));
  return {
    port,
    pids: procs.map((p) => p.pid),
    stop: async () => {
      for (const p of procs) p.kill("SIGTERM");
      await Promise.all(procs.map((p) => p.exited));
    },
  };
}

const dir = mkdtempSync(path.join(tmpdir(), "arbor-bench-serve-"));
const store = await openArtifactStore(pathToFileURL(dir).href);
const flights = await publishProduction(store, BENCH_MODEL);
const trivial = await publishProduction(store, {
  name: "trivial",
  version: 1,
  task: "regression",
  numFeatures: F,
  numTrees: 1,
  depth: 1,
  seed: 43,
});

const rowsX = new Float32Array(1000 * F);
for (let i = 0; i < rowsX.length; i++) rowsX[i] = Math.fround(Math.sin(i) * 2);
const row = Array.from(rowsX.subarray(0, F));
const batch = Array.from({ length: 1000 }, (_, r) => Array.from(rowsX.subarray(r * F, (r + 1) * F)));
const enc = new TextEncoder();
const bodies = {
  json1: enc.encode(JSON.stringify({ instances: [row] })),
  v2json1: enc.encode(
    JSON.stringify({ inputs: [{ name: "input", shape: [1, F], datatype: "FP32", data: row }] }),
  ),
  msgpack1: pack({ instances: [row] }) as Uint8Array,
  msgpack1000: pack({ instances: batch }) as Uint8Array,
};

const hello = await startHello();
const helloUrl = `http://127.0.0.1:${hello.port}/hello`;
await wrk(helloUrl, bodies.json1, "application/json", CONNS, WARMUP_SECONDS);
const results: Record<string, unknown>[] = [];
const ort: Record<string, Record<number, number>> = { flights: {}, trivial: {} };
for (const [name, f] of [
  ["flights", flights],
  ["trivial", trivial],
] as const) {
  ort[name][1] = ortInProcess(f.onnx, rowsX, 1);
  ort[name][1000] = ortInProcess(f.onnx, rowsX, 1000);
}

const CLK_TCK = 100;

/** CPU seconds (user + system) of processes and their direct children, from /proc. */
function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, "utf8");
    } catch {
      continue;
    }
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(f[1]);
    if (pids.includes(Number(d)) || pids.includes(ppid)) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / CLK_TCK;
}

/** Run a load while measuring the CPU the server processes (and their children) spend per request. */
async function withCpu(pids: readonly number[], run: () => Promise<Load>): Promise<Load> {
  const before = cpuSeconds(pids);
  const [steal0, total0] = machineTicks();
  const load = await run();
  const [steal1, total1] = machineTicks();
  // Unrounded: ratios are computed from these; the printed figures round.
  load.cpuUs = ((cpuSeconds(pids) - before) * 1e6) / Math.max(1, load.requests);
  load.stealPct = Math.round((100 * (steal1 - steal0)) / Math.max(1, total1 - total0));
  return load;
}

/** A per-request µs figure for print and JSON (rounded; the ratios use the unrounded ones). */
function us(v: number | undefined): number | null {
  return v === undefined ? null : Math.round(v);
}

/**
 * ORT's CPU per request in a scenario, estimated from the in-process runs: with micro-batching a
 * single-row request is about one row of a large run; otherwise it is a run of its own rows.
 */
function ortPerRequest(model: "flights" | "trivial", rows: number, setup: string): number {
  return rows === 1 && setup === "batching on" ? ort[model][1000] / 1000 : ort[model][rows];
}

const helloCache = new Map<string, Load>();
async function helloFor(key: string, run: () => Promise<Load>): Promise<Load> {
  if (!helloCache.has(key)) helloCache.set(key, await run());
  return helloCache.get(key)!;
}

async function scenarioSet(label: string, extraArgs: string[], only?: string[]): Promise<void> {
  const server = await startServe(
    ["--store", pathToFileURL(dir).href, "--workers", String(WORKERS), "--log-level", "warn", ...extraArgs],
    {},
    serverNodeArgs(),
    LAUNCH,
  );
  try {
    for (const model of QUICK ? (["flights"] as const) : (["flights", "trivial"] as const)) {
      const url = `${server.url}/v1/models/${model}:predict`;
      await wrk(url, bodies.json1, "application/json", CONNS, WARMUP_SECONDS);
      const scenarios: [string, () => Promise<Load>, () => Promise<Load>, number][] = [
        [
          "single-row JSON",
          () => wrk(url, bodies.json1, "application/json"),
          () => wrk(helloUrl, bodies.json1, "application/json"),
          1,
        ],
        [
          // Many clients: micro-batches fill up while the requests are read (256 rows by default).
          `single-row JSON, ${MANY_CONNS} connections`,
          () => wrk(url, bodies.json1, "application/json", MANY_CONNS),
          () => wrk(helloUrl, bodies.json1, "application/json", MANY_CONNS),
          1,
        ],
        [
          "single-row KServe V2 infer (JSON)",
          () => wrk(`${server.url}/v2/models/${model}/infer`, bodies.v2json1, "application/json"),
          () => wrk(helloUrl, bodies.v2json1, "application/json"),
          1,
        ],
        [
          "single-row msgpack",
          () => wrk(url, bodies.msgpack1, "application/msgpack"),
          () => wrk(helloUrl, bodies.msgpack1, "application/msgpack"),
          1,
        ],
        [
          "1000-row msgpack",
          () => wrk(url, bodies.msgpack1000, "application/msgpack", 4),
          () => wrk(helloUrl, bodies.msgpack1000, "application/msgpack", 4),
          1000,
        ],
        [
          "pipelined WebSocket (4 sockets x 64 in flight, msgpack)",
          () =>
            wsLoad(
              `ws://127.0.0.1:${server.port}/v1/stream`,
              pack({ id: 1, model, op: "predict", instances: [row] }) as Uint8Array,
            ),
          () =>
            wsLoad(
              `ws://127.0.0.1:${hello.port}/hello`,
              pack({ id: 1, model, op: "predict", instances: [row] }) as Uint8Array,
            ),
          1,
        ],
      ];
      for (const [name, run, runHello, rows] of scenarios) {
        if (only && !only.includes(name)) continue;
        const gcBefore = await gcTotals(server.url);
        const load = await withCpu([server.proc.pid], run);
        const gc = gcBetween(gcBefore, await gcTotals(server.url));
        const base = await helloFor(name, () => withCpu(hello.pids, runHello));
        const r = {
          setup: label,
          model,
          scenario: name,
          rps: Math.round(load.rps),
          p50_us: load.p50,
          p99_us: load.p99,
          p999_us: load.p999,
          errors: load.errors,
          server_cpu_us_per_request: us(load.cpuUs),
          load_cpu_us_per_request: us(load.loadCpuUs),
          steal_pct: load.stealPct,
          hello_cpu_us_per_request: us(base.cpuUs),
          hello_rps: Math.round(base.rps),
          hello_p99_us: base.p99,
          ratio_to_hello: Number((load.rps / base.rps).toFixed(3)),
          ort_inprocess_us: Number(ort[model][rows].toFixed(1)),
          // Latency view: p50 minus the in-process run (mostly queueing behind CONNS clients).
          server_overhead_us: Math.round(load.p50 - ort[model][rows]),
          // CPU view: server CPU per request minus ORT's share of it. A micro-batched single row
          // costs ORT about one row of a large run, not a whole single-row run.
          server_cpu_overhead_us:
            load.cpuUs === undefined ? null : Math.round(load.cpuUs - ortPerRequest(model, rows, label)),
          gc,
        };
        results.push(r);
        console.log(
          `${label.padEnd(14)} ${model.padEnd(8)} ${name.padEnd(58)} ${String(r.rps).padStart(7)} req/s  p50 ${String(r.p50_us).padStart(6)} µs  p99 ${String(r.p99_us).padStart(6)} µs  p99.9 ${String(r.p999_us).padStart(6)} µs  errors ${r.errors}  steal ${r.steal_pct} %  cpu ${r.server_cpu_us_per_request} µs/req (hello ${r.hello_cpu_us_per_request})  hello ${String(r.hello_rps).padStart(7)} (x${r.ratio_to_hello}, p99 ${r.hello_p99_us} µs)  ORT ${r.ort_inprocess_us} µs  p50 beyond ORT (incl. queueing) ${r.server_overhead_us} µs, cpu beyond ORT ${r.server_cpu_overhead_us} µs  ${gc}`,
        );
      }
    }
  } finally {
    await server.stop();
  }
}

console.log(
  `wrk -t${THREADS} -c${CONNS} -d${SECONDS}s; serve workers=${WORKERS}${SEMI_SPACE_MB === undefined ? "" : `, semi-space ${SEMI_SPACE_MB} MiB`}${PIN ? `; pinned: load on core 0, servers on ${LAUNCH[2]}` : ""}; in-process ORT µs/run: ${JSON.stringify(ort)}`,
);
// A failed scenario must not leave the hello server (or the temp store) behind.
try {
  if (QUICK)
    await scenarioSet("batching on", [], ["single-row JSON", `single-row JSON, ${MANY_CONNS} connections`]);
  else {
    await scenarioSet("batching on", []);
    await scenarioSet("batching off", ["--no-batching"], ["single-row JSON", "single-row msgpack"]);
  }
  if (REFERENCE) await referenceComparison();
} finally {
  await hello.stop();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
mkdirIfNeeded();
writeFileSync(
  // --quick (single-row JSON only, for before/after checks) does not overwrite the full run's figures.
  path.join(ROOT, QUICK ? "bench/results/serve-quick.json" : "bench/results/serve.json"),
  `${JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, connections: CONNS, workers: WORKERS, semiSpaceMb: SEMI_SPACE_MB ?? null, pinned: PIN, wrkThreads: THREADS, ortInProcessUs: ort, results }, null, 2)}\n`,
);

/**
 * The issue's reference model: XGBoost hist, 500 trees of depth 6 (eta 0.1, 256 bins, 2 threads),
 * trained by /work/shared/tools/xgb-reference.py on 160k flights rows (train/data/flights-sample.ts:
 * 200k sampled in date order, the first 80% for training; origin and destination as integer
 * codes). Returns the saved model and the first {@link DISTINCT_ROWS} complete test rows (the first
 * is the single-row request body; all of them, in turn, the distinct-rows scenario's).
 */
function trainFlightsReference(): { model: string; rows: number[][] } {
  const frame = flightsSample(200_000, 1);
  const codes = (name: string): number[] => {
    const seen = new Map<string, number>();
    return (frame.getColumn(name).toArray() as string[]).map((v) => {
      const c = seen.get(v) ?? seen.size;
      seen.set(v, c);
      return c;
    });
  };
  const table = frame.withColumns(
    pl.Series("origin", codes("origin"), pl.Float32),
    pl.Series("destination", codes("destination"), pl.Float32),
    frame.getColumn("delayed").cast(pl.Int32),
  );
  const cut = Math.floor(table.height * 0.8);
  const files = { train: path.join(dir, "flights-train.csv"), test: path.join(dir, "flights-test.csv") };
  table.slice(0, cut).writeCSV(files.train);
  table.slice(cut, table.height - cut).writeCSV(files.test);
  const model = path.join(dir, "xgb-flights.json");
  const train = Bun.spawnSync(
    [
      "/usr/bin/python3",
      XGB_REFERENCE,
      files.train,
      files.test,
      "--target",
      "delayed",
      "--task",
      "binary",
      "--rounds",
      "500",
      "--max-depth",
      "6",
      "--save",
      model,
    ],
    { stderr: "pipe", stdout: "pipe" },
  );
  if (train.exitCode !== 0) throw new Error(`training the XGBoost reference model failed: ${train.stderr}`);
  console.log(`reference      flights model: ${train.stdout.toString().trim()}`);
  const test = table
    .slice({ offset: cut, length: DISTINCT_ROWS * 2 })
    .select(...table.columns.filter((c) => c !== "delayed"))
    .rows() as (number | null)[][];
  // The reference server takes numbers only: rows with a missing value are left out.
  const rows = test.filter((r) => r.every((v) => v !== null)).slice(0, DISTINCT_ROWS) as number[][];
  if (rows.length < DISTINCT_ROWS) throw new Error(`only ${rows.length} complete flights test rows`);
  return { model, rows: rows.map((r) => r.map(Number)) };
}

async function referenceComparison(): Promise<void> {
  const { model, rows: flightsRows } = trainFlightsReference();
  const bundle = path.join(dir, "models/xgbref/v1");
  const imp = Bun.spawnSync(
    [process.execPath, "train/cli.ts", "import", "--xgboost", model, "--out", bundle, "--quiet"],
    {
      cwd: ROOT,
      stderr: "pipe",
    },
  );
  if (imp.exitCode !== 0) throw new Error(`arbor import failed: ${imp.stderr}`);
  const manifest = new Uint8Array(readFileSync(path.join(bundle, "manifest.json")));
  const sha = new Bun.CryptoHasher("sha256").update(manifest).digest("hex");
  await pointLabel(store, "xgbref", "production", 1, sha);
  const refDir = mkdtempSync(path.join(tmpdir(), "arbor-ref-"));
  writeFileSync(path.join(refDir, "reference_server.py"), readFileSync(REFERENCE_SERVER));
  const refPort = 18000 + Math.floor(Math.random() * 1000);
  const ref = Bun.spawn(
    [
      ...LAUNCH,
      "/usr/bin/python3",
      "-m",
      "uvicorn",
      "reference_server:app",
      "--host",
      "127.0.0.1",
      "--port",
      String(refPort),
      "--workers",
      "1",
      "--no-access-log",
      "--log-level",
      "warning",
      "--loop",
      "uvloop",
      "--http",
      "httptools",
    ],
    { cwd: refDir, env: { ...process.env, MODEL: model }, stdout: "ignore", stderr: "inherit" },
  );
  const server = await startServe(
    ["--store", pathToFileURL(dir).href, "--workers", String(WORKERS), "--log-level", "warn"],
    {},
    serverNodeArgs(),
    LAUNCH,
  );
  try {
    for (let i = 0; i < 200; i++) {
      const ok = await fetch(`http://127.0.0.1:${refPort}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      await Bun.sleep(100);
    }
    const enc = new TextEncoder();
    const oursUrl = `${server.url}/v1/models/xgbref:predict`;
    const theirsUrl = `http://127.0.0.1:${refPort}/predict`;
    const ours1 = (row: number[]) => enc.encode(JSON.stringify({ instances: [row] }));
    const theirs1 = (row: number[]) => enc.encode(JSON.stringify({ rows: [row] }));
    // The same row again and again lets the CPU's branch predictor learn each tree's path, which
    // flatters tree walking (ORT's and XGBoost's alike); distinct rows are what users send.
    const cases = [
      { scenario: "single-row JSON", ours: ours1(flightsRows[0]), theirs: theirs1(flightsRows[0]) },
      {
        scenario: `single-row JSON, ${flightsRows.length} distinct rows`,
        ours: flightsRows.map(ours1),
        theirs: flightsRows.map(theirs1),
      },
    ];
    await wrk(oursUrl, cases[1].ours, "application/json", CONNS, WARMUP_SECONDS);
    await wrk(theirsUrl, cases[1].theirs, "application/json", CONNS, WARMUP_SECONDS);
    const route = "/v1/models/:name:predict";
    for (const c of cases) {
      const histBefore = await serverHistogram(server.url, route, "xgbref");
      const ours = await withCpu([server.proc.pid], () => wrk(oursUrl, c.ours, "application/json"));
      const inServer = serverLatency(histBefore, await serverHistogram(server.url, route, "xgbref"));
      const theirs = await withCpu([ref.pid], () => wrk(theirsUrl, c.theirs, "application/json"));
      for (const [who, l] of [
        [`arbor serve (${WORKERS} worker${WORKERS === 1 ? "" : "s"})`, ours],
        ["python reference", theirs],
      ] as const) {
        results.push({
          setup: "reference comparison",
          model: "xgboost flights 500x6 imported",
          scenario: `${c.scenario}: ${who}`,
          rps: Math.round(l.rps),
          p50_us: l.p50,
          p99_us: l.p99,
          p999_us: l.p999,
          errors: l.errors,
          server_cpu_us_per_request: us(l.cpuUs),
          load_cpu_us_per_request: us(l.loadCpuUs),
          steal_pct: l.stealPct,
        });
        console.log(
          `reference      ${who.padEnd(24)} ${c.scenario} ${String(Math.round(l.rps)).padStart(7)} req/s  p50 ${l.p50} µs  p99 ${l.p99} µs  p99.9 ${l.p999} µs  errors ${l.errors}  steal ${l.stealPct} %  cpu ${us(l.cpuUs)} µs/req (wrk ${us(l.loadCpuUs)} µs/req)`,
        );
      }
      console.log(
        inServer === null
          ? "reference      arbor's own latency histogram for that run: no data (no /metrics series matched the route and model)"
          : `reference      arbor's own latency histogram for that run (request handed over by uWS → reply written): p99 ${inServer.p99ms.toFixed(2)} ms, ${(100 * inServer.within1ms).toFixed(2)} % within 1 ms`,
      );
      const cpuRatio = (theirs.cpuUs ?? 0) / (ours.cpuUs ?? 1);
      console.log(
        `reference      ratio: ${(ours.rps / theirs.rps).toFixed(1)}x requests/s, ${cpuRatio.toFixed(1)}x less CPU per request`,
      );
      // The issue's target, and three bounds on it: the hello route (same process count, no model),
      // Little's law (closed loop: mean latency = connections / rate), and the CPU that server and
      // load generator need together at the target rate (a tail needs idle CPU to stay short).
      const ratio = ours.rps / theirs.rps;
      const met = ratio >= 10 && ours.p99 < 1000;
      const hello = helloCache.get("single-row JSON");
      const both = (ours.cpuUs ?? 0) + (ours.loadCpuUs ?? 0);
      const cores = PIN ? `the ${CORES} cores (wrk on core 0)` : `the ${CORES} cores`;
      console.log(
        `reference      target (>= 10x the reference's req/s, p99 < 1 ms): ${ratio.toFixed(1)}x, p99 ${(ours.p99 / 1000).toFixed(1)} ms: ${met ? "met" : "not met"}; ` +
          `${CONNS} closed-loop connections at ${Math.round(ours.rps)} req/s are a mean of ${((CONNS / ours.rps) * 1000).toFixed(2)} ms per request; ` +
          `server + wrk CPU ${us(ours.cpuUs)} + ${us(ours.loadCpuUs)} µs per request: at 10x the reference (${Math.round(10 * theirs.rps)} req/s) ${((both * 10 * theirs.rps) / 1e6).toFixed(2)} of ${cores}` +
          (hello === undefined
            ? ""
            : `; the hello route in this run: ${Math.round(hello.rps)} req/s, p99 ${(hello.p99 / 1000).toFixed(1)} ms`),
      );
      results.push({
        setup: "reference comparison",
        model: "xgboost flights 500x6 imported",
        scenario: `${c.scenario}: summary`,
        rps_ratio: Number(ratio.toFixed(2)),
        cpu_ratio: Number(cpuRatio.toFixed(2)),
        target_met: met,
        server_p99_us: inServer === null ? null : Math.round(inServer.p99ms * 1000),
        server_within_1ms_pct: inServer === null ? null : Number((100 * inServer.within1ms).toFixed(2)),
        littles_law_mean_ms: Number(((CONNS / ours.rps) * 1000).toFixed(3)),
        cores_needed_at_target: Number(((both * 10 * theirs.rps) / 1e6).toFixed(2)),
        hello_rps: hello === undefined ? null : Math.round(hello.rps),
        hello_p99_us: hello === undefined ? null : hello.p99,
      });
    }
  } finally {
    await server.stop();
    ref.kill("SIGTERM");
    await ref.exited;
    rmSync(refDir, { recursive: true, force: true });
  }
}

function mkdirIfNeeded(): void {
  Bun.spawnSync(["mkdir", "-p", path.join(ROOT, "bench/results")]);
}
