/**
 * Polars frame → the engine's typed arrays, once per fit (column-major features) or per scoring
 * batch (row-major matrix under a Signature).
 *
 * Numeric features are cast to float32 here, before binning, so that the engine's thresholds and
 * onnxruntime (float32 input) compare the very same values. Null → NaN (missing).
 *
 * Categorical policy (documented in the Signature contract too):
 * - string / categorical columns are categorical automatically; numeric columns listed in
 *   `categorical` are categorical by their string form (e.g. "3");
 * - the dictionary is sorted by frequency descending, then by value, so the most frequent
 *   categories get the small codes (onnxruntime's BRANCH_MEMBER bitmask fast path needs codes 0..30);
 * - RARE categories (fewer than `minCategoryCount` rows, default 5) and categories beyond
 *   `maxCategories` (default 254: one bin each plus the missing bin fit in uint8) are left out of
 *   the dictionary, so they are encoded as NaN, exactly like unseen categories at scoring time.
 *   Training and scoring therefore see rare and unseen values the same way: as missing, taking the
 *   learned default direction.
 */
import pl from "nodejs-polars";
import type { FeatureSpec, Signature, Task } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { logConversion } from "../data/to-js.ts";

type Frame = pl.DataFrame;

/** Options of {@link frameToDataset}. */
export interface DatasetOptions {
  target: string;
  task: Task;
  /** Columns to treat as categorical besides string columns. */
  categorical?: string[];
  /** Feature columns in order; default: every column but the target and the weight. */
  features?: string[];
  /** Column of non-negative sample weights. */
  weight?: string;
  /** Categories with fewer rows are encoded as missing (default 5). */
  minCategoryCount?: number;
  /** Largest dictionary per feature (default 254). */
  maxCategories?: number;
}

/** The engine's input: column-major float32 features plus labels. */
export interface Dataset {
  numRows: number;
  features: FeatureSpec[];
  /** One Float32Array of length numRows per feature; NaN = missing. */
  columns: Float32Array[];
  /** Binary: 0/1; multiclass: class index; regression: the value. */
  label: Float64Array;
  weight: Float64Array | null;
  task: Task;
  target: string;
  /** Class labels as strings in output order (classification only). */
  classes?: string[];
}

/** Which dtypes a feature column may have. */
function kindOf(dtype: unknown): "numeric" | "bool" | "string" | "other" {
  const s = String(dtype);
  if (/\((U?Int\d+|Float\d+)\)$/.test(s)) return "numeric";
  if (s.endsWith("(Bool)")) return "bool";
  if (/\((String|Utf8|Categorical.*|Enum.*)\)$/.test(s)) return "string";
  return "other";
}

/** Cast numeric/bool columns to float32 with null → NaN, all in one Polars select. */
function numericColumns(frame: Frame, names: string[]): Float32Array[] {
  if (names.length === 0) return [];
  const nan = pl.lit(Number.NaN).cast(pl.Float32);
  const out = frame.select(...names.map((n) => pl.col(n).cast(pl.Float32).fillNull(nan)));
  return names.map((n) => out.getColumn(n).toTypedArray() as Float32Array);
}

/** String values of a column (null stays null). */
function stringValues(frame: Frame, name: string): (string | null)[] {
  const s = frame.getColumn(name);
  if (kindOf(s.dtype) === "string") return s.cast(pl.String).toArray() as (string | null)[];
  // Numbers through JS's String() so that 1.0 becomes "1" whatever the column's float/int dtype.
  const raw = s.toArray() as (number | boolean | null)[];
  const out = new Array<string | null>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i];
    out[i] = v === null || (typeof v === "number" && Number.isNaN(v)) ? null : String(v);
  }
  return out;
}

/** Build a dictionary: frequency desc, then value asc; rare and overflow categories dropped. */
export function buildDictionary(
  values: readonly (string | null)[],
  minCount: number,
  maxCategories: number,
): string[] {
  const counts = new Map<string, number>();
  for (const v of values) if (v !== null) counts.set(v, (counts.get(v) ?? 0) + 1);
  const entries = [...counts.entries()].filter(([, c]) => c >= minCount);
  entries.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return entries.slice(0, maxCategories).map(([v]) => v);
}

/** Encode strings as float codes under a dictionary; unknown and null → NaN. */
export function encodeCategories(
  values: readonly (string | null)[],
  categories: readonly string[],
): Float32Array {
  const index = new Map<string, number>();
  for (let i = 0; i < categories.length; i++) index.set(categories[i], i);
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const code = v === null ? undefined : index.get(v);
    out[i] = code === undefined ? Number.NaN : code;
  }
  return out;
}

