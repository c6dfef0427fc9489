/**
 * The whole `arbor tune` run, shared by the CLI and the job worker: resolve the split, create or
 * join the study, run trials, and — in the process that closes the study — refit the best trial,
 * evaluate it on the test part, export a bundle with lineage, register it, and promote it when it
 * passes the gates (champion/challenger).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { StudyRow } from "../../registry/db/schema.ts";
import type { Registry } from "../../registry/index.ts";
import type { ModelType, Task } from "../../shared/bundle.ts";
import type { ArborConfig } from "../../shared/config.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { defaultMetric, higherIsBetter, type MetricName } from "../gbdt/metric.ts";
import { GbdtExecutor, refitInWorker } from "./gbdt-executor.ts";
import type { FixedFitSettings } from "./gbdt-trial.ts";
import type { RefitResult } from "./refit.ts";
import { parseSamplerOptions } from "./samplers/index.ts";
import { ARBOR_TPE_DEFAULTS } from "./samplers/tpe.ts";
import { applySpaceOverride, resolveSearchSpace } from "./spaces.ts";
import { type StudyDefinition, type StudySettings, StudyStorage } from "./storage.ts";
import { type RunStudySummary, runStudy, type StudyProgress } from "./study.ts";

/** Everything `arbor tune` accepts. */
export interface TuneOptions {
  splitId: string;
  target: string;
  task: Task;
  modelType: ModelType;
  trials: number;
  timeoutSeconds?: number | undefined;
  sampler: "tpe" | "random" | "grid";
  /** Sampler settings over arbor's defaults (e.g. Optuna's TPE defaults). */
  samplerOptions?: Record<string, unknown> | undefined;
  pruner: "median" | "asha" | "none";
  metric?: MetricName | undefined;
  study?: string | undefined;
  parallel: number;
  seed: number;
  rounds: number;
  earlyStopping: number;
  searchSpaceFile?: string | undefined;
  /** Inline overrides (the API's `searchSpace` field), applied after the file's. */
  searchSpaceOverride?: Record<string, unknown> | undefined;
  categorical?: string[] | undefined;
  register?: string | undefined;
  promote?: string | undefined;
  minMetric?: number | undefined;
  force: boolean;
  refitOn: "train" | "train+valid";
  staleSeconds: number;
  /** Set when the run comes from a queued job. */
  jobId?: string | undefined;
}

/** What happened, for `--json` and for the exit code. */
export interface TuneOutcome {
  study: { id: string; name: string; status: string; created: boolean };
  worker: RunStudySummary["workerId"];
  stoppedBy: RunStudySummary["stoppedBy"];
  trials: { total: number; complete: number; pruned: number; failed: number; ranHere: number };
  best: { number: number; value: number; params: Record<string, unknown> } | null;
  metric: MetricName;
  direction: "minimize" | "maximize";
  /** Null when another process closed the study (it refits), or when no trial completed. */
  refit: RefitResult | null;
  registered: { name: string; version: number } | null;
  promotion:
    | { label: string; promoted: true; version: number; previousVersion: number | null; reason: string }
    | { label: string; promoted: false; reason: string; code: "MIN_METRIC" | "CHAMPION" | "NO_TRIAL" }
    | null;
  exitCode: number;
}

/** Metric names a study may optimise (the engine's). */
export const TUNE_METRICS = ["auc", "logloss", "mlogloss", "rmse"] as const;

/** Exit codes of `arbor tune` (README documents them). */
export const TUNE_EXIT = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  NO_COMPLETE_TRIAL: 3,
  BELOW_MIN_METRIC: 4,
  CHAMPION_BETTER: 5,
  INTERRUPTED: 130,
} as const;

/** Default study metric per task: AUC for binary (what people compare), else the engine's loss. */
export function defaultTuneMetric(task: Task): MetricName {
  return task === "binary" ? "auc" : defaultMetric(task);
}

/** Median pruner settings for GBDT: the first rounds say little about a low learning rate, so warm up. */
export function defaultPrunerOptions(name: string, rounds: number): Record<string, unknown> {
  if (name === "median") return { nWarmupSteps: Math.min(20, Math.max(1, Math.floor(rounds / 10))) };
  return {};
}

