/**
 * The model registry: versions (immutable bundles under `models/{name}/v{version}/`) and labels
 * (pointers under `models/{name}/labels/{label}.json`), with the database as the index and audit
 * trail and the store as the truth serve replicas read.
 *
 * Registration runs in one transaction that holds the model's row lock from allocating the number
 * to inserting the version row. A registration that dies half-way (even SIGKILL) rolls back, so
 * its number is handed out again and the next registration of that number first clears whatever
 * files the dead one left (manifest first). Serve trusts only bundles with a manifest, and the
 * manifest is written after every other file.
 */
import { and, asc, eq, isNull, sql } from "drizzle-orm";
import {
  BUNDLE_FILES,
  type LabelPointer,
  type Lineage,
  lineageSchema,
  type Manifest,
  type ManifestFile,
  NAME_PATTERN,
} from "../shared/bundle.ts";
import { arborError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { labelKey, labelsPrefix, versionFileKey, versionPrefix } from "../shared/paths.ts";
import { checkAgainstSourceManifest, copyToStore, inspectBundle, sha256Hex } from "./bundle-import.ts";
import type { RegistryDatabase, RegistryTransaction as Tx } from "./db/client.ts";
import {
  labelEvents,
  type ModelRow,
  modelLabels,
  models,
  modelVersions,
  splits,
  studies,
} from "./db/schema.ts";
import {
  type PointerWrite,
  parsePointer,
  readPointerObject,
  restorePointer,
  rollbackCandidates,
  writePointer,
} from "./label-pointer.ts";
import { findVersion, getModel, labelOf, listModels, showModel, versionOf } from "./model-queries.ts";
import type {
  LabelChange,
  LabelChangeOptions,
  LabelInfo,
  ModelDetails,
  ModelSummary,
  RegisterHooks,
  RegisterInput,
  RegisterResult,
  VersionInfo,
} from "./model-types.ts";
import type { ArtifactStore } from "./store/artifact-store.ts";

export type * from "./model-types.ts";

/** Model versions and labels over one database and one artifact store. */
export class ModelRegistry {
  readonly #db: RegistryDatabase;
  readonly #store: ArtifactStore;
  readonly #logger: Logger;
  readonly #hooks: RegisterHooks;

  constructor(db: RegistryDatabase, store: ArtifactStore, logger: Logger, hooks: RegisterHooks = {}) {
    this.#db = db;
    this.#store = store;
    this.#logger = logger;
    this.#hooks = hooks;
  }

  /** Copy a bundle folder into the store as the model's next version. */
  async register(input: RegisterInput): Promise<RegisterResult> {
    const name = checkName(input.name, "register", "--name");
    const parsedLineage = lineageSchema.safeParse(input.lineage ?? {});
    if (!parsedLineage.success) {
      throw arborError("INVALID_ARGUMENT", `register: lineage is invalid: ${parsedLineage.error.message}`);
    }
    const explicit = parsedLineage.data;
    const source = await inspectBundle(input.bundleDir);
    // Lineage the bundle carries (train/export writes it into its manifest) fills the gaps; ids
    // given explicitly must exist, inherited ones are linked only when they exist here.
    const lineage: Lineage = { ...(source.sourceManifest?.lineage ?? {}), ...explicit };
    let linkedSplit: string | null = null;
    let linkedStudy: string | null = null;
    if (lineage.splitId !== undefined) {
      const [split] = await this.#db.select().from(splits).where(eq(splits.id, lineage.splitId)).limit(1);
      if (!split && explicit.splitId !== undefined) {
        throw arborError("SPLIT_NOT_FOUND", `register: --split ${lineage.splitId} does not exist`);
      }
      if (split) {
        linkedSplit = split.id;
        lineage.dataFingerprint ??= split.fingerprint;
      }
    }
    if (lineage.studyId !== undefined) {
      const [study] = await this.#db.select().from(studies).where(eq(studies.id, lineage.studyId)).limit(1);
      if (!study && explicit.studyId !== undefined) {
        throw arborError("STUDY_NOT_FOUND", `register: --study ${lineage.studyId} does not exist`);
      }
      if (study) {
        linkedStudy = study.id;
        lineage.studyName ??= study.name;
      }
    }

    const result = await this.#db.transaction(async (tx) => {
      // Create-or-bump in one statement: the row lock it takes serialises registrations of this
      // model until commit, so numbers are 1..N without gaps or duplicates.
      const [model] = await tx
        .insert(models)
        .values({ name, description: input.description ?? null, latestVersion: 1 })
        .onConflictDoUpdate({
          target: models.name,
          set: { latestVersion: sql`${models.latestVersion} + 1`, updatedAt: new Date() },
        })
        .returning();
      const version = model.latestVersion;
      const at = { name, version };
      await this.#refuseIfLabelled(name, version);
      try {
        await this.#clearVersionFiles(name, version);
        const copied: ManifestFile[] = [];
        for (const file of source.files) {
          copied.push(await copyToStore(this.#store, versionFileKey(name, version, file.name), file));
        }
        checkAgainstSourceManifest(source, copied);
        await this.#hooks.afterCopy?.(at);
        const manifest: Manifest = {
          format: "arbor-manifest/1",
          name,
          version,
          createdAt: new Date().toISOString(),
          files: copied,
          lineage,
        };
        const manifestBytes = `${JSON.stringify(manifest, null, 2)}\n`;
        await this.#store.put(versionFileKey(name, version, BUNDLE_FILES.manifest), manifestBytes, {
          contentType: "application/json",
        });
        const manifestSha256 = sha256Hex(manifestBytes);
        await this.#hooks.afterManifest?.(at);
        await tx.insert(modelVersions).values({
          modelId: model.id,
          version,
          description: input.description ?? null,
          manifestSha256,
          files: copied,
          sizeBytes: copied.reduce((s, f) => s + f.size, 0),
          task: source.signature.task,
          splitId: linkedSplit,
          studyId: linkedStudy,
          trialNumber: lineage.trialNumber ?? null,
          dataFingerprint: lineage.dataFingerprint ?? null,
          lineage,
          metrics: source.metrics,
          createdBy: input.actor ?? null,
        });
        return { name, version, manifestSha256, files: copied };
      } catch (e) {
        // Still under the row lock: nobody else can be writing this version's files.
        await this.#clearVersionFiles(name, version).catch((err) =>
          this.#logger.warn({ err, model: name, version }, "could not clear a failed registration"),
        );
        throw e;
      }
    });
    this.#logger.info({ model: name, version: result.version }, "model version registered");
    return result;
  }

  /** Point `label` at `version` (DB row + audit event + store pointer, all or nothing). */
  async promote(
    name: string,
    version: number,
    label: string,
    options: LabelChangeOptions,
  ): Promise<LabelChange> {
    checkName(name, "promote", "NAME");
    checkName(label, "promote", "--label");
    if (!Number.isInteger(version) || version < 1) {
      throw arborError("INVALID_ARGUMENT", `promote: VERSION must be a positive integer, got ${version}`);
    }
    return this.#moveLabel(name, label, "promote", options, async () => version);
  }

  /** Move `label` back to the version it pointed at before the current one. */
  async rollback(name: string, label: string, options: LabelChangeOptions): Promise<LabelChange> {
    checkName(name, "rollback", "NAME");
    checkName(label, "rollback", "--label");
    return this.#moveLabel(name, label, "rollback", options, async (tx, model, current) => {
      if (current === null) {
        throw arborError("LABEL_NOT_FOUND", `rollback: model ${name} has no label "${label}"`);
      }
      const history = await tx
        .select({ action: labelEvents.action, toVersion: labelEvents.toVersion })
        .from(labelEvents)
        .where(and(eq(labelEvents.modelId, model.id), eq(labelEvents.label, label)))
        .orderBy(asc(labelEvents.id));
      const candidates = rollbackCandidates(history);
      if (candidates.length === 0) {
        throw arborError(
          "NO_PREVIOUS_VERSION",
          `rollback: label "${label}" of ${name} has no earlier version`,
        );
      }
      const live = await tx
        .select({ version: modelVersions.version })
        .from(modelVersions)
        .where(and(eq(modelVersions.modelId, model.id), isNull(modelVersions.archivedAt)));
      const liveSet = new Set(live.map((v) => v.version));
      const target = candidates.find((v) => liveSet.has(v));
      if (target === undefined) {
        throw arborError(
          "NO_PREVIOUS_VERSION",
          `rollback: every earlier version of label "${label}" of ${name} is archived`,
        );
      }
      return target;
    });
  }

  /** Archive a version; VERSION_IN_USE while a label points at it. */
  async archive(name: string, version: number): Promise<{ name: string; version: number; archivedAt: Date }> {
    checkName(name, "archive", "NAME");
    return this.#db.transaction(async (tx) => {
      const model = await getModel(tx, name, "archive", true);
      const row = await findVersion(tx, model, version, "archive");
      const using = await tx
        .select({ label: modelLabels.label })
        .from(modelLabels)
        .where(and(eq(modelLabels.modelId, model.id), eq(modelLabels.version, version)));
      if (using.length > 0) {
        const labels = using.map((u) => u.label);
        throw arborError(
          "VERSION_IN_USE",
          `archive: version ${version} of ${name} is labelled ${labels.join(", ")}`,
          { details: { labels } },
        );
      }
      if (row.archivedAt) return { name, version, archivedAt: row.archivedAt };
      const [updated] = await tx
        .update(modelVersions)
        .set({ archivedAt: new Date() })
        .where(eq(modelVersions.id, row.id))
        .returning();
      return { name, version, archivedAt: updated.archivedAt ?? new Date() };
    });
  }

  /** Every model with its label map and version count. */
  async list(): Promise<ModelSummary[]> {
    return listModels(this.#db);
  }

  /** A model's versions, labels (checked against their pointer files) and recent label events. */
  async show(name: string, options: { events?: number } = {}): Promise<ModelDetails> {
    const details = await showModel(this.#db, name, options.events ?? 20);
    for (const label of details.labels) {
      const object = await readPointerObject(this.#store, labelKey(name, label.label));
      const pointer = object ? parsePointer(object.data) : null;
      label.pointerVersion = pointer?.version ?? null;
      label.inSync = pointer?.version === label.version && pointer.sha256 === label.manifestSha256;
    }
    for (const info of await this.#store.list(labelsPrefix(name))) {
      const label = info.key.slice(labelsPrefix(name).length).replace(/\.json$/, "");
      if (details.labels.some((l) => l.label === label)) continue;
      const object = await readPointerObject(this.#store, info.key);
      const pointer = object ? parsePointer(object.data) : null;
      if (pointer) details.strayPointers.push({ label, version: pointer.version });
    }
    return details;
  }

  /** One version of a model; VERSION_NOT_FOUND when absent. */
  async getVersion(name: string, version: number): Promise<VersionInfo> {
    return versionOf(this.#db, name, version);
  }

  /** Where a label points; LABEL_NOT_FOUND when it does not exist. */
  async getLabel(name: string, label: string): Promise<LabelInfo> {
    return labelOf(this.#db, name, label);
  }

  async #moveLabel(
    name: string,
    label: string,
    action: "promote" | "rollback",
    options: LabelChangeOptions,
    pickTarget: (tx: Tx, model: ModelRow, current: number | null) => Promise<number>,
  ): Promise<LabelChange> {
    let write: PointerWrite | null = null;
    try {
      const change = await this.#db.transaction(async (tx) => {
        // The model row lock serialises every label move (and archive) of this model, so the
        // pointer written below is always the one the committed row describes.
        const model = await getModel(tx, name, action, true);
        const [current] = await tx
          .select()
          .from(modelLabels)
          .where(and(eq(modelLabels.modelId, model.id), eq(modelLabels.label, label)));
        const from = current?.version ?? null;
        const to = await pickTarget(tx, model, from);
        const target = await findVersion(tx, model, to, action);
        if (target.archivedAt) {
          throw arborError("VERSION_ARCHIVED", `${action}: version ${to} of ${name} is archived`);
        }
        const now = new Date();
        await tx
          .insert(modelLabels)
          .values({ modelId: model.id, label, version: to, updatedBy: options.actor, updatedAt: now })
          .onConflictDoUpdate({
            target: [modelLabels.modelId, modelLabels.label],
            set: { version: to, updatedBy: options.actor, updatedAt: now },
          });
        const [event] = await tx
          .insert(labelEvents)
          .values({
            modelId: model.id,
            label,
            action,
            fromVersion: from,
            toVersion: to,
            actor: options.actor,
            reason: options.reason ?? null,
            createdAt: now,
          })
          .returning({ id: labelEvents.id });
        await tx.update(models).set({ updatedAt: now }).where(eq(models.id, model.id));
        const pointer: LabelPointer = {
          model: name,
          label,
          version: to,
          sha256: target.manifestSha256,
          updated_at: now.toISOString(),
        };
        // Last step before commit: if the store refuses, the transaction rolls back.
        write = await writePointer(this.#store, labelKey(name, label), pointer);
        await this.#hooks.afterPointerWrite?.({ name, label, version: to });
        return {
          name,
          label,
          version: to,
          previousVersion: from,
          manifestSha256: target.manifestSha256,
          eventId: event.id,
        };
      });
      this.#logger.info(
        { model: name, label, action, from: change.previousVersion, to: change.version },
        "label moved",
      );
      return change;
    } catch (e) {
      const written = write as PointerWrite | null;
      if (written) {
        // The pointer went out but the transaction did not commit: put the old pointer back.
        await restorePointer(this.#store, written).catch((err) =>
          this.#logger.error({ err, model: name, label }, "could not restore the label pointer"),
        );
      }
      throw e;
    }
  }

  /**
   * Files under a version number the database has not handed out yet are leftovers of a dead
   * registration and get replaced, unless a label pointer names that version: then the store holds
   * a live bundle this database does not know (a reset or restored database), never clobbered.
   */
  async #refuseIfLabelled(name: string, version: number): Promise<void> {
    for (const info of await this.#store.list(labelsPrefix(name))) {
      const object = await readPointerObject(this.#store, info.key);
      const pointer = object ? parsePointer(object.data) : null;
      if (pointer?.version === version) {
        throw arborError(
          "CONFLICT",
          `register: the store's label pointer ${info.key} names ${name} v${version}, which this database ` +
            "has never registered; the database and the store do not match (check DATABASE_URL and ARBOR_STORE)",
        );
      }
    }
  }

  async #clearVersionFiles(name: string, version: number): Promise<void> {
    // Manifest first: a folder without a manifest is never served.
    await this.#store.delete(versionFileKey(name, version, BUNDLE_FILES.manifest));
    await this.#store.deletePrefix(versionPrefix(name, version));
  }
}

function checkName(name: string, op: string, what: string): string {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw arborError("BAD_NAME", `${op}: ${what} "${name}" is not a valid name`);
  }
  return name;
}
