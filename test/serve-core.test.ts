/**
 * serve/core and the micro-batcher without sockets or a server process: row validation against a
 * signature, codecs by content type, batching semantics (coalescing, offsets, bounds, off), and
 * the predict reply writer (its JSON text is JSON.stringify's).
 */
import { describe, expect, test } from "bun:test";
import { pack, unpack } from "msgpackr";
import { decodeBody, encodeBody, requestFormat, responseFormat } from "../serve/core/codec.ts";
import { FeaturePlan } from "../serve/core/plan.ts";
import { formatPredictions, PredictReply, PredictWriter } from "../serve/core/predictions.ts";
import { rowsFromBody } from "../serve/core/rows.ts";
import { Batcher, type BatchSlice, type RunOutputs } from "../serve/model-cache/batcher.ts";
import type { Signature } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import { rng } from "../shared/onnx/random.ts";

const signature: Signature = {
  format: "arbor-bundle/1",
  task: "binary",
  target: "y",
  features: [
    { name: "age", type: "numeric" },
    { name: "city", type: "categorical", categories: ["Lyon", "Paris", "3"] },
  ],
  objective: "binary:logistic",
  baseScore: [0],
  numTrees: 1,
  source: "arbor",
};
const plan = new FeaturePlan(signature);

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return isArborError(e) ? e.code : `not an ArborError: ${String(e)}`;
  }
  return "no error";
}

describe("serve/core rows", () => {
  test("objects, arrays and columns fill the same float32 matrix; categories → codes; unknown/null → NaN", () => {
    const a = rowsFromBody(
      plan,
      {
        instances: [
          { age: 41, city: "Paris" },
          { city: null, age: null },
        ],
      },
      10,
    );
    const b = rowsFromBody(
      plan,
      {
        instances: [
          [41, "Paris"],
          [null, null],
        ],
      },
      10,
    );
    const c = rowsFromBody(plan, { columns: { age: [41, null], city: ["Paris", null] } }, 10);
    for (const m of [a, b, c]) {
      expect(m.rows).toBe(2);
      expect(Array.from(m.data.subarray(0, 2))).toEqual([41, 1]);
      expect(Number.isNaN(m.data[2]) && Number.isNaN(m.data[3])).toBe(true);
    }
    const d = rowsFromBody(
      plan,
      {
        instances: [
          [1, "Berlin"],
          [2, 3],
        ],
      },
      10,
    );
    expect(Number.isNaN(d.data[1])).toBe(true); // unknown category = missing
    expect(d.data[3]).toBe(2); // the number 3 matches the category "3"
  });

  test("every bad shape has its stable code", () => {
    expect(code(() => rowsFromBody(plan, { instances: [{ age: 1 }] }, 10))).toBe("PREDICT_MISSING_FEATURE");
    expect(code(() => rowsFromBody(plan, { instances: [{ age: 1, city: "x", zip: 1 }] }, 10))).toBe(
      "UNKNOWN_FEATURE",
    );
    expect(code(() => rowsFromBody(plan, { instances: [["1", "x"]] }, 10))).toBe("PREDICT_BAD_FEATURE_TYPE");
    expect(code(() => rowsFromBody(plan, { instances: [[Number.POSITIVE_INFINITY, "x"]] }, 10))).toBe(
      "NON_FINITE_VALUE",
    );
    expect(code(() => rowsFromBody(plan, { instances: [[1]] }, 10))).toBe("BAD_SHAPE");
    expect(
      code(() =>
        rowsFromBody(
          plan,
          {
            instances: [
              [1, "x"],
              [1, "x"],
            ],
          },
          1,
        ),
      ),
    ).toBe("TOO_MANY_ROWS");
    expect(code(() => rowsFromBody(plan, { instances: [] }, 10))).toBe("BAD_REQUEST");
    expect(code(() => rowsFromBody(plan, { instances: [], columns: {} }, 10))).toBe("BAD_REQUEST");
    expect(code(() => rowsFromBody(plan, { columns: { age: [1] } }, 10))).toBe("PREDICT_MISSING_FEATURE");
  });

  test("codecs: by Content-Type, replies by Accept", () => {
    expect(requestFormat("application/json; charset=utf-8")).toBe("json");
    expect(requestFormat("application/x-msgpack")).toBe("msgpack");
    expect(code(() => requestFormat("text/csv"))).toBe("UNSUPPORTED_MEDIA_TYPE");
    expect(responseFormat("application/msgpack")).toBe("msgpack");
    expect(responseFormat("", "msgpack")).toBe("msgpack");
    expect(responseFormat('application/json;foo="a,b";q=0.1, application/msgpack;q=0.5')).toBe("msgpack");
    expect(responseFormat("application/msgpack;q=0, application/json")).toBe("json");
    expect(responseFormat("text/html", "msgpack")).toBe("msgpack");
    expect(decodeBody(pack({ a: [1, null] }) as Uint8Array, "msgpack")).toEqual({ a: [1, null] });
    expect(code(() => decodeBody(new TextEncoder().encode("{"), "json"))).toBe("MALFORMED_BODY");
    expect(code(() => decodeBody(new Uint8Array([0xff, 0xfe]), "json"))).toBe("MALFORMED_BODY");
  });
});

