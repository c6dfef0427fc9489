/**
 * Server cost per request in instructions, which a shared, noisy machine cannot blur:
 * `npx bun bench/serve-callgrind.ts [--requests 3000] [--concurrency 16] [--warmup 6000] [--windows 5] [--keep]
 *   [--msgpack] [--v2] [--store URI --model NAME --body FILE]` (`--msgpack`: the body and the replies in
 *   msgpack instead of JSON; `--v2`: KServe V2 infer (one FP32 tensor `input` [1, F], every
 *   output) instead of V1 predict; `--keep`: leave the callgrind files for
 * callgrind_annotate, their folders are printed; `--store`: measure a model of your own with a V1
 * predict body of your own instead of the fixtures).
 *
 * Runs one server process (`--workers 1`) under `valgrind --tool=callgrind` with instrumentation
 * off, warms it up (so V8 has optimized the hot path), then counts the user-space instructions the
 * server executes for exactly `--requests` single-row JSON predictions over `--concurrency`
 * keep-alive connections, `--windows` times, and reports the lowest window split into onnxruntime
 * (`session.run`), JSON.parse, JSON.stringify and the rest (background JIT compilation left over
 * from the warm-up is not counted; kernel time, the socket calls, is not either). The same for the
 * plain uWebSockets.js hello route (the floor) and a one-tree model (everything but the trees).
 * Same models and body as bench/serve.ts: a 500-tree depth-6 binary model on 28 features. Median
 * windows of two runs agree within ~1-3 %, so this is the A/B figure for hot-path changes.
 * Needs valgrind (Debian's package; present on these machines).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { pack } from "msgpackr";
import { openArtifactStore } from "../registry/store/open.ts";
import { pointLabel, publishFixture, serveCommand } from "../test/serve-fixtures.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    requests: { type: "string", default: "3000" },
    concurrency: { type: "string", default: "16" },
    warmup: { type: "string", default: "6000" },
    windows: { type: "string", default: "5" },
    store: { type: "string" },
    model: { type: "string" },
    body: { type: "string" },
    keep: { type: "boolean", default: false },
    msgpack: { type: "boolean", default: false },
    v2: { type: "boolean", default: false },
  },
});
/** --v2: KServe V2 infer instead of V1 predict (bodies and route). */
const V2 = values.v2 === true;
/** The wire format of the bodies and replies (--msgpack). */
const MEDIA = values.msgpack ? "application/msgpack" : "application/json";
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const WARMUP = Number(values.warmup);
const WINDOWS = Number(values.windows);
const ROOT = new URL("..", import.meta.url).pathname;
const F = 28;

if (spawnSync("valgrind", ["--version"]).status !== 0) {
  console.error("valgrind is not installed: apt-get install -y valgrind");
  process.exit(2);
}

/** POST `body` `n` times over `c` keep-alive connections; fails on any non-200 reply. */
async function load(url: string, body: Body, n: number, c: number): Promise<void> {
  let left = n;
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (left-- > 0) {
        const r = await fetch(url, {
          method: "POST",
          body,
          headers: { "content-type": MEDIA, accept: MEDIA },
        });
        const reply = new Uint8Array(await r.arrayBuffer());
        if (r.status !== 200)
          throw new Error(`${url} answered ${r.status}: ${new TextDecoder().decode(reply)}`);
      }
    }),
  );
}

/** A request body: JSON text, or msgpack bytes. */
type Body = string | Uint8Array;

