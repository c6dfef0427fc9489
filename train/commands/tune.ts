/**
 * `arbor tune`: a hyperparameter study on a split, then the best trial refit, evaluated on test,
 * registered and promoted behind gates. The exit code tells CI what happened (TUNE_EXIT):
 * 0 done (and promoted when asked), 1 internal error, 2 bad usage or input, 3 no trial completed,
 * 4 not promoted: test metric fails --min-metric, 5 not promoted: the label's current version is
 * better, 130 interrupted.
 */
import { z } from "zod";
import { openRegistry } from "../../registry/index.ts";
import { MODEL_TYPES, TASKS } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import { operationLogger } from "../../shared/logger.ts";
import { defineCommand } from "../cli/command.ts";
import { defaultTuneMetric, runTune, TUNE_METRICS, type TuneOutcome } from "../tune/pipeline.ts";
import { PRUNER_NAMES } from "../tune/pruners/index.ts";
import { SAMPLER_NAMES } from "../tune/samplers/index.ts";
import type { StudyProgress } from "../tune/study.ts";

/** Metric names `--metric` accepts (the engine's). */
export const METRIC_NAMES = TUNE_METRICS;

/** "1m05s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** The stderr progress line of one finished trial. */
export function progressLine(p: StudyProgress, metric: string): string {
  // A failed trial says why (else a study whose every trial fails, exit 3, gives no clue).
  const v =
    p.last.value !== null
      ? ` ${metric}=${p.last.value.toFixed(5)}`
      : p.last.error
        ? ` (${p.last.error.split("\n")[0].slice(0, 200)})`
        : "";
  const best = p.best === null ? "none yet" : `${p.best.toFixed(5)} (#${p.bestNumber})`;
  const eta = p.etaSeconds === null ? "" : ` | ETA ${formatDuration(p.etaSeconds)}`;
  return `trial ${p.last.number} ${p.last.state}${v} in ${p.last.seconds.toFixed(1)}s | ${p.finished}/${p.total} done | best ${best}${eta}`;
}

function summaryText(o: TuneOutcome): string {
  const lines = [
    `study ${o.study.name} (${o.study.id}) ${o.study.status}: ${o.trials.complete} complete, ${o.trials.pruned} pruned, ${o.trials.failed} failed of ${o.trials.total}`,
  ];
  if (o.best)
    lines.push(
      `best trial ${o.best.number}: ${o.metric} ${o.best.value.toFixed(5)} ${JSON.stringify(o.best.params)}`,
    );
  if (o.refit)
    lines.push(
      `refit on ${o.refit.refitOn}: test ${Object.entries(o.refit.test)
        .map(([k, v]) => `${k} ${v.toFixed(5)}`)
        .join(", ")}`,
    );
  if (o.registered) lines.push(`registered ${o.registered.name} v${o.registered.version}`);
  if (o.promotion)
    lines.push(
      o.promotion.promoted
        ? `promoted to ${o.promotion.label}: ${o.promotion.reason}`
        : `not promoted to ${o.promotion.label}: ${o.promotion.reason}`,
    );
  if (!o.refit && o.study.status !== "complete")
    lines.push("another process is closing the study; it refits the best trial");
  return lines.join("\n");
}

