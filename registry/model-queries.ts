/** Read side of the model registry: list, show, one version, one label. */
import { and, asc, count, desc, eq, isNull } from "drizzle-orm";
import { arborError } from "../shared/errors.ts";
import type { RegistryDatabase, RegistryTransaction as Tx } from "./db/client.ts";
import {
  labelEvents,
  type ModelRow,
  type ModelVersionRow,
  modelLabels,
  models,
  modelVersions,
} from "./db/schema.ts";
import type { LabelInfo, LabelStatus, ModelDetails, ModelSummary, VersionInfo } from "./model-types.ts";

/** Every model with its label map and version count. */
export async function listModels(db: RegistryDatabase): Promise<ModelSummary[]> {
  const rows = await db.select().from(models).where(isNull(models.deletedAt)).orderBy(asc(models.name));
  const counts = await db
    .select({ modelId: modelVersions.modelId, n: count() })
    .from(modelVersions)
    .where(isNull(modelVersions.archivedAt))
    .groupBy(modelVersions.modelId);
  const labels = await db.select().from(modelLabels);
  return rows.map((m) => ({
    name: m.name,
    description: m.description,
    latestVersion: m.latestVersion,
    versions: Number(counts.find((c) => c.modelId === m.id)?.n ?? 0),
    labels: Object.fromEntries(labels.filter((l) => l.modelId === m.id).map((l) => [l.label, l.version])),
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
  }));
}

/** A model's versions, labels and its `events` most recent label events. */
export async function showModel(db: RegistryDatabase, name: string, events: number): Promise<ModelDetails> {
  const model = await getModel(db, name, "show");
  const versions = await db
    .select()
    .from(modelVersions)
    .where(eq(modelVersions.modelId, model.id))
    .orderBy(asc(modelVersions.version));
  const labels = await labelsOf(db, model, versions);
  const recent = await db
    .select()
    .from(labelEvents)
    .where(eq(labelEvents.modelId, model.id))
    .orderBy(desc(labelEvents.id))
    .limit(events);
  return {
    name: model.name,
    description: model.description,
    latestVersion: model.latestVersion,
    versions: versions.filter((v) => !v.archivedAt).length,
    createdAt: model.createdAt,
    updatedAt: model.updatedAt,
    // Pointer columns are filled in by ModelRegistry.show, which has the store.
    labels: labels.map((l): LabelStatus => ({ ...l, pointerVersion: null, inSync: false })),
    strayPointers: [],
    versionList: versions.map((v) => versionInfo(v, labels)),
    events: recent.map((e) => ({
      id: e.id,
      label: e.label,
      action: e.action,
      fromVersion: e.fromVersion,
      toVersion: e.toVersion,
      actor: e.actor,
      reason: e.reason,
      createdAt: e.createdAt,
    })),
  };
}

/** One version of a model; VERSION_NOT_FOUND when absent. */
export async function versionOf(db: RegistryDatabase, name: string, version: number): Promise<VersionInfo> {
  const model = await getModel(db, name, "get version");
  const row = await findVersion(db, model, version, "get version");
  return versionInfo(row, await labelsOf(db, model, [row]));
}

/** Where a label points; LABEL_NOT_FOUND when it does not exist. */
export async function labelOf(db: RegistryDatabase, name: string, label: string): Promise<LabelInfo> {
  const model = await getModel(db, name, "get label");
  const versions = await db.select().from(modelVersions).where(eq(modelVersions.modelId, model.id));
  const found = (await labelsOf(db, model, versions)).find((l) => l.label === label);
  if (!found) throw arborError("LABEL_NOT_FOUND", `get label: model ${name} has no label "${label}"`);
  return found;
}

/**
 * The model row; MODEL_NOT_FOUND when absent. With `forUpdate` (inside a transaction) it also takes
 * the row lock that serialises registrations, label moves and archives of the model.
 */
export async function getModel(
  db: Tx | RegistryDatabase,
  name: string,
  op: string,
  forUpdate = false,
): Promise<ModelRow> {
  const query = db.select().from(models).where(eq(models.name, name));
  const [model] = forUpdate ? await query.for("update") : await query.limit(1);
  if (!model || model.deletedAt) throw arborError("MODEL_NOT_FOUND", `${op}: no model named "${name}"`);
  return model;
}

/** The model's labels, with the manifest sha256 of the versions they point at. */
async function labelsOf(
  db: RegistryDatabase,
  model: ModelRow,
  versions: readonly ModelVersionRow[],
): Promise<LabelInfo[]> {
  const rows = await db
    .select()
    .from(modelLabels)
    .where(eq(modelLabels.modelId, model.id))
    .orderBy(asc(modelLabels.label));
  const missing = rows.filter((r) => !versions.some((v) => v.version === r.version)).map((r) => r.version);
  const extra =
    missing.length > 0
      ? await db.select().from(modelVersions).where(eq(modelVersions.modelId, model.id))
      : [];
  const all = [...versions, ...extra];
  return rows.map((r) => ({
    label: r.label,
    version: r.version,
    manifestSha256: all.find((v) => v.version === r.version)?.manifestSha256 ?? "",
    updatedBy: r.updatedBy,
    updatedAt: r.updatedAt,
  }));
}

/** One version row; VERSION_NOT_FOUND when absent. */
export async function findVersion(
  db: Tx | RegistryDatabase,
  model: ModelRow,
  version: number,
  op: string,
): Promise<ModelVersionRow> {
  const [row] = await db
    .select()
    .from(modelVersions)
    .where(and(eq(modelVersions.modelId, model.id), eq(modelVersions.version, version)))
    .limit(1);
  if (!row) throw arborError("VERSION_NOT_FOUND", `${op}: model ${model.name} has no version ${version}`);
  return row;
}

/** The public view of a version row. */
function versionInfo(v: ModelVersionRow, labels: readonly LabelInfo[]): VersionInfo {
  return {
    version: v.version,
    description: v.description,
    manifestSha256: v.manifestSha256,
    files: v.files,
    sizeBytes: v.sizeBytes,
    task: v.task,
    splitId: v.splitId,
    studyId: v.studyId,
    trialNumber: v.trialNumber,
    dataFingerprint: v.dataFingerprint,
    lineage: v.lineage,
    metrics: v.metrics,
    createdBy: v.createdBy,
    createdAt: v.createdAt,
    archivedAt: v.archivedAt,
    labels: labels.filter((l) => l.version === v.version).map((l) => l.label),
  };
}
