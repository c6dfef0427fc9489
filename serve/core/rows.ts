/**
 * Request rows → the ONNX input matrix [N × F] (row-major float32), validated by hand against a
 * FeaturePlan: no schema library on this path, one pass, one allocation. Rules (model contract):
 * numbers must be finite and fit float32; null → NaN (missing); categorical strings → their
 * dictionary code, an unknown category → NaN; every feature present, no unknown ones.
 */
import { clientError } from "./client-error.ts";
import { RawBody } from "./codec.ts";
import { readJsonRows, rowsScratch } from "./json-rows.ts";
import { readMsgpackRows } from "./msgpack-rows.ts";
import { type FeaturePlan, FLOAT32_MAX } from "./plan.ts";

/** A validated batch of rows, ready to feed. */
export interface RowMatrix {
  rows: number;
  data: Float32Array;
}

/** Where validated rows go: row `r` of the request is row `at + r` of `data` (row-major). */
export interface RowTarget {
  data: Float32Array;
  at: number;
}

/**
 * Gives room for a request's rows once their count is known and within limits. Called at most once
 * per request, before any row is written; the rows are only complete if validation returns.
 */
export interface RowSink<T extends RowTarget> {
  reserve(rows: number): T;
}

/** Validated rows and the target they were written into. */
export interface FilledRows<T extends RowTarget> {
  rows: number;
  target: T;
}

/** A fresh matrix per request. */
function freshSink(width: number): RowSink<RowTarget> {
  return { reserve: (rows) => ({ data: new Float32Array(rows * width), at: 0 }) };
}

/** Which features a row object named; validation is synchronous, so one buffer serves every request. */
let seenScratch = new Uint8Array(64);

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

// The error builders live outside `cell` so that `cell` stays small enough for V8 to inline into
// the row loops (measured: 3.1 µs → see the commit message for a 28-feature row).
function nonFinite(plan: FeaturePlan, f: number, v: number, row: number): Error {
  return clientError(
    "NON_FINITE_VALUE",
    `validate rows: row ${row}, feature '${plan.names[f]}': ${v} is not a finite float32; send null for missing`,
    { details: { row, feature: plan.names[f] } },
  );
}

function badType(plan: FeaturePlan, f: number, v: unknown, row: number): Error {
  return clientError(
    "PREDICT_BAD_FEATURE_TYPE",
    `validate rows: row ${row}, feature '${plan.names[f]}' (${plan.categorical[f] === 1 ? "categorical" : "numeric"}): got ${typeName(v)}`,
    { details: { row, feature: plan.names[f], got: typeName(v) } },
  );
}

function categoryCode(plan: FeaturePlan, f: number, key: string): number {
  const code = plan.codes[f]!.get(key);
  return code === undefined ? Number.NaN : code;
}

/** Convert one value of feature `f`; throws with row and feature named. */
function cell(plan: FeaturePlan, f: number, v: unknown, row: number): number {
  if (typeof v === "number") {
    // NaN fails both comparisons; ±Infinity and values beyond float32 fail one.
    if (v <= FLOAT32_MAX && v >= -FLOAT32_MAX) {
      // A categorical sent as a number matches the category whose string form it is ("3" ↔ 3).
      return plan.categorical[f] === 0 ? v : categoryCode(plan, f, String(v));
    }
    throw nonFinite(plan, f, v, row);
  }
  if (v === null) return Number.NaN;
  if (typeof v === "string" && plan.categorical[f] === 1) return categoryCode(plan, f, v);
  throw badType(plan, f, v, row);
}

function missingFeatures(plan: FeaturePlan, seen: Uint8Array): string[] {
  const out: string[] = [];
  for (let f = 0; f < plan.width && out.length < 10; f++) if (seen[f] === 0) out.push(plan.names[f]);
  return out;
}

/**
 * SHAP is computed on the event loop, so its row limit is far below the predict limit: one large
 * explain would stall every other request on this process.
 */
export function checkExplainRows(rows: number, limit: number, op: string): void {
  if (rows > limit) {
    throw clientError(
      "TOO_MANY_ROWS",
      `${op}: ${rows} rows to explain, the explain limit is ${limit} (ARBOR_SERVE_MAX_EXPLAIN_ROWS); predict has a higher limit`,
      { details: { rows, limit } },
    );
  }
}

function checkRowCount(n: number, maxRows: number, what: string): void {
  if (n === 0) throw clientError("BAD_REQUEST", `validate rows: '${what}' is empty`);
  if (n > maxRows) {
    throw clientError("TOO_MANY_ROWS", `validate rows: ${n} rows in '${what}', the limit is ${maxRows}`, {
      details: { rows: n, limit: maxRows },
    });
  }
}

