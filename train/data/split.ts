/**
 * Split planning: which rows of a frame go to train, valid and test. Pure logic over the frame —
 * no files. Every strategy works on index arrays (Uint32Array) and dense value codes fetched from
 * Polars once per column, so 3 million rows cost a few typed-array passes, not row objects.
 *
 * Strategies and their guarantees:
 * - random: a seeded Fisher–Yates permutation cut at the largest-remainder part sizes.
 * - stratified: each class is shuffled on its own and cut so that every part holds each class
 *   within ±1 row of the exact proportion, and the part totals equal the random split's.
 * - time: rows ordered by the time column (stable: equal times keep file order), earliest to train,
 *   latest to test, no shuffling. Rows with equal times never straddle two parts: each cut moves to
 *   the nearer end of its run of equal times (the earlier end at equal distance).
 * - group: distinct group values in a seeded order, laid end to end by size; a group goes to the
 *   part whose share of the row range holds the group's midpoint. No group is in two parts.
 */
import { createHash } from "node:crypto";
import pl from "nodejs-polars";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { Random, shuffleInPlace } from "../../shared/random.ts";
import { columnToDenseCodes, seriesToArray } from "./to-js.ts";

/** The three parts, in order. */
export const PARTS = ["train", "valid", "test"] as const;
/** One part's name. */
export type PartName = (typeof PARTS)[number];

/** How rows are assigned to parts. */
export const STRATEGIES = ["random", "stratified", "time", "group"] as const;
/** One strategy. */
export type SplitStrategy = (typeof STRATEGIES)[number];

/** Ratios when none are given. */
export const DEFAULT_RATIOS: readonly [number, number, number] = [0.7, 0.15, 0.15];

/** Stratifying a numeric target with more distinct values than this is refused as continuous. */
export const MAX_STRATIFY_NUMERIC_CLASSES = 50;

/** Options of a split (validated; see {@link parseRatios}). */
export interface SplitOptions {
  strategy: SplitStrategy;
  target: string;
  ratios: readonly [number, number, number];
  timeColumn?: string | undefined;
  groupColumn?: string | undefined;
  seed: number;
}

/** What kind of values the target holds. */
export type TargetKind = "classes" | "continuous";

/** The rows of each part, plus what the strategy learnt on the way. */
export interface SplitPlan {
  /** Row indices per part: ascending file order, except time (time order). */
  parts: [Uint32Array, Uint32Array, Uint32Array];
  /** sha256 of the three index arrays (little-endian uint32), to compare assignments across runs. */
  assignmentSha256: string;
  targetKind: TargetKind;
  /** Distinct target values (null counts as one). */
  targetDistinct: number;
  /** Time strategy: how many cuts moved to keep equal times together. */
  tieMoves?: number;
  /** Group strategy: distinct groups in total. */
  groups?: number;
}

/** Parse and check `--ratios`: three finite numbers > 0 that sum to 1 (±1e-9). */
export function parseRatios(raw: readonly (string | number)[] | undefined): [number, number, number] {
  if (raw === undefined || raw.length === 0) return [...DEFAULT_RATIOS];
  const values = raw.map((v) => (typeof v === "number" ? v : Number(v)));
  if (values.length !== 3 || values.some((v) => !Number.isFinite(v))) {
    throw arborError(
      "SPLIT_BAD_RATIOS",
      `--ratios: expected three numbers (train,valid,test), got "${raw.join(",")}"`,
    );
  }
  if (values.some((v) => v <= 0)) {
    throw arborError(
      "SPLIT_BAD_RATIOS",
      `--ratios: every ratio must be > 0 or its part is empty, got "${raw.join(",")}"`,
    );
  }
  const sum = values[0] + values[1] + values[2];
  if (Math.abs(sum - 1) > 1e-9) {
    throw arborError("SPLIT_BAD_RATIOS", `--ratios: must sum to 1, got ${sum} from "${raw.join(",")}"`);
  }
  return [values[0], values[1], values[2]];
}

/**
 * Part sizes for `n` rows by the largest-remainder method: floor of each exact share, then the
 * leftover rows to the largest fractional parts (earlier part first on ties). Each size is within
 * 1 of `n * ratio`.
 */
