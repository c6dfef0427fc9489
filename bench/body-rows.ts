/**
 * The rows readers (serve/core/json-rows.ts, msgpack-rows.ts) against the paths they replace, in
 * one process: `node --import tsx bench/body-rows.ts [--rounds 30]` (Node.js, as the server runs:
 * V8, not Bun's engine). Per body: the old path (JSON: UTF-8 text and JSON.parse; msgpack:
 * msgpackr; then rows.ts validation into the batch matrix) and the new one (RawBody over the bytes,
 * the reader, a copy into the batch matrix), alternated round by round so that a busy machine slows
 * both alike; prints the median ns per body and the ratio. Bodies: one row of 28 float32s (JSON:
 * printed as doubles, the benchmark's single-row body), JSON with two decimals, keyed by feature
 * name, and 1000 rows; msgpack as msgpackr packs them (float64s).
 */
import { parseArgs } from "node:util";
import { pack } from "msgpackr";
import { decodeBody, type Format, RawBody, utf8Text } from "../serve/core/codec.ts";
import { FeaturePlan } from "../serve/core/plan.ts";
import { fillRowsFromBody } from "../serve/core/rows.ts";
import { BENCH_MODEL, fixtureSignature } from "../test/serve-fixtures.ts";
import { alternate } from "./alternate.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "30" } } });
const ROUNDS = Number(values.rounds);
const F = BENCH_MODEL.numFeatures;
// The benchmark model's features (f0..f27, numeric), as bench/serve.ts serves it.
const plan = new FeaturePlan(fixtureSignature(BENCH_MODEL));
const row = (r: number) => Array.from({ length: F }, (_, i) => Math.fround(Math.sin(r * F + i) * 2));
const enc = new TextEncoder();
const keyed = (r: number) => Object.fromEntries(row(r).map((v, i) => [`f${i}`, v]));
const thousand = Array.from({ length: 1000 }, (_, r) => row(r));
const bodies: [string, Format, Uint8Array, number][] = [
  ["1 row, 17-digit numbers", "json", enc.encode(JSON.stringify({ instances: [row(0)] })), 20_000],
  [
    "1 row, 2 decimals",
    "json",
    enc.encode(JSON.stringify({ instances: [row(0).map((v) => Math.round(v * 100) / 100)] })),
    20_000,
  ],
  ["1 row keyed by name", "json", enc.encode(JSON.stringify({ instances: [keyed(0)] })), 20_000],
  ["1000 rows", "json", enc.encode(JSON.stringify({ instances: thousand })), 20],
  ["1 row", "msgpack", pack({ instances: [row(0)] }) as Uint8Array, 20_000],
  ["1 row keyed by name", "msgpack", pack({ instances: [keyed(0)] }) as Uint8Array, 20_000],
  ["1000 rows", "msgpack", pack({ instances: thousand }) as Uint8Array, 20],
];

// The micro-batch's matrix: rows land where a batch would put them.
const matrix = new Float32Array(F * 1100);
let next = 0;
const sink = {
  reserve: (n: number) => {
    next = n > 1 ? 0 : (next + 1) % 64;
    return { data: matrix, at: next };
  },
};
const oldPath = (b: Uint8Array, format: Format) =>
  fillRowsFromBody(
    plan,
    format === "json" ? decodeBody(utf8Text(b)!, "json") : decodeBody(b, "msgpack"),
    1000,
    sink,
  );
const newPath = (b: Uint8Array, format: Format) => {
  const body = new RawBody(b, format);
  fillRowsFromBody(plan, body, 1000, sink);
  body.release();
};

console.log(`median ns per body over ${ROUNDS} alternating rounds (node ${process.version})`);
for (const [name, format, bytes, n] of bodies) {
  const { old: o, now: m } = alternate(
    ROUNDS,
    n,
    () => oldPath(bytes, format),
    () => newPath(bytes, format),
  );
  console.log(
    `${format.padEnd(8)} ${name.padEnd(24)} ${format === "json" ? "JSON.parse" : "msgpackr  "} + rows.ts ${o.toFixed(0).padStart(9)} ns   reader ${m.toFixed(0).padStart(9)} ns   x${(o / m).toFixed(2)}`,
  );
}
