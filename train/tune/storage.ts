/**
 * Studies and trials on the registry database (Optuna's RDBStorage, reduced). Every trial is a
 * row. Claims are serialised per study by the study row's lock (`SELECT … FOR UPDATE`), so two
 * processes never get the same trial number, and the sampler proposes under that lock from every
 * trial committed so far. A worker keeps its trial alive with heartbeats; a trial whose heartbeat
 * is older than the study's `staleSeconds` is taken back (retried up to `maxAttempts`, then
 * failed) by the next claim, so no trial stays "running" after its worker died.
 */
import { and, asc, desc, eq, inArray, isNull, type SQL, sql } from "drizzle-orm";
import type { RegistryDatabase } from "../../registry/db/client.ts";
import { type StudyRow, studies, type TrialRow, trials } from "../../registry/db/schema.ts";
import { newId } from "../../registry/ids.ts";
import { arborError } from "../../shared/errors.ts";
import type { Direction, FrozenTrial, ParamValue, SearchSpace } from "./space.ts";

type Tx = Parameters<Parameters<RegistryDatabase["transaction"]>[0]>[0];

/** What a study needs to start or resume (the columns of `studies`). */
export interface StudyDefinition {
  name: string;
  splitId: string | null;
  task: string;
  target: string;
  modelType: string | null;
  metric: string;
  direction: Direction;
  sampler: { name: string; options: Record<string, unknown> };
  pruner: { name: string; options: Record<string, unknown> };
  searchSpace: SearchSpace;
  settings: StudySettings;
  jobId?: string | null;
}

/** Budget and run settings stored with the study. */
export interface StudySettings {
  /** Trials to run in total (every state counts, as in Optuna's n_trials). */
  nTrials: number;
  /** A trial whose heartbeat is older than this is considered lost. */
  staleSeconds: number;
  /** Attempts per trial before a lost trial is marked failed. */
  maxAttempts: number;
  [key: string]: unknown;
}

/** Outcome of a claim. */
export type Claim =
  | { kind: "trial"; trial: TrialRow; retry: boolean }
  /** Budget used, but other workers' trials are still running: poll again later. */
  | { kind: "wait" }
  /** Nothing left to do (budget used and nothing running, or the study was cancelled). */
  | { kind: "done"; reason: "budget" | "cancelled" | "exhausted" };

/** Proposes the parameters of trial `number` from the study's trials. Null: nothing left (grid). */
export type Propose = (
  trials: readonly FrozenTrial[],
  number: number,
) => { params: Record<string, ParamValue>; distributions: Record<string, unknown> } | null;

/** Convert a row into the sampler's view. */
export function toFrozen(row: TrialRow): FrozenTrial {
  return {
    number: row.number,
    state: row.state,
    params: row.params as Record<string, ParamValue>,
    value: row.value,
    intermediateValues: row.intermediateValues,
  };
}

/** Studies and trials in the registry database. */
export class StudyStorage {
  readonly #db: RegistryDatabase;

  constructor(db: RegistryDatabase) {
    this.#db = db;
  }

  /**
   * Create the study, or load the one of that name (resume). A study of that name with another
   * task, target, metric, direction or split is a STUDY_MISMATCH.
   */
  async createOrLoad(def: StudyDefinition): Promise<{ study: StudyRow; created: boolean }> {
    const id = newId("stu");
    const inserted = await this.#db
      .insert(studies)
      .values({
        id,
        name: def.name,
        splitId: def.splitId,
        task: def.task,
        target: def.target,
        modelType: def.modelType,
        metric: def.metric,
        direction: def.direction,
        sampler: def.sampler,
        pruner: def.pruner,
        searchSpace: def.searchSpace,
        settings: def.settings,
        status: def.jobId ? "queued" : "running",
        jobId: def.jobId ?? null,
      })
      .onConflictDoNothing({ target: studies.name })
      .returning();
    if (inserted.length === 1) return { study: inserted[0], created: true };
    const study = await this.get(def.name);
    const differs: string[] = [];
    if (study.task !== def.task) differs.push(`task ${study.task}`);
    if (study.target !== def.target) differs.push(`target ${study.target}`);
    if (study.metric !== def.metric) differs.push(`metric ${study.metric}`);
    if (study.direction !== def.direction) differs.push(`direction ${study.direction}`);
    if (study.splitId !== def.splitId) differs.push(`split ${study.splitId}`);
    if ((study.modelType ?? null) !== (def.modelType ?? null)) differs.push(`model type ${study.modelType}`);
    if (differs.length > 0) {
      throw arborError(
        "STUDY_MISMATCH",
        `tune: study "${def.name}" exists with ${differs.join(", ")}; use another --study name`,
        { details: { study: study.id, differs } },
      );
    }
    return { study, created: false };
  }