/** A study name when none is given: model type, target and a timestamp. */
export function defaultStudyName(o: Pick<TuneOptions, "modelType" | "target">): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  return `${o.modelType}-${o.target}-${stamp}`.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 100);
}

/** The study row a tune creates (shared by the CLI and the API, so a queued study matches its job). */
export function buildStudyDefinition(
  options: TuneOptions,
  splitId: string,
): StudyDefinition & { metric: MetricName } {
  const metric = options.metric ?? defaultTuneMetric(options.task);
  if (options.task !== "binary" && metric === "auc") {
    throw arborError("INVALID_ARGUMENT", `tune: --metric auc needs --task binary, got ${options.task}`);
  }
  const samplerOptions = {
    ...(options.sampler === "tpe" ? ARBOR_TPE_DEFAULTS : {}),
    ...parseSamplerOptions(options.sampler, options.samplerOptions, "samplerOptions"),
    seed: options.seed,
  };
  const fixed: FixedFitSettings = {
    task: options.task,
    modelType: options.modelType,
    metric,
    rounds: options.rounds,
    earlyStopping: options.earlyStopping,
    seed: options.seed,
  };
  const settings: StudySettings = {
    nTrials: options.trials,
    staleSeconds: options.staleSeconds,
    maxAttempts: 2,
    fixed,
    categorical: options.categorical ?? null,
    refitOn: options.refitOn,
    register: options.register ?? null,
    promote: options.promote ?? null,
    minMetric: options.minMetric ?? null,
    force: options.force,
  };
  return {
    name: options.study ?? defaultStudyName(options),
    splitId,
    task: options.task,
    target: options.target,
    modelType: options.modelType,
    metric,
    direction: higherIsBetter(metric) ? "maximize" : "minimize",
    sampler: { name: options.sampler, options: samplerOptions },
    pruner: { name: options.pruner, options: defaultPrunerOptions(options.pruner, options.rounds) },
    searchSpace: options.searchSpaceOverride
      ? applySpaceOverride(
          resolveSearchSpace(options.modelType, options.searchSpaceFile),
          options.searchSpaceOverride,
          "searchSpace",
        )
      : resolveSearchSpace(options.modelType, options.searchSpaceFile),
    settings,
    jobId: options.jobId ?? null,
  };
}