export function allocate(n: number, ratios: readonly number[]): number[] {
  const exact = ratios.map((r) => n * r);
  const sizes = exact.map((x) => Math.floor(x));
  let left = n - sizes.reduce((a, b) => a + b, 0);
  const order = exact
    .map((x, i) => ({ i, frac: x - Math.floor(x) }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) sizes[order[k].i]++;
  return sizes;
}

/** Plan a split of `frame`. Throws the DATA_* / SPLIT_* codes for bad columns and options. */
export function planSplit(frame: pl.DataFrame, options: SplitOptions, logger: Logger): SplitPlan {
  const n = frame.height;
  const ratios = parseRatios(options.ratios);
  requireColumn(frame, options.target, "--target");
  // Given columns are checked whatever the strategy: the report uses them (time range, groups).
  if (options.timeColumn) requireColumn(frame, options.timeColumn, "--time-column");
  if (options.groupColumn) requireColumn(frame, options.groupColumn, "--group-column");
  const { kind, distinct } = targetKind(frame, options.target, logger);
  let parts: [Uint32Array, Uint32Array, Uint32Array];
  let extra: Pick<SplitPlan, "tieMoves" | "groups"> = {};
  switch (options.strategy) {
    case "random":
      parts = bucket(randomAssignment(n, ratios, new Random(options.seed)));
      break;
    case "stratified": {
      if (kind === "continuous") {
        throw arborError(
          "SPLIT_STRATIFY_CONTINUOUS",
          `split: cannot stratify on "${options.target}": it looks continuous (${distinct} distinct values or non-integer numbers)`,
        );
      }
      if (distinct < 2) {
        throw arborError(
          "SPLIT_STRATIFY_SINGLE_CLASS",
          `split: cannot stratify on "${options.target}": it has one class`,
        );
      }
      const codes = columnToDenseCodes(logger, "split: target codes", frame, options.target);
      parts = bucket(stratifiedAssignment(codes, ratios, new Random(options.seed)));
      break;
    }
    case "time": {
      const column = requireOption(options.timeColumn, "time", "--time-column");
      requireColumn(frame, column, "--time-column");
      const planned = timeParts(frame, column, ratios, logger);
      parts = planned.parts;
      extra = { tieMoves: planned.tieMoves };
      break;
    }
    case "group": {
      const column = requireOption(options.groupColumn, "group", "--group-column");
      requireColumn(frame, column, "--group-column");
      const codes = columnToDenseCodes(logger, "split: group codes", frame, column);
      const planned = groupAssignment(codes, ratios, new Random(options.seed), column);
      parts = bucket(planned.assignment);
      extra = { groups: planned.groups };
      break;
    }
  }
  for (let p = 0; p < 3; p++) {
    if (parts[p].length === 0) {
      throw arborError(
        "SPLIT_EMPTY_PART",
        `split: the ${PARTS[p]} part is empty (${n} rows, ratios ${ratios.join(",")}, strategy ${options.strategy})`,
      );
    }
  }
  return { parts, assignmentSha256: hashParts(parts), targetKind: kind, targetDistinct: distinct, ...extra };
}

/** Whether a target holds classes or continuous values, and how many distinct values it has. */
export function targetKind(
  frame: pl.DataFrame,
  column: string,
  logger: Logger,
): { kind: TargetKind; distinct: number } {
  const dtype = frame.schema[column];
  const variant = dtype.variant;
  const distinct = Number(frame.getColumn(column).nUnique());
  if (/^(Bool|String|Utf8|Categorical|Enum)$/.test(variant)) return { kind: "classes", distinct };
  if (/^U?Int(8|16|32|64|128)$/.test(variant)) {
    return { kind: distinct > MAX_STRATIFY_NUMERIC_CLASSES ? "continuous" : "classes", distinct };
  }
  if (/^Float(32|64)$/.test(variant)) {
    const x = pl.col(column).fillNan(null);
    const nonInteger =
      Number(
        scalar(logger, "split: non-integer target values", frame, x.neq(x.floor()).cast(pl.UInt32).sum()),
      ) > 0;
    const kind = nonInteger || distinct > MAX_STRATIFY_NUMERIC_CLASSES ? "continuous" : "classes";
    return { kind, distinct };
  }
  return { kind: "continuous", distinct };
}

/** One value computed by Polars (Series.get is missing for some dtypes in nodejs-polars 0.25). */
function scalar(logger: Logger, what: string, frame: pl.DataFrame, expr: pl.Expr): unknown {
  return seriesToArray(logger, what, frame.select(expr.alias("v")).getColumn("v"))[0];
}

/** Check the column exists and holds plain values (codes need equality and order on them). */
function requireColumn(frame: pl.DataFrame, column: string, flag: string): void {
  if (!frame.columns.includes(column)) {
    throw arborError(
      "DATA_UNKNOWN_COLUMN",
      `${flag}: no column "${column}" in the data (columns: ${frame.columns.join(", ")})`,
    );
  }
  const variant = frame.schema[column].variant;
  if (/^(List|FixedSizeList|Array|Struct|Object|Null|Unknown)$/.test(variant)) {
    throw arborError(
      "DATA_BAD_COLUMN_TYPE",
      `${flag}: "${column}" is ${variant}; split needs a column of plain values`,
    );
  }
}

function requireOption(value: string | undefined, strategy: string, flag: string): string {
  if (value === undefined || value.length === 0) {
    throw arborError("SPLIT_MISSING_COLUMN_OPTION", `split: --strategy ${strategy} needs ${flag}`);
  }
  return value;
}

/** Part of every row (0, 1, 2) from a seeded permutation cut at the allocated sizes. */
function randomAssignment(n: number, ratios: readonly number[], rng: Random): Uint8Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  shuffleInPlace(perm, rng);
  const sizes = allocate(n, ratios);
  const assignment = new Uint8Array(n);
  let j = sizes[0];
  for (let p = 1; p < 3; p++) {
    const end = j + sizes[p];
    for (; j < end; j++) assignment[perm[j]] = p;
  }
  return assignment;
}

