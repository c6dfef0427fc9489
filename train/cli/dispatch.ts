/**
 * Parse argv, print help, validate flags, run the chosen command, map errors to one line and a
 * non-zero exit code.
 */
import { parseArgs } from "node:util";
import type { z } from "zod";
import { argsErrorMessage } from "../../shared/args.ts";
import { type ArborConfig, loadArborConfig } from "../../shared/config.ts";
import { ArborError, arborError, toArborError } from "../../shared/errors.ts";
import { createLogger, type Logger } from "../../shared/logger.ts";
import {
  type Command,
  type CommandContext,
  camelCase,
  type FlagSpec,
  flagName,
  type ParsedArgs,
} from "./command.ts";

/** Flags every command accepts. */
export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: "json", type: "boolean", description: "print the result as JSON on stdout (for CI pipelines)" },
  { name: "quiet", type: "boolean", description: "no progress or messages on stderr" },
  {
    name: "home",
    type: "string",
    placeholder: "DIR",
    description: "arbor's home folder (ARBOR_HOME, default ./.arbor)",
  },
  {
    name: "store",
    type: "string",
    placeholder: "URI",
    description: "artifact store: a path, file:// or gs:// URI (ARBOR_STORE)",
  },
  {
    name: "database-url",
    type: "string",
    placeholder: "URL",
    description: "postgres:// URL (DATABASE_URL; unset: embedded PGlite in $ARBOR_HOME/registry)",
  },
  {
    name: "log-level",
    type: "string",
    placeholder: "LEVEL",
    choices: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    description: "log level of the JSON logs on stderr (ARBOR_LOG_LEVEL, default warn for the CLI)",
  },
  { name: "help", type: "boolean", description: "show help" },
];

/** I/O of the dispatcher, injectable for tests. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Record<string, string | undefined>;
  cwd: string;
}

function placeholder(flag: FlagSpec): string {
  if (flag.type === "boolean") return "";
  if (flag.placeholder) return ` ${flag.placeholder}`;
  if (flag.choices) return ` ${flag.choices.join("|")}`;
  return flag.type === "number" || flag.type === "integer" ? " N" : " VALUE";
}

function flagLine(flag: FlagSpec): string {
  const left = `  --${flag.name}${placeholder(flag)}`;
  const extra = [
    flag.required ? "required" : "",
    flag.default !== undefined ? `default ${String(flag.default)}` : "",
  ]
    .filter(Boolean)
    .join(", ");
  return `${left.padEnd(34)} ${flag.description}${extra ? ` (${extra})` : ""}`;
}

/** Usage line of a command. */
export function usage(command: Command<unknown>): string {
  const pos = (command.positionals ?? [])
    .map((p) => (p.required === false ? `[${p.name}]` : p.name))
    .join(" ");
  const req = command.flags
    .filter((f) => f.required)
    .map((f) => `--${f.name}${placeholder(f)}`)
    .join(" ");
  return `arbor ${command.name}${pos ? ` ${pos}` : ""}${req ? ` ${req}` : ""} [flags]`;
}

/** Help for one command. */
export function commandHelp(command: Command<unknown>): string {
  const lines = [`${usage(command)}`, "", `  ${command.summary}`, ""];
  for (const p of command.positionals ?? []) lines.push(`  ${p.name.padEnd(32)} ${p.description}`);
  if (command.flags.length > 0) lines.push("Flags:", ...command.flags.map(flagLine));
  lines.push("Global flags:", ...GLOBAL_FLAGS.map(flagLine));
  if (command.examples?.length) lines.push("", "Examples:", ...command.examples.map((e) => `  ${e}`));
  return `${lines.join("\n")}\n`;
}

