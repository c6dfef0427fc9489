/**
 * Load a split's parts from the artifact store into the engine's datasets. The validation and
 * test parts are encoded with the training part's feature dictionaries and class order, so codes
 * mean the same thing in every part.
 */
import pl from "nodejs-polars";
import type { ArtifactStore } from "../../registry/store/artifact-store.ts";
import type { Task } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { splitKey } from "../../shared/paths.ts";
import { type Dataset, frameToColumns, frameToDataset } from "../gbdt/dataset.ts";

/** Train, valid and test datasets of one split. */
export interface SplitData {
  train: Dataset;
  valid: Dataset;
  test: Dataset;
}

/** Read one parquet part of a split. */
export async function readSplitPart(
  store: ArtifactStore,
  splitId: string,
  part: "train" | "valid" | "test",
): Promise<pl.DataFrame> {
  const stream = await store.get(splitKey(splitId, `${part}.parquet`));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return pl.readParquet(Buffer.concat(chunks));
}

/** A frame encoded like `reference` (its features, dictionaries and classes). */
export function datasetLike(frame: pl.DataFrame, reference: Dataset, logger: Logger): Dataset {
  const columns = frameToColumns(frame, reference.features, logger);
  const series = frame.getColumn(reference.target);
  let label: Float64Array;
  if (reference.task === "regression") {
    label = Float64Array.from(series.cast(pl.Float64).toArray() as number[]);
  } else {
    const index = new Map((reference.classes ?? []).map((c, i) => [c, i]));
    const raw = series.toArray() as unknown[];
    label = new Float64Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const code = index.get(String(raw[i]));
      if (code === undefined) {
        throw arborError(
          "FIT_BAD_TARGET",
          `tune: class "${String(raw[i])}" of target "${reference.target}" is absent from the training part`,
        );
      }
      label[i] = code;
    }
  }
  const out: Dataset = {
    numRows: frame.height,
    features: reference.features,
    columns,
    label,
    weight: null,
    task: reference.task,
    target: reference.target,
  };
  if (reference.classes) out.classes = reference.classes;
  return out;
}

/** Rows of `b` appended to `a` (same encoding), for a refit on train+valid. */
export function concatDatasets(a: Dataset, b: Dataset): Dataset {
  const n = a.numRows + b.numRows;
  const columns = a.columns.map((col, j) => {
    const out = new Float32Array(n);
    out.set(col, 0);
    out.set(b.columns[j], a.numRows);
    return out;
  });
  const label = new Float64Array(n);
  label.set(a.label, 0);
  label.set(b.label, a.numRows);
  return { ...a, numRows: n, columns, label, weight: null };
}

/** Load the three parts of a split as datasets for `target` and `task`. */
export async function loadSplitData(
  store: ArtifactStore,
  splitId: string,
  options: { target: string; task: Task; categorical?: string[] },
  logger: Logger,
): Promise<SplitData> {
  const [trainFrame, validFrame, testFrame] = await Promise.all([
    readSplitPart(store, splitId, "train"),
    readSplitPart(store, splitId, "valid"),
    readSplitPart(store, splitId, "test"),
  ]);
  const train = frameToDataset(
    trainFrame,
    { target: options.target, task: options.task, categorical: options.categorical },
    logger,
  );
  return {
    train,
    valid: datasetLike(validFrame, train, logger),
    test: datasetLike(testFrame, train, logger),
  };
}
