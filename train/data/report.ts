/**
 * The split report (`split.json`): what went into each part and where it came from. Everything in
 * it is a function of the input file, the options and the seed, except `id`, `name` and
 * `created_at`; {@link stableReport} drops those for comparisons.
 */
import pl from "nodejs-polars";
import type { Logger } from "../../shared/logger.ts";
import type { Dataset } from "./read.ts";
import { PARTS, type PartName, parseIsoTimes, type SplitOptions, type SplitPlan } from "./split.ts";
import { frameToRecords } from "./to-js.ts";
import type { PartFile } from "./write.ts";

/** Class balance is reported for targets with at most this many distinct values. */
export const MAX_REPORTED_CLASSES = 100;

/** One part in the report. */
export interface PartReport {
  rows: number;
  /** rows / total rows, rounded to 6 decimals. */
  fraction: number;
  /** Parquet file size and digest. */
  bytes: number;
  sha256: string;
  /** Rows per class label ("null" for missing), labels sorted; classification-like targets only. */
  classes?: Record<string, number>;
  /** Earliest and latest value of the time column (ISO strings for dates). */
  time?: { min: string | number | null; max: string | number | null };
  /** Distinct values of the group column. */
  groups?: number;
}

/** The whole report, stored as `splits/{id}/split.json`. */
export interface SplitReport {
  format_version: 1;
  id: string;
  name: string | null;
  source: {
    uri: string;
    format: string;
    bytes: number;
    fingerprint: string;
    rows: number;
    columns: number;
    schema: Record<string, string>;
    /** Column names in file order (the registry's jsonb does not keep object key order). */
    column_names?: string[];
  };
  strategy: SplitOptions["strategy"];
  options: {
    target: string;
    ratios: number[];
    time_column: string | null;
    group_column: string | null;
    seed: number;
  };
  seed: number;
  target: { column: string; kind: SplitPlan["targetKind"]; distinct: number };
  parts: Record<PartName, PartReport>;
  assignment_sha256: string;
  time_tie_moves?: number;
  groups_total?: number;
  created_at: string;
}

/** Build the report from the parts just written. */
export function buildReport(input: {
  id: string;
  name: string | null;
  dataset: Dataset;
  options: SplitOptions;
  plan: SplitPlan;
  frames: readonly pl.DataFrame[];
  files: readonly PartFile[];
  logger: Logger;
  createdAt?: Date;
}): SplitReport {
  const { dataset, options, plan, frames, files, logger } = input;
  const total = dataset.frame.height;
  const withClasses = plan.targetKind === "classes" && plan.targetDistinct <= MAX_REPORTED_CLASSES;
  const parts = {} as Record<PartName, PartReport>;
  PARTS.forEach((name, p) => {
    const frame = frames[p];
    const part: PartReport = {
      rows: frame.height,
      fraction: Math.round((frame.height / total) * 1e6) / 1e6,
      bytes: files[p].bytes,
      sha256: files[p].sha256,
    };
    if (withClasses) part.classes = classCounts(frame, options.target, logger);
    if (options.timeColumn) part.time = timeRange(frame, options.timeColumn, logger);
    if (options.groupColumn) part.groups = Number(frame.getColumn(options.groupColumn).nUnique());
    parts[name] = part;
  });
  const report: SplitReport = {
    format_version: 1,
    id: input.id,
    name: input.name,
    source: {
      uri: dataset.sourceUri,
      format: dataset.format,
      bytes: dataset.bytes,
      fingerprint: dataset.fingerprint,
      rows: total,
      columns: dataset.frame.width,
      schema: dataset.schema,
      column_names: Object.keys(dataset.schema),
    },
    strategy: options.strategy,
    options: {
      target: options.target,
      ratios: [...options.ratios],
      time_column: options.timeColumn ?? null,
      group_column: options.groupColumn ?? null,
      seed: options.seed,
    },
    seed: options.seed,
    target: { column: options.target, kind: plan.targetKind, distinct: plan.targetDistinct },
    parts,
    assignment_sha256: plan.assignmentSha256,
    created_at: (input.createdAt ?? new Date()).toISOString(),
  };
  if (plan.tieMoves !== undefined) report.time_tie_moves = plan.tieMoves;
  if (plan.groups !== undefined) report.groups_total = plan.groups;
  return report;
}

/** The report without the fields that differ between two runs of the same split. */
export function stableReport(report: SplitReport): Omit<SplitReport, "id" | "name" | "created_at"> {
  const { id: _id, name: _name, created_at: _created, ...rest } = report;
  return rest;
}

function classCounts(frame: pl.DataFrame, column: string, logger: Logger): Record<string, number> {
  const counts = frame.getColumn(column).valueCounts();
  const rows = frameToRecords(logger, "split report: class counts", counts);
  const entries = rows.map((r) => [label(r[column]), Number(r["count"])] as [string, number]);
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return Object.fromEntries(entries);
}

function timeRange(
  frame: pl.DataFrame,
  column: string,
  logger: Logger,
): { min: string | number | null; max: string | number | null } {
  const parsed = /^(String|Utf8)$/.test(frame.schema[column].variant)
    ? parseIsoTimes(frame, column, logger)
    : null;
  if (parsed) {
    // ISO text: earliest and latest by parsed time (offsets applied), shown as written.
    const sorted = frame
      .select(pl.col(column))
      .withColumn(parsed.getColumn(column).alias("__time"))
      .filter(pl.col("__time").isNotNull())
      .sort("__time");
    if (sorted.height === 0) return { min: null, max: null };
    const [first, last] = frameToRecords(
      logger,
      "split report: time range",
      pl.concat([sorted.head(1), sorted.tail(1)]),
    );
    return { min: scalar(first[column]), max: scalar(last[column]) };
  }
  const [row] = frameToRecords(
    logger,
    "split report: time range",
    frame.select(pl.col(column).min().alias("min"), pl.col(column).max().alias("max")),
  );
  return { min: scalar(row["min"]), max: scalar(row["max"]) };
}

function label(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

function scalar(v: unknown): string | number | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "number") return v;
  return String(v);
}
