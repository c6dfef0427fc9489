/**
 * Fresh registry databases for tests: a PGlite data directory in a temporary ARBOR_HOME always,
 * and a Postgres database of its own (created from DATABASE_URL, dropped afterwards) when
 * DATABASE_URL is set. Suites loop over {@link databaseKinds} so that one contract suite runs on
 * both.
 *
 * A database per suite rather than a schema: drizzle-kit's SQL names `"public".` in foreign keys,
 * and a separate database also gives child processes (workers, CLI runs) a plain DATABASE_URL.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import postgres from "postgres";
import { type ArborConfig, loadArborConfig } from "../../shared/config.ts";
import { createLogger, type Logger } from "../../shared/logger.ts";

/** The server tests may use (CI sets it); unset means PGlite only. */
export const POSTGRES_URL: string | undefined = process.env["DATABASE_URL"] || undefined;
/** Where CREATE/DROP DATABASE run; defaults to DATABASE_URL. */
const ADMIN_URL: string | undefined = process.env["ARBOR_TEST_PG_ADMIN_URL"] || POSTGRES_URL;

/** Which databases the registry suites run on here. */
export type TestDatabaseKind = "pglite" | "postgres";

/** PGlite always; Postgres too when DATABASE_URL is set. */
export function databaseKinds(): TestDatabaseKind[] {
  return POSTGRES_URL ? ["pglite", "postgres"] : ["pglite"];
}

/** A fresh, empty database plus a temporary ARBOR_HOME (store under it). */
export interface TestDatabase {
  readonly kind: TestDatabaseKind;
  /** Set for Postgres: the URL of the database made for this test. */
  readonly databaseUrl: string | undefined;
  /** Temporary ARBOR_HOME (PGlite lives in `home/registry`, the store in `home/store`). */
  readonly home: string;
  /** Environment for child processes (`ARBOR_HOME`, `DATABASE_URL` — empty for PGlite —, `ARBOR_STORE`). */
  readonly env: Record<string, string>;
  /** ArborConfig pointing at this database and a file store under `home`. */
  config(overrides?: Partial<ArborConfig>): ArborConfig;
  /** Drop the database and delete the home folder. */
  drop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Create a fresh database of the given kind. */
export async function createTestDatabase(kind: TestDatabaseKind): Promise<TestDatabase> {
  const home = await mkdtemp(path.join(os.tmpdir(), "arbor-test-"));
  let databaseUrl: string | undefined;
  let dbName: string | undefined;
  if (kind === "postgres") {
    if (!POSTGRES_URL || !ADMIN_URL) throw new Error("createTestDatabase(postgres): DATABASE_URL is not set");
    // Named after DATABASE_URL's database, so that .ci/run can drop what a crashed suite left.
    const base =
      new URL(POSTGRES_URL).pathname
        .slice(1)
        .replace(/[^a-z0-9_]/gi, "")
        .slice(0, 30) || "arbor";
    dbName = `${base}_t_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
    await admin(async (sql) => {
      await sql.unsafe(`CREATE DATABASE "${dbName}"`);
    });
    const url = new URL(POSTGRES_URL);
    url.pathname = `/${dbName}`;
    databaseUrl = url.toString();
  }
  // DATABASE_URL is always set ("" = unset for the config loader) so that a child process spawned
  // with `{...process.env, ...env}` does not inherit the suite's Postgres URL on a PGlite run.
  const env: Record<string, string> = {
    ARBOR_HOME: home,
    ARBOR_STORE: path.join(home, "store"),
    DATABASE_URL: databaseUrl ?? "",
  };
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    if (dbName) {
      const name = dbName;
      await admin(async (sql) => {
        await sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      });
    }
    await rm(home, { recursive: true, force: true });
  };
  return {
    kind,
    databaseUrl,
    home,
    env,
    config: (overrides = {}) =>
      loadArborConfig({ ...env, ARBOR_LOG_LEVEL: "silent", ARBOR_USER: "test" }, overrides, home),
    drop,
    [Symbol.asyncDispose]: drop,
  };
}

/** A logger that writes nothing (set ARBOR_TEST_LOG=debug to see registry logs). */
export function testLogger(): Logger {
  return createLogger({ name: "test", level: process.env["ARBOR_TEST_LOG"] ?? "silent" });
}

async function admin(fn: (sql: postgres.Sql) => Promise<void>): Promise<void> {
  const sql = postgres(ADMIN_URL as string, { max: 1, onnotice: () => {} });
  try {
    await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
