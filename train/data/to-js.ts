/**
 * The one place where Polars data crosses into JavaScript arrays. Each crossing copies memory out
 * of Polars, so every one is logged with its rows, columns and bytes (DESIGN.md, Observability):
 * a surprise copy of a 3-million-row frame shows up in the logs instead of only in the RSS.
 */
import pl from "nodejs-polars";
import type { Logger } from "../../shared/logger.ts";

/** Typed arrays Polars hands out for numeric series. */
export type PolarsTypedArray =
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Float32Array
  | Float64Array;

/** Log one Polars → JS conversion. `what` names the data, e.g. "split: target codes". */
export function logConversion(
  logger: Logger,
  what: string,
  rows: number,
  columns: number,
  bytes: number,
): void {
  logger.info({ conversion: what, rows, columns, bytes }, "polars → js");
}

/** Copy a null-free numeric series into its typed array (nulls must be filled first), logged. */
export function seriesToTypedArray(logger: Logger, what: string, series: pl.Series): PolarsTypedArray {
  const out = series.toTypedArray() as PolarsTypedArray;
  logConversion(logger, what, out.length, 1, out.byteLength);
  return out;
}

/**
 * One column as a Float64Array; nulls become NaN. The cast happens inside Polars, so only the
 * finished array crosses over.
 */
export function columnToFloat64(
  logger: Logger,
  what: string,
  frame: pl.DataFrame,
  column: string,
): Float64Array {
  const s = frame
    .select(pl.col(column).cast(pl.Float64).fillNull(Number.NaN).alias(column))
    .getColumn(column);
  return seriesToTypedArray(logger, what, s) as Float64Array;
}

/**
 * Dense codes of one column as a Uint32Array: 0 for null, 1..k for the distinct non-null values in
 * ascending order (Polars' dense rank). Works for every orderable dtype, strings included, and
 * moves 4 bytes per row instead of the values themselves.
 */
export function columnToDenseCodes(
  logger: Logger,
  what: string,
  frame: pl.DataFrame,
  column: string,
): Uint32Array {
  const variant = frame.schema[column].variant;
  let codes: pl.Expr;
  if (/^(String|Utf8|Categorical|Enum)$/.test(variant)) {
    // Polars' rank on strings sorts all rows (1.4 s for 3M rows here); mapping the sorted
    // distinct values to 1..k with replaceStrict hashes instead (65 ms).
    const text = pl.col(column).cast(pl.String);
    const distinct = frame.select(text.alias(column)).getColumn(column).dropNulls().unique().sort();
    const values = seriesToArray(logger, `${what} (distinct values)`, distinct) as string[];
    if (values.length === 0) return new Uint32Array(frame.height);
    const ranks = values.map((_, i) => i + 1);
    codes = text.replaceStrict(values, ranks, 0, pl.UInt32);
  } else {
    codes = pl.col(column).rank("dense").cast(pl.UInt32);
  }
  const s = frame.select(codes.fillNull(0).cast(pl.UInt32).alias(column)).getColumn(column);
  return seriesToTypedArray(logger, what, s) as Uint32Array;
}

/** A small series (distinct values, a few summary numbers) as a JS array, logged. */
export function seriesToArray(logger: Logger, what: string, series: pl.Series): unknown[] {
  const out = series.toArray() as unknown[];
  logConversion(logger, what, out.length, 1, estimateBytes(out));
  return out;
}

/** A small frame as row objects, logged. Not for data-sized frames: use typed arrays there. */
export function frameToRecords(logger: Logger, what: string, frame: pl.DataFrame): Record<string, unknown>[] {
  const rows = frame.toRecords() as Record<string, unknown>[];
  let bytes = 0;
  for (const r of rows) bytes += estimateBytes(Object.values(r));
  logConversion(logger, what, frame.height, frame.width, bytes);
  return rows;
}

/** Approximate bytes of JS values: 8 per number/boolean/date, 2 per string character. */
function estimateBytes(values: readonly unknown[]): number {
  let bytes = 0;
  for (const v of values) bytes += typeof v === "string" ? 2 * v.length : 8;
  return bytes;
}
