/**
 * The serve tier's configuration: one loader, all defaults in one object, precedence
 * flag override > environment > default, every problem reported together, the result frozen.
 * Besides shared/config.ts this is the only place the serve process reads `process.env`.
 */
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { normalizeStoreUri, parseConfigObject } from "../shared/config.ts";

/** Environment variables of the serve tier, by config key. */
export const SERVE_ENV_NAMES = {
  host: "ARBOR_SERVE_HOST",
  port: "ARBOR_SERVE_PORT",
  store: "ARBOR_STORE",
  home: "ARBOR_HOME",
  labels: "ARBOR_SERVE_LABELS",
  models: "ARBOR_SERVE_MODELS",
  workers: "ARBOR_SERVE_WORKERS",
  logLevel: "ARBOR_LOG_LEVEL",
  gcsEndpoint: "STORAGE_EMULATOR_HOST",
  gcsProject: "ARBOR_GCS_PROJECT",
  pollIntervalMs: "ARBOR_SERVE_POLL_MS",
  watch: "ARBOR_SERVE_WATCH",
  strictReadiness: "ARBOR_SERVE_STRICT_READINESS",
  cacheMaxModels: "ARBOR_SERVE_CACHE_MAX_MODELS",
  cacheMaxBytes: "ARBOR_SERVE_CACHE_MAX_BYTES",
  loadConcurrency: "ARBOR_SERVE_LOAD_CONCURRENCY",
  maxBodyBytes: "ARBOR_SERVE_MAX_BODY_BYTES",
  bodyBudgetBytes: "ARBOR_SERVE_BODY_BUDGET_BYTES",
  replyBudgetBytes: "ARBOR_SERVE_REPLY_BUDGET_BYTES",
  maxRows: "ARBOR_SERVE_MAX_ROWS",
  maxExplainRows: "ARBOR_SERVE_MAX_EXPLAIN_ROWS",
  batching: "ARBOR_SERVE_BATCHING",
  batchMaxRows: "ARBOR_SERVE_BATCH_MAX_ROWS",
  batchMaxWaitUs: "ARBOR_SERVE_BATCH_MAX_WAIT_US",
  wsMaxPayloadBytes: "ARBOR_SERVE_WS_MAX_PAYLOAD_BYTES",
  wsMaxBackpressureBytes: "ARBOR_SERVE_WS_MAX_BACKPRESSURE_BYTES",
  wsMaxConnections: "ARBOR_SERVE_WS_MAX_CONNECTIONS",
  wsMaxInFlight: "ARBOR_SERVE_WS_MAX_IN_FLIGHT",
  shutdownTimeoutMs: "ARBOR_SERVE_SHUTDOWN_TIMEOUT_MS",
} as const;

/** All defaults in one place. */
export const SERVE_DEFAULTS = {
  host: "0.0.0.0",
  port: 8080,
  labels: ["production"],
  models: [] as string[],
  /** 0 = one process per core (os.availableParallelism()). */
  workers: 0,
  logLevel: "info",
  pollIntervalMs: 2000,
  watch: true,
  /** /readyz waits for every label found to have a version (false: for every label's first load to end). */
  strictReadiness: true,
  cacheMaxModels: 16,
  cacheMaxBytes: 512 * 1024 * 1024,
  loadConcurrency: 2,
  maxBodyBytes: 16 * 1024 * 1024,
  /** Bytes of request bodies held while they arrive, all connections of a process together. */
  bodyBudgetBytes: 256 * 1024 * 1024,
  /** Bytes of replies held for clients that have not read them, all connections of a process together. */
  replyBudgetBytes: 256 * 1024 * 1024,
  maxRows: 10_000,
  /** TreeSHAP costs ~1 ms per row for 500 trees of depth 6 (on the explain thread): keep one request short. */
  maxExplainRows: 100,
  batching: true,
  batchMaxRows: 256,
  batchMaxWaitUs: 0,
  wsMaxPayloadBytes: 4 * 1024 * 1024,
  wsMaxBackpressureBytes: 1024 * 1024,
  wsMaxConnections: 10_000,
  wsMaxInFlight: 4096,
  shutdownTimeoutMs: 10_000,
} as const;

/** Model and label names: what the config accepts is what a request may name. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
const posInt = z.number().int().positive();
/** The longest delay a Node.js timer takes (a longer one fires after 1 ms). */
const TIMER_MAX_MS = 2 ** 31 - 1;

