/** `arbor models register|promote|rollback|archive|list|show`: model versions and labels. */
import { eq } from "drizzle-orm";
import { z } from "zod";
import { studies } from "../../registry/db/schema.ts";
import { openRegistry, type Registry } from "../../registry/index.ts";
import type { LabelChange, ModelDetails, ModelSummary } from "../../registry/models.ts";
import { arborError } from "../../shared/errors.ts";
import { operationLogger } from "../../shared/logger.ts";
import { type CommandContext, defineCommand } from "../cli/command.ts";

/** The registry, logging under an `op_id` for this command (one id per CLI invocation). */
async function registry(ctx: CommandContext, op: string): Promise<Registry> {
  const reg = await openRegistry(ctx.config, operationLogger(ctx.logger, op));
  ctx.onClose(() => reg.close());
  return reg;
}

const positiveInt = z.coerce
  .number({ error: "must be a version number (1, 2, …)" })
  .int("must be a whole number")
  .positive("must be 1 or more");

/** `arbor models register`. */
export const modelsRegisterCommand = defineCommand({
  name: "models register",
  summary: "copy a bundle folder into the store as the model's next version and print the version",
  flags: [
    { name: "bundle", type: "string", placeholder: "DIR", required: true, description: "bundle folder" },
    { name: "name", type: "string", placeholder: "NAME", required: true, description: "model name" },
    { name: "split", type: "string", placeholder: "ID", description: "split the model was trained on" },
    { name: "study", type: "string", placeholder: "ID", description: "study (id or name) it came from" },
    { name: "trial", type: "integer", placeholder: "N", description: "trial number within the study" },
    { name: "description", type: "string", placeholder: "TEXT", description: "what this version is" },
  ],
  schema: z.object({
    _: z.array(z.string()),
    bundle: z.string().min(1),
    name: z.string().min(1),
    split: z.string().min(1).optional(),
    study: z.string().min(1).optional(),
    trial: z.number().int().nonnegative().optional(),
    description: z.string().optional(),
  }),
  examples: ["arbor models register --bundle ./out/bundle --name flights --split spl_01jc…"],
  async run(ctx, args) {
    const reg = await registry(ctx, "models register");
    let studyId: string | undefined;
    if (args.study !== undefined) {
      const [byId] = await reg.db.select().from(studies).where(eq(studies.id, args.study)).limit(1);
      const [byName] = byId
        ? [byId]
        : await reg.db.select().from(studies).where(eq(studies.name, args.study)).limit(1);
      if (!byName)
        throw arborError("STUDY_NOT_FOUND", `models register: --study ${args.study} does not exist`);
      studyId = byName.id;
    }
    const result = await reg.models.register({
      name: args.name,
      bundleDir: args.bundle,
      description: args.description,
      actor: ctx.config.user,
      lineage: {
        ...(args.split !== undefined ? { splitId: args.split } : {}),
        ...(studyId !== undefined ? { studyId } : {}),
        ...(args.trial !== undefined ? { trialNumber: args.trial } : {}),
      },
    });
    ctx.say(`registered ${result.name} v${result.version} (${result.files.length} files)`);
    return {
      json: { name: result.name, version: result.version, manifestSha256: result.manifestSha256 },
      text: String(result.version),
    };
  },
});

function changeText(c: LabelChange): string {
  return `${c.name} ${c.label}: ${c.previousVersion === null ? "-" : `v${c.previousVersion}`} -> v${c.version}`;
}

/** `arbor models promote`. */
export const modelsPromoteCommand = defineCommand({
  name: "models promote",
  summary: "point a label at a version (database, audit event and store pointer together)",
  positionals: [
    { name: "NAME", description: "model name" },
    { name: "VERSION", description: "version number" },
  ],
  flags: [
    {
      name: "label",
      type: "string",
      placeholder: "LABEL",
      required: true,
      description: "label, e.g. production",
    },
    { name: "reason", type: "string", placeholder: "TEXT", description: "why (kept in the audit trail)" },
  ],
  schema: z.object({
    _: z.tuple([z.string(), positiveInt]),
    label: z.string().min(1),
    reason: z.string().optional(),
  }),
  examples: ["arbor models promote flights 3 --label production --reason 'better AUC'"],
  async run(ctx, args) {
    const reg = await registry(ctx, "models promote");
    const [name, version] = args._;
    const change = await reg.models.promote(name, version, args.label, {
      actor: ctx.config.user,
      reason: args.reason,
    });
    return { json: change, text: changeText(change) };
  },
});

