/**
 * The V2 infer fast path (serve/core/v2-json.ts) against the general path (JSON.parse, then
 * v2.ts's readInputs): whenever the fast reader takes a body, random or mutated, the general path
 * takes it too, with the same float32 bits, the same `id` and no key that would change the reply
 * (`outputs`, `parameters`). And the reply writer writes what JSON.stringify writes of the reply
 * value, which is the value the general path built.
 */
import { describe, expect, test } from "bun:test";
import { decodeBody } from "../serve/core/codec.ts";
import { rowsScratch } from "../serve/core/json-rows.ts";
import { FeaturePlan } from "../serve/core/plan.ts";
import { readInputs } from "../serve/core/v2.ts";
import { readV2Rows, V2Reply, V2Writer, v2RowsId } from "../serve/core/v2-json.ts";
import type { BatchSlice } from "../serve/model-cache/batcher.ts";
import type { Signature } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import { rng } from "../shared/onnx/random.ts";
import { mutateText } from "./helpers/mutate-text.ts";

const signature: Signature = {
  format: "arbor-bundle/1",
  task: "multiclass",
  target: "y",
  features: [
    { name: "dep_delay", type: "numeric" },
    {
      name: "carrier",
      type: "categorical",
      categories: ["AA", "Ünion", "3", "", "1.5", "B6", "DL", "UA", "WN", "AS", "F9", "NK"],
    },
    { name: "größe", type: "numeric" },
  ],
  classes: ["on time", 'late "a bit"', "très en retard"],
  objective: "multi:softmax",
  baseScore: [0, 0, 0],
  numTrees: 3,
  source: "arbor",
};
const plan = new FeaturePlan(signature);
const W = plan.width;
const MAX_ROWS = 6;
const utf8 = new TextEncoder();

type Outcome = { rows: number; bits: number[]; id: string | null } | { error: string };

const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(Float32Array.from(a).buffer));

/** The general path: JSON.parse, then readInputs; the id the reply echoes. */
function general(text: string): Outcome {
  try {
    const body = decodeBody(text, "json") as Record<string, unknown>;
    const m = readInputs(plan, body, MAX_ROWS, null);
    return {
      rows: m.rows,
      bits: bitsOf(m.data.subarray(0, m.rows * W)),
      id: typeof body["id"] === "string" ? body["id"] : null,
    };
  } catch (e) {
    return { error: isArborError(e) ? `${e.code}: ${e.message}` : `not an ArborError: ${String(e)}` };
  }
}

/** Whether the fast path took `text`; when it did, the general path agrees on everything. */
function same(text: string): boolean {
  const n = readV2Rows(plan, utf8.encode(text), MAX_ROWS);
  if (n < 0) return false;
  const fast: Outcome = { rows: n, bits: bitsOf(rowsScratch().subarray(0, n * W)), id: v2RowsId() };
  expect({ text, out: fast as Outcome }).toEqual({ text, out: general(text) });
  // Nothing else in the body that the general path would act on.
  const keys = Object.keys(JSON.parse(text) as object).filter((k) => k !== "id" && k !== "inputs");
  expect({ text, keys }).toEqual({ text, keys: [] });
  return true;
}

/** A number as a client might print it (the JSON fast path's own cases are in serve-json-rows.test.ts). */
function numberText(r: () => number): string {
  const x = (r() - 0.5) * 10 ** Math.floor(r() * 10 - 5);
  switch (Math.floor(r() * 7)) {
    case 0:
      return String(x);
    case 1:
      return String(Math.fround(x));
    case 2:
      return x.toPrecision(1 + Math.floor(r() * 20));
    case 3:
      return x.toExponential(Math.floor(r() * 10)).replace("e+", "e");
    case 4:
      return ["0", "-0", "1", "3.4028235e38", "1e39", "-1e-46"][Math.floor(r() * 6)];
    case 5:
      return String(Math.floor((r() - 0.5) * 2 ** (r() * 40)));
    default:
      return String(Math.round(x * 100) / 100);
  }
}

/** A value of column `f`: a number or a category code, mostly; sometimes anything. */
function valueText(r: () => number, f: number): string {
  const p = r();
  if (p < 0.05) return "null";
  if (plan.categorical[f] === 1) {
    if (p < 0.8) return String(Math.floor(r() * 12));
    return ["12", "13", "-1", "-0", "1.0", "2e0", "01", '"AA"', "1000000", "3.5", "0"][Math.floor(r() * 11)];
  }
  if (p < 0.95) return numberText(r);
  return ['"7"', "true", "[1]", "{}", "NaN", "-", "01", ".5", "+1"][Math.floor(r() * 9)];
}

