/**
 * Explain glue: SHAP contributions and global importance for a loaded slot. The TreeEnsemble is
 * decoded from the slot's model.onnx on first use and cached on the slot (a bundle explains itself:
 * covers travel in the ONNX metadata).
 */
import { arborError } from "../shared/errors.ts";
import type { ClassPrediction } from "./core/predictions.ts";
import type { ModelSlot } from "./model-cache/slot.ts";

/** SHAP for the rows of one request. */
export function explainRows(
  _slot: ModelSlot,
  _data: Float32Array,
  _rows: number,
  _topK: number | null,
  _predictions: (number | ClassPrediction)[],
): Record<string, unknown>[] {
  throw arborError("EXPLAIN_UNAVAILABLE", "explain: TreeSHAP is not available in this build");
}

/** Global importance of a slot's ensemble. */
export function importanceOf(_slot: ModelSlot): Record<string, unknown> {
  throw arborError("EXPLAIN_UNAVAILABLE", "importance: not available in this build");
}

/** SHAP values as a flat matrix for the V2 `treeshap_output` tensor. */
export function shapMatrix(
  _slot: ModelSlot,
  _data: Float32Array,
  _rows: number,
): { shape: number[]; data: number[] } {
  throw arborError("EXPLAIN_UNAVAILABLE", "infer: treeshap_output is not available in this build");
}
