/**
 * `arbor worker`'s loop: claim a job, run it while heartbeating, record the outcome. A cancel
 * request (seen at a heartbeat) aborts the run; a job taken back from us (we were too slow to
 * heartbeat) is abandoned. Jobs of a worker that died are queued again by the next claimer.
 */

import type { JobRow } from "../../registry/db/schema.ts";
import type { JobQueue, Registry } from "../../registry/index.ts";
import type { ArborConfig } from "../../shared/config.ts";
import { toArborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { runTune, type TuneOutcome } from "../tune/pipeline.ts";
import { StudyStorage } from "../tune/storage.ts";
import { defaultWorkerId } from "../tune/study.ts";
import { TUNE_JOB, tuneOptionsOf, tuneRequestSchema } from "./tune-job.ts";

/** Options of {@link runWorker}. */
export interface WorkerOptions {
  registry: Registry;
  config: ArborConfig;
  logger: Logger;
  signal: AbortSignal;
  workerId?: string;
  /** A running job without heartbeat this long is queued again. */
  staleSeconds?: number;
  pollSeconds?: number;
  /** Stop after this many jobs (tests, one-shot runs). */
  maxJobs?: number;
  /** Stop when the queue is empty. */
  exitWhenIdle?: boolean;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/** Run jobs until the signal aborts (or maxJobs / idle). Returns how many jobs ran. */
export async function runWorker(o: WorkerOptions): Promise<number> {
  const queue = o.registry.jobs;
  const workerId = o.workerId ?? defaultWorkerId();
  const stale = o.staleSeconds ?? 60;
  const log = o.logger.child({ worker: workerId });
  let ran = 0;
  log.info({ stale }, "worker started");
  while (!o.signal.aborted && (o.maxJobs === undefined || ran < o.maxJobs)) {
    // Jobs of workers that died are queued again (or failed) by whoever claims next.
    await queue.reapExpired(stale * 1000);
    const job = await queue.claim(workerId, { kinds: [TUNE_JOB] });
    if (!job) {
      if (o.exitWhenIdle) break;
      await sleep((o.pollSeconds ?? 1) * 1000, o.signal);
      continue;
    }
    ran++;
    await runJob(o, queue, job, workerId, stale, log);
  }
  log.info({ jobs: ran }, "worker stopped");
  return ran;
}

async function runJob(
  o: WorkerOptions,
  queue: JobQueue,
  job: JobRow,
  workerId: string,
  stale: number,
  log: Logger,
): Promise<void> {
  const controller = new AbortController();
  const onStop = () => controller.abort();
  o.signal.addEventListener("abort", onStop, { once: true });
  let cancelled = false;
  let lost = false;
  const timer = setInterval(
    () => {
      queue
        .heartbeat(job.id, workerId)
        .then((hb) => {
          if (hb.cancelRequested) {
            cancelled = true;
            controller.abort();
          }
        })
        .catch((e: unknown) => {
          // CONFLICT: the job was taken back from us (we were too slow to heartbeat); let it go.
          if (toArborError(e).code === "CONFLICT") {
            lost = true;
            controller.abort();
          } else log.warn({ err: e, job: job.id }, "job heartbeat failed");
        });
    },
    Math.max(250, (stale * 1000) / 4),
  );
  const storage = new StudyStorage(o.registry.db);
  const studyName = typeof job.payload["studyName"] === "string" ? job.payload["studyName"] : undefined;
  log.info({ job: job.id, kind: job.kind, attempt: job.attempts }, "job started");
  let outcome: TuneOutcome | undefined;
  let failure: unknown;
  try {
    const req = tuneRequestSchema.parse(job.payload["request"]);
    const split = await o.registry.splits.get(req.split);
    outcome = await runTune(
      o.registry,
      o.config,
      tuneOptionsOf(req, req.target ?? split.target, studyName ?? req.name ?? job.id, job.id),
      { logger: log.child({ job: job.id }), signal: controller.signal },
    );
  } catch (e) {
    failure = e;
  } finally {
    clearInterval(timer);
    o.signal.removeEventListener("abort", onStop);
  }
  if (lost) return;
  // The job may be taken back between our last heartbeat and here (CONFLICT): nothing to record then.
  const settle = (p: Promise<unknown>) =>
    p.catch((e: unknown) =>
      log.warn({ err: e, job: job.id }, "job was taken back before its end was recorded"),
    );
  // The API marks the study cancelled at once; the run may end before a heartbeat sees the job's flag.
  if (outcome && (outcome.stoppedBy === "cancelled" || outcome.study.status === "cancelled"))
    cancelled = true;
  if (o.signal.aborted && !cancelled) {
    // Shutting down (SIGTERM): put the job back at once; the next worker resumes its study.
    await settle(queue.release(job.id, workerId));
    return;
  }
  if (outcome) {
    if (cancelled) await storage.setStatus(outcome.study.id, "cancelled");
    const result = outcome as unknown as Record<string, unknown>;
    await settle(queue.complete(job.id, workerId, result, cancelled ? "cancelled" : "succeeded"));
    log.info({ job: job.id, exitCode: outcome.exitCode }, cancelled ? "job cancelled" : "job succeeded");
    return;
  }
  const err = toArborError(failure);
  log.error({ err: failure, job: job.id }, "job failed");
  if (studyName) {
    const study = await storage.get(studyName).catch(() => null);
    if (study) await storage.setStatus(study.id, cancelled ? "cancelled" : "failed");
  }
  const error = `${err.code}: ${err.message}`;
  // A study that failed fails again on retry (bad input, bad data): no retry.
  await settle(
    cancelled
      ? queue.complete(job.id, workerId, { error }, "cancelled")
      : queue.fail(job.id, workerId, error, { retry: false }),
  );
}
