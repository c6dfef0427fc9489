/**
 * The job queue on the `jobs` table. Workers claim with `FOR UPDATE SKIP LOCKED` (each queued job
 * goes to exactly one worker, and claimers do not wait on each other), keep their job alive with
 * heartbeats, and a job whose worker stopped heartbeating is queued again (up to `maxAttempts`,
 * then failed) — a job survives its worker's death.
 */
import { and, desc, eq, inArray, type SQL, sql } from "drizzle-orm";
import type { RegistryDatabase } from "../../registry/db/client.ts";
import { type JobRow, type JobState, jobs } from "../../registry/db/schema.ts";
import { newId } from "../../registry/ids.ts";
import { arborError } from "../../shared/errors.ts";

/** What a heartbeat learns. */
export interface HeartbeatReply {
  /** False when the job is no longer this worker's (it was taken back). */
  alive: boolean;
  cancelRequested: boolean;
}

/** Jobs in the registry database. */
export class JobQueue {
  readonly #db: RegistryDatabase;

  constructor(db: RegistryDatabase) {
    this.#db = db;
  }

  /** Queue a job. */
  async enqueue(input: {
    kind: string;
    payload: Record<string, unknown>;
    createdBy?: string;
    maxAttempts?: number;
    id?: string;
  }): Promise<JobRow> {
    const [row] = await this.#db
      .insert(jobs)
      .values({
        id: input.id ?? newId("job"),
        kind: input.kind,
        payload: input.payload,
        createdBy: input.createdBy ?? null,
        maxAttempts: input.maxAttempts ?? 3,
      })
      .returning();
    return row;
  }

  /** A job by id (JOB_NOT_FOUND). */
  async get(id: string): Promise<JobRow> {
    const [row] = await this.#db.select().from(jobs).where(eq(jobs.id, id));
    if (!row) throw arborError("JOB_NOT_FOUND", `job ${id} does not exist`);
    return row;
  }

  /** Jobs, newest first. */
  async list(
    filter: { state?: JobState; kind?: string; limit?: number; offset?: number } = {},
  ): Promise<JobRow[]> {
    const conds: SQL[] = [];
    if (filter.state) conds.push(eq(jobs.state, filter.state));
    if (filter.kind) conds.push(eq(jobs.kind, filter.kind));
    return this.#db
      .select()
      .from(jobs)
      .where(conds.length > 0 ? and(...conds) : undefined)
      .orderBy(desc(jobs.createdAt), desc(jobs.id))
      .limit(filter.limit ?? 100)
      .offset(filter.offset ?? 0);
  }

  /** Queue again (or fail) running jobs whose heartbeat is older than `staleSeconds`. */
  async reapStale(staleSeconds: number): Promise<number> {
    const stale = Math.max(1, Math.round(staleSeconds));
    const rows = await this.#db
      .update(jobs)
      .set({
        state: sql`case when ${jobs.attempts} >= ${jobs.maxAttempts} then 'failed' else 'queued' end`,
        error: sql`'worker ' || coalesce(${jobs.workerId}, '?') || ' lost: no heartbeat for ${sql.raw(String(stale))} s'`,
        finishedAt: sql`case when ${jobs.attempts} >= ${jobs.maxAttempts} then now() else null end`,
        workerId: null,
        runAfter: sql`now()`,
        updatedAt: new Date(),
      })
      .where(
        and(
          eq(jobs.state, "running"),
          sql`${jobs.heartbeatAt} < now() - ${stale}::int * interval '1 second'`,
        ),
      )
      .returning({ id: jobs.id });
    return rows.length;
  }

  /** Claim the next queued job of one of `kinds` (null when there is none). */
  async claim(workerId: string, kinds: readonly string[], staleSeconds: number): Promise<JobRow | null> {
    await this.reapStale(staleSeconds);
    return this.#db.transaction(async (tx) => {
      const [next] = await tx
        .select({ id: jobs.id })
        .from(jobs)
        .where(and(eq(jobs.state, "queued"), inArray(jobs.kind, [...kinds]), sql`${jobs.runAfter} <= now()`))
        .orderBy(desc(jobs.priority), jobs.createdAt)
        .limit(1)
        .for("update", { skipLocked: true });
      if (!next) return null;
      const [row] = await tx
        .update(jobs)
        .set({
          state: "running",
          workerId,
          attempts: sql`${jobs.attempts} + 1`,
          heartbeatAt: sql`now()`,
          startedAt: new Date(),
          updatedAt: new Date(),
        })
        .where(eq(jobs.id, next.id))
        .returning();
      return row;
    });
  }

  /** Keep a job alive; tells whether it is still ours and whether a cancel was asked. */
  async heartbeat(id: string, workerId: string): Promise<HeartbeatReply> {
    const rows = await this.#db
      .update(jobs)
      .set({ heartbeatAt: sql`now()`, updatedAt: new Date() })
      .where(and(eq(jobs.id, id), eq(jobs.state, "running"), eq(jobs.workerId, workerId)))
      .returning({ cancel: jobs.cancelRequestedAt });
    if (rows.length === 0) return { alive: false, cancelRequested: false };
    return { alive: true, cancelRequested: rows[0].cancel !== null };
  }

  /** Finish a job this worker holds. */
  async finish(
    id: string,
    workerId: string,
    outcome: {
      state: "succeeded" | "failed" | "cancelled";
      result?: Record<string, unknown>;
      error?: string;
    },
  ): Promise<boolean> {
    const rows = await this.#db
      .update(jobs)
      .set({
        state: outcome.state,
        result: outcome.result ?? null,
        error: outcome.error ?? null,
        finishedAt: new Date(),
        updatedAt: new Date(),
      })
      .where(and(eq(jobs.id, id), eq(jobs.state, "running"), eq(jobs.workerId, workerId)))
      .returning({ id: jobs.id });
    return rows.length > 0;
  }

  /** Put a job this worker holds back in the queue (graceful shutdown); this attempt is not counted. */
  async release(id: string, workerId: string): Promise<boolean> {
    const rows = await this.#db
      .update(jobs)
      .set({
        state: "queued",
        attempts: sql`greatest(${jobs.attempts} - 1, 0)`,
        workerId: null,
        runAfter: sql`now()`,
        updatedAt: new Date(),
      })
      .where(and(eq(jobs.id, id), eq(jobs.state, "running"), eq(jobs.workerId, workerId)))
      .returning({ id: jobs.id });
    return rows.length > 0;
  }

  /** Ask a job to stop: a queued job is cancelled at once, a running one at its next heartbeat. */
  async requestCancel(id: string): Promise<JobRow> {
    const [queued] = await this.#db
      .update(jobs)
      .set({
        state: "cancelled",
        cancelRequestedAt: new Date(),
        finishedAt: new Date(),
        updatedAt: new Date(),
      })
      .where(and(eq(jobs.id, id), eq(jobs.state, "queued")))
      .returning();
    if (queued) return queued;
    const [running] = await this.#db
      .update(jobs)
      .set({ cancelRequestedAt: new Date(), updatedAt: new Date() })
      .where(and(eq(jobs.id, id), eq(jobs.state, "running")))
      .returning();
    return running ?? this.get(id);
  }
}
