/**
 * A study's report: optimisation history, best trial, and parameter importances, plus an SVG chart
 * of both (Optuna's plot_optimization_history and plot_param_importances in one picture).
 *
 * Importances: Optuna's default evaluator is fANOVA over a random forest. We fit our own engine
 * instead — a small depth-wise GBDT regressing the objective on the parameters (log parameters in
 * log space, categoricals as categories) — and report each parameter's share of the total split
 * gain. Same idea (which parameters explain the variance of the objective), no extra dependency.
 */
import type { StudyRow, TrialRow } from "../../registry/db/schema.ts";
import type { FeatureSpec } from "../../shared/bundle.ts";
import { splitImportance } from "../../shared/importance.ts";
import type { Dataset } from "../gbdt/dataset.ts";
import { trainGbdt } from "../gbdt/train.ts";
import type { Distribution, SearchSpace } from "./space.ts";
import { bestOf } from "./storage.ts";

/** The JSON report of `arbor studies show`. */
export interface StudyReport {
  study: {
    id: string;
    name: string;
    status: string;
    metric: string;
    direction: string;
    splitId: string | null;
    sampler: unknown;
    pruner: unknown;
    createdAt: string;
  };
  counts: Record<string, number>;
  best: { number: number; value: number; params: Record<string, unknown> } | null;
  /** Per trial: number, state, value, running best, seconds. */
  history: {
    number: number;
    state: string;
    value: number | null;
    best: number | null;
    seconds: number | null;
  }[];
  importances: { param: string; importance: number }[];
  result: unknown;
}

/** Parameter importances (shares summing to 1), largest first; empty with fewer than 4 complete trials. */
export function paramImportances(
  space: SearchSpace,
  rows: readonly TrialRow[],
): { param: string; importance: number }[] {
  const done = rows.filter((r) => r.state === "complete" && r.value !== null && Number.isFinite(r.value));
  const names = Object.keys(space).filter((n) => done.some((r) => n in r.params));
  if (done.length < 4 || names.length === 0) return [];
  const features: FeatureSpec[] = [];
  const columns: Float32Array[] = [];
  for (const name of names) {
    const d: Distribution = space[name];
    const col = new Float32Array(done.length);
    if (d.type === "categorical") {
      const categories = d.choices.map(String);
      features.push({ name, type: "categorical", categories });
      done.forEach((r, i) => {
        const idx = categories.indexOf(String(r.params[name]));
        col[i] = idx < 0 ? Number.NaN : idx;
      });
    } else {
      features.push({ name, type: "numeric" });
      done.forEach((r, i) => {
        const v = Number(r.params[name]);
        col[i] = d.log ? Math.log(v) : v;
      });
    }
    columns.push(col);
  }
  const data: Dataset = {
    numRows: done.length,
    features,
    columns,
    label: Float64Array.from(done.map((r) => r.value!)),
    weight: null,
    task: "regression",
    target: "value",
  };
  const fit = trainGbdt(
    data,
    null,
    {
      task: "regression",
      modelType: "xgboost",
      maxDepth: 3,
      rounds: 64,
      learningRate: 0.1,
      minDataInLeaf: 2,
      minChildWeight: 0,
      lambda: 1,
    },
    { evalTrain: false },
  );
  const gains = splitImportance(fit.ensemble).map((f) => f.gain);
  const total = gains.reduce((a, b) => a + b, 0);
  return names
    .map((param, i) => ({ param, importance: total > 0 ? gains[i] / total : 0 }))
    .sort((a, b) => b.importance - a.importance);
}