const SPACES = ["", "", "", " ", "\n", "\t ", "\r\n  "];

function shuffled<T>(items: T[], r: () => number): T[] {
  return items
    .map((v) => [r(), v] as const)
    .sort((a, b) => a[0] - b[0])
    .map(([, v]) => v);
}

/** A V2 infer body: mostly the common form, sometimes with a part changed. */
function bodyText(r: () => number): string {
  const sp = () => SPACES[Math.floor(r() * SPACES.length)];
  const odd = (p: number) => r() < p;
  const n = odd(0.1) ? Math.floor(r() * (MAX_ROWS + 3)) : 1 + Math.floor(r() * 3);
  const count = odd(0.05) ? n * W + (r() < 0.5 ? 1 : -1) : n * W;
  const values = Array.from({ length: count }, (_, k) => valueText(r, k % W));
  let data = `[${sp()}${values.join(`${sp()},${sp()}`)}${sp()}]`;
  if (odd(0.03)) {
    // Nested rows, as some clients send them.
    data = `[${Array.from({ length: n }, () => `[${Array.from({ length: W }, (_, f) => valueText(r, f)).join(",")}]`).join(",")}]`;
  }
  const shape = odd(0.06)
    ? ["[1, 3, 1]", `[${n}]`, '"1,3"', `[${n}, 3.0]`, `[${n}.0, 3]`, `[${n}, 4]`, "[0, 3]", `[${n},${W}]`][
        Math.floor(r() * 8)
      ]
    : `[${sp()}${n}${sp()},${sp()}${W}${sp()}]`;
  const fields = [
    `"name"${sp()}:${sp()}${odd(0.04) ? ['"inputs"', '"Input"', '"in\\u0070ut"', "1"][Math.floor(r() * 4)] : '"input"'}`,
    `"shape"${sp()}:${sp()}${shape}`,
    `"datatype"${sp()}:${sp()}${odd(0.05) ? ['"FP64"', '"INT32"', '"fp32"', '"BYTES"'][Math.floor(r() * 4)] : '"FP32"'}`,
    `"data"${sp()}:${sp()}${data}`,
  ];
  // Clients write shape before data; sometimes not.
  let inputFields = odd(0.3) ? shuffled(fields, r) : fields;
  if (odd(0.04)) inputFields = inputFields.slice(1);
  if (odd(0.04)) inputFields.push(`"parameters":{"binary_data_size":12}`);
  if (odd(0.03)) inputFields.push(fields[Math.floor(r() * 4)]);
  let input = `{${sp()}${inputFields.join(`${sp()},${sp()}`)}${sp()}}`;
  if (odd(0.03)) input = `${input},${input}`;
  const top = [`"inputs"${sp()}:${sp()}[${sp()}${input}${sp()}]`];
  if (odd(0.5)) {
    top.push(
      `"id"${sp()}:${sp()}${odd(0.15) ? ['"é-1"', '"a\\"b"', "42", "null", '"a\\u0041"', '""'][Math.floor(r() * 6)] : JSON.stringify(`req-${Math.floor(r() * 1e6)}`)}`,
    );
  }
  if (odd(0.04)) top.push('"outputs":[{"name":"label"}]');
  if (odd(0.03)) top.push('"parameters":{"binary_data_output":true}');
  if (odd(0.02)) top.push(top[0]);
  return `${sp()}{${sp()}${shuffled(top, r).join(`${sp()},${sp()}`)}${sp()}}${sp()}`;
}

