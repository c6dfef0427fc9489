/** `arbor splits list|show|delete`: the splits the registry knows. */
import { z } from "zod";
import { openRegistry, type Registry, type SplitRecord } from "../../registry/index.ts";
import { operationLogger } from "../../shared/logger.ts";
import { type CommandContext, defineCommand } from "../cli/command.ts";
import type { SplitReport } from "../data/report.ts";
import { PARTS } from "../data/split.ts";

/** The registry, logging under an `op_id` for this command. */
async function open(ctx: CommandContext, op: string): Promise<Registry> {
  const registry = await openRegistry(ctx.config, operationLogger(ctx.logger, op));
  ctx.onClose(() => registry.close());
  return registry;
}

/** A row as JSON for `--json` output (dates as ISO strings, the report left out of lists). */
function summary(row: SplitRecord): Record<string, unknown> {
  return {
    id: row.id,
    name: row.name,
    strategy: row.strategy,
    target: row.target,
    rows: row.rows,
    sourceUri: row.sourceUri,
    fingerprint: row.fingerprint,
    createdAt: row.createdAt.toISOString(),
    deletedAt: row.deletedAt ? row.deletedAt.toISOString() : null,
  };
}

/** Left-aligned text table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** `arbor splits list`. */
export const splitsListCommand = defineCommand({
  name: "splits list",
  summary: "list splits, newest first",
  flags: [
    { name: "name", type: "string", placeholder: "NAME", description: "only splits with this name" },
    { name: "all", type: "boolean", description: "include soft-deleted splits" },
  ],
  schema: z.object({
    _: z.array(z.string()),
    name: z.string().min(1).optional(),
    all: z.boolean().optional(),
  }),
  async run(ctx, args) {
    const registry = await open(ctx, "splits list");
    const rows = await registry.splits.list({
      name: args.name,
      includeDeleted: args.all === true,
      limit: 1000,
    });
    const text =
      rows.length === 0
        ? ""
        : table(
            ["ID", "NAME", "STRATEGY", "TARGET", "ROWS", "CREATED", ...(args.all ? ["DELETED"] : [])],
            rows.map((r) => [
              r.id,
              r.name ?? "-",
              r.strategy,
              r.target,
              String(r.rows),
              r.createdAt.toISOString().slice(0, 19).replace("T", " "),
              ...(args.all ? [r.deletedAt ? "yes" : ""] : []),
            ]),
          );
    if (rows.length === 0) ctx.say("no splits");
    return { json: rows.map(summary), text };
  },
});

/** `arbor splits show`. */
export const splitsShowCommand = defineCommand({
  name: "splits show",
  summary: "show a split's report: rows, class balance, time range and groups per part, source and schema",
  flags: [],
  positionals: [{ name: "ID", description: "split id (spl_…)" }],
  schema: z.object({ _: z.tuple([z.string().min(1)]) }),
  async run(ctx, args) {
    const registry = await open(ctx, "splits show");
    const row = await registry.splits.get(args._[0], { includeDeleted: true });
    const report = row.report as unknown as SplitReport;
    return { json: { ...summary(row), report }, text: formatReport(report, row.deletedAt) };
  },
});

/** `arbor splits delete`. */
export const splitsDeleteCommand = defineCommand({
  name: "splits delete",
  summary: "soft-delete a split (hidden from lists); --purge also deletes its row and artifacts",
  flags: [{ name: "purge", type: "boolean", description: "delete the row and the files under splits/{id}/" }],
  positionals: [{ name: "ID", description: "split id (spl_…)" }],
  schema: z.object({ _: z.tuple([z.string().min(1)]), purge: z.boolean().optional() }),
  async run(ctx, args) {
    const registry = await open(ctx, "splits delete");
    const id = args._[0];
    if (args.purge) {
      const { deletedObjects } = await registry.splits.purge(id);
      ctx.say(`purged split ${id} (${deletedObjects} files)`);
      return { json: { id, deleted: true, purged: true, deletedObjects }, text: id };
    }
    const row = await registry.splits.softDelete(id);
    ctx.say(`deleted split ${id} (artifacts kept; --purge removes them)`);
    return {
      json: { id, deleted: true, purged: false, deletedAt: row.deletedAt?.toISOString() ?? null },
      text: id,
    };
  },
});

/** The report as text: a header, one table row per part, the schema. */
export function formatReport(report: SplitReport, deletedAt: Date | null = null): string {
  const total = report.source.rows;
  const head = [
    `split     ${report.id}${report.name ? ` (${report.name})` : ""}${deletedAt ? `  [deleted ${deletedAt.toISOString()}]` : ""}`,
    `strategy  ${report.strategy}  ratios ${report.options.ratios.join(",")}  seed ${report.seed}` +
      (report.options.time_column ? `  time ${report.options.time_column}` : "") +
      (report.options.group_column ? `  group ${report.options.group_column}` : ""),
    `target    ${report.target.column} (${report.target.kind}, ${report.target.distinct} distinct)`,
    `source    ${report.source.uri} (${report.source.format}, ${report.source.bytes} bytes)`,
    `          ${report.source.fingerprint}`,
    `rows      ${total} × ${report.source.columns} columns`,
    `created   ${report.created_at}`,
    "",
  ];
  const withTime = PARTS.some((p) => report.parts[p].time !== undefined);
  const withGroups = PARTS.some((p) => report.parts[p].groups !== undefined);
  const withClasses = PARTS.some((p) => report.parts[p].classes !== undefined);
  const header = [
    "PART",
    "ROWS",
    "SHARE",
    ...(withClasses ? ["CLASSES"] : []),
    ...(withTime ? ["TIME FROM", "TIME TO"] : []),
    ...(withGroups ? ["GROUPS"] : []),
  ];
  const rows = PARTS.map((name) => {
    const p = report.parts[name];
    const classes = p.classes
      ? Object.entries(p.classes)
          .map(([k, v]) => `${k} ${((100 * v) / Math.max(p.rows, 1)).toFixed(1)}%`)
          .join(" · ")
      : "";
    return [
      name,
      String(p.rows),
      `${(100 * p.fraction).toFixed(2)}%`,
      ...(withClasses ? [classes.length > 60 ? `${classes.slice(0, 57)}...` : classes] : []),
      ...(withTime ? [String(p.time?.min ?? "-"), String(p.time?.max ?? "-")] : []),
      ...(withGroups ? [String(p.groups ?? "-")] : []),
    ];
  });
  const names = report.source.column_names ?? Object.keys(report.source.schema);
  const schema = names.map((k) => `${k} ${report.source.schema[k]}`).join(", ");
  return [...head, table(header, rows), "", `schema    ${schema}`].join("\n");
}