function compareClassValues(a: string | number | boolean, b: string | number | boolean): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/** Labels of the target column for the task. */
function readLabels(frame: Frame, target: string, task: Task): { label: Float64Array; classes?: string[] } {
  const series = frame.getColumn(target);
  const kind = kindOf(series.dtype);
  if (series.nullCount() > 0) {
    throw arborError("FIT_BAD_TARGET", `fit: target "${target}" has ${series.nullCount()} null values`);
  }
  if (task === "regression") {
    if (kind !== "numeric" && kind !== "bool") {
      throw arborError(
        "FIT_BAD_TARGET",
        `fit: regression target "${target}" must be numeric, got ${String(series.dtype)}`,
      );
    }
    const values = series.cast(pl.Float64).toTypedArray() as Float64Array;
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        throw arborError(
          "FIT_BAD_TARGET",
          `fit: regression target "${target}" has a non-finite value at row ${i}`,
        );
      }
    }
    return { label: Float64Array.from(values) };
  }
  if (kind === "other") {
    throw arborError("FIT_BAD_TARGET", `fit: target "${target}" has type ${String(series.dtype)}`);
  }
  const raw = (kind === "string" ? series.cast(pl.String) : series).toArray() as (
    | string
    | number
    | boolean
  )[];
  const distinct = [...new Set(raw)].sort(compareClassValues);
  if (task === "binary" && distinct.length !== 2) {
    throw arborError(
      "FIT_BAD_TARGET",
      `fit: binary target "${target}" needs exactly 2 classes, found ${distinct.length}${distinct.length > 2 ? " (use --task multiclass or regression)" : ""}`,
    );
  }
  if (task === "multiclass" && (distinct.length < 2 || distinct.length > 1000)) {
    throw arborError(
      "FIT_BAD_TARGET",
      `fit: multiclass target "${target}" needs 2..1000 classes, found ${distinct.length}`,
    );
  }
  if (kind === "numeric" && distinct.length > 1000) {
    throw arborError("FIT_BAD_TARGET", `fit: target "${target}" looks continuous`);
  }
  const index = new Map<string | number | boolean, number>();
  for (let i = 0; i < distinct.length; i++) index.set(distinct[i], i);
  const label = new Float64Array(raw.length);
  for (let i = 0; i < raw.length; i++) label[i] = index.get(raw[i]) ?? 0;
  return { label, classes: distinct.map((v) => String(v)) };
}

/** Convert a training frame into the engine's Dataset (column-major float32 features). */
export function frameToDataset(frame: Frame, options: DatasetOptions, logger: Logger): Dataset {
  const columns = frame.columns;
  const has = new Set(columns);
  if (!has.has(options.target)) {
    throw arborError("DATA_UNKNOWN_COLUMN", `fit: target column "${options.target}" is not in the data`);
  }
  if (options.weight !== undefined && !has.has(options.weight)) {
    throw arborError("DATA_UNKNOWN_COLUMN", `fit: weight column "${options.weight}" is not in the data`);
  }
  const declared = new Set(options.categorical ?? []);
  for (const c of declared) {
    if (!has.has(c))
      throw arborError("DATA_UNKNOWN_COLUMN", `fit: --categorical column "${c}" is not in the data`);
  }
  const names = options.features ?? columns.filter((c) => c !== options.target && c !== options.weight);
  if (names.length === 0) throw arborError("FIT_BAD_OPTION", "fit: no feature columns besides the target");
  if (frame.height === 0) throw arborError("DATA_EMPTY", "fit: the training data has no rows");
  const minCount = options.minCategoryCount ?? 5;
  const maxCategories = Math.min(options.maxCategories ?? 254, 254);

  const specs: FeatureSpec[] = [];
  const numericNames: string[] = [];
  const kinds: ("numeric" | "categorical")[] = [];
  for (const name of names) {
    if (!has.has(name))
      throw arborError("DATA_UNKNOWN_COLUMN", `fit: feature column "${name}" is not in the data`);
    if (name === options.target)
      throw arborError("FIT_BAD_OPTION", `fit: the target "${name}" cannot be a feature`);
    const kind = kindOf(frame.getColumn(name).dtype);
    if (kind === "other") {
      throw arborError(
        "DATA_BAD_COLUMN_TYPE",
        `fit: feature "${name}" has type ${String(frame.getColumn(name).dtype)}; derive numeric columns from it first`,
      );
    }
    const categorical = kind === "string" || declared.has(name);
    kinds.push(categorical ? "categorical" : "numeric");
    if (!categorical) numericNames.push(name);
  }
  const numeric = numericColumns(frame, numericNames);
  const out: Float32Array[] = [];
  let ni = 0;
  for (let f = 0; f < names.length; f++) {
    if (kinds[f] === "numeric") {
      out.push(numeric[ni++]);
      specs.push({ name: names[f], type: "numeric" });
    } else {
      const values = stringValues(frame, names[f]);
      const categories = buildDictionary(values, minCount, maxCategories);
      out.push(encodeCategories(values, categories));
      specs.push({ name: names[f], type: "categorical", categories });
    }
  }
  const { label, classes } = readLabels(frame, options.target, options.task);
  let weight: Float64Array | null = null;
  if (options.weight !== undefined) {
    const w = frame.getColumn(options.weight);
    if (kindOf(w.dtype) !== "numeric" || w.nullCount() > 0) {
      throw arborError(
        "FIT_BAD_OPTION",
        `fit: weight column "${options.weight}" must be numeric without nulls`,
      );
    }
    weight = Float64Array.from(w.cast(pl.Float64).toTypedArray() as Float64Array);
    for (let i = 0; i < weight.length; i++) {
      if (!(weight[i] >= 0) || !Number.isFinite(weight[i])) {
        throw arborError(
          "FIT_BAD_OPTION",
          `fit: weight column "${options.weight}" has a negative or non-finite value at row ${i}`,
        );
      }
    }
  }
  const bytes = out.reduce((s, c) => s + c.byteLength, 0) + label.byteLength + (weight?.byteLength ?? 0);
  logConversion(
    logger,
    "fit: features, labels, weights",
    frame.height,
    names.length + 1 + (weight ? 1 : 0),
    bytes,
  );
  const dataset: Dataset = {
    numRows: frame.height,
    features: specs,
    columns: out,
    label,
    weight,
    task: options.task,
    target: options.target,
  };
  if (classes !== undefined) dataset.classes = classes;
  return dataset;
}

