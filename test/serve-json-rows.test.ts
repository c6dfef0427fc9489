/**
 * The JSON and msgpack fast paths (serve/core/json-rows.ts, msgpack-rows.ts) against the general
 * path (JSON.parse or msgpackr, then rows.ts): for every body, random or mutated, both give the
 * same float32 bits or the same error (code and message). Also checks that the fast paths take the
 * bodies they are for, so that the comparison is not between the general path and itself.
 */
import { describe, expect, test } from "bun:test";
import { pack } from "msgpackr";
import { AMBIGUOUS, ByteTable, MISSING } from "../serve/core/byte-table.ts";
import { decodeBody, RawBody } from "../serve/core/codec.ts";
import { readJsonRows } from "../serve/core/json-rows.ts";
import { readMsgpackRows } from "../serve/core/msgpack-rows.ts";
import { FeaturePlan } from "../serve/core/plan.ts";
import { fillRowsFromBody } from "../serve/core/rows.ts";
import type { Signature } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import { rng } from "../shared/onnx/random.ts";
import { mutateText } from "./helpers/mutate-text.ts";

const signature: Signature = {
  format: "arbor-bundle/1",
  task: "binary",
  target: "y",
  features: [
    { name: "dep_delay", type: "numeric" },
    { name: "carrier", type: "categorical", categories: ["AA", "Ünion", "3", "", "1.5"] },
    { name: "größe", type: "numeric" },
    { name: "hour", type: "numeric" },
  ],
  objective: "binary:logistic",
  baseScore: [0],
  numTrees: 1,
  source: "arbor",
};
const plan = new FeaturePlan(signature);
const NAMES = signature.features.map((f) => f.name);
const MAX_ROWS = 8;

type Outcome = { rows: number; bits: number[] } | { error: string };

/** Rows of a body through one path: the matrix as bits (NaN payloads included), or the error. */
function outcome(
  fill: (sink: { reserve(n: number): { data: Float32Array; at: number } }) => number,
): Outcome {
  let data = new Float32Array(0);
  try {
    const rows = fill({
      reserve: (n) => {
        // Room after a stale row, as in a micro-batch: writes must land at `at`.
        data = new Float32Array((n + 1) * plan.width).fill(7);
        return { data, at: 1 };
      },
    });
    return { rows, bits: Array.from(new Uint32Array(data.buffer)) };
  } catch (e) {
    return { error: isArborError(e) ? `${e.code}: ${e.message}` : `not an ArborError: ${String(e)}` };
  }
}

/** The general path: the body's text decoded (JSON.parse), then validated. */
function general(text: string): Outcome {
  return outcome((sink) => fillRowsFromBody(plan, decodeBody(text, "json"), MAX_ROWS, sink).rows);
}

function fast(text: string): Outcome {
  const body = new RawBody(new TextEncoder().encode(text), "json");
  const out = outcome((sink) => fillRowsFromBody(plan, body, MAX_ROWS, sink).rows);
  body.release();
  return out;
}

/** Compare both paths on one body; whether the fast path took it. */
function same(text: string): boolean {
  expect({ text, out: fast(text) }).toEqual({ text, out: general(text) });
  return readJsonRows(plan, new TextEncoder().encode(text), MAX_ROWS) > 0;
}

/** Adjacent float32 values above `x` (a float32). */
function nextFloat32(x: number): number {
  const b = new Float32Array([x]);
  const u = new Uint32Array(b.buffer);
  u[0] += x >= 0 ? 1 : -1;
  return b[0];
}

