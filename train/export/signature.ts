/**
 * The signature of a trained model: shared by `arbor fit` and the tuner's refit. Kept here, free
 * of registry imports, so tune's worker threads can load it.
 */
import type { Signature } from "../../shared/bundle.ts";
import type { TrainResult } from "../gbdt/train.ts";

/** The bundle signature (feature order, types, dictionaries, task, classes) of a trained model. */
export function signatureOf(result: TrainResult, target: string): Signature {
  const signature: Signature = {
    format: "arbor-bundle/1",
    task: result.task,
    target,
    features: result.features,
    objective: result.objective,
    baseScore: Array.from(result.ensemble.baseScore),
    modelType: result.modelType,
    growth: result.growth,
    numTrees: result.ensemble.trees.length,
    source: "arbor",
  };
  if (result.classes) signature.classes = result.classes;
  return signature;
}