/**
 * Part of every row, class by class: rows of each class (dense code) in file order, shuffled with
 * the one generator in class-code order, cut at the sizes {@link stratifiedSizes} gives the class.
 */
export function stratifiedAssignment(codes: Uint32Array, ratios: readonly number[], rng: Random): Uint8Array {
  const n = codes.length;
  const { order, starts } = countingSort(codes);
  const classSizes: number[] = [];
  for (let c = 0; c + 1 < starts.length; c++) classSizes.push(starts[c + 1] - starts[c]);
  const sizes = stratifiedSizes(classSizes, ratios);
  const assignment = new Uint8Array(n);
  for (let c = 0; c < classSizes.length; c++) {
    if (classSizes[c] === 0) continue;
    const rows = order.subarray(starts[c], starts[c + 1]);
    shuffleInPlace(rows, rng);
    let j = sizes[c][0];
    for (let p = 1; p < 3; p++) {
      const end = j + sizes[c][p];
      for (; j < end; j++) assignment[rows[j]] = p;
    }
  }
  return assignment;
}

/**
 * Rows per part for each class: floor(n_c · r_k) or one more, so every class is within ±1 row of
 * its exact share in every part, with the extra rows placed so that the part totals also equal
 * {@link allocate}(n) — the same part sizes as a random split. The extras go class by class
 * (classes with two extras first) to the parts still furthest below their total, larger
 * fractional share first on ties. Should that greedy ever not land exactly on the totals, each
 * class falls back to its own largest-remainder sizes (still ±1 per class, totals within a few rows).
 */