/** Help listing every command with its flags. */
export function globalHelp(commands: readonly Command<unknown>[]): string {
  const lines = [
    "arbor — train gradient-boosted trees, register them, serve them at the edge.",
    "",
    "Usage: arbor COMMAND [flags]     (arbor COMMAND --help for one command)",
    "",
    "Commands:",
  ];
  for (const c of commands) {
    lines.push(`  ${usage(c)}`, `      ${c.summary}`);
    for (const f of c.flags) lines.push(`    ${flagLine(f).trimStart()}`);
  }
  lines.push("", "Global flags (every command):", ...GLOBAL_FLAGS.map(flagLine));
  lines.push(
    "",
    "Environment: ARBOR_HOME, ARBOR_STORE, DATABASE_URL, ARBOR_LOG_LEVEL, ARBOR_USER (who, in the audit trail), STORAGE_EMULATOR_HOST, ARBOR_GCS_PROJECT, ARBOR_API_TOKENS",
  );
  return `${lines.join("\n")}\n`;
}

/** Find the longest command name matching the leading words of argv. */
export function findCommand(
  commands: readonly Command<unknown>[],
  argv: readonly string[],
): { command: Command<unknown>; rest: string[] } | null {
  let best: Command<unknown> | null = null;
  let bestWords = 0;
  for (const c of commands) {
    const words = c.name.split(" ");
    if (words.length > argv.length) continue;
    if (words.every((w, i) => argv[i] === w) && words.length > bestWords) {
      best = c;
      bestWords = words.length;
    }
  }
  return best ? { command: best, rest: argv.slice(bestWords) } : null;
}

function coerce(flag: FlagSpec, raw: string | boolean): unknown {
  const name = `--${flag.name}`;
  if (flag.type === "boolean") return raw === true || raw === "true";
  const s = String(raw);
  if (flag.type === "number" || flag.type === "integer") {
    const n = Number(s);
    // Decimal only: Number() also reads "0x50", "1e3" and " 80".
    if (
      !/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s) ||
      (flag.type === "integer" && /[.eE]/.test(s)) ||
      !Number.isFinite(n)
    )
      throw arborError(
        "INVALID_ARGUMENT",
        `${name}: expected a ${flag.type === "integer" ? "whole number" : "number"}, got "${s}"`,
      );
    if (flag.type === "integer" && !Number.isInteger(n)) {
      throw arborError("INVALID_ARGUMENT", `${name}: expected a whole number, got "${s}"`);
    }
    return n;
  }
  if (flag.type === "list") {
    return s
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x.length > 0);
  }
  if (flag.choices && !flag.choices.includes(s)) {
    throw arborError("INVALID_ARGUMENT", `${name}: expected one of ${flag.choices.join(", ")}, got "${s}"`);
  }
  return s;
}

/** Parse argv for one command into camelCase keys. Throws INVALID_ARGUMENT on unknown or bad flags. */
export function parseCommandArgs(command: Command<unknown>, argv: readonly string[]): ParsedArgs {
  const all = [...command.flags, ...GLOBAL_FLAGS];
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const f of all) options[f.name] = { type: f.type === "boolean" ? "boolean" : "string" };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = argsErrorMessage(
      e,
      all.map((f) => f.name),
    );
    throw arborError("INVALID_ARGUMENT", `arbor ${command.name}: ${msg}`, { cause: e });
  }
  const out: ParsedArgs = { _: parsed.positionals };
  for (const f of all) {
    const raw = parsed.values[f.name];
    const key = camelCase(f.name);
    if (raw === undefined) {
      if (f.default !== undefined) out[key] = f.default;
      continue;
    }
    out[key] = coerce(f, raw as string | boolean);
  }
  for (const f of command.flags) {
    if (f.required && out[camelCase(f.name)] === undefined) {
      throw arborError("INVALID_ARGUMENT", `arbor ${command.name}: --${f.name} is required`);
    }
  }
  const positionals = command.positionals ?? [];
  const needed = positionals.filter((p) => p.required !== false).length;
  if (parsed.positionals.length < needed) {
    const missing = positionals.slice(parsed.positionals.length).map((p) => p.name);
    throw arborError("INVALID_ARGUMENT", `arbor ${command.name}: missing ${missing.join(", ")}`);
  }
  if (parsed.positionals.length > positionals.length) {
    throw arborError(
      "INVALID_ARGUMENT",
      `arbor ${command.name}: unexpected argument "${parsed.positionals[positionals.length]}"`,
    );
  }
  return out;
}

