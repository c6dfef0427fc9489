/**
 * Default search spaces per model type, over the engine's option names (train/gbdt/params.ts), and
 * their override from a JSON file: `{"learningRate": {"type": "float", "low": 0.05, "high": 0.2,
 * "log": true}, "alpha": null}` replaces or adds a parameter, and `null` drops one.
 */
import { readFileSync } from "node:fs";
import type { ModelType } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import { parseSearchSpace, type SearchSpace } from "./space.ts";

const COMMON: SearchSpace = {
  learningRate: { type: "float", low: 0.01, high: 0.3, log: true },
  lambda: { type: "float", low: 1e-3, high: 10, log: true },
  subsample: { type: "float", low: 0.5, high: 1 },
  colsample: { type: "float", low: 0.5, high: 1 },
};

/** The search space `arbor tune` uses for each --model-type. */
export const DEFAULT_SPACES: Record<ModelType, SearchSpace> = {
  // LightGBM's usual knobs: leaves, leaf size, L1/L2.
  lightgbm: {
    learningRate: COMMON.learningRate,
    numLeaves: { type: "int", low: 8, high: 256, log: true },
    minDataInLeaf: { type: "int", low: 5, high: 200, log: true },
    lambda: COMMON.lambda,
    alpha: { type: "float", low: 1e-3, high: 10, log: true },
    subsample: COMMON.subsample,
    colsample: COMMON.colsample,
  },
  // XGBoost's: depth, min child weight, gamma (min split gain), L2.
  xgboost: {
    learningRate: COMMON.learningRate,
    maxDepth: { type: "int", low: 3, high: 10 },
    minChildWeight: { type: "float", low: 0.1, high: 20, log: true },
    minSplitGain: { type: "float", low: 1e-4, high: 1, log: true },
    lambda: COMMON.lambda,
    subsample: COMMON.subsample,
    colsample: COMMON.colsample,
  },
  // CatBoost's: depth of the symmetric trees, L2 leaf regularisation.
  catboost: {
    learningRate: { type: "float", low: 0.02, high: 0.3, log: true },
    maxDepth: { type: "int", low: 4, high: 10 },
    lambda: { type: "float", low: 0.1, high: 20, log: true },
    subsample: COMMON.subsample,
    colsample: COMMON.colsample,
  },
};

/** The default space of a model type with the overrides of a JSON file applied. */
export function resolveSearchSpace(modelType: ModelType, overrideFile?: string): SearchSpace {
  const space: SearchSpace = { ...DEFAULT_SPACES[modelType] };
  if (overrideFile === undefined) return space;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(overrideFile, "utf8"));
  } catch (e) {
    throw arborError(
      "INVALID_ARGUMENT",
      `--search-space: cannot read JSON from ${overrideFile}: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw arborError("INVALID_ARGUMENT", `--search-space: ${overrideFile} must hold a JSON object`);
  }
  return applySpaceOverride(space, raw as Record<string, unknown>, `--search-space ${overrideFile}`);
}

/** Apply `{param: distribution | null}` overrides to a space (null drops the parameter). */
export function applySpaceOverride(
  base: SearchSpace,
  raw: Record<string, unknown>,
  where: string,
): SearchSpace {
  const space: SearchSpace = { ...base };
  const updates: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (v === null) delete space[k];
    else updates[k] = v;
  }
  Object.assign(space, parseSearchSpace(updates, where));
  if (Object.keys(space).length === 0)
    throw arborError("INVALID_ARGUMENT", `${where}: the search space is empty`);
  return space;
}