/** Encode the columns of a frame under a dataset's feature specs (e.g. a validation frame), column-major. */
export function frameToColumns(
  frame: Frame,
  features: readonly FeatureSpec[],
  logger: Logger,
): Float32Array[] {
  const has = new Set(frame.columns);
  const numericNames: string[] = [];
  for (const spec of features) {
    if (!has.has(spec.name)) {
      throw arborError("PREDICT_MISSING_FEATURE", `score: the data lacks feature column "${spec.name}"`);
    }
    const kind = kindOf(frame.getColumn(spec.name).dtype);
    if (spec.type === "numeric" && kind !== "numeric" && kind !== "bool") {
      throw arborError(
        "PREDICT_BAD_FEATURE_TYPE",
        `score: numeric feature "${spec.name}" has type ${String(frame.getColumn(spec.name).dtype)}`,
      );
    }
    if (spec.type === "categorical" && kind === "other") {
      throw arborError(
        "PREDICT_BAD_FEATURE_TYPE",
        `score: categorical feature "${spec.name}" has type ${String(frame.getColumn(spec.name).dtype)}`,
      );
    }
    if (spec.type === "numeric") numericNames.push(spec.name);
  }
  const numeric = numericColumns(frame, numericNames);
  const out: Float32Array[] = [];
  let ni = 0;
  for (const spec of features) {
    if (spec.type === "numeric") out.push(numeric[ni++]);
    else out.push(encodeCategories(stringValues(frame, spec.name), spec.categories ?? []));
  }
  logConversion(
    logger,
    "score: features",
    frame.height,
    features.length,
    out.reduce((s, c) => s + c.byteLength, 0),
  );
  return out;
}

/** Row-major float32 matrix [N × F] of a frame under a Signature, as fed to the ONNX input. */
export function frameToMatrix(
  frame: Frame,
  signature: Pick<Signature, "features">,
  logger: Logger,
): { data: Float32Array; rows: number; cols: number } {
  const cols = frameToColumns(frame, signature.features, logger);
  const rows = frame.height;
  const f = cols.length;
  const data = new Float32Array(rows * f);
  for (let j = 0; j < f; j++) {
    const c = cols[j];
    for (let i = 0; i < rows; i++) data[i * f + j] = c[i];
  }
  return { data, rows, cols: f };
}

/** Encode a validation/test frame like a training Dataset: same features, labels mapped onto its classes. */
export function frameToEvalDataset(frame: Frame, train: Dataset, logger: Logger): Dataset {
  if (!frame.columns.includes(train.target)) {
    throw arborError(
      "DATA_UNKNOWN_COLUMN",
      `fit: target column "${train.target}" is not in the validation data`,
    );
  }
  const columns = frameToColumns(frame, train.features, logger);
  const series = frame.getColumn(train.target);
  if (series.nullCount() > 0)
    throw arborError("FIT_BAD_TARGET", `fit: validation target "${train.target}" has nulls`);
  let label: Float64Array;
  if (train.classes) {
    const index = new Map(train.classes.map((c, i) => [c, i]));
    const raw = series.toArray() as unknown[];
    label = new Float64Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const c = index.get(String(raw[i]));
      if (c === undefined) {
        throw arborError(
          "FIT_BAD_TARGET",
          `fit: validation class "${String(raw[i])}" is not among the training classes`,
        );
      }
      label[i] = c;
    }
  } else {
    label = Float64Array.from(series.cast(pl.Float64).toTypedArray() as Float64Array);
  }
  const dataset: Dataset = { ...train, numRows: frame.height, columns, label, weight: null };
  return dataset;
}
