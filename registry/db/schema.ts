/**
 * The registry's tables (DESIGN.md, "Registry schema"). One schema for PGlite and Postgres; the SQL
 * migrations in registry/migrations/ are generated from this file with drizzle-kit
 * (`npx drizzle-kit generate --config registry/drizzle.config.ts`).
 *
 * Soft delete by default: rows carry `deleted_at` (versions: `archived_at`) and only an explicit
 * purge removes rows and artifacts.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

const createdAt = () => timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();
const updatedAt = () => timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();
const at = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

/** Data splits: `splits/{id}/train|valid|test.parquet` + `split.json` in the store. */
export const splits = pgTable(
  "splits",
  {
    /** `spl_` + 20 lowercase base32 chars, time-ordered. */
    id: text("id").primaryKey(),
    name: text("name"),
    sourceUri: text("source_uri").notNull(),
    /** sha256 of the input file. */
    fingerprint: text("fingerprint").notNull(),
    strategy: text("strategy").notNull(),
    target: text("target").notNull(),
    options: jsonb("options").$type<Record<string, unknown>>().notNull().default({}),
    report: jsonb("report").$type<Record<string, unknown>>().notNull().default({}),
    rows: bigint("rows", { mode: "number" }).notNull(),
    tags: text("tags").array().notNull().default(sql`'{}'::text[]`),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    deletedAt: at("deleted_at"),
  },
  (t) => [index("splits_name_idx").on(t.name), index("splits_created_at_idx").on(t.createdAt)],
);

/** Study lifecycle. */
export const STUDY_STATUSES = ["queued", "running", "complete", "failed", "cancelled"] as const;
export type StudyStatus = (typeof STUDY_STATUSES)[number];

/** Optuna's study: a search over hyperparameters for one split, task and metric. */
export const studies = pgTable(
  "studies",
  {
    /** `stu_` + 20 lowercase base32 chars. */
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    splitId: text("split_id").references(() => splits.id, { onDelete: "set null" }),
    task: text("task").notNull(),
    target: text("target").notNull(),
    modelType: text("model_type"),
    /** Metric to optimise (auc, logloss, rmse, …) and whether bigger is better. */
    metric: text("metric").notNull(),
    direction: text("direction", { enum: ["minimize", "maximize"] }).notNull(),
    /** `{name: "tpe", options: {...}}`. */
    sampler: jsonb("sampler").$type<Record<string, unknown>>().notNull().default({}),
    /** `{name: "median", options: {...}}`. */
    pruner: jsonb("pruner").$type<Record<string, unknown>>().notNull().default({}),
    searchSpace: jsonb("search_space").$type<Record<string, unknown>>().notNull().default({}),
    /** Everything else the study was started with (trials budget, timeout, seed, register/promote). */
    settings: jsonb("settings").$type<Record<string, unknown>>().notNull().default({}),
    status: text("status", { enum: STUDY_STATUSES }).notNull().default("queued"),
    bestTrialNumber: integer("best_trial_number"),
    bestValue: doublePrecision("best_value"),
    /** The job that runs it, when started through the control plane. */
    jobId: text("job_id"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    finishedAt: at("finished_at"),
    deletedAt: at("deleted_at"),
  },
  (t) => [
    uniqueIndex("studies_name_key").on(t.name),
    index("studies_split_id_idx").on(t.splitId),
    index("studies_status_idx").on(t.status),
  ],
);

/** Trial lifecycle (Optuna's TrialState names, lowercase). */
export const TRIAL_STATES = ["waiting", "running", "complete", "pruned", "failed"] as const;
export type TrialState = (typeof TRIAL_STATES)[number];

/** One evaluation of one parameter set in a study. */
export const trials = pgTable(
  "trials",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    studyId: text("study_id")
      .notNull()
      .references(() => studies.id, { onDelete: "cascade" }),
    /** 0, 1, 2… per study. */
    number: integer("number").notNull(),
    state: text("state", { enum: TRIAL_STATES }).notNull().default("running"),
    params: jsonb("params").$type<Record<string, unknown>>().notNull().default({}),
    /** The distribution each param was sampled from, for the sampler and for importances. */
    distributions: jsonb("distributions").$type<Record<string, unknown>>().notNull().default({}),
    /** Validation metric per boosting round: `{"10": 0.71, "20": 0.74}`. */
    intermediateValues: jsonb("intermediate_values").$type<Record<string, number>>().notNull().default({}),
    value: doublePrecision("value"),
    userAttrs: jsonb("user_attrs").$type<Record<string, unknown>>().notNull().default({}),
    workerId: text("worker_id"),
    heartbeatAt: at("heartbeat_at"),
    attempts: integer("attempts").notNull().default(0),
    error: text("error"),
    startedAt: at("started_at"),
    finishedAt: at("finished_at"),
    durationMs: doublePrecision("duration_ms"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("trials_study_number_key").on(t.studyId, t.number),
    index("trials_study_state_idx").on(t.studyId, t.state),
    index("trials_state_heartbeat_idx").on(t.state, t.heartbeatAt),
  ],
);

/** A named model; its versions are numbered 1, 2, 3… */
export const models = pgTable(
  "models",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    name: text("name").notNull(),
    description: text("description"),
    /** Highest version number handed out; bumped under the row lock by register. */
    latestVersion: integer("latest_version").notNull().default(0),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    deletedAt: at("deleted_at"),
  },
  (t) => [uniqueIndex("models_name_key").on(t.name)],
);