export function stratifiedSizes(classSizes: readonly number[], ratios: readonly number[]): number[][] {
  const total = classSizes.reduce((a, b) => a + b, 0);
  const target = allocate(total, ratios);
  const sizes = classSizes.map((n) => ratios.map((r) => Math.floor(n * r)));
  const deficit = target.map((t, k) => t - sizes.reduce((a, s) => a + s[k], 0));
  const extras = classSizes.map((n, c) => n - sizes[c][0] - sizes[c][1] - sizes[c][2]);
  const order = classSizes.map((_, c) => c).sort((a, b) => extras[b] - extras[a] || a - b);
  for (const c of order) {
    const frac = ratios.map((r) => classSizes[c] * r - Math.floor(classSizes[c] * r));
    const parts = [0, 1, 2].sort((a, b) => deficit[b] - deficit[a] || frac[b] - frac[a] || a - b);
    for (let e = 0; e < extras[c]; e++) {
      sizes[c][parts[e]]++;
      deficit[parts[e]]--;
    }
  }
  if (deficit.some((d) => d !== 0)) return classSizes.map((n) => allocate(n, ratios));
  return sizes;
}

/** Time strategy: stable order by dense time codes, cut at the sizes, cuts moved off ties. */
function timeParts(
  input: pl.DataFrame,
  column: string,
  ratios: readonly number[],
  logger: Logger,
): { parts: [Uint32Array, Uint32Array, Uint32Array]; tieMoves: number } {
  let frame = input;
  let variant = frame.schema[column].variant;
  if (/^(String|Utf8)$/.test(variant)) {
    // CSV and NDJSON readers leave dates as text; ISO-8601 text is parsed here, for ordering only.
    const parsed = parseIsoTimes(frame, column, logger);
    if (parsed) {
      frame = parsed;
      variant = frame.schema[column].variant;
    }
  }
  if (!/^(U?Int(8|16|32|64|128)|Float(32|64)|Date|Datetime)$/.test(variant)) {
    throw arborError(
      "DATA_BAD_COLUMN_TYPE",
      `--time-column: "${column}" is ${variant}; the time strategy needs a date, datetime or numeric column, or ISO-8601 text (2024-01-31, 2024-01-31T12:00:00[.fff][Z|+01:00])`,
    );
  }
  const missing = variant.startsWith("Float")
    ? pl.col(column).isNull().or(pl.col(column).isNan())
    : pl.col(column).isNull();
  const nulls = Number(scalar(logger, "split: missing time values", frame, missing.cast(pl.UInt32).sum()));
  if (nulls > 0) {
    throw arborError(
      "DATA_NULL_VALUES",
      `--time-column: "${column}" has ${nulls} null or NaN values; rows without a time cannot be ordered`,
    );
  }
  const codes = columnToDenseCodes(logger, "split: time codes", frame, column);
  const { order } = countingSort(codes);
  const n = order.length;
  const sizes = allocate(n, ratios);
  let tieMoves = 0;
  const cut = (b: number): number => {
    if (b <= 0 || b >= n || codes[order[b - 1]] !== codes[order[b]]) return b;
    const code = codes[order[b]];
    let s = b - 1;
    while (s > 0 && codes[order[s - 1]] === code) s--;
    let e = b + 1;
    while (e < n && codes[order[e]] === code) e++;
    tieMoves++;
    return b - s <= e - b ? s : e;
  };
  const b1 = cut(sizes[0]);
  const b2 = Math.max(b1, cut(sizes[0] + sizes[1]));
  return { parts: [order.slice(0, b1), order.slice(b1, b2), order.slice(b2)], tieMoves };
}

/** ISO-8601 text shapes the time strategy accepts, each with the strptime format that reads it. */
const ISO_TIME_FORMATS: readonly (readonly [string, string])[] = [
  ["^\\d{4}-\\d{2}-\\d{2}$", "%Y-%m-%d"],
  ["^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?$", "%Y-%m-%dT%H:%M:%S%.f"],
  ["^\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?$", "%Y-%m-%d %H:%M:%S%.f"],
  ["^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?Z$", "%Y-%m-%dT%H:%M:%S%.fZ"],
  ["^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?[+-]\\d{2}:\\d{2}$", "%Y-%m-%dT%H:%M:%S%.f%z"],
];

/**
 * A text time column as Datetime, when every non-null value has one of the ISO shapes above and
 * parses (Polars' strptime is lenient about trailing text, so the shape is checked first by regex).
 * Returns null when the text is not ISO time. Nulls stay nulls (refused later as missing times).
 */
