/**
 * The README's quickstart: the whole loop on the embedded defaults (PGlite + a local store under
 * ARBOR_HOME), driven through the real `arbor` CLI so that every step prints the command a user
 * would type. Run with `npm run quickstart`.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { loadArborConfig } from "../shared/config.ts";
import { flightsSample } from "./data/flights-sample.ts";

const ROOT = path.resolve(import.meta.dir, "..");
const ARBOR = path.join(ROOT, "train", "bin", "arbor.mjs");
const config = loadArborConfig(process.env);
const workDir = path.join(config.home, "quickstart");
mkdirSync(workDir, { recursive: true });

function step(title: string): void {
  process.stderr.write(`\n\x1b[1m── ${title}\x1b[0m\n`);
}

/** Run `arbor ARGS` with the JSON result on stdout; echo the command; stop on failure. */
function arbor(args: string[]): unknown {
  process.stderr.write(`$ npx arbor ${args.join(" ")}\n`);
  const r = spawnSync("node", [ARBOR, ...args, "--json"], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (r.status !== 0) {
    process.stderr.write(r.stdout);
    process.stderr.write(
      `quickstart: \`arbor ${args[0]}\` failed (exit ${r.status}); see the message above\n`,
    );
    process.exit(1);
  }
  return JSON.parse(r.stdout);
}

step("1. prepare data: 200,000 flights from vega-datasets, target delayed = delay > 15 min");
const dataPath = path.join(workDir, "flights-200k.parquet");
const flights = flightsSample(200_000, 7);
flights.writeParquet(dataPath);
process.stderr.write(`wrote ${dataPath} (${flights.height} rows × ${flights.width} columns)\n`);

step("2. split it: stratified on the target, 70/15/15, seed 42");
const split = arbor([
  "split",
  "--data",
  dataPath,
  "--target",
  "delayed",
  "--strategy",
  "stratified",
  "--seed",
  "42",
  "--name",
  "flights-quickstart",
]) as {
  id: string;
};
process.stderr.write(`split id: ${split.id}\n`);

step(
  "3. tune: 6 TPE trials of a LightGBM-style model, refit the best, register it as `flights`, promote to production",
);
const tuned = arbor([
  "tune",
  "--split",
  split.id,
  "--task",
  "binary",
  "--model-type",
  "lightgbm",
  "--trials",
  "6",
  "--rounds",
  "60",
  "--study",
  `quickstart-${split.id}`,
  "--seed",
  "42",
  "--register",
  "flights",
  "--promote",
  "production",
  "--force",
]) as Record<string, unknown>;
process.stderr.write(`${JSON.stringify(tuned, null, 2).slice(0, 1200)}\n`);

step("4. the registry: versions, labels and the audit trail");
const shown = arbor(["models", "show", "flights"]) as Record<string, unknown>;
process.stderr.write(`${JSON.stringify(shown, null, 2).slice(0, 1200)}\n`);

step("5. serve it: `arbor serve` follows the production label in the store (no database)");
process.stderr.write("$ npx arbor serve --port 0 --workers 1\n");
const server = spawn("node", [ARBOR, "serve", "--port", "0", "--host", "127.0.0.1", "--workers", "1"], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, ARBOR_LOG_LEVEL: process.env["ARBOR_LOG_LEVEL"] ?? "warn" },
});
const port = await new Promise<number>((resolve, reject) => {
  let buf = "";
  server.stdout.on("data", (chunk: Buffer) => {
    buf += chunk.toString();
    const m = /"listening":\{[^}]*"port":(\d+)/.exec(buf);
    if (m) resolve(Number(m[1]));
  });
  server.on("exit", (code) => reject(new Error(`arbor serve exited with ${code}`)));
});
const base = `http://127.0.0.1:${port}`;
try {
  const row = {
    month: 7,
    day_of_month: 14,
    day_of_week: 5,
    hour: 17,
    minute: 30,
    distance: 1200,
    origin: "ORD",
    destination: "LAX",
  };
  const body = JSON.stringify({ instances: [row] });
  // KServe V2: one tensor per feature (BYTES for categoricals), or one FP32 `input` tensor [N, F].
  const v2Body = JSON.stringify({
    inputs: Object.entries(row).map(([name, v]) => ({
      name,
      shape: [1],
      datatype: typeof v === "string" ? "BYTES" : "FP32",
      data: [v],
    })),
  });
  const v2 = await fetch(`${base}/v2/models/flights/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: v2Body,
  });
  process.stderr.write(`POST /v2/models/flights/infer → ${v2.status}\n${(await v2.text()).slice(0, 600)}\n`);
  if (!v2.ok) throw new Error(`V2 infer failed with HTTP ${v2.status}`);
  for (const op of ["predict", "explain"]) {
    step(`6. ${op} one flight over HTTP`);
    const res = await fetch(`${base}/v1/models/flights:${op}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    const text = await res.text();
    process.stderr.write(`POST /v1/models/flights:${op} → ${res.status}\n${text.slice(0, 1500)}\n`);
    if (!res.ok) throw new Error(`${op} failed with HTTP ${res.status}`);
  }
  step("7. try it yourself (start the server with `npx arbor serve --port 8080`)");
  process.stdout.write(
    [
      `curl -s localhost:8080/v1/models/flights:predict -H 'content-type: application/json' -d '${body}'`,
      `curl -s localhost:8080/v1/models/flights:explain -H 'content-type: application/json' -d '{"instances":[${JSON.stringify(row)}],"top_k":3}'`,
      `curl -s localhost:8080/v2/models/flights/infer -H 'content-type: application/json' -d '${v2Body}'`,
      "curl -s localhost:8080/v1/models/flights",
      "curl -s localhost:8080/metrics | head",
      "",
    ].join("\n"),
  );
} finally {
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
}