/** Run a tune. */
export async function runTune(
  registry: Registry,
  config: ArborConfig,
  options: TuneOptions,
  io: {
    logger: Logger;
    signal: AbortSignal;
    onProgress?: (p: StudyProgress) => void;
    say?: (m: string) => void;
  },
): Promise<TuneOutcome> {
  const split = await registry.splits.get(options.splitId);
  const def = buildStudyDefinition(options, split.id);
  const { metric, direction } = def;
  const storage = new StudyStorage(registry.db);
  const { study, created } = await storage.createOrLoad(def);
  // Resuming with a larger budget extends the study; the stored space and sampler stay.
  const stored = study.settings as StudySettings;
  if (!created && stored.nTrials !== options.trials) {
    await storage.updateSettings(study.id, { ...stored, nTrials: options.trials });
    study.settings = { ...stored, nTrials: options.trials };
  }
  io.say?.(
    `study ${study.name} (${study.id})${created ? "" : " resumed"}: ${options.trials} trials, ${options.sampler} sampler, ${options.pruner} pruner, ${metric} (${direction})`,
  );
  const studyFixed = (study.settings as StudySettings)["fixed"] as FixedFitSettings;
  // The cores are shared by the parallel trials: each fit gets cores ÷ parallel engine threads.
  // (Models may differ in the last bits across thread counts; a trial and its refit use the same.)
  const threads = Math.max(1, Math.floor(os.availableParallelism() / Math.max(1, options.parallel)));
  const summary = await runStudy({
    storage,
    study,
    parallel: options.parallel,
    timeoutSeconds: options.timeoutSeconds ?? null,
    signal: io.signal,
    logger: io.logger,
    onProgress: io.onProgress,
    store: registry.store,
    makeExecutor: () =>
      new GbdtExecutor({
        init: {
          type: "init",
          storeUri: config.store,
          gcsEndpoint: config.gcsEndpoint,
          gcsProject: config.gcsProject,
          splitId: split.id,
          target: study.target,
          categorical: ((study.settings as StudySettings)["categorical"] as string[] | null) ?? undefined,
          fixed: studyFixed,
          logLevel: config.logLevel,
        },
        pruner: study.pruner as { name: string; options: Record<string, unknown> },
        threads,
      }),
  });
  const rows = await storage.trials(study.id);
  const count = (s: string) => rows.filter((r) => r.state === s).length;
  const finalStudy: StudyRow = summary.closed ?? (await storage.get(study.id));
  const bestRow = rows.find((r) => r.number === finalStudy.bestTrialNumber && r.state === "complete") ?? null;
  const outcome: TuneOutcome = {
    study: { id: study.id, name: study.name, status: finalStudy.status, created },
    worker: summary.workerId,
    stoppedBy: summary.stoppedBy,
    trials: {
      total: rows.length,
      complete: count("complete"),
      pruned: count("pruned"),
      failed: count("failed"),
      ranHere: summary.ran,
    },
    best: bestRow ? { number: bestRow.number, value: bestRow.value!, params: bestRow.params } : null,
    metric,
    direction,
    refit: null,
    registered: null,
    promotion: null,
    exitCode: TUNE_EXIT.OK,
  };
  if (io.signal.aborted) return { ...outcome, exitCode: TUNE_EXIT.INTERRUPTED };
  const settings = finalStudy.settings as StudySettings;
  if (summary.closed === null) {
    // Another process closed the study and refits it, unless it died before it finished (its
    // claim on the refit goes stale): then a rerun takes the refit over.
    const result = settings["result"] as { refit?: unknown; registered?: { version: number } } | undefined;
    const done = options.register ? result?.registered !== undefined : result?.refit !== undefined;
    if (finalStudy.status !== "complete") return outcome;
    if (done) {
      io.say?.(
        `study ${study.name} was complete already${result?.registered ? `; its model is registered (v${result.registered.version})` : ""}`,
      );
      return outcome;
    }
    if (!(await storage.claimRefit(study.id, summary.workerId, settings.staleSeconds))) return outcome;
    io.say?.(`study ${study.name} is complete but its refit never finished: refitting here`);
  }
  if (bestRow === null) {
    return {
      ...outcome,
      exitCode: TUNE_EXIT.NO_COMPLETE_TRIAL,
      promotion: options.promote
        ? { label: options.promote, promoted: false, reason: "no trial completed", code: "NO_TRIAL" }
        : null,
    };
  }
  const workDir = await mkdtemp(path.join(os.tmpdir(), "arbor-refit-"));
  // Keep our claim on the refit fresh, so that a rerun takes it over only if this process dies.
  const renew = setInterval(
    () => void storage.claimRefit(study.id, summary.workerId, settings.staleSeconds).catch(() => false),
    (settings.staleSeconds * 1000) / 3,
  );
  try {
    io.say?.(`refitting trial ${bestRow.number} on ${options.refitOn} and evaluating on test`);
    const refit = await refitInWorker({
      type: "refit",
      storeUri: config.store,
      gcsEndpoint: config.gcsEndpoint,
      gcsProject: config.gcsProject,
      logLevel: config.logLevel,
      input: {
        split,
        study: finalStudy,
        trial: bestRow,
        fixed: studyFixed,
        categorical: ((study.settings as StudySettings)["categorical"] as string[] | null) ?? undefined,
        refitOn: options.refitOn,
        bundleDir: options.register ? path.join(workDir, "bundle") : null,
        threads,
      },
    });
    outcome.refit = refit;
    await storage.annotate(study.id, {
      refit: { test: refit.test, valid: refit.valid, refitOn: refit.refitOn },
    });
    if (!options.register) return outcome;
    const reg = await registry.models.register({
      name: options.register,
      bundleDir: path.join(workDir, "bundle"),
      actor: config.user,
      description: `study ${study.name} trial ${bestRow.number}`,
      lineage: {
        splitId: split.id,
        studyId: study.id,
        studyName: study.name,
        trialNumber: bestRow.number,
        dataFingerprint: split.fingerprint,
        params: bestRow.params,
      },
    });
    outcome.registered = { name: reg.name, version: reg.version };
    await storage.annotate(study.id, {
      refit: { test: refit.test, valid: refit.valid },
      registered: outcome.registered,
    });
    io.say?.(`registered ${reg.name} v${reg.version}`);
    if (!options.promote) return outcome;
    const gate = await promotionGate(registry, {
      name: reg.name,
      label: options.promote,
      metric,
      value: refit.test[metric] ?? Number.NaN,
      minMetric: options.minMetric,
      force: options.force,
    });
    if (!gate.ok) {
      outcome.promotion = { label: options.promote, promoted: false, reason: gate.reason, code: gate.code };
      outcome.exitCode = gate.code === "MIN_METRIC" ? TUNE_EXIT.BELOW_MIN_METRIC : TUNE_EXIT.CHAMPION_BETTER;
      io.say?.(`not promoted: ${gate.reason}`);
      return outcome;
    }
    const change = await registry.models.promote(reg.name, reg.version, options.promote, {
      actor: config.user,
      reason: gate.reason,
    });
    outcome.promotion = {
      label: options.promote,
      promoted: true,
      version: change.version,
      previousVersion: change.previousVersion,
      reason: gate.reason,
    };
    io.say?.(`promoted ${reg.name} v${reg.version} to ${options.promote}: ${gate.reason}`);
    return outcome;
  } finally {
    clearInterval(renew);
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Champion/challenger: does the new version pass --min-metric and beat (or tie) the label's version? */
export async function promotionGate(
  registry: Registry,
  o: {
    name: string;
    label: string;
    metric: MetricName;
    value: number;
    minMetric?: number | undefined;
    force: boolean;
  },
): Promise<{ ok: true; reason: string } | { ok: false; reason: string; code: "MIN_METRIC" | "CHAMPION" }> {
  const higher = higherIsBetter(o.metric);
  const fmt = (v: number) => v.toFixed(5);
  if (o.minMetric !== undefined && !o.force) {
    const passes = higher ? o.value >= o.minMetric : o.value <= o.minMetric;
    if (!passes) {
      return {
        ok: false,
        code: "MIN_METRIC",
        reason: `test ${o.metric} ${fmt(o.value)} does not pass --min-metric ${o.minMetric} (${higher ? "≥" : "≤"})`,
      };
    }
  }
  if (o.force) return { ok: true, reason: `forced (test ${o.metric} ${fmt(o.value)})` };
  let champion: { version: number; value: number | null } | null = null;
  try {
    const label = await registry.models.getLabel(o.name, o.label);
    const details = await registry.models.show(o.name, { events: 0 });
    const version = details.versionList.find((v) => v.version === label.version);
    const test = (version?.metrics["test"] ?? {}) as Record<string, unknown>;
    const v = test[o.metric];
    champion = { version: label.version, value: typeof v === "number" ? v : null };
  } catch (e) {
    if ((e as { code?: string }).code !== "LABEL_NOT_FOUND") throw e;
  }
  if (champion === null)
    return { ok: true, reason: `first ${o.label} version (test ${o.metric} ${fmt(o.value)})` };
  if (champion.value === null) {
    return {
      ok: true,
      reason: `champion v${champion.version} has no test ${o.metric}; challenger ${fmt(o.value)}`,
    };
  }
  const notWorse = higher ? o.value >= champion.value : o.value <= champion.value;
  if (!notWorse) {
    return {
      ok: false,
      code: "CHAMPION",
      reason: `challenger test ${o.metric} ${fmt(o.value)} is worse than champion v${champion.version} (${fmt(champion.value)})`,
    };
  }
  return {
    ok: true,
    reason: `challenger test ${o.metric} ${fmt(o.value)} ≥ champion v${champion.version} (${fmt(champion.value)})`,
  };
}
