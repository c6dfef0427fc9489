/**
 * A FeaturePlan is everything request validation needs from a Signature, computed once when a
 * version loads (STYLE.md: decide at load time, not per request).
 */
import type { Signature } from "../../shared/bundle.ts";
import { ByteTable } from "./byte-table.ts";

/** The largest finite float32: feature values beyond it are refused (NON_FINITE_VALUE). */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** Per-version lookup tables for turning rows into the ONNX input matrix. */
export class FeaturePlan {
  /** Number of features F (columns of the ONNX input). */
  readonly width: number;
  /** Feature names in signature order. */
  readonly names: readonly string[];
  /** Feature name → column index. */
  readonly index: ReadonlyMap<string, number>;
  /** 1 where the feature is categorical. */
  readonly categorical: Uint8Array;
  /** Category string → code, per categorical feature (null for numeric ones). */
  readonly codes: readonly (ReadonlyMap<string, number> | null)[];
  /** {@link names} and each categorical feature's categories by their UTF-8 bytes (json-rows.ts). */
  readonly nameBytes: ByteTable;
  readonly categoryBytes: readonly (ByteTable | null)[];
  /**
   * The feature named `__proto__`, or -1: msgpackr renames that key of a decoded map to
   * `__proto_`, so the msgpack fast path leaves object rows naming it to the general path.
   */
  readonly protoFeature: number;

  constructor(signature: Signature) {
    const f = signature.features.length;
    this.width = f;
    this.names = signature.features.map((s) => s.name);
    const index = new Map<string, number>();
    const categorical = new Uint8Array(f);
    const codes: (Map<string, number> | null)[] = new Array(f).fill(null);
    for (let i = 0; i < f; i++) {
      const spec = signature.features[i];
      index.set(spec.name, i);
      if (spec.type === "categorical") {
        categorical[i] = 1;
        const m = new Map<string, number>();
        const cats = spec.categories ?? [];
        for (let c = 0; c < cats.length; c++) m.set(cats[c], c);
        codes[i] = m;
      }
    }
    this.index = index;
    this.categorical = categorical;
    this.codes = codes;
    this.nameBytes = new ByteTable(this.names);
    this.protoFeature = this.names.indexOf("__proto__");
    this.categoryBytes = signature.features.map((s) =>
      s.type === "categorical" ? new ByteTable(s.categories ?? []) : null,
    );
  }
}
