/**
 * Deterministic object keys in the artifact store (DESIGN.md, "Artifact store layout").
 * Keys are relative to the store root and always use '/'.
 */

/** Key of one file of a split. */
export function splitKey(
  splitId: string,
  file: "train.parquet" | "valid.parquet" | "test.parquet" | "split.json",
): string {
  return `splits/${splitId}/${file}`;
}

/** Prefix of a split's files. */
export function splitPrefix(splitId: string): string {
  return `splits/${splitId}/`;
}

/** Key of a trial's metrics. */
export function trialMetricsKey(studyId: string, trialNumber: number): string {
  return `studies/${studyId}/trials/${trialNumber}/metrics.json`;
}

/** Prefix of one model version's bundle: `models/{name}/v{version}/`. */
export function versionPrefix(model: string, version: number): string {
  return `models/${model}/v${version}/`;
}

/** Key of one file of a model version's bundle. */
export function versionFileKey(model: string, version: number, file: string): string {
  return `${versionPrefix(model, version)}${file}`;
}

/** Key of a label pointer: `models/{name}/labels/{label}.json`. */
export function labelKey(model: string, label: string): string {
  return `models/${model}/labels/${label}.json`;
}

/** Prefix of a model's label pointers. */
export function labelsPrefix(model: string): string {
  return `models/${model}/labels/`;
}