  /** A study by name or id (STUDY_NOT_FOUND). */
  async get(nameOrId: string): Promise<StudyRow> {
    const cond = nameOrId.startsWith("stu_") ? eq(studies.id, nameOrId) : eq(studies.name, nameOrId);
    const [row] = await this.#db.select().from(studies).where(cond);
    if (!row || row.deletedAt) throw arborError("STUDY_NOT_FOUND", `study "${nameOrId}" does not exist`);
    return row;
  }

  /** Studies, newest first. */
  async list(filter: { status?: string; limit?: number; offset?: number } = {}): Promise<StudyRow[]> {
    const conds: SQL[] = [isNull(studies.deletedAt)];
    if (filter.status) conds.push(eq(studies.status, filter.status as StudyRow["status"]));
    return this.#db
      .select()
      .from(studies)
      .where(and(...conds))
      .orderBy(desc(studies.createdAt), desc(studies.id))
      .limit(filter.limit ?? 100)
      .offset(filter.offset ?? 0);
  }

  /** Every trial of a study, by number. */
  async trials(studyId: string): Promise<TrialRow[]> {
    return this.#db.select().from(trials).where(eq(trials.studyId, studyId)).orderBy(asc(trials.number));
  }

  /** Set a study's status (running when a worker starts on it, cancelled, failed…). */
  async setStatus(
    studyId: string,
    status: StudyRow["status"],
    onlyFrom?: StudyRow["status"][],
  ): Promise<boolean> {
    const conds: SQL[] = [eq(studies.id, studyId)];
    if (onlyFrom) conds.push(inArray(studies.status, onlyFrom));
    const finished = status === "complete" || status === "failed" || status === "cancelled";
    const rows = await this.#db
      .update(studies)
      .set({
        status,
        updatedAt: new Date(),
        ...(finished ? { finishedAt: new Date() } : { finishedAt: null }),
      })
      .where(and(...conds))
      .returning({ id: studies.id });
    return rows.length > 0;
  }

  /** Patch a study's settings (e.g. a larger trial budget when resuming). */
  async updateSettings(studyId: string, settings: StudySettings): Promise<void> {
    await this.#db.update(studies).set({ settings, updatedAt: new Date() }).where(eq(studies.id, studyId));
  }