/** `arbor tune`. */
export const tuneCommand = defineCommand({
  name: "tune",
  summary: "tune hyperparameters on a split; refit the best trial, test it, register and promote it",
  flags: [
    {
      name: "split",
      type: "string",
      placeholder: "ID",
      required: true,
      description: "split id (arbor split)",
    },
    {
      name: "target",
      type: "string",
      placeholder: "COL",
      description: "target column (default: the split's)",
    },
    { name: "task", type: "string", choices: TASKS, required: true, description: "what the model predicts" },
    {
      name: "model-type",
      type: "string",
      choices: MODEL_TYPES,
      default: "lightgbm",
      description: "tree growth family",
    },
    {
      name: "trials",
      type: "integer",
      placeholder: "N",
      default: 20,
      description: "trials in the study (all processes)",
    },
    {
      name: "timeout",
      type: "number",
      placeholder: "SECONDS",
      description: "stop starting trials after this long",
    },
    {
      name: "sampler",
      type: "string",
      choices: SAMPLER_NAMES,
      default: "tpe",
      description: "how trials are proposed",
    },
    {
      name: "sampler-options",
      type: "string",
      placeholder: "JSON",
      description:
        'sampler settings over arbor\'s, e.g. \'{"multivariate":false,"gamma":"default","bandwidthFactor":0.2}\' = Optuna\'s TPE defaults',
    },
    {
      name: "pruner",
      type: "string",
      choices: PRUNER_NAMES,
      default: "median",
      description: "early stop of bad trials",
    },
    {
      name: "metric",
      type: "string",
      choices: METRIC_NAMES,
      description: "validation metric (default: auc binary, mlogloss multiclass, rmse regression)",
    },
    {
      name: "study",
      type: "string",
      placeholder: "NAME",
      description: "study name; an existing study is resumed/joined",
    },
    {
      name: "parallel",
      type: "integer",
      placeholder: "N",
      default: 1,
      description: "trials at once in this process (worker threads)",
    },
    { name: "seed", type: "integer", placeholder: "N", default: 0, description: "sampler and engine seed" },
    {
      name: "rounds",
      type: "integer",
      placeholder: "N",
      default: 200,
      description: "boosting rounds per trial",
    },
    {
      name: "early-stopping",
      type: "integer",
      placeholder: "N",
      default: 20,
      description: "stop a fit after N rounds without improvement",
    },
    {
      name: "search-space",
      type: "string",
      placeholder: "FILE",
      description: "JSON overriding the model type's search space",
    },
    {
      name: "categorical",
      type: "list",
      placeholder: "COLS",
      description: "numeric columns to treat as categorical",
    },
    {
      name: "register",
      type: "string",
      placeholder: "NAME",
      description: "register the refit model under this name",
    },
    {
      name: "promote",
      type: "string",
      placeholder: "LABEL",
      description: "promote it to this label if it passes the gates",
    },
    {
      name: "min-metric",
      type: "number",
      placeholder: "VALUE",
      description: "gate: test metric at least (or at most, for losses) this",
    },
    { name: "force", type: "boolean", description: "promote even if the label's current version is better" },
    {
      name: "refit-on",
      type: "string",
      choices: ["train", "train+valid"],
      default: "train",
      description: "data of the final fit",
    },
    {
      name: "stale-after",
      type: "number",
      placeholder: "SECONDS",
      default: 30,
      description: "a trial without heartbeat this long is retried",
    },
  ],
  schema: z
    .object({
      _: z.array(z.string()),
      split: z.string().min(1),
      target: z.string().min(1).optional(),
      task: z.enum(TASKS),
      modelType: z.enum(MODEL_TYPES),
      trials: z.number().int().min(1, "must be 1 or more").max(100_000),
      timeout: z.number().positive("must be > 0").optional(),
      sampler: z.enum(SAMPLER_NAMES),
      samplerOptions: z
        .string()
        .transform((s, c) => {
          try {
            const v: unknown = JSON.parse(s);
            if (v !== null && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
          } catch {
            // reported below
          }
          c.addIssue({ code: "custom", message: "must be a JSON object" });
          return z.NEVER;
        })
        .optional(),
      pruner: z.enum(PRUNER_NAMES),
      metric: z.enum(METRIC_NAMES).optional(),
      study: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, "letters, digits, '.', '_', '-' (≤ 100)")
        .optional(),
      parallel: z.number().int().min(1, "must be 1 or more").max(64),
      seed: z.number().int(),
      rounds: z.number().int().min(1, "must be 1 or more"),
      earlyStopping: z.number().int().min(0),
      searchSpace: z.string().min(1).optional(),
      categorical: z.array(z.string()).optional(),
      register: z.string().min(1).optional(),
      promote: z.string().min(1).optional(),
      minMetric: z.number().optional(),
      force: z.boolean().optional(),
      refitOn: z.enum(["train", "train+valid"]),
      staleAfter: z.number().min(1, "must be ≥ 1"),
    })
    .refine((a) => a.promote === undefined || a.register !== undefined, {
      path: ["promote"],
      message: "needs --register NAME",
    }),
  examples: [
    "arbor tune --split spl_01jc… --task binary --trials 40 --register flights --promote production --min-metric 0.70",
    "arbor tune --split spl_01jc… --task binary --study nightly --parallel 2   # run on several machines to share the study",
    "# exit codes: 0 done, 1 internal, 2 bad input, 3 no trial completed, 4 below --min-metric, 5 champion is better, 130 interrupted",
  ],
  async run(ctx, args) {
    const registry = await openRegistry(ctx.config, ctx.logger);
    ctx.onClose(() => registry.close());
    const split = await registry.splits.get(args.split);
    if (split.deletedAt) throw arborError("SPLIT_NOT_FOUND", `tune: --split ${args.split} was deleted`);
    const logger = operationLogger(ctx.logger, "tune", { split: split.id });
    const metricName = args.metric ?? defaultTuneMetric(args.task);
    const outcome = await runTune(
      registry,
      ctx.config,
      {
        splitId: split.id,
        target: args.target ?? split.target,
        task: args.task,
        modelType: args.modelType,
        trials: args.trials,
        timeoutSeconds: args.timeout,
        sampler: args.sampler,
        samplerOptions: args.samplerOptions,
        pruner: args.pruner,
        metric: args.metric,
        study: args.study,
        parallel: args.parallel,
        seed: args.seed,
        rounds: args.rounds,
        earlyStopping: args.earlyStopping,
        searchSpaceFile: args.searchSpace,
        categorical: args.categorical,
        register: args.register,
        promote: args.promote,
        minMetric: args.minMetric,
        force: args.force ?? false,
        refitOn: args.refitOn,
        staleSeconds: args.staleAfter,
      },
      {
        logger,
        signal: ctx.signal,
        say: ctx.say,
        onProgress: (p) => ctx.say(progressLine(p, metricName)),
      },
    );
    return { json: outcome, text: summaryText(outcome), exitCode: outcome.exitCode };
  },
});
