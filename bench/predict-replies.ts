/**
 * V1 predict reply writers (serve/core/predictions.ts `PredictWriter`) against the generic
 * encoders they replace, in one process: `node --import tsx bench/predict-replies.ts [--rounds 30]`
 * (Node.js, as the server runs). Per reply: msgpackr's pack of the reply value (the old msgpack
 * path) beside the msgpack writer, and JSON.stringify of the value beside the JSON writer,
 * alternated round by round; prints the median ns per reply and the ratio. Replies: a binary
 * classifier and a regression model, 1 row and 1000 rows.
 */
import { parseArgs } from "node:util";
import { Packr } from "msgpackr";
import { PredictReply, PredictWriter } from "../serve/core/predictions.ts";
import type { BatchSlice } from "../serve/model-cache/batcher.ts";
import type { Signature } from "../shared/bundle.ts";
import { BENCH_MODEL, fixtureSignature } from "../test/serve-fixtures.ts";
import { alternate } from "./alternate.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "30" } } });
const ROUNDS = Number(values.rounds);
// The codec's options (serve/core/codec.ts).
const packr = new Packr({ useRecords: false, variableMapSize: true });
const binary: Signature = { ...fixtureSignature(BENCH_MODEL), task: "binary", classes: ["0", "1"] };
const regression: Signature = { ...fixtureSignature(BENCH_MODEL), task: "regression" };

/** A slice of `rows` rows as a run of the model would give it. */
function sliceOf(signature: Signature, rows: number): BatchSlice {
  const p = Float32Array.from({ length: rows * 2 }, (_, i) =>
    Math.fround(i % 2 ? 0.25 + i / 1e5 : 0.75 - i / 1e5),
  );
  const y = Float32Array.from({ length: rows }, (_, i) => Math.fround(Math.sin(i) * 3));
  const tensors: RunTensors =
    signature.task === "regression"
      ? new Map([["prediction", { data: y, width: 1 }]])
      : new Map([["probabilities", { data: p, width: 2 }]]);
  return { outputs: { rows, tensors }, offset: 0, rows, batchRows: rows };
}
type RunTensors = BatchSlice["outputs"]["tensors"];

console.log(`median ns per reply over ${ROUNDS} alternating rounds (node ${process.version})`);
for (const [name, signature] of [
  ["binary classifier", binary],
  ["regression", regression],
] as const) {
  const writer = new PredictWriter(signature, "flights", 1);
  for (const rows of [1, 1000]) {
    const reply = new PredictReply(writer, sliceOf(signature, rows));
    const n = rows === 1 ? 50_000 : 100;
    const pairs = [
      ["msgpack", () => packr.pack(reply.value()), () => reply.msgpackBytes()],
      ["json", () => JSON.stringify(reply.value()), () => reply.jsonBytes()],
    ] as const;
    for (const [format, old, now] of pairs) {
      const { old: o, now: m } = alternate(ROUNDS, n, old, now);
      console.log(
        `${name.padEnd(18)} ${String(rows).padStart(4)} rows  ${format.padEnd(8)} ${format === "json" ? "JSON.stringify" : "msgpackr pack "} ${o.toFixed(0).padStart(9)} ns   writer ${m.toFixed(0).padStart(9)} ns   x${(o / m).toFixed(2)}`,
      );
    }
  }
}