/** `arbor models rollback`. */
export const modelsRollbackCommand = defineCommand({
  name: "models rollback",
  summary: "move a label back to the version it pointed at before",
  positionals: [{ name: "NAME", description: "model name" }],
  flags: [
    {
      name: "label",
      type: "string",
      placeholder: "LABEL",
      required: true,
      description: "label to roll back",
    },
    { name: "reason", type: "string", placeholder: "TEXT", description: "why (kept in the audit trail)" },
  ],
  schema: z.object({ _: z.tuple([z.string()]), label: z.string().min(1), reason: z.string().optional() }),
  async run(ctx, args) {
    const reg = await registry(ctx, "models rollback");
    const change = await reg.models.rollback(args._[0], args.label, {
      actor: ctx.config.user,
      reason: args.reason,
    });
    return { json: change, text: changeText(change) };
  },
});

/** `arbor models archive`. */
export const modelsArchiveCommand = defineCommand({
  name: "models archive",
  summary: "archive a version (refused while a label points at it); its files stay",
  positionals: [
    { name: "NAME", description: "model name" },
    { name: "VERSION", description: "version number" },
  ],
  flags: [],
  schema: z.object({ _: z.tuple([z.string(), positiveInt]) }),
  async run(ctx, args) {
    const reg = await registry(ctx, "models archive");
    const result = await reg.models.archive(args._[0], args._[1]);
    return { json: result, text: `archived ${result.name} v${result.version}` };
  },
});

function listText(models: ModelSummary[]): string {
  if (models.length === 0) return "no models";
  const rows = models.map((m) => [
    m.name,
    `v${m.latestVersion}`,
    String(m.versions),
    Object.entries(m.labels)
      .map(([l, v]) => `${l}=v${v}`)
      .join(" ") || "-",
  ]);
  return table(["NAME", "LATEST", "VERSIONS", "LABELS"], rows);
}

/** `arbor models list`. */
export const modelsListCommand = defineCommand({
  name: "models list",
  summary: "list models with their latest version and labels",
  flags: [],
  schema: z.object({ _: z.array(z.string()) }),
  async run(ctx) {
    const reg = await registry(ctx, "models list");
    const models = await reg.models.list();
    return { json: { models }, text: listText(models) };
  },
});

function showText(d: ModelDetails): string {
  const lines = [`${d.name}${d.description ? ` — ${d.description}` : ""}`, ""];
  for (const p of d.strayPointers) {
    lines.push(
      `warning: the store has a pointer for label ${p.label} (v${p.version}) that the database does not know; ` +
        `promote the label to repair it`,
      "",
    );
  }
  for (const l of d.labels) {
    if (!l.inSync) {
      const file = l.pointerVersion === null ? "missing" : `v${l.pointerVersion}`;
      lines.push(
        `warning: label ${l.label} is v${l.version} in the database but its pointer file says ${file}; ` +
          `run \`arbor models promote ${d.name} ${l.version} --label ${l.label}\` to repair`,
        "",
      );
    }
  }
  lines.push(
    table(
      ["VERSION", "CREATED", "SIZE", "LABELS", "STATE", "MANIFEST"],
      d.versionList.map((v) => [
        `v${v.version}`,
        v.createdAt.toISOString(),
        String(v.sizeBytes),
        v.labels.join(",") || "-",
        v.archivedAt ? "archived" : "ready",
        v.manifestSha256.slice(0, 12),
      ]),
    ),
  );
  if (d.events.length > 0) {
    lines.push("", "Recent label events:");
    lines.push(
      table(
        ["WHEN", "LABEL", "ACTION", "FROM", "TO", "WHO", "REASON"],
        d.events.map((e) => [
          e.createdAt.toISOString(),
          e.label,
          e.action,
          e.fromVersion === null ? "-" : `v${e.fromVersion}`,
          `v${e.toVersion}`,
          e.actor,
          e.reason ?? "",
        ]),
      ),
    );
  }
  return lines.join("\n");
}

/** `arbor models show`. */
export const modelsShowCommand = defineCommand({
  name: "models show",
  summary: "show a model's versions, labels and recent label events",
  positionals: [{ name: "NAME", description: "model name" }],
  flags: [],
  schema: z.object({ _: z.tuple([z.string()]) }),
  async run(ctx, args) {
    const reg = await registry(ctx, "models show");
    const details = await reg.models.show(args._[0]);
    return { json: details, text: showText(details) };
  },
});

/** All `arbor models …` commands, in help order. */
export const MODELS_COMMANDS = [
  modelsRegisterCommand,
  modelsPromoteCommand,
  modelsRollbackCommand,
  modelsArchiveCommand,
  modelsListCommand,
  modelsShowCommand,
] as const;

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