const serveConfigSchema = z
  .object({
    host: z.string().min(1),
    port: z.number().int().min(0).max(65535),
    store: z.string().regex(/^(file:\/\/|gs:\/\/)/, "must be a file:// or gs:// URI"),
    labels: z.array(z.string().regex(NAME_PATTERN, "bad label name")).min(1, "name at least one label"),
    models: z.array(z.string().regex(NAME_PATTERN, "bad model name")),
    workers: posInt.max(256),
    logLevel: z.enum(LOG_LEVELS),
    gcsEndpoint: z.string().optional(),
    gcsProject: z.string().optional(),
    pollIntervalMs: posInt.max(TIMER_MAX_MS),
    watch: z.boolean(),
    strictReadiness: z.boolean(),
    cacheMaxModels: posInt,
    cacheMaxBytes: posInt,
    loadConcurrency: posInt,
    maxBodyBytes: posInt,
    bodyBudgetBytes: posInt,
    replyBudgetBytes: posInt,
    maxRows: posInt,
    maxExplainRows: posInt,
    batching: z.boolean(),
    batchMaxRows: posInt,
    batchMaxWaitUs: z.number().int().min(0).max(1_000_000),
    // uWS takes 4x these as 32-bit limits (ws.ts): at most 256 MiB.
    wsMaxPayloadBytes: posInt.max(256 * 1024 * 1024),
    wsMaxBackpressureBytes: posInt.max(256 * 1024 * 1024),
    wsMaxConnections: posInt,
    wsMaxInFlight: posInt,
    shutdownTimeoutMs: posInt.max(TIMER_MAX_MS),
  })
  .refine((c) => c.bodyBudgetBytes >= c.maxBodyBytes, {
    message: "must be at least the largest body a request may send (ARBOR_SERVE_MAX_BODY_BYTES)",
    path: ["bodyBudgetBytes"],
  });

/** The validated, frozen serve configuration. */
export type ServeConfig = Readonly<z.infer<typeof serveConfigSchema>>;

/** Overrides (from `arbor serve` flags); `undefined` means "not given". */
export type ServeConfigOverrides = { [K in keyof ServeConfig]?: ServeConfig[K] | undefined };

type Key = keyof typeof SERVE_ENV_NAMES;

/** Parse an env string into the type of the default; leaves garbage for zod to name. */
function fromEnv(raw: string, like: unknown): unknown {
  // Decimal integers only: Number() would read "0x50" as 80 and "1e3" as 1000.
  if (typeof like === "number") return /^-?[0-9]+$/.test(raw.trim()) ? Number(raw) : raw;
  if (typeof like === "boolean") {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    return raw;
  }
  if (Array.isArray(like)) {
    return raw
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
  }
  return raw;
}

/** The `serve/main.ts` flag of each setting that has one. */
const FLAG_NAMES: Partial<Record<keyof ServeConfig, string>> = {
  host: "--host",
  port: "--port",
  store: "--store",
  labels: "--labels",
  models: "--models",
  workers: "--workers",
  logLevel: "--log-level",
  pollIntervalMs: "--poll-ms",
  batching: "--no-batching",
};

/** Load the serve configuration. `workers: 0` (the default) means one process per core. */
export function loadServeConfig(
  env: Record<string, string | undefined>,
  overrides: ServeConfigOverrides = {},
  cwd: string = process.cwd(),
): ServeConfig {
  const pick = (key: Key): string | undefined => {
    const v = env[SERVE_ENV_NAMES[key]];
    return v === undefined || v === "" ? undefined : v;
  };
  const raw: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(SERVE_DEFAULTS)) {
    const k = key as keyof typeof SERVE_DEFAULTS;
    const over = overrides[k];
    const envRaw = pick(k);
    raw[k] = over !== undefined ? over : envRaw !== undefined ? fromEnv(envRaw, def) : def;
  }
  if (raw["workers"] === 0) raw["workers"] = Math.max(1, os.availableParallelism());
  const home = path.resolve(cwd, pick("home") ?? ".arbor");
  raw["store"] = normalizeStoreUri(overrides.store ?? pick("store") ?? path.join(home, "store"), cwd);
  raw["gcsEndpoint"] = overrides.gcsEndpoint ?? pick("gcsEndpoint");
  raw["gcsProject"] = overrides.gcsProject ?? pick("gcsProject");
  // Name where a bad value came from: the flag when one gave it, else the environment variable.
  const names: Record<string, string> = { ...SERVE_ENV_NAMES };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) names[key] = FLAG_NAMES[key as keyof ServeConfig] ?? names[key] ?? key;
  }
  const parsed = parseConfigObject(serveConfigSchema, raw, names);
  return Object.freeze({
    ...parsed,
    labels: Object.freeze([...parsed.labels]) as string[],
    models: Object.freeze([...parsed.models]) as string[],
  });
}