/** Validate parsed flags with the command's schema; the message names flags as the user typed them. */
export function validateArgs<T>(command: Command<T>, args: ParsedArgs): T {
  const result = (command.schema as z.ZodType<T>).safeParse(args);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => {
    const key = String(i.path[0] ?? "");
    const pos = (command.positionals ?? [])[Number(i.path[1])];
    const where = key === "_" ? (pos?.name ?? "argument") : flagName(key);
    return `${where}: ${i.message}`;
  });
  throw arborError("INVALID_ARGUMENT", `arbor ${command.name}: ${problems.join("; ")}`, {
    details: { problems },
  });
}

/** Run the CLI; returns the exit code. */
export async function runCli(
  commands: readonly Command<unknown>[],
  argv: readonly string[],
  io: CliIo,
): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    io.stdout(globalHelp(commands));
    return 0;
  }
  const wantsJson = argv.includes("--json");
  const quiet = argv.includes("--quiet");
  const cleanups: (() => Promise<void> | void)[] = [];
  const controller = new AbortController();
  const onSignal = () => controller.abort(arborError("SHUTTING_DOWN", "interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let logger: Logger | undefined;
  try {
    const found = findCommand(commands, argv);
    if (!found) {
      const prefix = commands.filter((c) => c.name.startsWith(`${argv[0]} `));
      if (prefix.length > 0 && (argv[1] === "--help" || argv[1] === "-h")) {
        io.stdout(prefix.map(commandHelp).join("\n"));
        return 0;
      }
      if (prefix.length > 0 && (argv[1] === undefined || argv[1].startsWith("-"))) {
        const subs = prefix.map((c) => c.name.slice(argv[0].length + 1));
        throw arborError(
          "UNKNOWN_COMMAND",
          `"arbor ${argv[0]}" needs a subcommand: ${subs.join(", ")} (arbor ${argv[0]} --help)`,
        );
      }
      throw arborError(
        "UNKNOWN_COMMAND",
        `unknown command "${argv.filter((a) => !a.startsWith("-")).join(" ")}"`,
      );
    }
    const { command, rest } = found;
    if (rest.includes("--help") || rest.includes("-h")) {
      io.stdout(commandHelp(command));
      return 0;
    }
    const parsed = parseCommandArgs(command, rest);
    const config: ArborConfig = loadArborConfig(
      io.env,
      {
        home: parsed["home"] as string | undefined,
        store: parsed["store"] as string | undefined,
        databaseUrl: parsed["databaseUrl"] as string | undefined,
        logLevel:
          (parsed["logLevel"] as ArborConfig["logLevel"] | undefined) ??
          (io.env["ARBOR_LOG_LEVEL"] ? undefined : "warn"),
      },
      io.cwd,
      command.unusedConfig,
    );
    logger = createLogger({ name: "arbor", level: quiet ? "silent" : config.logLevel });
    const args = validateArgs(command, parsed);
    const ctx: CommandContext = {
      config,
      env: io.env,
      logLevelGiven: parsed["logLevel"] !== undefined || Boolean(io.env["ARBOR_LOG_LEVEL"]),
      logger,
      json: wantsJson,
      say: (m) => {
        if (!quiet) io.stderr(`${m}\n`);
      },
      onClose: (fn) => cleanups.push(fn),
      signal: controller.signal,
    };
    const result = await command.run(ctx, args);
    if (wantsJson) io.stdout(`${JSON.stringify(result.json, null, 2)}\n`);
    else if (result.text.length > 0) io.stdout(result.text.endsWith("\n") ? result.text : `${result.text}\n`);
    return result.exitCode ?? 0;
  } catch (e) {
    const err = toArborError(e);
    if (err.code === "INTERNAL") logger?.error({ err: e }, "internal error");
    if (wantsJson) io.stdout(`${JSON.stringify(err.toJSON())}\n`);
    io.stderr(
      `arbor: ${err.code}: ${oneLine(err.message)}${err instanceof ArborError ? ` (${err.hint})` : ""}\n`,
    );
    return err.status >= 500 ? 1 : 2;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        logger?.warn({ err: e }, "cleanup failed");
      }
    }
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, " ");
}