/** Build the report of a study from its trials. */
export function buildStudyReport(study: StudyRow, rows: readonly TrialRow[]): StudyReport {
  const counts: Record<string, number> = { waiting: 0, running: 0, complete: 0, pruned: 0, failed: 0 };
  for (const r of rows) counts[r.state] = (counts[r.state] ?? 0) + 1;
  const best = bestOf(rows, study.direction);
  let running: number | null = null;
  const history = rows.map((r) => {
    if (r.state === "complete" && r.value !== null) {
      if (running === null || (study.direction === "minimize" ? r.value < running : r.value > running))
        running = r.value;
    }
    return {
      number: r.number,
      state: r.state,
      value: r.value,
      best: running,
      seconds: r.durationMs === null ? null : r.durationMs / 1000,
    };
  });
  return {
    study: {
      id: study.id,
      name: study.name,
      status: study.status,
      metric: study.metric,
      direction: study.direction,
      splitId: study.splitId,
      sampler: study.sampler,
      pruner: study.pruner,
      createdAt: study.createdAt.toISOString(),
    },
    counts,
    best: best ? { number: best.number, value: best.value!, params: best.params } : null,
    history,
    importances: paramImportances(study.searchSpace as SearchSpace, rows),
    result: (study.settings as Record<string, unknown>)["result"] ?? null,
  };
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Two panels: objective value per trial with the running best, and parameter importances. */
export function reportSvg(report: StudyReport): string {
  const W = 900;
  const H = 360;
  const left = { x: 60, y: 40, w: 480, h: 270 };
  const right = { x: 680, y: 40, w: 190, h: 270 };
  const pts = report.history.filter((h) => h.value !== null);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left.x}" y="22" font-size="14" font-weight="bold">${esc(report.study.name)}: optimisation history (${esc(report.study.metric)}, ${esc(report.study.direction)})</text>`,
    `<rect x="${left.x}" y="${left.y}" width="${left.w}" height="${left.h}" fill="none" stroke="#999"/>`,
  ];
  if (pts.length > 0) {
    const n = Math.max(1, report.history.length - 1);
    const vals = pts.map((p) => p.value!);
    let lo = Math.min(...vals);
    let hi = Math.max(...vals);
    if (hi === lo) {
      hi += 1e-9;
      lo -= 1e-9;
    }
    const sx = (i: number) => left.x + (i / n) * left.w;
    const sy = (v: number) => left.y + left.h - ((v - lo) / (hi - lo)) * left.h;
    for (const p of pts)
      out.push(
        `<circle cx="${sx(p.number).toFixed(1)}" cy="${sy(p.value!).toFixed(1)}" r="3" fill="#1f77b4" fill-opacity="0.7"/>`,
      );
    const line = report.history
      .filter((h) => h.best !== null)
      .map((h) => `${sx(h.number).toFixed(1)},${sy(h.best!).toFixed(1)}`)
      .join(" ");
    if (line) out.push(`<polyline points="${line}" fill="none" stroke="#d62728" stroke-width="2"/>`);
    out.push(
      `<text x="${left.x - 5}" y="${left.y + 4}" text-anchor="end">${hi.toPrecision(4)}</text>`,
      `<text x="${left.x - 5}" y="${left.y + left.h}" text-anchor="end">${lo.toPrecision(4)}</text>`,
      `<text x="${left.x}" y="${left.y + left.h + 16}">0</text>`,
      `<text x="${left.x + left.w}" y="${left.y + left.h + 16}" text-anchor="end">${n}</text>`,
      `<text x="${left.x + left.w / 2}" y="${left.y + left.h + 30}" text-anchor="middle">trial number (dots: objective value, red: best so far)</text>`,
    );
  }
  out.push(`<text x="${right.x - 100}" y="${left.y - 6}" font-weight="bold">parameter importance</text>`);
  const imps = report.importances.slice(0, 12);
  const barH = Math.min(20, right.h / Math.max(1, imps.length));
  imps.forEach((imp, i) => {
    const y = right.y + i * barH;
    out.push(
      `<text x="${right.x - 6}" y="${(y + barH * 0.7).toFixed(1)}" text-anchor="end">${esc(imp.param)}</text>`,
      `<rect x="${right.x}" y="${y.toFixed(1)}" width="${(imp.importance * right.w).toFixed(1)}" height="${(barH * 0.8).toFixed(1)}" fill="#2ca02c"/>`,
      `<text x="${(right.x + imp.importance * right.w + 3).toFixed(1)}" y="${(y + barH * 0.7).toFixed(1)}">${imp.importance.toFixed(2)}</text>`,
    );
  });
  if (imps.length === 0)
    out.push(`<text x="${right.x - 100}" y="${right.y + 14}">(needs ≥ 4 complete trials)</text>`);
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