/** A number as a client might print it: many spellings, and values near float32 rounding boundaries. */
function numberText(r: () => number): string {
  const k = Math.floor(r() * 12);
  const x = (r() - 0.5) * 10 ** Math.floor(r() * 12 - 6);
  switch (k) {
    case 0:
      return String(x); // shortest round trip (16-17 digits)
    case 1:
      return String(Math.fround(x)); // a float32 printed as a double
    case 2:
      return x.toPrecision(1 + Math.floor(r() * 21));
    case 3: {
      // Halfway between two float32s, printed with enough digits to land just on, below or above.
      const f = Math.fround(x);
      const mid = (f + nextFloat32(f)) / 2;
      const near = mid + (r() - 0.5) * Math.abs(mid) * 2 ** -50 * Math.floor(r() * 3);
      return near.toPrecision(17 + Math.floor(r() * 4));
    }
    case 4:
      return String(Math.floor((r() - 0.5) * 2 ** (1 + r() * 60))); // integers, some beyond 2^53
    case 5: {
      // Digit strings of any length with the point anywhere.
      const n = 1 + Math.floor(r() * 28);
      let d = String(1 + Math.floor(r() * 9));
      for (let i = 1; i < n; i++) d += String(Math.floor(r() * 10));
      const at = Math.floor(r() * (n + 1));
      const body = at === n ? d : `${d.slice(0, at) || "0"}.${d.slice(at)}`;
      return r() < 0.5 ? `-${body}` : body;
    }
    case 6:
      return `0.${"0".repeat(Math.floor(r() * 30))}${Math.floor(r() * 1e9)}`;
    case 7:
      return ["0", "-0", "0.0", "-0.000", "1", "-1", "3", "1.5", "100", "0.1"][Math.floor(r() * 10)];
    case 8:
      // Around float32's largest value and the double that rounds to it.
      return [
        "3.4028234663852886e38",
        "340282346638528859811704183484516925440",
        "340282346638528859811704183484516925441",
        "340282356779733661637539395458142568448",
        "340282356779733661637539395458142568447",
        "3.4028235e38",
        "-340282346638528859811704183484516925440.0",
        "1e39",
        "1e-46",
      ][Math.floor(r() * 9)];
    case 9:
      return `${x.toExponential(Math.floor(r() * 18))}`.replace("e+", r() < 0.5 ? "E+" : "e");
    case 10:
      return x.toFixed(Math.floor(r() * 25));
    default:
      return String(Math.round(x * 100) / 100);
  }
}

/** A value for feature `f`: mostly the right type, sometimes not. */
function valueText(r: () => number, f: number): string {
  const p = r();
  if (p < 0.06) return "null";
  if (plan.categorical[f] === 1) {
    if (p < 0.75)
      return JSON.stringify(
        ["AA", "Ünion", "3", "", "1.5", "ZZ", "ü", "a\\u0041", 'x"y', "\u00e9t\u00e9"][Math.floor(r() * 10)],
      );
    if (p < 0.9) return ["3", "1.5", "3.0", "15e-1", "0"][Math.floor(r() * 5)];
  } else if (p < 0.97) return numberText(r);
  return ['"7"', "true", "false", "[1]", "{}", "NaN", "Infinity", "-", "01", ".5", "1.", "+1"][
    Math.floor(r() * 12)
  ];
}

const SPACES = ["", "", "", " ", "\n", "\t ", "\r\n  "];

function rowText(r: () => number): string {
  const sp = () => SPACES[Math.floor(r() * SPACES.length)];
  const p = r();
  if (p < 0.5) {
    // Positional, sometimes of the wrong length.
    const n = r() < 0.93 ? plan.width : Math.floor(r() * 7);
    return `[${sp()}${Array.from({ length: n }, (_, f) => valueText(r, f % plan.width)).join(`${sp()},${sp()}`)}${sp()}]`;
  }
  // Keyed by name in any order; sometimes a name repeats, is missing or is unknown.
  const order = NAMES.map((_, f) => f).sort(() => r() - 0.5);
  if (r() < 0.08) order.pop();
  if (r() < 0.08) order.push(Math.floor(r() * plan.width));
  const fields = order.map((f) => `${JSON.stringify(NAMES[f])}${sp()}:${sp()}${valueText(r, f)}`);
  if (r() < 0.05) fields.push(`"nope":1`);
  if (r() < 0.03) fields.push('"gr\\u00f6\\u00dfe":1');
  return `{${sp()}${fields.join(`${sp()},${sp()}`)}${sp()}}`;
}