  /**
   * Claim the next trial: reap lost trials, retry a waiting one, or propose a new one, all under the
   * study row's lock.
   */
  async claim(studyId: string, workerId: string, propose: Propose): Promise<Claim> {
    return this.#db.transaction(async (tx) => {
      const [study] = await tx.select().from(studies).where(eq(studies.id, studyId)).for("update");
      if (!study) throw arborError("STUDY_NOT_FOUND", `claim trial: study ${studyId} does not exist`);
      if (study.status === "cancelled") return { kind: "done", reason: "cancelled" } as const;
      const settings = study.settings as StudySettings;
      await reap(tx, studyId, settings);
      const [waiting] = await tx
        .select()
        .from(trials)
        .where(and(eq(trials.studyId, studyId), eq(trials.state, "waiting")))
        .orderBy(asc(trials.number))
        .limit(1);
      if (waiting) {
        const [row] = await tx
          .update(trials)
          .set(startFields(workerId, waiting.attempts + 1))
          .where(eq(trials.id, waiting.id))
          .returning();
        return { kind: "trial", trial: row, retry: true } as const;
      }
      const all = await tx
        .select()
        .from(trials)
        .where(eq(trials.studyId, studyId))
        .orderBy(asc(trials.number));
      const running = all.some((t) => t.state === "running");
      if (all.length >= settings.nTrials) return running ? ({ kind: "wait" } as const) : doneBudget;
      const number = all.length === 0 ? 0 : all[all.length - 1].number + 1;
      const proposal = propose(all.map(toFrozen), number);
      if (proposal === null)
        return running ? ({ kind: "wait" } as const) : ({ kind: "done", reason: "exhausted" } as const);
      const [row] = await tx
        .insert(trials)
        .values({
          studyId,
          number,
          params: proposal.params,
          distributions: proposal.distributions,
          ...startFields(workerId, 1),
        })
        .returning();
      if (study.status === "queued" || study.status === "complete" || study.status === "failed") {
        await tx
          .update(studies)
          .set({ status: "running", finishedAt: null, updatedAt: new Date() })
          .where(eq(studies.id, studyId));
      }
      return { kind: "trial", trial: row, retry: false } as const;
    });
  }

  /** Keep a trial alive and save its intermediate values; false when the trial is no longer ours. */
  async heartbeat(
    trialId: number,
    workerId: string,
    intermediateValues?: Record<string, number>,
  ): Promise<boolean> {
    const rows = await this.#db
      .update(trials)
      .set({
        heartbeatAt: sql`now()`,
        updatedAt: new Date(),
        ...(intermediateValues ? { intermediateValues } : {}),
      })
      .where(and(eq(trials.id, trialId), eq(trials.state, "running"), eq(trials.workerId, workerId)))
      .returning({ id: trials.id });
    return rows.length > 0;
  }

  /** Record a trial's outcome; false when it was taken back meanwhile (the result is dropped). */
  async finish(
    trialId: number,
    workerId: string,
    outcome: {
      state: "complete" | "pruned" | "failed";
      value: number | null;
      intermediateValues: Record<string, number>;
      durationMs: number;
      error?: string | null;
      userAttrs?: Record<string, unknown>;
    },
  ): Promise<boolean> {
    const rows = await this.#db
      .update(trials)
      .set({
        state: outcome.state,
        value: outcome.value !== null && Number.isFinite(outcome.value) ? outcome.value : null,
        intermediateValues: outcome.intermediateValues,
        durationMs: outcome.durationMs,
        error: outcome.error ?? null,
        ...(outcome.userAttrs ? { userAttrs: outcome.userAttrs } : {}),
        finishedAt: new Date(),
        heartbeatAt: sql`now()`,
        updatedAt: new Date(),
      })
      .where(and(eq(trials.id, trialId), eq(trials.state, "running"), eq(trials.workerId, workerId)))
      .returning({ id: trials.id });
    return rows.length > 0;
  }

  /** Give a running trial back (graceful shutdown): waiting again, this attempt not counted. */
  async release(trialId: number, workerId: string): Promise<boolean> {
    const rows = await this.#db
      .update(trials)
      .set({
        state: "waiting",
        attempts: sql`greatest(${trials.attempts} - 1, 0)`,
        workerId: null,
        error: "released by its worker (interrupted)",
        updatedAt: new Date(),
      })
      .where(and(eq(trials.id, trialId), eq(trials.state, "running"), eq(trials.workerId, workerId)))
      .returning({ id: trials.id });
    return rows.length > 0;
  }

  /** Take back lost trials now (also done by every claim). Returns how many. */
  async reapStale(studyId: string): Promise<number> {
    return this.#db.transaction(async (tx) => {
      const [study] = await tx.select().from(studies).where(eq(studies.id, studyId)).for("update");
      if (!study) return 0;
      return reap(tx, studyId, study.settings as StudySettings);
    });
  }

  /**
   * Close the study when nothing is running or waiting: best trial, status complete. Returns the
   * study when this call closed it (exactly one caller gets it), otherwise null. The closer holds
   * the refit from then on (see {@link claimRefit}).
   */
  async finalize(studyId: string, workerId = "unknown"): Promise<StudyRow | null> {
    return this.#db.transaction(async (tx) => {
      const [study] = await tx.select().from(studies).where(eq(studies.id, studyId)).for("update");
      if (!study || study.status === "complete" || study.status === "cancelled") return null;
      await reap(tx, studyId, study.settings as StudySettings);
      const all = await tx.select().from(trials).where(eq(trials.studyId, studyId));
      if (all.some((t) => t.state === "running" || t.state === "waiting")) return null;
      const best = bestOf(all, study.direction);
      const [row] = await tx
        .update(studies)
        .set({
          status: "complete",
          settings: withRefitClaim(workerId),
          bestTrialNumber: best?.number ?? null,
          bestValue: best?.value ?? null,
          finishedAt: new Date(),
          updatedAt: new Date(),
        })
        .where(eq(studies.id, studyId))
        .returning();
      return row;
    });
  }

  /**
   * Take (or renew) the refit of a complete study for `workerId`: true when no one holds it, we
   * hold it, or its holder stopped renewing it `staleSeconds` ago (that process died mid-refit).
   */
  async claimRefit(studyId: string, workerId: string, staleSeconds: number): Promise<boolean> {
    const claim = sql`${studies.settings} -> 'refitClaim'`;
    const rows = await this.#db
      .update(studies)
      .set({
        settings: withRefitClaim(workerId),
        updatedAt: new Date(),
      })
      .where(
        and(
          eq(studies.id, studyId),
          eq(studies.status, "complete"),
          sql`(${claim} is null or ${claim} ->> 'worker' = ${workerId}::text or (${claim} ->> 'at')::float8 < extract(epoch from now()) - ${staleSeconds}::float8)`,
        ),
      )
      .returning({ id: studies.id });
    return rows.length === 1;
  }

  /** Store extra results on the study (refit metrics, registered version). */
  async annotate(studyId: string, extra: Record<string, unknown>): Promise<void> {
    await this.#db
      .update(studies)
      .set({
        settings: sql`${studies.settings} || ${JSON.stringify({ result: extra })}::jsonb`,
        updatedAt: new Date(),
      })
      .where(eq(studies.id, studyId));
  }
}

