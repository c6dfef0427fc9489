/**
 * The job queue behind `arbor worker` and the control plane: rows in `jobs`, claimed with
 * `FOR UPDATE SKIP LOCKED` so that any number of workers on any machines take each job once.
 * A running job carries a lease (heartbeat_at); a worker that dies stops heartbeating and
 * {@link JobQueue.reapExpired} hands the job to the next worker, or fails it after max_attempts.
 */
import { and, asc, desc, eq, inArray, lte, type SQL, sql } from "drizzle-orm";
import { arborError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { RegistryDatabase, RegistryTransaction } from "./db/client.ts";
import { type JobRow, type JobState, jobs } from "./db/schema.ts";
import { newId } from "./ids.ts";

/** What {@link JobQueue.enqueue} takes. */
export interface NewJob {
  kind: string;
  payload?: Record<string, unknown>;
  /** Higher runs first; default 0. */
  priority?: number;
  /** Attempts before the job is failed for good (a worker death counts); default 3. */
  maxAttempts?: number;
  createdBy?: string;
  /** Defaults to a fresh `job_…` id. */
  id?: string;
}

/** Filters for {@link JobQueue.list}. */
export interface JobFilter {
  state?: JobState;
  kind?: string;
  limit?: number;
  offset?: number;
}

/** Jobs in the registry database. */
export class JobQueue {
  readonly #db: RegistryDatabase;
  readonly #logger: Logger;

  constructor(db: RegistryDatabase, logger: Logger) {
    this.#db = db;
    this.#logger = logger;
  }

  /** Queue a job. */
  async enqueue(job: NewJob): Promise<JobRow> {
    if (!/^[a-z][a-z0-9._-]{0,63}$/.test(job.kind)) {
      throw arborError(
        "INVALID_ARGUMENT",
        `enqueue job: kind "${job.kind}" must be lowercase letters, digits, . _ -`,
      );
    }
    const [row] = await this.#db
      .insert(jobs)
      .values({
        id: job.id ?? newId("job"),
        kind: job.kind,
        payload: job.payload ?? {},
        priority: job.priority ?? 0,
        maxAttempts: job.maxAttempts ?? 3,
        createdBy: job.createdBy ?? null,
      })
      .returning();
    return row;
  }

  /** One job; JOB_NOT_FOUND when absent. */
  async get(id: string): Promise<JobRow> {
    const [row] = await this.#db.select().from(jobs).where(eq(jobs.id, id)).limit(1);
    if (!row) throw arborError("JOB_NOT_FOUND", `get job: no job with id "${id}"`);
    return row;
  }

  /** Jobs, newest first. */
  async list(filter: JobFilter = {}): Promise<JobRow[]> {
    const conds: SQL[] = [];
    if (filter.state) conds.push(eq(jobs.state, filter.state));
    if (filter.kind) conds.push(eq(jobs.kind, filter.kind));
    return this.#db
      .select()
      .from(jobs)
      .where(conds.length > 0 ? and(...conds) : undefined)
      .orderBy(desc(jobs.createdAt), desc(jobs.id))
      .limit(Math.min(Math.max(filter.limit ?? 100, 1), 1000))
      .offset(Math.max(filter.offset ?? 0, 0));
  }

  /** Take the next runnable job (highest priority, oldest first) for `workerId`, or null. */
  async claim(workerId: string, options: { kinds?: readonly string[] } = {}): Promise<JobRow | null> {
    return this.#db.transaction(async (tx) => {
      const conds: SQL[] = [eq(jobs.state, "queued"), lte(jobs.runAfter, sql`now()`)];
      if (options.kinds && options.kinds.length > 0) conds.push(inArray(jobs.kind, [...options.kinds]));
      const [next] = await tx
        .select({ id: jobs.id })
        .from(jobs)
        .where(and(...conds))
        .orderBy(desc(jobs.priority), asc(jobs.createdAt), asc(jobs.id))
        .limit(1)
        .for("update", { skipLocked: true });
      if (!next) return null;
      const [row] = await tx
        .update(jobs)
        .set({
          state: "running",
          workerId,
          heartbeatAt: sql`now()`,
          startedAt: sql`now()`,
          attempts: sql`${jobs.attempts} + 1`,
          updatedAt: sql`now()`,
        })
        .where(eq(jobs.id, next.id))
        .returning();
      this.#logger.info(
        { job: row.id, kind: row.kind, worker: workerId, attempt: row.attempts },
        "job claimed",
      );
      return row;
    });
  }

  /**
   * Renew the lease. Returns whether a cancel was requested; CONFLICT when the job is no longer
   * this worker's (it was reaped and handed to another worker, or finished).
   */
  async heartbeat(id: string, workerId: string): Promise<{ cancelRequested: boolean }> {
    const [row] = await this.#db
      .update(jobs)
      .set({ heartbeatAt: sql`now()`, updatedAt: sql`now()` })
      .where(and(eq(jobs.id, id), eq(jobs.workerId, workerId), eq(jobs.state, "running")))
      .returning({ cancelRequestedAt: jobs.cancelRequestedAt });
    if (!row) throw arborError("CONFLICT", `heartbeat job: job ${id} is no longer run by ${workerId}`);
    return { cancelRequested: row.cancelRequestedAt !== null };
  }

  /** Finish a job this worker runs: succeeded with a result, or cancelled on request. */
  async complete(
    id: string,
    workerId: string,
    result: Record<string, unknown>,
    state: "succeeded" | "cancelled" = "succeeded",
  ): Promise<JobRow> {
    return this.#finish(this.#db, id, workerId, { state, result, error: null });
  }

  /** Record a failure; the job is queued again (after `retryAfterMs`) while attempts remain. */
  async fail(
    id: string,
    workerId: string,
    error: string,
    options: { retry?: boolean; retryAfterMs?: number } = {},
  ): Promise<JobRow> {
    // Row-locked so that a cancel arriving between the read and the update cannot be lost: the
    // update would otherwise queue the job again, and claim() would run a cancelled job.
    return this.#db.transaction(async (tx) => {
      const [job] = await tx.select().from(jobs).where(eq(jobs.id, id)).for("update");
      if (!job) throw arborError("JOB_NOT_FOUND", `fail job: no job with id "${id}"`);
      if (options.retry === false || job.attempts >= job.maxAttempts || job.cancelRequestedAt !== null) {
        return this.#finish(tx, id, workerId, { state: "failed", result: null, error });
      }
      const [row] = await tx
        .update(jobs)
        .set({
          state: "queued",
          workerId: null,
          error,
          runAfter: sql`now() + make_interval(secs => ${(options.retryAfterMs ?? 0) / 1000})`,
          updatedAt: sql`now()`,
        })
        .where(and(eq(jobs.id, id), eq(jobs.workerId, workerId), eq(jobs.state, "running")))
        .returning();
      if (!row) throw arborError("CONFLICT", `fail job: job ${id} is no longer run by ${workerId}`);
      return row;
    });
  }

  /**
   * Hand a job this worker runs back to the queue (graceful shutdown): queued again at once and
   * this attempt is not counted; cancelled instead when a cancel was requested meanwhile (the
   * worker may not have seen it at a heartbeat yet). False when the job is no longer this worker's.
   */
  async release(id: string, workerId: string): Promise<boolean> {
    const cancelRequested = sql`${jobs.cancelRequestedAt} is not null`;
    const rows = await this.#db
      .update(jobs)
      .set({
        state: sql`case when ${cancelRequested} then 'cancelled' else 'queued' end`,
        attempts: sql`greatest(${jobs.attempts} - 1, 0)`,
        workerId: sql`case when ${cancelRequested} then ${jobs.workerId} end`,
        runAfter: sql`now()`,
        finishedAt: sql`case when ${cancelRequested} then now() end`,
        updatedAt: sql`now()`,
      })
      .where(and(eq(jobs.id, id), eq(jobs.workerId, workerId), eq(jobs.state, "running")))
      .returning({ id: jobs.id, state: jobs.state });
    if (rows.length > 0)
      this.#logger.info({ job: id, worker: workerId, state: rows[0].state }, "job released");
    return rows.length > 0;
  }

  /** Cancel: a queued job at once; a running one is asked to stop (its worker sees it at heartbeat). */
  async cancel(id: string): Promise<JobRow> {
    // One statement, not "cancel if queued, else flag if running": a worker's fail() can requeue
    // the job between two statements, and the cancel would then be lost. An UPDATE that waits on
    // the row lock evaluates WHERE and SET again on the row as committed.
    const queued = sql`${jobs.state} = 'queued'`;
    const [row] = await this.#db
      .update(jobs)
      .set({
        state: sql`case when ${queued} then 'cancelled' else ${jobs.state} end`,
        cancelRequestedAt: sql`coalesce(${jobs.cancelRequestedAt}, now())`,
        finishedAt: sql`case when ${queued} then now() else ${jobs.finishedAt} end`,
        updatedAt: sql`now()`,
      })
      .where(and(eq(jobs.id, id), inArray(jobs.state, ["queued", "running"])))
      .returning();
    return row ?? this.get(id);
  }

  /**
   * Running jobs whose lease is older than `staleMs` belong to dead workers: queue them again, or
   * fail them when they have used every attempt. Returns the ids touched.
   */
  async reapExpired(staleMs: number): Promise<{ requeued: string[]; failed: string[] }> {
    const stale = and(
      eq(jobs.state, "running"),
      lte(jobs.heartbeatAt, sql`now() - make_interval(secs => ${staleMs / 1000})`),
    );
    return this.#db.transaction(async (tx) => {
      const rows = await tx.select().from(jobs).where(stale).for("update", { skipLocked: true });
      const requeued: string[] = [];
      const failed: string[] = [];
      for (const job of rows) {
        const retry = job.attempts < job.maxAttempts && job.cancelRequestedAt === null;
        const error = `worker ${job.workerId} stopped heartbeating (attempt ${job.attempts})`;
        await tx
          .update(jobs)
          .set(
            retry
              ? { state: "queued", workerId: null, error, updatedAt: sql`now()` }
              : { state: "failed", error, finishedAt: sql`now()`, updatedAt: sql`now()` },
          )
          .where(eq(jobs.id, job.id));
        (retry ? requeued : failed).push(job.id);
      }
      if (rows.length > 0) this.#logger.warn({ requeued, failed }, "reaped jobs of dead workers");
      return { requeued, failed };
    });
  }

  async #finish(
    db: RegistryDatabase | RegistryTransaction,
    id: string,
    workerId: string,
    end: {
      state: "succeeded" | "failed" | "cancelled";
      result: Record<string, unknown> | null;
      error: string | null;
    },
  ): Promise<JobRow> {
    const [row] = await db
      .update(jobs)
      .set({ ...end, finishedAt: sql`now()`, updatedAt: sql`now()` })
      .where(and(eq(jobs.id, id), eq(jobs.workerId, workerId), eq(jobs.state, "running")))
      .returning();
    if (!row) throw arborError("CONFLICT", `finish job: job ${id} is no longer run by ${workerId}`);
    return row;
  }
}