describe("serve V2 infer fast path", () => {
  test("random bodies: what the fast path takes, the general path takes the same way", () => {
    const r = rng(20261128);
    let taken = 0;
    const n = 8000;
    for (let i = 0; i < n; i++) if (same(bodyText(r))) taken++;
    // Many random bodies have a wrong part somewhere (measured: 27 % go the fast way).
    expect(taken).toBeGreaterThan(n * 0.15);
  });

  test("mutated bodies: the same", () => {
    const r = rng(11);
    let taken = 0;
    for (let i = 0; i < 8000; i++) if (same(mutateText(bodyText(r), r))) taken++;
    expect(taken).toBeGreaterThan(100);
  });

  test("the bodies clients send go the fast way; the rest goes the general way", () => {
    const row = [-3.25, 7, 0.12345678901234566];
    const input = {
      name: "input",
      shape: [2, W],
      datatype: "FP32",
      data: [...row, ...row.map((v) => (v === 7 ? null : -v))],
    };
    for (const body of [
      { inputs: [input] },
      { id: "42", inputs: [input] },
      { inputs: [{ ...input, shape: [1, W], data: row }], id: "req-1" },
    ]) {
      for (const text of [JSON.stringify(body), JSON.stringify(body, null, 2)]) expect(same(text)).toBe(true);
    }
    for (const body of [
      { inputs: [input], outputs: [{ name: "label" }] },
      { inputs: [input], parameters: { binary_data_output: true } },
      { inputs: [{ data: input.data, name: "input", shape: input.shape, datatype: "FP32" }] },
      { inputs: [{ ...input, data: [row, row] }] },
      { inputs: [{ ...input, datatype: "FP64" }] },
      { id: 7, inputs: [input] },
      { id: "é", inputs: [input] },
      { inputs: [{ ...input, data: [...row, -3.25, 1.5, 0] }] },
    ]) {
      expect(same(JSON.stringify(body))).toBe(false);
    }
  });
});

/** A slice of a run of `rows` rows starting at `offset` in a batch of `batchRows`, random outputs. */
function randomSlice(r: () => number, rows: number): BatchSlice {
  const batchRows = rows + Math.floor(r() * 3);
  const offset = Math.floor(r() * (batchRows - rows + 1));
  const k = 3;
  const special = [Number.NaN, 0, -0, Number.POSITIVE_INFINITY, 1e-45, 3.4028234663852886e38];
  const value = () =>
    r() < 0.1 ? special[Math.floor(r() * special.length)] : Math.fround((r() - 0.5) * 10 ** (r() * 8 - 4));
  const margin = Float32Array.from({ length: batchRows * k }, value);
  const probabilities = Float32Array.from({ length: batchRows * k }, () => Math.fround(r()));
  return {
    outputs: {
      rows: batchRows,
      tensors: new Map([
        ["margin", { data: margin, width: k }],
        ["probabilities", { data: probabilities, width: k }],
      ]),
    },
    offset,
    rows,
    batchRows,
  };
}

/** The reply value as the general path built it before V2Writer (v2.ts, 27 Nov). */
function expectedValue(slice: BatchSlice, wanted: string[], id: string | null): Record<string, unknown> {
  const outputs = wanted.map((name) => {
    if (name === "label") {
      const p = slice.outputs.tensors.get("probabilities")!;
      const data = Array.from({ length: slice.rows }, (_, r) => {
        const row = Array.from(
          p.data.subarray((slice.offset + r) * p.width, (slice.offset + r + 1) * p.width),
        );
        return signature.classes![row.indexOf(Math.max(...row))];
      });
      return { name, datatype: "BYTES", shape: [slice.rows], data };
    }
    const t = slice.outputs.tensors.get(name)!;
    const data = Array.from(t.data.subarray(slice.offset * t.width, (slice.offset + slice.rows) * t.width));
    return { name, datatype: "FP32", shape: [slice.rows, t.width], data };
  });
  const out: Record<string, unknown> = { model_name: "flights ü", model_version: "12", outputs };
  if (id !== null) out["id"] = id;
  return out;
}

describe("serve V2 infer replies", () => {
  test("the JSON bytes are JSON.stringify of the reply value, which is the general path's", () => {
    const r = rng(5);
    const writer = new V2Writer(signature, "flights ü", 12);
    const decoder = new TextDecoder();
    const choices = [["margin", "probabilities", "label"], ["label"], ["probabilities", "margin"], []];
    for (let i = 0; i < 400; i++) {
      const slice = randomSlice(r, 1 + Math.floor(r() * 4));
      const wanted = choices[Math.floor(r() * choices.length)];
      const id = r() < 0.5 ? null : ['req-"1"', "é", "", "\u2028"][Math.floor(r() * 4)];
      const reply = new V2Reply(writer, slice, wanted, id, "flights ü", 12);
      const value = expectedValue(slice, wanted, id);
      expect(reply.value()).toEqual(value);
      expect(decoder.decode(reply.jsonBytes())).toBe(JSON.stringify(value));
      expect(JSON.stringify(reply)).toBe(JSON.stringify(value));
    }
  });
});
