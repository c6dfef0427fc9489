/** `arbor studies list|show`: the studies in the registry, their trials, history and importances. */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { openRegistry, type Registry } from "../../registry/index.ts";
import { type CommandContext, defineCommand } from "../cli/command.ts";
import { buildStudyReport, reportSvg } from "../tune/report.ts";
import { StudyStorage } from "../tune/storage.ts";
import { table } from "./splits.ts";

async function open(ctx: CommandContext): Promise<Registry> {
  const registry = await openRegistry(ctx.config, ctx.logger);
  ctx.onClose(() => registry.close());
  return registry;
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? "-" : v.toFixed(5));

/** `arbor studies list`. */
export const studiesListCommand = defineCommand({
  name: "studies list",
  summary: "list studies, newest first",
  flags: [
    {
      name: "status",
      type: "string",
      choices: ["queued", "running", "complete", "failed", "cancelled"],
      description: "only studies in this state",
    },
    { name: "limit", type: "integer", placeholder: "N", default: 50, description: "at most this many" },
  ],
  schema: z.object({
    _: z.array(z.string()),
    status: z.string().optional(),
    limit: z.number().int().min(1).max(1000),
  }),
  async run(ctx, args) {
    const reg = await open(ctx);
    const storage = new StudyStorage(reg.db);
    const rows = await storage.list({ status: args.status, limit: args.limit });
    const json = rows.map((s) => ({
      id: s.id,
      name: s.name,
      status: s.status,
      metric: s.metric,
      direction: s.direction,
      bestValue: s.bestValue,
      bestTrialNumber: s.bestTrialNumber,
      splitId: s.splitId,
      createdAt: s.createdAt.toISOString(),
    }));
    const text = table(
      ["NAME", "ID", "STATUS", "METRIC", "BEST", "CREATED"],
      rows.map((s) => [s.name, s.id, s.status, s.metric, fmt(s.bestValue), s.createdAt.toISOString()]),
    );
    return { json, text: rows.length === 0 ? "no studies" : text };
  },
});

/** `arbor studies show NAME`. */
export const studiesShowCommand = defineCommand({
  name: "studies show",
  summary: "show a study's trials, best params, and write its report (JSON) and chart (SVG)",
  positionals: [{ name: "NAME", description: "study name or id" }],
  flags: [
    {
      name: "out",
      type: "string",
      placeholder: "DIR",
      description: "where report.json and history.svg go (default $ARBOR_HOME/reports/studies/NAME)",
    },
  ],
  schema: z.object({ _: z.array(z.string()).length(1), out: z.string().min(1).optional() }),
  async run(ctx, args) {
    const reg = await open(ctx);
    const storage = new StudyStorage(reg.db);
    const study = await storage.get(args._[0]);
    // Trials of workers that died show as what they are (waiting or failed), not "running".
    await storage.reapStale(study.id);
    const rows = await storage.trials(study.id);
    const report = buildStudyReport(study, rows);
    const dir = args.out ?? path.join(ctx.config.home, "reports", "studies", study.name);
    await mkdir(dir, { recursive: true });
    const reportPath = path.join(dir, "report.json");
    const chartPath = path.join(dir, "history.svg");
    await writeFile(reportPath, `${JSON.stringify(report, null, 2)}\n`);
    await writeFile(chartPath, reportSvg(report));
    const text = [
      `study ${study.name} (${study.id}) ${study.status}; ${study.metric} (${study.direction}); split ${study.splitId ?? "-"}`,
      `trials: ${
        Object.entries(report.counts)
          .filter(([, n]) => n > 0)
          .map(([k, n]) => `${n} ${k}`)
          .join(", ") || "none"
      }`,
      report.best
        ? `best trial ${report.best.number}: ${fmt(report.best.value)} ${JSON.stringify(report.best.params)}`
        : "no complete trial",
      report.importances.length > 0
        ? `importance: ${report.importances.map((i) => `${i.param} ${i.importance.toFixed(2)}`).join(", ")}`
        : "",
      "",
      table(
        ["#", "STATE", "VALUE", "BEST", "SECONDS", "ROUNDS"],
        rows.map((r, i) => [
          String(r.number),
          r.state,
          fmt(r.value),
          fmt(report.history[i].best),
          r.durationMs === null ? "-" : (r.durationMs / 1000).toFixed(1),
          String(Object.keys(r.intermediateValues).length),
        ]),
      ),
      "",
      `report: ${reportPath}`,
      `chart:  ${chartPath}`,
    ]
      .filter((l, i) => l !== "" || i > 3)
      .join("\n");
    return { json: { ...report, files: { report: reportPath, chart: chartPath } }, text };
  },
});

/** Every `arbor studies` command. */
export const STUDIES_COMMANDS = [studiesListCommand, studiesShowCommand];
