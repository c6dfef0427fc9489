/**
 * Refit the best trial (on train, or on train+valid with the trial's best round count), evaluate
 * it on the test part, and write the bundle (train/export/bundle.ts) with its lineage.
 */
import type { StudyRow, TrialRow } from "../../registry/db/schema.ts";
import type { SplitRecord } from "../../registry/splits.ts";
import type { ArtifactStore } from "../../registry/store/artifact-store.ts";
import type { Lineage } from "../../shared/bundle.ts";
import type { Logger } from "../../shared/logger.ts";
import { writeBundle } from "../export/bundle.ts";
import { signatureOf } from "../export/signature.ts";
import type { Dataset } from "../gbdt/dataset.ts";
import { evaluateMetric, type MetricName } from "../gbdt/metric.ts";
import { predictMarginColumns } from "../gbdt/predict.ts";
import { type TrainResult, trainGbdt } from "../gbdt/train.ts";
import { type FixedFitSettings, fitOptions, keptValue } from "./gbdt-trial.ts";
import { concatDatasets, loadSplitData } from "./split-data.ts";

/** Metrics of the refit model. */
export interface RefitResult {
  trialNumber: number;
  refitOn: "train" | "train+valid";
  rounds: number;
  seconds: number;
  /** Validation metric of the refit (train only; with train+valid the valid part was trained on). */
  valid: Record<string, number>;
  test: Record<string, number>;
  bundleDir: string | null;
}

/** Metrics reported for a task (the study's metric first). */
export function metricsFor(task: Dataset["task"], metric: MetricName): MetricName[] {
  const all: MetricName[] =
    task === "binary" ? ["auc", "logloss"] : task === "multiclass" ? ["mlogloss"] : ["rmse"];
  return [metric, ...all.filter((m) => m !== metric)];
}

/** Evaluate a fitted model on a dataset. */
export function evaluate(result: TrainResult, data: Dataset, metrics: MetricName[]): Record<string, number> {
  const margin = predictMarginColumns(result.ensemble, data.columns, data.numRows);
  const out: Record<string, number> = {};
  for (const m of metrics) out[m] = evaluateMetric(m, margin, data.label, result.ensemble.numOutputs, null);
  return out;
}

/** Refit, evaluate, and (when `bundleDir` is set) write the bundle. */
export async function refitBest(
  store: ArtifactStore,
  o: {
    split: SplitRecord;
    study: StudyRow;
    trial: TrialRow;
    fixed: FixedFitSettings;
    categorical?: string[] | undefined;
    refitOn: "train" | "train+valid";
    bundleDir: string | null;
    /** Engine threads of the refit (the trials' count, so a refit on train reproduces its trial). */
    threads?: number;
    logger: Logger;
  },
): Promise<RefitResult> {
  const data = await loadSplitData(
    store,
    o.split.id,
    { target: o.study.target, task: o.fixed.task, categorical: o.categorical },
    o.logger,
  );
  const metrics = metricsFor(o.fixed.task, o.fixed.metric);
  const options = { ...fitOptions(o.fixed, o.trial.params), threads: o.threads ?? 1 };
  let result: TrainResult;
  let valid: Record<string, number> = {};
  if (o.refitOn === "train") {
    result = trainGbdt(data.train, data.valid, options, {
      metric: o.fixed.metric,
      evalTrain: false,
      logger: o.logger,
    });
    valid = evaluate(result, data.valid, metrics);
    const kept = keptValue(result);
    if (kept !== null) valid[o.fixed.metric] = kept;
  } else {
    // No validation part left to stop on: train for the trial's best round count.
    const best = Number((o.trial.userAttrs as Record<string, unknown>)["bestIteration"] ?? o.fixed.rounds);
    result = trainGbdt(
      concatDatasets(data.train, data.valid),
      null,
      { ...options, rounds: best, earlyStopping: 0 },
      {
        metric: o.fixed.metric,
        evalTrain: false,
        logger: o.logger,
      },
    );
  }
  const test = evaluate(result, data.test, metrics);
  if (o.bundleDir !== null) {
    const metricsJson = {
      task: result.task,
      metric: o.fixed.metric,
      valid,
      test,
      rows: { train: data.train.numRows, valid: data.valid.numRows, test: data.test.numRows },
      training: {
        rounds: result.rounds,
        bestIteration: result.bestIteration,
        seconds: result.seconds,
        refitOn: o.refitOn,
      },
      params: o.trial.params,
      study: { id: o.study.id, name: o.study.name, trial: o.trial.number, value: o.trial.value },
      dataFingerprint: o.split.fingerprint,
    };
    const lineage: Lineage = {
      splitId: o.split.id,
      studyId: o.study.id,
      studyName: o.study.name,
      trialNumber: o.trial.number,
      dataFingerprint: o.split.fingerprint,
      params: o.trial.params,
    };
    await writeBundle(o.bundleDir, {
      ensemble: result.ensemble,
      signature: signatureOf(result, o.study.target),
      metrics: metricsJson,
      lineage,
    });
  }
  return {
    trialNumber: o.trial.number,
    refitOn: o.refitOn,
    rounds: result.bestIteration,
    seconds: result.seconds,
    valid,
    test,
    bundleDir: o.bundleDir,
  };
}
