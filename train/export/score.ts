/**
 * Batch scoring of a bundle for `arbor predict` and `arbor explain`: read the data, turn it into
 * the model's float32 matrix, run onnxruntime (predict) or TreeSHAP (explain), write CSV or Parquet.
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import pl from "nodejs-polars";
import * as ort from "onnxruntime-node";
import { storeOpener } from "../../registry/store/open.ts";
import type { Signature } from "../../shared/bundle.ts";
import type { ArborConfig } from "../../shared/config.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { TreeEnsemble } from "../../shared/tree.ts";
import type { TreeExplainer } from "../../shared/treeshap.ts";
import { readDataset } from "../data/read.ts";
import { writeParquet } from "../data/write.ts";
import { frameToMatrix } from "../gbdt/dataset.ts";
import { type LoadedBundle, loadBundle } from "./load.ts";
import { explainRowsParallel } from "./shap-parallel.ts";

/** Rows per onnxruntime call: bounds the input/output tensors' memory. */
const BATCH_ROWS = 65_536;

/** A verified bundle and the data file as its float32 input matrix (row-major, signature order). */
export async function loadScoringInput(
  modelDir: string,
  dataUri: string,
  config: ArborConfig,
  logger: Logger,
): Promise<{ bundle: LoadedBundle; data: Float32Array; rows: number }> {
  const bundle = await loadBundle(modelDir);
  const dataset = await readDataset(dataUri, { logger, openStore: storeOpener(config) });
  const { data, rows } = frameToMatrix(dataset.frame, bundle.signature, logger);
  return { bundle, data, rows };
}

/** Output format by the extension of `--out`. */
export function outputFormat(file: string): "csv" | "parquet" {
  const lower = file.toLowerCase();
  if (lower.endsWith(".csv")) return "csv";
  if (lower.endsWith(".parquet") || lower.endsWith(".pq")) return "parquet";
  throw arborError("DATA_UNSUPPORTED_FORMAT", `--out: "${file}" must end in .csv or .parquet`);
}

/** Write named columns to CSV or Parquet by extension. */
export async function writeColumns(file: string, columns: pl.Series[]): Promise<void> {
  const format = outputFormat(file);
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const frame = pl.DataFrame(columns);
  if (format === "csv") frame.writeCSV(path.resolve(file));
  else writeParquet(frame, path.resolve(file));
}

/** Margins and probabilities (or predictions) of every row through onnxruntime. */
export async function runOnnx(
  modelBytes: Uint8Array,
  signature: Signature,
  x: Float32Array,
  rows: number,
  logger: Logger,
): Promise<{ outputs: Float32Array; width: number }> {
  const f = signature.features.length;
  // One intra-op thread: measured faster than two on these 2-core machines (ENVIRONMENT.md).
  const session = await ort.InferenceSession.create(modelBytes, { intraOpNumThreads: 1 });
  const name = signature.task === "regression" ? "prediction" : "probabilities";
  const width =
    signature.task === "regression" ? 1 : signature.task === "binary" ? 2 : signature.classes!.length;
  const outputs = new Float32Array(rows * width);
  const started = performance.now();
  try {
    for (let start = 0; start < rows; start += BATCH_ROWS) {
      const n = Math.min(BATCH_ROWS, rows - start);
      const input = new ort.Tensor("float32", x.subarray(start * f, (start + n) * f), [n, f]);
      const result = await session.run({ input }, [name]);
      outputs.set(result[name].data as Float32Array, start * width);
    }
  } finally {
    await session.release();
  }
  const ms = performance.now() - started;
  logger.info(
    { rows, ms: Math.round(ms), rowsPerSecond: Math.round(rows / (ms / 1000)) },
    "onnxruntime scored",
  );
  return { outputs, width };
}

