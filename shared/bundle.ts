/**
 * The model bundle contract: the files of a bundle, `signature.json`, `manifest.json`, and the
 * label pointer files. Written by train/, checked by registry/, read by serve/.
 */
import { z } from "zod";
import { arborError } from "./errors.ts";

/** Files of a bundle, in manifest order. */
export const BUNDLE_FILES = {
  model: "model.onnx",
  signature: "signature.json",
  metrics: "metrics.json",
  manifest: "manifest.json",
} as const;

/** Files that must be present (the manifest is written last, by whoever publishes the bundle). */
export const REQUIRED_BUNDLE_FILES: readonly string[] = [
  BUNDLE_FILES.model,
  BUNDLE_FILES.signature,
  BUNDLE_FILES.metrics,
];

/** Values of `signature.task`. */
export const TASKS = ["binary", "multiclass", "regression"] as const;
/** What the model predicts. */
export type Task = (typeof TASKS)[number];

/** Values of `signature.modelType` and of `--model-type`. */
export const MODEL_TYPES = ["lightgbm", "xgboost", "catboost"] as const;
/** One of {@link MODEL_TYPES}. */
export type ModelType = (typeof MODEL_TYPES)[number];

/** Values of `signature.growth`: how trees were grown. */
export const GROWTH_POLICIES = ["leafwise", "depthwise", "oblivious"] as const;
/** One of {@link GROWTH_POLICIES}. */
export type GrowthPolicy = (typeof GROWTH_POLICIES)[number];

/**
 * One input feature. Numeric features are fed to ONNX as float32. Categorical features are fed as
 * the float32 index of the value in `categories`; a value not in the dictionary (or null) is fed
 * as NaN, i.e. treated as missing, and takes the learned default direction at every split.
 */
export const featureSpecSchema = z.object({
  name: z.string().min(1),
  type: z.enum(["numeric", "categorical"]),
  /** Categorical dictionary: code = index. Absent for numeric features. */
  categories: z.array(z.string()).optional(),
});
export type FeatureSpec = z.infer<typeof featureSpecSchema>;

/**
 * `signature.json`. The ONNX graph has one input named `input` of type float32 and shape [N, F]
 * (F = features.length, in this order). Outputs: `margin` [N, K] (raw scores, K = 1 for binary and
 * regression, number of classes for multiclass), plus `probabilities` [N, C] for classifiers
 * (binary: [N, 2] = [1-p, p]) and `prediction` [N, 1] for regression.
 */
export const signatureSchema = z.object({
  format: z.literal("arbor-bundle/1"),
  task: z.enum(TASKS),
  target: z.string(),
  features: z.array(featureSpecSchema).min(1),
  /** Class labels as strings, in output order (binary: [negative, positive]). */
  classes: z.array(z.string()).optional(),
  /** Objective name, e.g. "binary:logistic", "multi:softmax", "reg:squarederror". */
  objective: z.string(),
  /** Raw-margin base score per output (K values). */
  baseScore: z.array(z.number()),
  modelType: z.enum(MODEL_TYPES).optional(),
  growth: z.enum(GROWTH_POLICIES).optional(),
  numTrees: z.number().int().nonnegative(),
  /** Where the bundle came from: "arbor" or "xgboost-import". */
  source: z.string().default("arbor"),
});
export type Signature = z.infer<typeof signatureSchema>;

/** One file in a manifest. */
export const manifestFileSchema = z.object({
  path: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
});
export type ManifestFile = z.infer<typeof manifestFileSchema>;

/** Where a model version came from. */
export const lineageSchema = z.object({
  splitId: z.string().optional(),
  studyId: z.string().optional(),
  studyName: z.string().optional(),
  trialNumber: z.number().int().optional(),
  dataFingerprint: z.string().optional(),
  params: z.record(z.string(), z.unknown()).optional(),
});
export type Lineage = z.infer<typeof lineageSchema>;

/** `manifest.json`: the sha256 and size of every other file of the bundle. */
export const manifestSchema = z.object({
  format: z.literal("arbor-manifest/1"),
  name: z.string().optional(),
  version: z.number().int().positive().optional(),
  createdAt: z.string(),
  files: z.array(manifestFileSchema).min(1),
  lineage: lineageSchema.optional(),
});
export type Manifest = z.infer<typeof manifestSchema>;

/** `models/{name}/labels/{label}.json`: the pointer that serve replicas follow. */
export const labelPointerSchema = z.object({
  model: z.string(),
  label: z.string(),
  version: z.number().int().positive(),
  /** sha256 of the version's manifest.json bytes. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  updated_at: z.string(),
});
export type LabelPointer = z.infer<typeof labelPointerSchema>;

/**
 * A label pointer's bytes, checked; STORE_INTEGRITY naming `where` (the pointer's key) and what is
 * wrong with it otherwise.
 */
export function decodeLabelPointer(data: Uint8Array, where: string): LabelPointer {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch (e) {
    throw arborError("STORE_INTEGRITY", `label pointer ${where} is not JSON: ${(e as Error).message}`);
  }
  const parsed = labelPointerSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw arborError(
      "STORE_INTEGRITY",
      `label pointer ${where} is not a label pointer: ${problems.join("; ")}`,
    );
  }
  return parsed.data;
}

/** Names of models, labels and splits: safe in paths, URLs and SQL. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