/** One immutable bundle under `models/{name}/v{version}/`. */
export const modelVersions = pgTable(
  "model_versions",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    modelId: bigint("model_id", { mode: "number" })
      .notNull()
      .references(() => models.id, { onDelete: "cascade" }),
    version: integer("version").notNull(),
    description: text("description"),
    /** sha256 of the version's manifest.json bytes (what label pointers carry). */
    manifestSha256: text("manifest_sha256").notNull(),
    /** The manifest's file list: `[{path, sha256, size}]`. */
    files: jsonb("files").$type<{ path: string; sha256: string; size: number }[]>().notNull(),
    sizeBytes: bigint("size_bytes", { mode: "number" }).notNull(),
    task: text("task"),
    splitId: text("split_id").references(() => splits.id, { onDelete: "set null" }),
    studyId: text("study_id").references(() => studies.id, { onDelete: "set null" }),
    trialNumber: integer("trial_number"),
    dataFingerprint: text("data_fingerprint"),
    lineage: jsonb("lineage").$type<Record<string, unknown>>().notNull().default({}),
    metrics: jsonb("metrics").$type<Record<string, unknown>>().notNull().default({}),
    createdBy: text("created_by"),
    createdAt: createdAt(),
    archivedAt: at("archived_at"),
  },
  (t) => [
    uniqueIndex("model_versions_model_version_key").on(t.modelId, t.version),
    index("model_versions_split_id_idx").on(t.splitId),
    index("model_versions_study_id_idx").on(t.studyId),
  ],
);

/** Where each label of a model points now (the store's pointer file mirrors it). */
export const modelLabels = pgTable(
  "model_labels",
  {
    modelId: bigint("model_id", { mode: "number" })
      .notNull()
      .references(() => models.id, { onDelete: "cascade" }),
    label: text("label").notNull(),
    version: integer("version").notNull(),
    updatedBy: text("updated_by").notNull(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("model_labels_model_label_key").on(t.modelId, t.label),
    index("model_labels_model_version_idx").on(t.modelId, t.version),
  ],
);

/** Audit trail of every promotion and rollback. */
export const labelEvents = pgTable(
  "label_events",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    modelId: bigint("model_id", { mode: "number" })
      .notNull()
      .references(() => models.id, { onDelete: "cascade" }),
    label: text("label").notNull(),
    action: text("action", { enum: ["promote", "rollback"] }).notNull(),
    fromVersion: integer("from_version"),
    toVersion: integer("to_version").notNull(),
    actor: text("actor").notNull(),
    reason: text("reason"),
    createdAt: createdAt(),
  },
  (t) => [index("label_events_model_label_idx").on(t.modelId, t.label, t.id)],
);

/** Job lifecycle. */
export const JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type JobState = (typeof JOB_STATES)[number];

/** Queued work for `arbor worker` processes, claimed with `FOR UPDATE SKIP LOCKED`. */
export const jobs = pgTable(
  "jobs",
  {
    /** `job_` + 20 lowercase base32 chars. */
    id: text("id").primaryKey(),
    kind: text("kind").notNull(),
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull().default({}),
    state: text("state", { enum: JOB_STATES }).notNull().default("queued"),
    priority: integer("priority").notNull().default(0),
    workerId: text("worker_id"),
    heartbeatAt: at("heartbeat_at"),
    attempts: integer("attempts").notNull().default(0),
    maxAttempts: integer("max_attempts").notNull().default(3),
    /** Not before this time (retry back-off). */
    runAfter: at("run_after").notNull().defaultNow(),
    cancelRequestedAt: at("cancel_requested_at"),
    result: jsonb("result").$type<Record<string, unknown>>(),
    error: text("error"),
    createdBy: text("created_by"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    startedAt: at("started_at"),
    finishedAt: at("finished_at"),
  },
  (t) => [
    index("jobs_claim_idx").on(t.state, t.priority, t.runAfter, t.createdAt),
    index("jobs_state_heartbeat_idx").on(t.state, t.heartbeatAt),
    index("jobs_kind_idx").on(t.kind),
  ],
);

/** Row types, for repositories and callers. */
export type SplitRow = typeof splits.$inferSelect;
export type StudyRow = typeof studies.$inferSelect;
export type NewStudyRow = typeof studies.$inferInsert;
export type TrialRow = typeof trials.$inferSelect;
export type NewTrialRow = typeof trials.$inferInsert;
export type ModelRow = typeof models.$inferSelect;
export type ModelVersionRow = typeof modelVersions.$inferSelect;
export type ModelLabelRow = typeof modelLabels.$inferSelect;
export type LabelEventRow = typeof labelEvents.$inferSelect;
export type JobRow = typeof jobs.$inferSelect;
export type NewJobRow = typeof jobs.$inferInsert;
