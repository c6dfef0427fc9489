/**
 * Configuration: one loader per process, all defaults in one object, precedence
 * override > environment > default, every problem reported together, the result frozen.
 * Nothing else in arbor reads `process.env`.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { arborError } from "./errors.ts";

/** Environment variables arbor reads, by config key. */
export const ENV_NAMES = {
  home: "ARBOR_HOME",
  databaseUrl: "DATABASE_URL",
  store: "ARBOR_STORE",
  logLevel: "ARBOR_LOG_LEVEL",
  gcsEndpoint: "STORAGE_EMULATOR_HOST",
  gcsProject: "ARBOR_GCS_PROJECT",
  apiTokens: "ARBOR_API_TOKENS",
  user: "ARBOR_USER",
} as const;

/** A config field that can come from the environment. */
export type ConfigKey = keyof typeof ENV_NAMES;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const configSchema = z.object({
  home: z.string().min(1),
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must start with postgres:// or postgresql://")
    .optional(),
  store: z.string().regex(/^(file:\/\/|gs:\/\/)/, "must be a file:// or gs:// URI"),
  logLevel: z.enum(LOG_LEVELS),
  gcsEndpoint: z.string().optional(),
  gcsProject: z.string().optional(),
  apiTokens: z.array(z.string().min(16, "each token needs at least 16 characters")),
  user: z.string().min(1),
});

/** The validated, frozen configuration shared by every arbor process. */
export type ArborConfig = Readonly<z.infer<typeof configSchema>>;

/** Overrides from CLI flags; `undefined` means "not given". */
export type ConfigOverrides = { [K in keyof ArborConfig]?: ArborConfig[K] | undefined };

/** Turn a local path or URI into a `file://` or `gs://` URI. */
export function normalizeStoreUri(value: string, cwd: string): string {
  if (value.startsWith("gs://") || value.startsWith("file://")) return value.replace(/\/+$/, "");
  // Another scheme (s3://, http://) is kept as given so validation refuses it, rather than taken
  // for a relative folder named "s3:".
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  return pathToFileURL(path.resolve(cwd, value)).href.replace(/\/+$/, "");
}

/** Settings whose values are never echoed in errors. */
const SECRET_KEYS = new Set(["databaseUrl", "apiTokens"]);

/**
 * Validate a raw object against a zod schema and report every problem in one error that names the
 * fields (by environment variable when one maps to the field).
 */
export function parseConfigObject<S extends z.ZodType>(
  schema: S,
  raw: unknown,
  envNames: Record<string, string> = {},
): z.infer<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.join(".");
    const top = String(issue.path[0]);
    const env = envNames[top];
    // The value given, unless it may hold a secret.
    const given = SECRET_KEYS.has(top) ? undefined : (raw as Record<string, unknown> | null)?.[top];
    const got =
      typeof given === "string" || (typeof given === "number" && Number.isFinite(given))
        ? ` (got ${JSON.stringify(given).slice(0, 60)})`
        : "";
    return `${env ? `${env} (${key})` : key}: ${issue.message}${got}`;
  });
  throw arborError("INVALID_CONFIG", `invalid configuration: ${problems.join("; ")}`, {
    details: { problems },
  });
}

/** The OS account name, for the audit trail where $USER is unset (containers, CI, cron). */
function osUser(): string | undefined {
  try {
    const name = os.userInfo().username;
    if (name && name !== "unknown") return name;
  } catch {
    // no passwd entry for the uid
  }
  // Bun's os.userInfo() answers "unknown" without $USER; the passwd file still knows the uid.
  const uid = process.getuid?.();
  if (uid === undefined) return undefined;
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.split(":")[2] === String(uid));
    return line?.split(":")[0] || `uid:${uid}`;
  } catch {
    return `uid:${uid}`;
  }
}

/** Load the shared configuration. */
export function loadArborConfig(
  env: Record<string, string | undefined>,
  overrides: ConfigOverrides = {},
  cwd: string = process.cwd(),
  /** Settings the caller never uses: their environment variables are neither read nor validated. */
  unused: readonly ConfigKey[] = [],
): ArborConfig {
  const pick = <K extends ConfigKey>(key: K): string | undefined => {
    if (unused.includes(key)) return undefined;
    const v = env[ENV_NAMES[key]];
    return v === undefined || v === "" ? undefined : v;
  };
  const home = path.resolve(cwd, overrides.home ?? pick("home") ?? ".arbor");
  const storeRaw = overrides.store ?? pick("store") ?? path.join(home, "store");
  const tokens = overrides.apiTokens ?? (pick("apiTokens") ?? "").split(",").filter((t) => t.length > 0);
  const raw = {
    home,
    databaseUrl: overrides.databaseUrl ?? pick("databaseUrl"),
    store: normalizeStoreUri(storeRaw, cwd),
    logLevel: overrides.logLevel ?? pick("logLevel") ?? "info",
    gcsEndpoint: overrides.gcsEndpoint ?? pick("gcsEndpoint"),
    gcsProject: overrides.gcsProject ?? pick("gcsProject"),
    apiTokens: tokens,
    user: overrides.user ?? pick("user") ?? env["USER"] ?? osUser() ?? "unknown",
  };
  // Name where a bad value came from: the flag when one gave it, else the environment variable.
  const names: Record<string, string> = { ...ENV_NAMES };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) names[key] = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  }
  return Object.freeze(parseConfigObject(configSchema, raw, names));
}