function bodyText(r: () => number): string {
  const sp = () => SPACES[Math.floor(r() * SPACES.length)];
  const n = r() < 0.9 ? 1 + Math.floor(r() * 3) : Math.floor(r() * (MAX_ROWS + 3));
  const rows = Array.from({ length: n }, () => rowText(r)).join(`${sp()},${sp()}`);
  const p = r();
  if (p < 0.9) return `${sp()}{${sp()}"instances"${sp()}:${sp()}[${rows}]${sp()}}${sp()}`;
  if (p < 0.95) return `{"instances":[${rows}],"top_k":2}`;
  return `{"instances":[${rows}]}${["x", "}", ",", "\u0000"][Math.floor(r() * 4)]}`;
}

describe("serve JSON fast path", () => {
  test("random bodies: the same float32 bits or the same error as JSON.parse + validation", () => {
    const r = rng(20261128);
    let taken = 0;
    const n = 6000;
    for (let i = 0; i < n; i++) if (same(bodyText(r))) taken++;
    // Most random bodies hold a wrong value somewhere (measured: 6 % go the fast way).
    expect(taken).toBeGreaterThan(n * 0.03);
  });

  test("mutated bodies: the same outcome", () => {
    const r = rng(7);
    for (let i = 0; i < 6000; i++) same(mutateText(bodyText(r), r));
  });

  test("numbers near float32 rounding boundaries are exact, and the fast path takes most numbers", () => {
    const r = rng(99);
    let taken = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      if (same(`{"instances":[[${numberText(r)},"AA",1,2]]}`)) taken++;
    }
    // The rest: halfway cases, powers of ten beyond ±22, values beyond float32 (measured: 77 % taken).
    expect(taken).toBeGreaterThan(n * 0.7);
  });

  test("the bodies clients send go the fast way", () => {
    const row = [-3.25, "Ünion", 0.12345678901234566, 14];
    for (const text of [
      JSON.stringify({ instances: [row] }),
      JSON.stringify({ instances: [row, row.map((v) => (typeof v === "number" ? -v : null))] }),
      JSON.stringify({ instances: [Object.fromEntries(NAMES.map((name, f) => [name, row[f]]))] }, null, 2),
      '{"instances":[[1.6829419136047363,"3",-0.558830976486206,2]]}',
    ]) {
      expect(same(text)).toBe(true);
    }
  });

  test("exponents that undo a long run of digits: the general path decides", () => {
    // 0.000…01e100000 is 1e90000 (refused: not a finite float32); an exponent read as 10000 made
    // it 1 (found by review).
    for (const text of [
      `{"instances":[[0.${"0".repeat(9999)}1e100000,"AA",1,2]]}`,
      `{"instances":[[1${"0".repeat(10000)}e-100000,"AA",1,2]]}`,
      `{"instances":[[-1${"0".repeat(10000)}e-100000,"AA",1,2]]}`,
      `{"instances":[[0.${"0".repeat(30)}1e31,"AA",1,2]]}`,
      `{"instances":[[1.5e-00000000000001,"AA",1,2]]}`,
    ]) {
      same(text);
    }
  });

  test("byte table: keys by their UTF-8 bytes; a lone surrogate matches nothing; duplicates give up", () => {
    const keys = ["AA", "", "Ünion", "\uD800x", "�x", "AA", "z"];
    const table = new ByteTable(keys);
    const find = (text: string): number => {
      const b = new TextEncoder().encode(` ${text} `);
      return table.find(b, 1, b.length - 1);
    };
    expect([find(""), find("Ünion"), find("z"), find("A"), find("AAA"), find("Union")]).toEqual([
      1,
      2,
      6,
      MISSING,
      MISSING,
      MISSING,
    ]);
    expect(find("AA")).toBe(AMBIGUOUS);
    // "\uD800x" has no UTF-8 form: the bytes of U+FFFD then x name key 4 only.
    expect(find("\uFFFDx")).toBe(4);
  });

  test("a body read after the transport let it go must have been kept", () => {
    const bytes = new TextEncoder().encode('{"instances":[[1,"AA",2,3]]}');
    const dropped = new RawBody(bytes, "json");
    dropped.release();
    expect(() => dropped.parse()).toThrow("after the transport let it go");
    const kept = new RawBody(bytes, "json");
    kept.keep();
    kept.release();
    bytes.fill(0); // the transport's buffer is reused
    expect(kept.parse()).toEqual({ instances: [[1, "AA", 2, 3]] });
    expect(kept.bytes).toBeNull();
  });
});