function control(pid: number, ...args: string[]): void {
  const r = spawnSync("callgrind_control", [...args, String(pid)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`callgrind_control ${args.join(" ")} failed: ${r.stderr}`);
}

/** Inclusive instructions of the first function whose name contains `needle` (0 when absent). */
function inclusive(annotated: string, needle: string): number {
  const line = annotated.split("\n").find((l) => l.includes(needle));
  return line === undefined ? 0 : Number(line.trim().split(/\s+/)[0].replaceAll(",", ""));
}

/** Sum of the batch-size histogram (rows, runs) from the server's /metrics. */
async function batches(base: string): Promise<{ rows: number; runs: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const sum = (name: string) =>
    text
      .split("\n")
      .filter((l) => l.startsWith(name))
      .reduce((s, l) => s + Number(l.split(" ").pop()), 0);
  return { rows: sum("arbor_serve_batch_rows_sum"), runs: sum("arbor_serve_batch_rows_count") };
}

interface Measure {
  perRequest: number;
  ort: number;
  parse: number;
  stringify: number;
  rowsPerRun: number;
}

/** Start `command` under callgrind, wait for `ready` on stdout, measure REQUESTS posts to `route`. */
async function measure(
  command: string[],
  env: Record<string, string>,
  route: string,
  body: Body,
): Promise<Measure> {
  const out = mkdtempSync(path.join(tmpdir(), "arbor-callgrind-"));
  const proc = Bun.spawn(
    [
      "valgrind",
      "--tool=callgrind",
      "--instr-atstart=no",
      "--smc-check=all-non-file",
      `--callgrind-out-file=${out}/cg.%p`,
      ...command,
    ],
    { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" },
  );
  let stderr = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += dec.decode(chunk);
  })();
  try {
    const reader = proc.stdout.getReader();
    let text = "";
    while (!/"port":(\d+)/.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${command.join(" ")} exited before listening:\n${stderr.slice(-2000)}`);
      text += new TextDecoder().decode(value);
    }
    const base = `http://127.0.0.1:${/"port":(\d+)/.exec(text)![1]}`;
    const url = `${base}${route}`;
    process.stderr.write(`  warm-up: ${WARMUP} requests (slow: the server runs under valgrind)\n`);
    await load(url, body, WARMUP, CONCURRENCY);
    const windows: Measure[] = [];
    for (let w = 1; w <= WINDOWS; w++) {
      const before = route.startsWith("/v") ? await batches(base) : null;
      control(proc.pid, "-i", "on");
      await load(url, body, REQUESTS, CONCURRENCY);
      control(proc.pid, "-i", "off");
      control(proc.pid, "-d"); // writes cg.<pid>.<w> and zeroes the counters
      const after = before === null ? null : await batches(base);
      const file = path.join(out, `cg.${proc.pid}.${w}`);
      const total = Number(/^totals:\s+(\d+)/m.exec(readFileSync(file, "utf8"))?.[1] ?? 0);
      const annotated = spawnSync("callgrind_annotate", ["--inclusive=yes", "--threshold=100", file], {
        encoding: "utf8",
        maxBuffer: 1 << 28,
      }).stdout;
      const runs = after === null || before === null ? 0 : after.runs - before.runs;
      // Background TurboFan jobs still finishing from the warm-up (valgrind runs threads one at a
      // time, so they lag) are start-up cost, not request cost.
      const compile = inclusive(annotated, "OptimizingCompileDispatcher::CompileTask::RunInternal(");
      windows.push({
        perRequest: (total - compile) / REQUESTS,
        ort: inclusive(annotated, "InferenceSessionWrap::Run(") / REQUESTS,
        parse: inclusive(annotated, "Builtin_JsonParse(") / REQUESTS,
        stringify: inclusive(annotated, "Builtin_JsonStringify(") / REQUESTS,
        rowsPerRun: runs === 0 ? 0 : (after!.rows - before!.rows) / runs,
      });
    }
    // The lowest window. What lands on top of the requests' own work only ever adds: a full GC,
    // TurboFan jobs, and a spinning onnxruntime thread (not the JS thread: --separate-threads)
    // that valgrind's one-thread-at-a-time scheduler lets run in some windows and not others
    // (~60-90k instructions per request, the same count each time; 2-3 of 5 windows on 27 Nov,
    // which moved the median by 10 %; the real server's other threads use < 1 % of its CPU).
    // Every window holds young-generation GCs (3,000 requests allocate ~18 MB): they stay counted.
    windows.sort((x, y) => x.perRequest - y.perRequest);
    process.stderr.write(
      `  windows: ${windows.map((x) => Math.round(x.perRequest)).join(", ")} instructions/request\n`,
    );
    return windows[0];
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
    if (!values.keep) rmSync(out, { recursive: true, force: true });
    else process.stderr.write(`  callgrind files kept in ${out}\n`);
  }
}

const k = (n: number) => `${(n / 1000).toFixed(1)}k`;

/** Measure arbor serving `model` from `storeUri` and print its line. */
async function arborLine(storeUri: string, model: string, body: Body, label: string, hello: Measure) {
  const r = await measure(
    serveCommand(["--store", storeUri, "--log-level", "warn"]),
    {},
    V2 ? `/v2/models/${model}/infer` : `/v1/models/${model}:predict`,
    body,
  );
  const rest = r.perRequest - r.ort - r.parse - r.stringify;
  console.log(
    `arbor ${label.padEnd(17)} ${k(r.perRequest).padStart(7)} (x${(r.perRequest / hello.perRequest).toFixed(1)} hello): ` +
      `onnxruntime ${k(r.ort)} (${r.rowsPerRun.toFixed(1)} rows per run), JSON.parse ${k(r.parse)}, JSON.stringify ${k(r.stringify)}, rest ${k(rest)}`,
  );
}

const header = () =>
  console.log(
    `instructions per single-row ${values.msgpack ? "msgpack" : "JSON"} ${V2 ? "V2 infer" : "V1 predict"} request (server process, user space; lowest of ${WINDOWS} windows of ${REQUESTS} requests over ${CONCURRENCY} connections after ${WARMUP} warm-up)`,
  );
const helloLine = async (body: Body): Promise<Measure> => {
  const hello = await measure(
    ["node", "--import", "tsx", "bench/serve-hello.ts"],
    { HELLO_PORT: "0" },
    "/hello",
    body,
  );
  console.log(`uWS hello route         ${k(hello.perRequest).padStart(7)}`);
  return hello;
};

if (values.store !== undefined) {
  // A model of your own: --store URI --model NAME --body FILE (a V1 predict body; with --v2, a V2 infer body).
  if (values.model === undefined || values.body === undefined) {
    console.error(
      "--store needs --model NAME and --body FILE (a JSON predict body, or infer body with --v2)",
    );
    process.exit(2);
  }
  const body = values.msgpack
    ? pack(JSON.parse(readFileSync(values.body, "utf8")))
    : readFileSync(values.body, "utf8");
  header();
  const hello = await helloLine(body);
  await arborLine(values.store, values.model, body, values.model, hello);
} else {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-bench-callgrind-"));
  try {
    const store = await openArtifactStore(pathToFileURL(dir).href);
    for (const [name, numTrees, depth, seed] of [
      ["flights", 500, 6, 42],
      ["trivial", 1, 1, 43],
    ] as const) {
      const m = await publishFixture(store, {
        name,
        version: 1,
        task: name === "flights" ? "binary" : "regression",
        numFeatures: F,
        numTrees,
        depth,
        seed,
      });
      await pointLabel(store, name, "production", 1, m.manifestSha256);
    }
    await store.close();
    const row = Array.from({ length: F }, (_, i) => Math.fround(Math.sin(i) * 2));
    const value = V2
      ? { inputs: [{ name: "input", shape: [1, F], datatype: "FP32", data: row }] }
      : { instances: [row] };
    const body = values.msgpack ? pack(value) : JSON.stringify(value);
    header();
    const hello = await helloLine(body);
    await arborLine(pathToFileURL(dir).href, "trivial", body, "1-tree model", hello);
    await arborLine(pathToFileURL(dir).href, "flights", body, "500 trees depth 6", hello);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
