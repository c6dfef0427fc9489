/**
 * The CLI's command model. A command declares its flags once (name, type, help); the dispatcher
 * derives parsing, `--help` text and validation from that declaration, so the help can never
 * drift from what is accepted.
 *
 * Output contract: the command's result goes to stdout (JSON with `--json`, a short text
 * otherwise, e.g. the new split id); progress and human messages go to stderr; errors exit
 * non-zero with one line `arbor: CODE: message`.
 */
import type { z } from "zod";
import type { ArborConfig, ConfigKey } from "../../shared/config.ts";
import type { Logger } from "../../shared/logger.ts";

/** Value kinds a flag can take. `list` is a comma-separated string split into an array. */
export type FlagType = "string" | "number" | "integer" | "boolean" | "list";

/** One flag of a command, e.g. `--ratios 0.7,0.15,0.15`. */
export interface FlagSpec {
  /** kebab-case name without dashes, e.g. "time-column". Its value lands in camelCase ("timeColumn"). */
  name: string;
  type: FlagType;
  description: string;
  /** Shown in help as the value placeholder, e.g. "URI". */
  placeholder?: string;
  required?: boolean;
  choices?: readonly string[];
  default?: string | number | boolean | readonly string[];
}

/** A positional argument, e.g. `NAME` in `arbor models show NAME`. */
export interface PositionalSpec {
  name: string;
  description: string;
  required?: boolean;
}

/** What a command hands back to the dispatcher. */
export interface CommandResult {
  /** Printed on stdout with `--json`. */
  json: unknown;
  /** Printed on stdout without `--json` (one or a few lines: ids, tables). */
  text: string;
  /** Process exit code; 0 by default. Commands that gate CI (tune, promote) set others. */
  exitCode?: number;
}

/** Everything a command may use. */
export interface CommandContext {
  config: ArborConfig;
  /** The environment the command runs in (where `config` came from). */
  env: Readonly<Record<string, string | undefined>>;
  /** Whether the log level was asked for (`--log-level` or ARBOR_LOG_LEVEL), not the CLI's quiet default. */
  logLevelGiven: boolean;
  logger: Logger;
  /** True with `--json`. */
  json: boolean;
  /** Human message to stderr (suppressed by --quiet). */
  say(message: string): void;
  /** Register cleanup (closing databases, stores) run after the command, in reverse order. */
  onClose(fn: () => Promise<void> | void): void;
  /** Aborted on SIGINT/SIGTERM so long commands can stop cleanly. */
  signal: AbortSignal;
}

/** Parsed flags (camelCase keys) plus positionals. */
export type ParsedArgs = Record<string, unknown> & { _: string[] };

/** A command: its declaration and its action. */
export interface Command<A = ParsedArgs> {
  /** Words that select it: "split", "models register". */
  name: string;
  summary: string;
  flags: readonly FlagSpec[];
  positionals?: readonly PositionalSpec[];
  /** Validates the parsed flags (keys in camelCase, `_` = positionals); messages name the field. */
  schema: z.ZodType<A>;
  /** Shown under the flags in `arbor COMMAND --help`. */
  examples?: readonly string[];
  /**
   * Settings the command never uses (`databaseUrl` for commands that do not open the registry): their
   * environment variables are not validated, so a stale DATABASE_URL cannot stop `arbor serve`.
   */
  unusedConfig?: readonly ConfigKey[];
  run(ctx: CommandContext, args: A): Promise<CommandResult>;
}

/** Build a command with its argument type inferred from the schema. */
export function defineCommand<S extends z.ZodType>(
  command: Command<z.infer<S>> & { schema: S },
): Command<unknown> {
  return command as unknown as Command<unknown>;
}

/** "time-column" → "timeColumn". */
export function camelCase(flag: string): string {
  return flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** "timeColumn" → "--time-column". */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
