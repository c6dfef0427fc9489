import { describe, expect, test } from "bun:test";
import pl from "nodejs-polars";
import { isArborError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { frameToDataset, frameToMatrix } from "../train/gbdt/dataset.ts";

const logger = createLogger({ name: "test", level: "silent" });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isArborError(e) ? e.code : "not-arbor";
  }
  return undefined;
}

describe("frameToDataset", () => {
  const frame = pl.DataFrame({
    x: [1.1, null, 3, 4, 5, 6, 7, 8],
    c: ["a", "b", "a", null, "a", "b", "zz", "b"],
    n: [1, 2, 1, 2, 1, 2, 1, 2],
    y: ["no", "yes", "no", "yes", "no", "yes", "no", "yes"],
  });

  test("numeric float32, categorical codes by frequency, rare → NaN, labels", () => {
    const d = frameToDataset(
      frame,
      { target: "y", task: "binary", categorical: ["n"], minCategoryCount: 2 },
      logger,
    );
    expect(d.numRows).toBe(8);
    expect(d.features.map((f) => f.name)).toEqual(["x", "c", "n"]);
    expect(d.columns[0][0]).toBe(Math.fround(1.1));
    expect(Number.isNaN(d.columns[0][1])).toBe(true);
    // a: 3, b: 3 → tie broken by value; zz (1 row) is rare → NaN.
    expect(d.features[1].categories).toEqual(["a", "b"]);
    expect(Array.from(d.columns[1])).toEqual([0, 1, 0, Number.NaN, 0, 1, Number.NaN, 1]);
    expect(d.features[2]).toEqual({ name: "n", type: "categorical", categories: ["1", "2"] });
    expect(d.classes).toEqual(["no", "yes"]);
    expect(Array.from(d.label)).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
  });

  test("bad targets", () => {
    expect(codeOf(() => frameToDataset(frame, { target: "x", task: "binary" }, logger))).toBe(
      "FIT_BAD_TARGET",
    );
    expect(codeOf(() => frameToDataset(frame, { target: "c", task: "regression" }, logger))).toBe(
      "FIT_BAD_TARGET",
    );
    expect(codeOf(() => frameToDataset(frame, { target: "nope", task: "binary" }, logger))).toBe(
      "DATA_UNKNOWN_COLUMN",
    );
    const d = frameToDataset(frame, { target: "n", task: "multiclass", features: ["x"] }, logger);
    expect(d).toBeDefined();
  });

  test("booleans and multiclass", () => {
    const f = pl.DataFrame({ a: [1, 2, 3], t: [true, false, true], m: [3, 1, 2] });
    const d = frameToDataset(f, { target: "t", task: "binary", features: ["a"] }, logger);
    expect(d.classes).toEqual(["false", "true"]);
    expect(Array.from(d.label)).toEqual([1, 0, 1]);
    const m = frameToDataset(f, { target: "m", task: "multiclass", features: ["a"] }, logger);
    expect(m.classes).toEqual(["1", "2", "3"]);
    expect(Array.from(m.label)).toEqual([2, 0, 1]);
  });
});

describe("frameToMatrix", () => {
  const signature = {
    features: [
      { name: "x", type: "numeric" as const },
      { name: "c", type: "categorical" as const, categories: ["a", "b"] },
    ],
  };
  test("row-major, unseen categories → NaN, columns by name", () => {
    const f = pl.DataFrame({ c: ["b", "q", null], other: [1, 2, 3], x: [0.5, null, 2] });
    const m = frameToMatrix(f, signature, logger);
    expect(m.rows).toBe(3);
    expect(m.cols).toBe(2);
    expect(Array.from(m.data)).toEqual([0.5, 1, Number.NaN, Number.NaN, 2, Number.NaN]);
  });
  test("missing and mistyped columns", () => {
    expect(codeOf(() => frameToMatrix(pl.DataFrame({ x: [1] }), signature, logger))).toBe(
      "PREDICT_MISSING_FEATURE",
    );
    expect(codeOf(() => frameToMatrix(pl.DataFrame({ x: ["s"], c: ["a"] }), signature, logger))).toBe(
      "PREDICT_BAD_FEATURE_TYPE",
    );
  });
});
