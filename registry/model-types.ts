/** The model registry's public types: inputs and results of ModelRegistry, and the read models. */
import type { Lineage, ManifestFile } from "../shared/bundle.ts";

/** Test seams inside the transactions (the crash-safety and fault suites pause or throw here). */
export interface RegisterHooks {
  afterCopy?(at: { name: string; version: number }): Promise<void> | void;
  afterManifest?(at: { name: string; version: number }): Promise<void> | void;
  /** After a label pointer is written, before the label transaction commits. */
  afterPointerWrite?(at: { name: string; label: string; version: number }): Promise<void> | void;
}

/** Input of `ModelRegistry.register`. */
export interface RegisterInput {
  name: string;
  bundleDir: string;
  lineage?: Lineage;
  description?: string;
  /** Who registers (config.user). */
  actor?: string;
}

/** Result of `ModelRegistry.register`. */
export interface RegisterResult {
  name: string;
  version: number;
  manifestSha256: string;
  files: ManifestFile[];
}

/** Who moves a label, and why. */
export interface LabelChangeOptions {
  actor: string;
  reason?: string;
}

/** Result of promote and rollback. */
export interface LabelChange {
  name: string;
  label: string;
  version: number;
  previousVersion: number | null;
  manifestSha256: string;
  eventId: number;
}

/** Where a label points. */
export interface LabelInfo {
  label: string;
  version: number;
  manifestSha256: string;
  updatedBy: string;
  updatedAt: Date;
}

/**
 * A label as the database records it and as its pointer file in the store says. They differ only
 * when a label move died between writing the pointer and committing (SIGKILL, power loss);
 * promoting the label again (to either version) brings them back together.
 */
export interface LabelStatus extends LabelInfo {
  /** Version in `models/{name}/labels/{label}.json`; null when the file is missing or unreadable. */
  pointerVersion: number | null;
  /** Pointer names the same version and manifest sha256 as the database. */
  inSync: boolean;
}

/** One model version. */
export interface VersionInfo {
  version: number;
  description: string | null;
  manifestSha256: string;
  files: ManifestFile[];
  sizeBytes: number;
  task: string | null;
  splitId: string | null;
  studyId: string | null;
  trialNumber: number | null;
  dataFingerprint: string | null;
  lineage: Record<string, unknown>;
  metrics: Record<string, unknown>;
  createdBy: string | null;
  createdAt: Date;
  archivedAt: Date | null;
  /** Labels pointing at this version. */
  labels: string[];
}

/** One row of `arbor models list`. */
export interface ModelSummary {
  name: string;
  description: string | null;
  latestVersion: number;
  versions: number;
  labels: Record<string, number>;
  createdAt: Date;
  updatedAt: Date;
}

/** One audit entry. */
export interface LabelEventInfo {
  id: number;
  label: string;
  action: "promote" | "rollback";
  fromVersion: number | null;
  toVersion: number;
  actor: string;
  reason: string | null;
  createdAt: Date;
}

/** `arbor models show NAME`. */
export interface ModelDetails extends Omit<ModelSummary, "labels"> {
  labels: LabelStatus[];
  /** Pointer files in the store for labels the database does not have (a first promotion that died before its commit). */
  strayPointers: { label: string; version: number }[];
  versionList: VersionInfo[];
  events: LabelEventInfo[];
}