/** Prediction columns: binary `label,probability`; multiclass `label,probability_<class>…`; regression `prediction`. */
export function predictionColumns(
  signature: Signature,
  outputs: Float32Array,
  width: number,
  rows: number,
): pl.Series[] {
  if (signature.task === "regression") return [pl.Series("prediction", outputs)];
  const classes = signature.classes ?? Array.from({ length: width }, (_, c) => String(c));
  const labels = new Array<string>(rows);
  if (signature.task === "binary") {
    const p = new Float32Array(rows);
    for (let i = 0; i < rows; i++) {
      p[i] = outputs[2 * i + 1];
      labels[i] = classes[p[i] >= 0.5 ? 1 : 0];
    }
    return [pl.Series("label", labels), pl.Series("probability", p)];
  }
  const cols = Array.from({ length: width }, () => new Float32Array(rows));
  for (let i = 0; i < rows; i++) {
    let best = 0;
    for (let c = 0; c < width; c++) {
      const v = outputs[i * width + c];
      cols[c][i] = v;
      if (v > outputs[i * width + best]) best = c;
    }
    labels[i] = classes[best];
  }
  return [pl.Series("label", labels), ...cols.map((c, k) => pl.Series(`probability_${classes[k]}`, c))];
}

/** SHAP columns: one per feature plus `base_value` (multiclass: `<class>:<feature>`), or the top-k per row. */
export async function explainColumns(
  explainer: TreeExplainer,
  ensemble: TreeEnsemble,
  signature: Signature,
  x: Float32Array,
  rows: number,
  topK: number | undefined,
  threads: number,
  logger: Logger,
): Promise<{ columns: pl.Series[]; meanAbs: Float64Array }> {
  const f = explainer.numFeatures;
  const k = explainer.numOutputs;
  const names = signature.features.map((s) => s.name);
  const prefixes =
    k === 1 ? [""] : Array.from({ length: k }, (_, c) => `${signature.classes?.[c] ?? String(c)}:`);
  const started = performance.now();
  const phi = await explainRowsParallel(explainer, ensemble, x, rows, threads);
  const ms = performance.now() - started;
  logger.info(
    { rows, threads, ms: Math.round(ms), rowsPerSecond: Math.round(rows / (ms / 1000)) },
    "TreeSHAP explained",
  );
  const size = explainer.rowSize;
  const meanAbs = new Float64Array(f);
  for (let i = 0; i < rows; i++) {
    for (let o = 0; o < k; o++)
      for (let j = 0; j < f; j++) meanAbs[j] += Math.abs(phi[i * size + o * (f + 1) + j]);
  }
  if (rows > 0) for (let j = 0; j < f; j++) meanAbs[j] /= rows;
  const columns: pl.Series[] = [];
  for (let o = 0; o < k; o++) {
    const column = (j: number) => {
      const c = new Float64Array(rows);
      for (let i = 0; i < rows; i++) c[i] = phi[i * size + o * (f + 1) + j];
      return c;
    };
    if (topK === undefined) {
      for (let j = 0; j < f; j++) columns.push(pl.Series(`${prefixes[o]}${names[j]}`, column(j)));
    } else {
      const kk = Math.min(topK, f);
      const feats = Array.from({ length: kk }, () => new Array<string>(rows));
      const vals = Array.from({ length: kk }, () => new Float64Array(rows));
      const order = Array.from({ length: f }, (_, j) => j);
      for (let i = 0; i < rows; i++) {
        const base = i * size + o * (f + 1);
        order.sort((a, b) => Math.abs(phi[base + b]) - Math.abs(phi[base + a]) || a - b);
        for (let r = 0; r < kk; r++) {
          feats[r][i] = names[order[r]];
          vals[r][i] = phi[base + order[r]];
        }
      }
      for (let r = 0; r < kk; r++) {
        columns.push(pl.Series(`${prefixes[o]}top${r + 1}_feature`, feats[r]));
        columns.push(pl.Series(`${prefixes[o]}top${r + 1}_shap`, vals[r]));
      }
    }
    columns.push(pl.Series(`${prefixes[o]}base_value`, column(f)));
  }
  return { columns, meanAbs };
}