/** A msgpack value spelled the way a test wants it (msgpackr picks its own encodings). */
type Mp =
  | { t: "f64" | "f32" | "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" | "fixint"; v: number }
  | { t: "nil" }
  | { t: "bool"; v: boolean }
  | { t: "str"; v: string; long?: boolean }
  | { t: "arr"; items: Mp[]; wide?: boolean }
  | { t: "map"; entries: [Mp, Mp][]; wide?: boolean };

function mpBytes(x: Mp): number[] {
  const be = (n: number, bytes: number) =>
    Array.from({ length: bytes }, (_, k) => (n / 256 ** (bytes - 1 - k)) & 255);
  switch (x.t) {
    case "nil":
      return [0xc0];
    case "bool":
      return [x.v ? 0xc3 : 0xc2];
    case "fixint":
      return [x.v & 0xff];
    case "f64": {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, x.v);
      return [0xcb, ...b];
    }
    case "f32": {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setFloat32(0, x.v);
      return [0xca, ...b];
    }
    case "u64":
    case "i64": {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, BigInt(x.v));
      return [x.t === "u64" ? 0xcf : 0xd3, ...b];
    }
    case "str": {
      const b = Array.from(new TextEncoder().encode(x.v));
      return x.long || b.length > 31 ? [0xd9, b.length, ...b] : [0xa0 | b.length, ...b];
    }
    case "arr": {
      const n = x.items.length;
      const head = x.wide || n > 15 ? [0xdc, ...be(n, 2)] : [0x90 | n];
      return [...head, ...x.items.flatMap(mpBytes)];
    }
    case "map": {
      const n = x.entries.length;
      const head = x.wide || n > 15 ? [0xde, ...be(n, 2)] : [0x80 | n];
      return [...head, ...x.entries.flatMap(([k, v]) => [...mpBytes(k), ...mpBytes(v)])];
    }
    default: {
      const code = { u8: 0xcc, u16: 0xcd, u32: 0xce, i8: 0xd0, i16: 0xd1, i32: 0xd2 }[x.t];
      const size = { u8: 1, u16: 2, u32: 4, i8: 1, i16: 2, i32: 4 }[x.t];
      return [code, ...be(x.v < 0 ? x.v + 2 ** (8 * size) : x.v, size)];
    }
  }
}

