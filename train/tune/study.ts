/**
 * The study loop (Optuna's `study.optimize`): N slots on this process each claim a trial from the
 * registry, run it through a TrialExecutor while heartbeating, and record the outcome. Several
 * processes running this loop on one Postgres share the study; the storage makes the claims safe.
 */
import { hostname } from "node:os";
import type { StudyRow, TrialRow } from "../../registry/db/schema.ts";
import type { ArtifactStore } from "../../registry/store/artifact-store.ts";
import { type ArborError, isArborError, toArborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { trialMetricsKey } from "../../shared/paths.ts";
import { createSampler } from "./samplers/index.ts";
import type { Direction, FrozenTrial, ParamValue, SearchSpace } from "./space.ts";
import { bestOf, type StudySettings, type StudyStorage, toFrozen } from "./storage.ts";

/** What a trial ends as. */
export interface TrialOutcome {
  state: "complete" | "pruned" | "failed";
  value: number | null;
  intermediateValues: Record<string, number>;
  error?: string | null;
  userAttrs?: Record<string, unknown>;
}

/** Input of one trial run. */
export interface TrialInput {
  number: number;
  params: Record<string, ParamValue>;
  /** The study's other trials when this one started (for the pruner). */
  others: FrozenTrial[];
  direction: Direction;
}

/** Runs trials; one executor per parallel slot (e.g. one worker thread each). */
export interface TrialExecutor {
  /** Run one trial. `onValues` receives the intermediate values so far; abort on `signal`. */
  run(
    input: TrialInput,
    onValues: (values: Record<string, number>) => void,
    signal: AbortSignal,
  ): Promise<TrialOutcome>;
  close(): Promise<void>;
}

/** Progress events for the CLI's stderr line. */
export interface StudyProgress {
  finished: number;
  total: number;
  best: number | null;
  bestNumber: number | null;
  last: { number: number; state: string; value: number | null; seconds: number; error?: string | null };
  /** Estimated seconds left, from the mean trial time and the parallelism. */
  etaSeconds: number | null;
}

/** Options of {@link runStudy}. */
export interface RunStudyOptions {
  storage: StudyStorage;
  study: StudyRow;
  makeExecutor: (slot: number) => TrialExecutor;
  parallel: number;
  /** Stop claiming new trials after this many seconds (this process). */
  timeoutSeconds?: number | null;
  workerId?: string;
  heartbeatSeconds?: number;
  signal?: AbortSignal;
  onProgress?: (p: StudyProgress) => void;
  logger: Logger;
  /** When given, each finished trial's record goes to `studies/{id}/trials/{n}/metrics.json`. */
  store?: ArtifactStore;
}

/** What this process did. */
export interface RunStudySummary {
  workerId: string;
  ran: number;
  /** The study row when this process closed the study (it then owns the refit). */
  closed: StudyRow | null;
  stoppedBy: "budget" | "timeout" | "cancelled" | "signal" | "exhausted";
}

/** Errors that no other parameters would avoid: the data, the target or the split is wrong. */
const FATAL = /^(DATA_|SPLIT_|STORE_NOT_FOUND|FIT_BAD_TARGET|PREDICT_|INVALID_ARGUMENT)/;

/** Whether a trial's error should stop the whole study. */
export function isFatal(e: unknown): boolean {
  return isArborError(e) && FATAL.test(e.code);
}

/** A worker id that names the machine and the process. */
export function defaultWorkerId(): string {
  return `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/** Run (or join) a study until its budget is used, the timeout passes or the signal aborts. */
export async function runStudy(o: RunStudyOptions): Promise<RunStudySummary> {
  const { storage, study } = o;
  const workerId = o.workerId ?? defaultWorkerId();
  const settings = study.settings as StudySettings;
  const space = study.searchSpace as SearchSpace;
  const direction = study.direction;
  const sampler = createSampler(
    String(study.sampler["name"] ?? "tpe"),
    (study.sampler["options"] ?? {}) as Record<string, unknown>,
  );
  const heartbeatMs = (o.heartbeatSeconds ?? Math.max(0.5, Math.min(5, settings.staleSeconds / 4))) * 1000;
  const started = performance.now();
  const deadline = o.timeoutSeconds ? started + o.timeoutSeconds * 1000 : Number.POSITIVE_INFINITY;
  const log = o.logger.child({ study: study.name, worker: workerId });
  let ran = 0;
  let stoppedBy: RunStudySummary["stoppedBy"] = "budget";
  const durations: number[] = [];
  let fatal: ArborError | null = null;

  const propose = (all: readonly FrozenTrial[], number: number) => {
    if (sampler.isExhausted?.(space, all)) return null;
    return { params: sampler.sample(space, all, { trialNumber: number, direction }), distributions: space };
  };

  const report = async (trial: TrialRow, outcome: TrialOutcome, seconds: number) => {
    if (!o.onProgress) return;
    const all = await storage.trials(study.id);
    const finished = all.filter(
      (t) => t.state === "complete" || t.state === "pruned" || t.state === "failed",
    ).length;
    const best = bestOf(all, direction);
    const mean = durations.reduce((a, b) => a + b, 0) / Math.max(1, durations.length);
    const left = Math.max(0, settings.nTrials - finished);
    o.onProgress({
      finished,
      total: settings.nTrials,
      best: best?.value ?? null,
      bestNumber: best?.number ?? null,
      last: {
        number: trial.number,
        state: outcome.state,
        value: outcome.value,
        seconds,
        error: outcome.error,
      },
      etaSeconds: durations.length > 0 ? (left * mean) / Math.max(1, o.parallel) : null,
    });
  };

  const slot = async (index: number) => {
    const executor = o.makeExecutor(index);
    try {
      for (;;) {
        if (fatal) return;
        if (o.signal?.aborted) {
          stoppedBy = "signal";
          return;
        }
        if (performance.now() >= deadline) {
          stoppedBy = "timeout";
          return;
        }
        const claim = await storage.claim(study.id, workerId, propose);
        if (claim.kind === "done") {
          stoppedBy = claim.reason;
          return;
        }
        if (claim.kind === "wait") {
          await sleep(Math.min(1000, heartbeatMs), o.signal);
          continue;
        }
        const trial = claim.trial;
        const others = (await storage.trials(study.id))
          .filter((t) => t.number !== trial.number)
          .map(toFrozen);
        log.info({ trial: trial.number, retry: claim.retry, params: trial.params }, "trial started");
        const outcome = await runOne(executor, trial, others);
        if (outcome === null) continue;
        ran++;
      }
    } finally {
      await executor.close();
    }
  };

  const runOne = async (executor: TrialExecutor, trial: TrialRow, others: FrozenTrial[]) => {
    const t0 = performance.now();
    const controller = new AbortController();
    const onOuterAbort = () => controller.abort();
    o.signal?.addEventListener("abort", onOuterAbort, { once: true });
    let latest: Record<string, number> = {};
    let lost = false;
    let beating = Promise.resolve();
    const timer = setInterval(() => {
      beating = beating.then(async () => {
        try {
          const alive = await storage.heartbeat(trial.id, workerId, latest);
          if (!alive) {
            lost = true;
            controller.abort();
          }
        } catch (e) {
          log.warn({ err: e, trial: trial.number }, "heartbeat failed");
        }
      });
    }, heartbeatMs);
    let outcome: TrialOutcome;
    try {
      outcome = await executor.run(
        { number: trial.number, params: trial.params as Record<string, ParamValue>, others, direction },
        (values) => {
          latest = values;
        },
        controller.signal,
      );
    } catch (e) {
      if (isFatal(e)) fatal ??= toArborError(e);
      outcome = {
        state: "failed",
        value: null,
        intermediateValues: latest,
        error: e instanceof Error ? e.message : String(e),
      };
    } finally {
      clearInterval(timer);
      o.signal?.removeEventListener("abort", onOuterAbort);
      await beating;
    }
    const ms = performance.now() - t0;
    if (lost || o.signal?.aborted) {
      // Another worker took the trial back, or we are shutting down: hand the trial back at once
      // (a resumed or joined study retries it without waiting for the heartbeat to go stale).
      if (!lost) await storage.release(trial.id, workerId).catch(() => false);
      log.warn({ trial: trial.number, lost }, "trial abandoned");
      return null;
    }
    const recorded = await storage.finish(trial.id, workerId, { ...outcome, durationMs: ms });
    if (!recorded) {
      log.warn({ trial: trial.number }, "trial was taken back before it finished; result dropped");
      return null;
    }
    durations.push(ms / 1000);
    if (o.store) {
      const record = {
        study: study.id,
        number: trial.number,
        params: trial.params,
        ...outcome,
        durationMs: ms,
        worker: workerId,
      };
      await o.store
        .put(trialMetricsKey(study.id, trial.number), `${JSON.stringify(record, null, 2)}\n`, {
          contentType: "application/json",
        })
        .catch((e: unknown) =>
          log.warn({ err: e, trial: trial.number }, "could not write the trial's metrics.json"),
        );
    }
    log.info(
      { trial: trial.number, state: outcome.state, value: outcome.value, seconds: ms / 1000 },
      "trial finished",
    );
    await report(trial, outcome, ms / 1000);
    return outcome;
  };

  await Promise.all(Array.from({ length: Math.max(1, o.parallel) }, (_, i) => slot(i)));
  if (fatal) {
    // Every other trial would fail the same way: stop the study instead of burning its budget.
    await storage.setStatus(study.id, "failed", ["queued", "running"]);
    throw fatal;
  }
  const closed = o.signal?.aborted ? null : await storage.finalize(study.id, workerId);
  return { workerId, ran, closed, stoppedBy };
}
