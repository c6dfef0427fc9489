/**
 * The JSON rows reader (serve/core/json-rows.ts) against the path it replaces, in one process:
 * `node --import tsx bench/json-rows.ts [--rounds 30]` (Node.js, as the server runs: V8, not Bun's
 * engine). Per body: the old path (UTF-8 text, JSON.parse, rows.ts validation into the batch
 * matrix) and the new one (JsonBody over the bytes, the reader, a copy into the batch matrix),
 * alternated round by round so that a busy machine slows both alike; prints the median ns per body
 * and the ratio. Bodies: one row of 28 float32s printed as doubles (the benchmark's single-row
 * body), the same with two decimals, the same keyed by feature name, and 1000 rows.
 */
import { parseArgs } from "node:util";
import { decodeBody, JsonBody, utf8Text } from "../serve/core/codec.ts";
import { FeaturePlan } from "../serve/core/plan.ts";
import { fillRowsFromBody } from "../serve/core/rows.ts";
import { BENCH_MODEL, fixtureSignature } from "../test/serve-fixtures.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "30" } } });
const ROUNDS = Number(values.rounds);
const F = BENCH_MODEL.numFeatures;
// The benchmark model's features (f0..f27, numeric), as bench/serve.ts serves it.
const plan = new FeaturePlan(fixtureSignature(BENCH_MODEL));
const row = (r: number) => Array.from({ length: F }, (_, i) => Math.fround(Math.sin(r * F + i) * 2));
const enc = new TextEncoder();
const bodies: [string, Uint8Array, number][] = [
  ["1 row, 17-digit numbers", enc.encode(JSON.stringify({ instances: [row(0)] })), 20_000],
  [
    "1 row, 2 decimals",
    enc.encode(JSON.stringify({ instances: [row(0).map((v) => Math.round(v * 100) / 100)] })),
    20_000,
  ],
  [
    "1 row keyed by name",
    enc.encode(JSON.stringify({ instances: [Object.fromEntries(row(0).map((v, i) => [`f${i}`, v]))] })),
    20_000,
  ],
  [
    "1000 rows",
    enc.encode(JSON.stringify({ instances: Array.from({ length: 1000 }, (_, r) => row(r)) })),
    20,
  ],
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
const oldPath = (b: Uint8Array) => fillRowsFromBody(plan, decodeBody(utf8Text(b)!, "json"), 1000, sink);
const newPath = (b: Uint8Array) => {
  const body = new JsonBody(b);
  fillRowsFromBody(plan, body, 1000, sink);
  body.release();
};

const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log(`median ns per body over ${ROUNDS} alternating rounds (node ${process.version})`);
for (const [name, bytes, n] of bodies) {
  const times = { old: [] as number[], new: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const [key, fn] of [
      ["old", oldPath],
      ["new", newPath],
    ] as const) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < n; i++) fn(bytes);
      times[key].push(Number(process.hrtime.bigint() - start) / n);
    }
  }
  const o = median(times.old);
  const m = median(times.new);
  console.log(
    `${name.padEnd(24)} JSON.parse + rows.ts ${o.toFixed(0).padStart(9)} ns   reader ${m.toFixed(0).padStart(9)} ns   x${(o / m).toFixed(2)}`,
  );
}