export function parseIsoTimes(frame: pl.DataFrame, column: string, logger: Logger): pl.DataFrame | null {
  const text = pl.col(column);
  const count = (expr: pl.Expr, what: string): number =>
    Number(scalar(logger, what, frame, expr.cast(pl.UInt32).sum()));
  for (const [pattern, format] of ISO_TIME_FORMATS) {
    if (count(text.isNotNull().and(text.str.contains(pattern).not()), "split: time text shape") > 0) continue;
    const parsed = frame.withColumns(text.str.strptime(pl.Datetime, format).alias(column));
    const lost = Number(
      scalar(logger, "split: unparsed time text", parsed, pl.col(column).isNull().cast(pl.UInt32).sum()),
    );
    if (lost === count(text.isNull(), "split: missing time text")) return parsed;
  }
  return null;
}

/**
 * Group strategy: distinct groups (dense codes; null is one group) in a seeded order, laid end to
 * end; each group goes to the part whose cumulative share of the rows holds the group's midpoint.
 * Part sizes miss the ratios by at most about half a group at each of the two cuts.
 */
export function groupAssignment(
  codes: Uint32Array,
  ratios: readonly number[],
  rng: Random,
  column: string,
): { assignment: Uint8Array; groups: number } {
  const n = codes.length;
  let max = 0;
  for (let i = 0; i < n; i++) if (codes[i] > max) max = codes[i];
  const sizes = new Uint32Array(max + 1);
  for (let i = 0; i < n; i++) sizes[codes[i]]++;
  let groups = 0;
  for (let c = 0; c <= max; c++) if (sizes[c] > 0) groups++;
  if (groups < 3) {
    throw arborError(
      "SPLIT_TOO_FEW_GROUPS",
      `--group-column: "${column}" has ${groups} distinct value(s); three parts need at least 3 groups`,
    );
  }
  const ids = new Uint32Array(groups);
  for (let c = 0, k = 0; c <= max; c++) if (sizes[c] > 0) ids[k++] = c;
  shuffleInPlace(ids, rng);
  const cut1 = n * ratios[0];
  const cut2 = n * (ratios[0] + ratios[1]);
  const partOf = new Uint8Array(max + 1);
  let at = 0;
  for (let k = 0; k < groups; k++) {
    const size = sizes[ids[k]];
    const mid = at + size / 2;
    partOf[ids[k]] = mid < cut1 ? 0 : mid < cut2 ? 1 : 2;
    at += size;
  }
  const assignment = new Uint8Array(n);
  for (let i = 0; i < n; i++) assignment[i] = partOf[codes[i]];
  return { assignment, groups };
}

/** Row indices sorted by code, stable (file order within a code), and where each code starts. */
export function countingSort(codes: Uint32Array): { order: Uint32Array; starts: Uint32Array } {
  const n = codes.length;
  let max = 0;
  for (let i = 0; i < n; i++) if (codes[i] > max) max = codes[i];
  const starts = new Uint32Array(max + 2);
  for (let i = 0; i < n; i++) starts[codes[i] + 1]++;
  for (let c = 1; c < starts.length; c++) starts[c] += starts[c - 1];
  const next = starts.slice(0, max + 1);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[next[codes[i]]++] = i;
  return { order, starts };
}

/** Row indices of each part in ascending file order. */
export function bucket(assignment: Uint8Array): [Uint32Array, Uint32Array, Uint32Array] {
  const counts = [0, 0, 0];
  for (let i = 0; i < assignment.length; i++) counts[assignment[i]]++;
  const parts: [Uint32Array, Uint32Array, Uint32Array] = [
    new Uint32Array(counts[0]),
    new Uint32Array(counts[1]),
    new Uint32Array(counts[2]),
  ];
  const at = [0, 0, 0];
  for (let i = 0; i < assignment.length; i++) {
    const p = assignment[i];
    parts[p][at[p]++] = i;
  }
  return parts;
}

function hashParts(parts: readonly Uint32Array[]): string {
  const hash = createHash("sha256");
  for (const p of parts) {
    const header = new Uint32Array([p.length]);
    hash.update(new Uint8Array(header.buffer));
    hash.update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
  }
  return `sha256:${hash.digest("hex")}`;
}