/** A msgpack value for feature `f`: mostly the right type in every encoding, sometimes not. */
function mpValue(r: () => number, f: number): Mp {
  const p = r();
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)];
  if (p < 0.06) return { t: "nil" };
  if (plan.categorical[f] === 1) {
    if (p < 0.75)
      return { t: "str", v: pick(["AA", "Ünion", "3", "", "1.5", "ZZ", "ü", "x\u0000y"]), long: r() < 0.1 };
    if (p < 0.9)
      return pick<Mp>([
        { t: "fixint", v: 3 },
        { t: "f64", v: 1.5 },
        { t: "str", v: "3".repeat(40) },
      ]);
  } else if (p < 0.97) {
    const x = (r() - 0.5) * 10 ** Math.floor(r() * 12 - 6);
    return pick<() => Mp>([
      () => ({ t: "f64", v: x }),
      () => ({ t: "f64", v: Math.fround(x) }),
      () => ({ t: "f32", v: x }),
      () => ({
        t: "f64",
        v: pick([0, -0, 3.4028234663852886e38, 3.4028235677973366e38, 1e39, -1e300, 1e-46]),
      }),
      () => ({ t: "f64", v: pick([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) }),
      () => ({ t: "f32", v: pick([Number.NaN, Number.POSITIVE_INFINITY, -0, 3.4028234663852886e38]) }),
      () => ({ t: "fixint", v: Math.floor(r() * 128) }),
      () => ({ t: "fixint", v: -1 - Math.floor(r() * 32) }),
      () => ({ t: "u8", v: Math.floor(r() * 256) }),
      () => ({ t: "u16", v: Math.floor(r() * 65536) }),
      () => ({ t: "u32", v: Math.floor(r() * 2 ** 32) }),
      () => ({ t: "i8", v: Math.floor(r() * 256) - 128 }),
      () => ({ t: "i16", v: Math.floor(r() * 65536) - 32768 }),
      () => ({ t: "i32", v: Math.floor(r() * 2 ** 32) - 2 ** 31 }),
      () => ({ t: pick(["u64", "i64"] as const), v: Math.floor(r() * 2 ** 40) }),
    ])();
  }
  return pick<Mp>([
    { t: "str", v: "7" },
    { t: "bool", v: true },
    { t: "arr", items: [{ t: "fixint", v: 1 }] },
    { t: "map", entries: [] },
  ]);
}

function mpRow(r: () => number): Mp {
  if (r() < 0.5) {
    const n = r() < 0.93 ? plan.width : Math.floor(r() * 7);
    return {
      t: "arr",
      items: Array.from({ length: n }, (_, f) => mpValue(r, f % plan.width)),
      wide: r() < 0.1,
    };
  }
  const order = NAMES.map((_, f) => f).sort(() => r() - 0.5);
  if (r() < 0.08) order.pop();
  if (r() < 0.08) order.push(Math.floor(r() * plan.width));
  const entries: [Mp, Mp][] = order.map((f) => [{ t: "str", v: NAMES[f], long: r() < 0.05 }, mpValue(r, f)]);
  if (r() < 0.05)
    entries.push([
      { t: "str", v: "nope" },
      { t: "fixint", v: 1 },
    ]);
  if (r() < 0.03)
    entries.push([
      { t: "fixint", v: 1 },
      { t: "fixint", v: 1 },
    ]);
  return { t: "map", entries, wide: r() < 0.05 };
}

function mpBody(r: () => number): Uint8Array {
  const n = r() < 0.9 ? 1 + Math.floor(r() * 3) : Math.floor(r() * (MAX_ROWS + 3));
  const rows: Mp = { t: "arr", items: Array.from({ length: n }, () => mpRow(r)), wide: r() < 0.1 };
  const p = r();
  const entries: [Mp, Mp][] = [[{ t: "str", v: "instances", long: p < 0.03 }, rows]];
  if (p > 0.92)
    entries.push([
      { t: "str", v: "top_k" },
      { t: "fixint", v: 2 },
    ]);
  const bytes = mpBytes({ t: "map", entries, wide: p > 0.97 });
  if (p > 0.88 && p <= 0.9) bytes.push(0xc0); // trailing bytes
  return Uint8Array.from(bytes);
}

function mpGeneral(bytes: Uint8Array): Outcome {
  return outcome((sink) => fillRowsFromBody(plan, decodeBody(bytes, "msgpack"), MAX_ROWS, sink).rows);
}

function mpFast(bytes: Uint8Array): Outcome {
  const body = new RawBody(bytes, "msgpack");
  const out = outcome((sink) => fillRowsFromBody(plan, body, MAX_ROWS, sink).rows);
  body.release();
  return out;
}

/** Compare both paths on one msgpack body; whether the fast path took it. */
function mpSame(bytes: Uint8Array): boolean {
  const hex = Buffer.from(bytes).toString("hex");
  expect({ hex, out: mpFast(bytes) }).toEqual({ hex, out: mpGeneral(bytes) });
  return readMsgpackRows(plan, bytes, MAX_ROWS) > 0;
}

