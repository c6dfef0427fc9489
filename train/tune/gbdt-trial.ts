/**
 * One GBDT trial: fit with the trial's parameters, report the validation metric every round, and
 * stop when the pruner says so. Synchronous (the engine is); runs inside a worker thread.
 */
import type { ModelType, Task } from "../../shared/bundle.ts";
import type { Dataset } from "../gbdt/dataset.ts";
import type { MetricName } from "../gbdt/metric.ts";
import type { TrainOptions } from "../gbdt/params.ts";
import { type TrainResult, trainGbdt } from "../gbdt/train.ts";
import type { Pruner } from "./pruners/types.ts";
import type { TrialInput, TrialOutcome } from "./study.ts";

/** Settings shared by every trial of a study. */
export interface FixedFitSettings {
  task: Task;
  modelType: ModelType;
  metric: MetricName;
  rounds: number;
  earlyStopping: number;
  seed: number;
}

/** Engine options of a trial: the fixed settings overlaid with the sampled parameters. */
export function fitOptions(fixed: FixedFitSettings, params: Record<string, unknown>): TrainOptions {
  return {
    task: fixed.task,
    modelType: fixed.modelType,
    rounds: fixed.rounds,
    earlyStopping: fixed.earlyStopping,
    seed: fixed.seed,
    ...(params as Partial<TrainOptions>),
  } as TrainOptions;
}

/** The validation metric of the kept model (best round with early stopping). */
export function keptValue(result: TrainResult): number | null {
  const info = result.history[result.bestIteration - 1];
  const v = info?.valid?.[result.metric];
  return v === undefined ? null : v;
}

/** Run one trial on loaded data. */
export function runGbdtTrial(
  train: Dataset,
  valid: Dataset,
  fixed: FixedFitSettings,
  input: TrialInput,
  pruner: Pruner,
  onValues: (values: Record<string, number>) => void,
  threads = 1,
): TrialOutcome {
  const iv: Record<string, number> = {};
  const self = {
    number: input.number,
    state: "running" as const,
    params: input.params,
    value: null,
    intermediateValues: iv,
  };
  let pruned = false;
  let last = 0;
  const result = trainGbdt(
    train,
    valid,
    { ...fitOptions(fixed, input.params), threads },
    {
      metric: fixed.metric,
      evalTrain: false,
      onRound: (info) => {
        const v = info.valid?.[fixed.metric];
        if (v === undefined) return undefined;
        iv[String(info.round)] = v;
        const now = performance.now();
        if (now - last > 200) {
          last = now;
          onValues({ ...iv });
        }
        if (pruner.prune(self, input.others, info.round, input.direction)) {
          pruned = true;
          return "stop";
        }
        return undefined;
      },
    },
  );
  if (pruned)
    return { state: "pruned", value: null, intermediateValues: iv, userAttrs: { rounds: result.rounds } };
  return {
    state: "complete",
    value: keptValue(result),
    intermediateValues: iv,
    userAttrs: { bestIteration: result.bestIteration, rounds: result.rounds, seconds: result.seconds },
  };
}