/** Rows from `instances`: objects keyed by feature name, or positional arrays of length F. */
function rowsFromInstances<T extends RowTarget>(
  plan: FeaturePlan,
  instances: unknown[],
  maxRows: number,
  sink: RowSink<T>,
): FilledRows<T> {
  const n = instances.length;
  checkRowCount(n, maxRows, "instances");
  const width = plan.width;
  const target = sink.reserve(n);
  const data = target.data;
  let seen: Uint8Array | null = null;
  for (let r = 0; r < n; r++) {
    const inst = instances[r];
    const base = (target.at + r) * width;
    if (Array.isArray(inst)) {
      if (inst.length !== width) {
        throw clientError(
          "BAD_SHAPE",
          `validate rows: row ${r} has ${inst.length} values, the model takes ${width} (${plan.names.slice(0, 5).join(", ")}${width > 5 ? ", …" : ""})`,
          { details: { row: r, got: inst.length, expected: width } },
        );
      }
      for (let f = 0; f < width; f++) data[base + f] = cell(plan, f, inst[f], r);
    } else if (inst !== null && typeof inst === "object") {
      if (seen === null) {
        if (seenScratch.length < width) seenScratch = new Uint8Array(width);
        seen = seenScratch;
      }
      seen.fill(0, 0, width);
      let count = 0;
      const obj = inst as Record<string, unknown>;
      for (const key in obj) {
        const f = plan.index.get(key);
        if (f === undefined) {
          throw clientError(
            "UNKNOWN_FEATURE",
            `validate rows: row ${r} has unknown feature '${key.slice(0, 100)}'`,
            {
              details: { row: r, feature: key.slice(0, 100) },
            },
          );
        }
        data[base + f] = cell(plan, f, obj[key], r);
        if (seen[f] === 0) {
          seen[f] = 1;
          count++;
        }
      }
      if (count !== width) {
        const missing = missingFeatures(plan, seen);
        throw clientError(
          "PREDICT_MISSING_FEATURE",
          `validate rows: row ${r} lacks feature(s) ${missing.map((m) => `'${m}'`).join(", ")}; send null for a missing value`,
          { details: { row: r, missing } },
        );
      }
    } else {
      throw clientError(
        "BAD_SHAPE",
        `validate rows: row ${r} is ${typeName(inst)}; send an object keyed by feature name or an array`,
        { details: { row: r } },
      );
    }
  }
  return { rows: n, target };
}

/** Rows from the columnar form `{"columns": {"f1": [..], "f2": [..]}}`. */
export function rowsFromColumns(
  plan: FeaturePlan,
  columns: Record<string, unknown>,
  maxRows: number,
): RowMatrix {
  const filled = fillFromColumns(plan, columns, maxRows, freshSink(plan.width));
  return { rows: filled.rows, data: filled.target.data };
}

function fillFromColumns<T extends RowTarget>(
  plan: FeaturePlan,
  columns: Record<string, unknown>,
  maxRows: number,
  sink: RowSink<T>,
): FilledRows<T> {
  const width = plan.width;
  let n = -1;
  const cols: unknown[][] = new Array(width);
  for (const key in columns) {
    const f = plan.index.get(key);
    if (f === undefined) {
      throw clientError("UNKNOWN_FEATURE", `validate columns: unknown feature '${key.slice(0, 100)}'`, {
        details: { feature: key.slice(0, 100) },
      });
    }
    const col = columns[key];
    if (!Array.isArray(col)) {
      throw clientError("BAD_SHAPE", `validate columns: column '${key}' is ${typeName(col)}, not an array`, {
        details: { feature: key },
      });
    }
    if (n === -1) n = col.length;
    else if (col.length !== n) {
      throw clientError(
        "BAD_SHAPE",
        `validate columns: column '${key}' has ${col.length} values, others ${n}`,
        {
          details: { feature: key },
        },
      );
    }
    cols[f] = col;
  }
  const missing: string[] = [];
  for (let f = 0; f < width; f++) if (cols[f] === undefined) missing.push(plan.names[f]);
  if (missing.length > 0) {
    throw clientError(
      "PREDICT_MISSING_FEATURE",
      `validate columns: missing column(s) ${missing
        .slice(0, 10)
        .map((m) => `'${m}'`)
        .join(", ")}`,
      { details: { missing: missing.slice(0, 10) } },
    );
  }
  checkRowCount(n, maxRows, "columns");
  const target = sink.reserve(n);
  const data = target.data;
  const at = target.at;
  for (let f = 0; f < width; f++) {
    const col = cols[f];
    for (let r = 0; r < n; r++) data[(at + r) * width + f] = cell(plan, f, col[r], r);
  }
  return { rows: n, target };
}

/** Rows from a decoded predict/explain body: `instances` or `columns` (exactly one). */
export function rowsFromBody(plan: FeaturePlan, body: unknown, maxRows: number): RowMatrix {
  const filled = fillRowsFromBody(plan, body, maxRows, freshSink(plan.width));
  return { rows: filled.rows, data: filled.target.data };
}

/**
 * {@link rowsFromBody} writing into room that `sink` gives once the row count is known (the
 * micro-batcher's shared matrix: no matrix per request).
 */
export function fillRowsFromBody<T extends RowTarget>(
  plan: FeaturePlan,
  body: unknown,
  maxRows: number,
  sink: RowSink<T>,
): FilledRows<T> {
  if (body instanceof RawBody) {
    // The rows straight from the bytes when the fast path takes them; else the general path.
    const bytes = body.bytes;
    const n =
      bytes === null
        ? -1
        : body.format === "json"
          ? readJsonRows(plan, bytes, maxRows)
          : readMsgpackRows(plan, bytes, maxRows);
    if (n < 0) return fillRowsFromBody(plan, body.parse(), maxRows, sink);
    const target = sink.reserve(n);
    target.data.set(rowsScratch().subarray(0, n * plan.width), target.at * plan.width);
    return { rows: n, target };
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw clientError("BAD_REQUEST", "validate body: expected an object with 'instances' or 'columns'");
  }
  const b = body as Record<string, unknown>;
  const instances = b["instances"];
  const columns = b["columns"];
  if (instances !== undefined && columns !== undefined) {
    throw clientError("BAD_REQUEST", "validate body: send either 'instances' or 'columns', not both");
  }
  if (Array.isArray(instances)) return rowsFromInstances(plan, instances, maxRows, sink);
  if (columns !== null && typeof columns === "object" && !Array.isArray(columns)) {
    return fillFromColumns(plan, columns as Record<string, unknown>, maxRows, sink);
  }
  throw clientError(
    "BAD_REQUEST",
    "validate body: 'instances' must be an array of rows, or 'columns' an object of feature arrays",
  );
}