describe("serve msgpack fast path", () => {
  test("random bodies in every encoding: the same float32 bits or the same error as msgpackr + validation", () => {
    const r = rng(424242);
    let taken = 0;
    const n = 8000;
    for (let i = 0; i < n; i++) if (mpSame(mpBody(r))) taken++;
    // Most random bodies hold a wrong value somewhere (measured: 9 % go the fast way).
    expect(taken).toBeGreaterThan(n * 0.05);
  });

  test("mutated bodies: the same outcome", () => {
    const r = rng(11);
    for (let i = 0; i < 8000; i++) {
      const b = Array.from(mpBody(r));
      for (let e = 1 + Math.floor(r() * 3); e > 0; e--) {
        const at = Math.floor(r() * (b.length + 1));
        const k = r();
        const byte = Math.floor(r() * 256);
        if (k < 0.4) b[at] = byte;
        else if (k < 0.7) b.splice(at, 1);
        else if (k < 0.9) b.splice(at, 0, byte);
        else b.length = at;
      }
      mpSame(Uint8Array.from(b));
    }
  });

  test("a feature named __proto__ (msgpackr renames the key): the general path decides", () => {
    const protoPlan = new FeaturePlan({
      ...signature,
      features: [
        { name: "__proto__", type: "numeric" },
        { name: "b", type: "numeric" },
      ],
    });
    const run = (bytes: Uint8Array, fast: boolean) =>
      outcome((sink) =>
        fast
          ? fillRowsFromBody(protoPlan, new RawBody(bytes, "msgpack"), MAX_ROWS, sink).rows
          : fillRowsFromBody(protoPlan, decodeBody(bytes, "msgpack"), MAX_ROWS, sink).rows,
      );
    // {"instances": [{"__proto__": 1, "b": 2}]}
    const keyed = Uint8Array.from(
      Buffer.from("81a9696e7374616e6365739182a95f5f70726f746f5f5f01a16202", "hex"),
    );
    expect(readMsgpackRows(protoPlan, keyed, MAX_ROWS)).toBe(-1);
    expect(run(keyed, true)).toEqual(run(keyed, false));
    // Positional rows do not name it: the fast way.
    const positional = pack({ instances: [[1, 2]] }) as Uint8Array;
    expect(readMsgpackRows(protoPlan, positional, MAX_ROWS)).toBe(1);
    expect(run(positional, true)).toEqual(run(positional, false));
  });

  test("a decoded msgpack body keeps its bin values after the transport lets its bytes go", () => {
    // A copy: msgpackr's pack gives a view of a buffer it goes on writing into (detaching that
    // one would break every later pack in this process).
    const bytes = Uint8Array.from(
      pack({ inputs: [{ name: "f0", datatype: new Uint8Array([0x41, 0x42, 0x43]), data: [1] }] }),
    );
    const body = new RawBody(bytes, "msgpack");
    const value = body.parse() as { inputs: { datatype: Uint8Array }[] };
    body.release();
    // uWS detaches the buffer it lent when its callback returns (a V2 body is read after its version loads).
    const lent = bytes.buffer as ArrayBuffer;
    structuredClone(lent, { transfer: [lent] });
    expect(bytes.byteLength).toBe(0);
    expect(Array.from(value.inputs[0].datatype)).toEqual([0x41, 0x42, 0x43]);
  });

  test("the bodies clients send (msgpackr's pack) go the fast way", () => {
    const r = rng(5);
    for (let i = 0; i < 500; i++) {
      const row = () => [
        (r() - 0.5) * 1e3,
        ["AA", "Ünion", "3"][i % 3],
        Math.floor(r() * 1e6) - 5e5,
        i % 7 === 0 ? null : r(),
      ];
      const rows = Array.from({ length: 1 + (i % MAX_ROWS) }, row);
      const keyed = rows.map((x) => Object.fromEntries(NAMES.map((name, f) => [name, x[f]])));
      expect(mpSame(pack({ instances: i % 2 === 0 ? rows : keyed }) as Uint8Array)).toBe(true);
    }
  });
});