describe("serve micro-batcher", () => {
  /** A fake model: output = 10 × first column, one ORT "run" recorded per call. */
  function batcher(enabled: boolean, maxRows: number) {
    const runs: number[] = [];
    const b = new Batcher({
      enabled,
      maxRows,
      maxWaitUs: 0,
      width: 2,
      run: (data, rows): RunOutputs => {
        runs.push(rows);
        const out = new Float32Array(rows);
        for (let r = 0; r < rows; r++) out[r] = data[r * 2] * 10;
        return { rows, tensors: new Map([["prediction", { data: out, width: 1 }]]) };
      },
    });
    const score = async (values: number[]) => {
      const s = await b.score(Float32Array.from(values.flatMap((v) => [v, 0])), values.length);
      const t = s.outputs.tensors.get("prediction")!;
      return Array.from(t.data.subarray(s.offset, s.offset + s.rows));
    };
    return { runs, score, b };
  }

  test("concurrent callers share one run and each gets its own rows back", async () => {
    const { runs, score } = batcher(true, 64);
    const out = await Promise.all([score([1]), score([2, 3]), score([4])]);
    expect(out).toEqual([[10], [20, 30], [40]]);
    expect(runs).toEqual([4]);
  });

  test("rows written in place: a dropped reservation queues nothing; the matrix grows and is reused", async () => {
    const { runs, b } = batcher(true, 200);
    const wave = async (first: number, n: number) => {
      // A request that fails validation after reserving: nothing is queued, its rows are overwritten.
      const dropped = b.reserve(1);
      dropped.data.set([-1, -1], dropped.at * 2);
      const pending: Promise<number>[] = [];
      for (let i = 0; i < n; i++) {
        const t = b.reserve(1);
        t.data.set([first + i, 0], t.at * 2);
        pending.push(b.commit(t, 1).then((s) => s.outputs.tensors.get("prediction")!.data[s.offset]));
      }
      return Promise.all(pending);
    };
    // 150 rows: past the first 64-row matrix, so it grows while the batch fills.
    const first = await wave(1, 150);
    expect(first).toEqual(Array.from({ length: 150 }, (_, i) => (i + 1) * 10));
    // The next batches reuse the returned matrix; stale rows from the last batch must not leak in.
    const second = await wave(1000, 3);
    expect(second).toEqual([10000, 10010, 10020]);
    const mixed = await Promise.all([wave(5, 2), b.score(Float32Array.from([7, 0, 8, 0]), 2)]);
    expect(mixed[0]).toEqual([50, 60]);
    expect(
      Array.from(
        mixed[1].outputs.tensors.get("prediction")!.data.subarray(mixed[1].offset, mixed[1].offset + 2),
      ),
    ).toEqual([70, 80]);
    expect(runs).toEqual([150, 3, 4]);
  });

  test("batches never exceed maxRows; big requests run alone; off = one run per call", async () => {
    const small = batcher(true, 3);
    const out = await Promise.all([small.score([1, 2]), small.score([3, 4]), small.score([5, 6, 7])]);
    expect(out).toEqual([
      [10, 20],
      [30, 40],
      [50, 60, 70],
    ]);
    expect(Math.max(...small.runs)).toBeLessThanOrEqual(3);
    const off = batcher(false, 64);
    await Promise.all([off.score([1]), off.score([2])]);
    expect(off.runs).toEqual([1, 1]);
  });

  test("a batch that fills up runs in the check phase, not inside the commit (its replies could not be corked there)", async () => {
    const { runs, b } = batcher(true, 2);
    const got: string[] = [];
    const commit = (v: number) => {
      const t = b.reserve(1);
      t.data.set([v, 0], t.at * 2);
      b.commitTo(t, 1, {
        scored: (outputs, offset) => got.push(`${v}:${outputs.tensors.get("prediction")!.data[offset]}`),
        failed: (e) => got.push(`${v} failed ${(e as Error).message}`),
      });
    };
    // Five single-row requests read in one poll phase: two full batches and one being filled.
    for (let v = 1; v <= 5; v++) commit(v);
    expect(runs).toEqual([]);
    expect(got).toEqual([]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    // One check phase ran them all, oldest first; a run's matrix is not overwritten by later rows.
    expect(runs).toEqual([2, 2, 1]);
    expect(got).toEqual(["1:10", "2:20", "3:30", "4:40", "5:50"]);
    // A request too big for any batch is scored alone, at once.
    const big = b.reserve(3);
    big.data.set([7, 0, 8, 0, 9, 0]);
    b.commitTo(big, 3, { scored: () => got.push("big"), failed: () => got.push("big failed") });
    expect(got.at(-1)).toBe("big");
  });

  test("waiters: answered once each in commit order; a failed run fails its whole batch only", async () => {
    let failNext = false;
    const b = new Batcher({
      enabled: true,
      maxRows: 64,
      maxWaitUs: 0,
      width: 1,
      run: (data, rows): RunOutputs => {
        if (failNext) {
          failNext = false;
          throw new Error("ORT run failed");
        }
        return { rows, tensors: new Map([["prediction", { data: data.map((x) => x * 10), width: 1 }]]) };
      },
    });
    const events: string[] = [];
    /** Commits `values` as one request; its waiter logs what it got (and throws when told to). */
    const commit = (tag: string, values: number[], throwInScored = false): Promise<void> =>
      new Promise((done) => {
        const t = b.reserve(values.length);
        t.data.set(values, t.at);
        b.commitTo(t, values.length, {
          scored: (outputs, offset, rows) => {
            const got = Array.from(outputs.tensors.get("prediction")!.data.subarray(offset, offset + rows));
            events.push(`${tag} scored ${got.join(",")}`);
            if (throwInScored) throw new Error("reply failed");
            done();
          },
          failed: (e) => {
            events.push(`${tag} failed ${(e as Error).message}`);
            done();
          },
        });
      });
    await Promise.all([commit("a", [1]), commit("b", [2, 3], true), commit("c", [4])]);
    expect(events).toEqual(["a scored 10", "b scored 20,30", "b failed reply failed", "c scored 40"]);
    events.length = 0;
    failNext = true;
    await Promise.all([commit("d", [5]), commit("e", [6])]);
    await commit("f", [7]);
    expect(events).toEqual(["d failed ORT run failed", "e failed ORT run failed", "f scored 70"]);
  });

  test("a waiter that throws from failed() is reported; the waiters after it are still answered", async () => {
    let failNext = false;
    const reported: string[] = [];
    const b = new Batcher({
      enabled: true,
      maxRows: 64,
      maxWaitUs: 0,
      width: 1,
      onWaiterError: (e) => reported.push((e as Error).message),
      run: (data, rows): RunOutputs => {
        if (failNext) {
          failNext = false;
          throw new Error("ORT run failed");
        }
        return { rows, tensors: new Map([["prediction", { data, width: 1 }]]) };
      },
    });
    const events: string[] = [];
    /** A request whose waiter throws from scored and failed when `broken`; resolves when answered. */
    const commit = (tag: string, broken: boolean): Promise<void> =>
      new Promise((done) => {
        const t = b.reserve(1);
        t.data[t.at] = 1;
        b.commitTo(t, 1, {
          scored: () => {
            events.push(`${tag} scored`);
            if (broken) throw new Error(`${tag} scored threw`);
            done();
          },
          failed: (e) => {
            events.push(`${tag} failed ${(e as Error).message}`);
            done();
            if (broken) throw new Error(`${tag} failed threw`);
          },
        });
      });
    await Promise.all([commit("a", true), commit("b", false)]);
    expect(events).toEqual(["a scored", "a failed a scored threw", "b scored"]);
    expect(reported).toEqual(["a failed threw"]);
    events.length = 0;
    failNext = true;
    await Promise.all([commit("c", true), commit("d", false)]);
    expect(events).toEqual(["c failed ORT run failed", "d failed ORT run failed"]);
    expect(reported).toEqual(["a failed threw", "c failed threw"]);
  });
});

/** Bytes of the msgpack string "predictions". */
const MP_PREDICTIONS_LENGTH = 12;

describe("serve predict replies", () => {
  const slice = (
    name: string,
    width: number,
    values: number[],
    offset: number,
    rows: number,
  ): BatchSlice => ({
    outputs: {
      rows: values.length / width,
      tensors: new Map([[name, { data: Float32Array.from(values), width }]]),
    },
    offset,
    rows,
    batchRows: values.length / width,
  });
  const regression: Signature = { ...signature, task: "regression", objective: "reg:squarederror" };
  const multiclass: Signature = {
    ...signature,
    task: "multiclass",
    objective: "multi:softprob",
    classes: ['a "quoted" class', "ünïcode\n", "c"],
  };
  const cases: [string, Signature, BatchSlice][] = [
    [
      "binary, classes",
      { ...signature, classes: ["no", "yes"] },
      slice("probabilities", 2, [0.9, 0.1, 0.27399513, 0.72600487, 0.5, 0.5], 1, 2),
    ],
    ["binary, no classes", signature, slice("probabilities", 2, [0.1, 0.9], 0, 1)],
    [
      "multiclass, labels to escape",
      multiclass,
      slice("probabilities", 3, [0.2, 0.2, 0.6, 0.7, 0.2, 0.1], 0, 2),
    ],
    ["regression", regression, slice("prediction", 1, [1.5, 0.1, 3e-9, 1e21, 7], 1, 3)],
    ["regression, margin only", regression, slice("margin", 1, [0.1], 0, 1)],
    ["not finite → null", regression, slice("prediction", 1, [Number.NaN, Number.POSITIVE_INFINITY], 0, 2)],
    ["no rows", signature, slice("probabilities", 2, [], 0, 0)],
  ];
  for (const [what, sig, s] of cases) {
    test(`JSON text equals JSON.stringify of the reply value: ${what}`, () => {
      const writer = new PredictWriter(sig, 'm"odel', 3);
      const reply = new PredictReply(writer, s);
      const value = reply.value();
      expect(value["predictions"]).toEqual(formatPredictions(sig, s));
      expect(reply.json()).toBe(JSON.stringify(value));
      expect(JSON.stringify(reply)).toBe(reply.json());
      for (const id of ['x"1', 42, null, Number.NaN, "ïd 😀", 2 ** 40, -1.5]) {
        const withId = reply.withId(id);
        expect(withId.json()).toBe(JSON.stringify({ id, ...value }));
        expect(Object.keys(withId.value())[0]).toBe("id");
        const decoded = unpack(encodeBody(withId, "msgpack") as Uint8Array);
        expect(decoded).toEqual({ id, ...value });
        expect(Object.keys(decoded)[0]).toBe("id");
      }
      expect(new TextDecoder().decode(encodeBody(reply, "json") as Uint8Array)).toBe(reply.json());
      // The msgpack writer decodes to the same value, keys in the same order (msgpackr's pack of it before).
      const decoded = unpack(encodeBody(reply, "msgpack") as Uint8Array);
      expect(decoded).toEqual(value);
      expect(Object.keys(decoded)).toEqual(Object.keys(value));
    });
  }

  test("msgpack replies: scores as float 32s (exact), -0 as 0 like JSON, 32-bit array lengths", () => {
    const writer = new PredictWriter(regression, "m", 1);
    const values = [-0, 0.1, 1, 2 ** 24 + 2];
    const reply = new PredictReply(writer, slice("prediction", 1, values, 0, values.length));
    const bytes = reply.msgpackBytes();
    // 0xca: float 32, 5 bytes a score; 0.1 decodes to its float32, as value() has it.
    expect(bytes[1 + MP_PREDICTIONS_LENGTH + 1]).toBe(0xca);
    const decoded = unpack(bytes) as { predictions: number[] };
    expect(Object.is(decoded.predictions[0], 0)).toBe(true);
    expect(decoded.predictions.slice(1)).toEqual([Math.fround(0.1), 1, 2 ** 24 + 2]);
    expect(reply.json()).toBe(`{"predictions":[0,${Math.fround(0.1)},1,16777218],"model":"m","version":1}`);
    const many = 70_000;
    const all = Array.from({ length: many }, (_, i) => i / 8);
    const long = unpack(new PredictReply(writer, slice("prediction", 1, all, 0, many)).msgpackBytes()) as {
      predictions: number[];
    };
    expect(long.predictions).toEqual(all);
  });

  test("msgpack replies decode to the reply value: random tasks, class counts, scores and ids", () => {
    const r = rng(2811);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
    const specials = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e-45, 3.4e38, 1, 0];
    for (let i = 0; i < 400; i++) {
      const classes = pick([1, 2, 3, 15, 16, 17, 40]);
      const task = classes === 1 ? "regression" : classes === 2 ? "binary" : "multiclass";
      const names = Array.from({ length: classes }, (_, c) =>
        pick([`c${c}`, `ç${c}😀`, `${"x".repeat(40)}${c}`]),
      );
      const sig: Signature = {
        ...signature,
        task,
        ...(task === "regression" || r() < 0.3 ? { classes: undefined } : { classes: names }),
      };
      const rows = pick([0, 1, 2, 15, 16, 300]);
      const offset = Math.floor(r() * 3);
      const values = Array.from({ length: (rows + offset) * classes }, () =>
        r() < 0.1 ? pick(specials) : (r() - 0.3) * 10 ** Math.floor(r() * 8 - 4),
      );
      const s = slice(task === "regression" ? "prediction" : "probabilities", classes, values, offset, rows);
      const reply = new PredictReply(
        new PredictWriter(sig, pick(["m", "ünï", "m".repeat(300)]), pick([1, 2 ** 31, 70_000])),
        s,
      );
      const id = pick<string | number | null | undefined>([
        undefined,
        null,
        7,
        -3,
        2 ** 40,
        0.5,
        "",
        "a".repeat(300),
        "ïd",
      ]);
      const withId = id === undefined ? reply : reply.withId(id);
      // Every number exactly (NaN and ±Infinity too), keys in order; -0 goes out as 0, as JSON writes it.
      const show = (v: unknown) =>
        JSON.stringify(v, (_, x) =>
          typeof x === "number" && !Number.isFinite(x) ? String(x) : Object.is(x, -0) ? 0 : x,
        );
      expect(show(unpack(withId.msgpackBytes()))).toBe(show(withId.value()));
    }
  });

  test("the reused reply buffer: grows for big replies, shrinks after them, and views follow it", () => {
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    const rowsOf = (n: number) => Array.from({ length: n * 3 }, (_, i) => ((i * 7919) % 1000) / 1000 + 1e-7);
    const big = new PredictWriter(multiclass, "m", 1);
    // ~70 bytes per row: past the first 1 KB many times over, then past the 256 KB kept size.
    for (const n of [20, 2000, 10_000, 1]) {
      const s = slice("probabilities", 3, rowsOf(n), 0, n);
      const reply = new PredictReply(big, s);
      expect(text(reply.jsonBytes())).toBe(JSON.stringify(reply.value()));
      expect(unpack(reply.msgpackBytes())).toEqual(reply.value());
    }
    // Equal lengths share a cached view, which shows the latest reply: a reply is sent at once.
    const small = new PredictWriter(regression, "m", 1);
    const a = new PredictReply(small, slice("prediction", 1, [1.5], 0, 1)).jsonBytes();
    const aText = text(a);
    const b = new PredictReply(small, slice("prediction", 1, [2.5], 0, 1)).jsonBytes();
    expect(b.length).toBe(a.length);
    expect(text(b)).toBe(aText.replace("1.5", "2.5"));
  });
});