/** The study's settings with `refitClaim` = this worker, now. */
function withRefitClaim(workerId: string): SQL {
  return sql`${studies.settings} || jsonb_build_object('refitClaim', jsonb_build_object('worker', ${workerId}::text, 'at', extract(epoch from now())::float8))`;
}

const doneBudget = { kind: "done", reason: "budget" } as const;

function startFields(workerId: string, attempts: number) {
  return {
    state: "running" as const,
    workerId,
    attempts,
    heartbeatAt: sql`now()`,
    startedAt: new Date(),
    finishedAt: null,
    error: null,
    value: null,
    intermediateValues: {},
    updatedAt: new Date(),
  };
}

/** Running trials with a stale heartbeat go back to waiting (or to failed after maxAttempts). */
async function reap(tx: Tx, studyId: string, settings: StudySettings): Promise<number> {
  const stale = Math.max(1, Math.round(settings.staleSeconds));
  const rows = await tx
    .update(trials)
    .set({
      state: sql`case when ${trials.attempts} >= ${settings.maxAttempts} then 'failed' else 'waiting' end`,
      error: sql`'worker ' || coalesce(${trials.workerId}, '?') || ' lost: no heartbeat for ${sql.raw(String(stale))} s'`,
      finishedAt: sql`case when ${trials.attempts} >= ${settings.maxAttempts} then now() else null end`,
      updatedAt: new Date(),
    })
    .where(
      and(
        eq(trials.studyId, studyId),
        eq(trials.state, "running"),
        sql`${trials.heartbeatAt} < now() - ${stale}::int * interval '1 second'`,
      ),
    )
    .returning({ id: trials.id });
  return rows.length;
}

/** The best complete trial. */
export function bestOf<T extends { state: string; value: number | null; number: number }>(
  rows: readonly T[],
  direction: Direction,
): T | null {
  let best: T | null = null;
  for (const t of rows) {
    if (t.state !== "complete" || t.value === null || !Number.isFinite(t.value)) continue;
    if (best === null || (direction === "minimize" ? t.value < best.value! : t.value > best.value!)) best = t;
  }
  return best;
}
