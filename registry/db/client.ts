/**
 * Open the registry database: embedded PGlite at `$ARBOR_HOME/registry` when `DATABASE_URL` is
 * unset, a real Postgres through postgres.js otherwise. Migrations are applied on open, under a
 * Postgres advisory lock so that several processes starting at once apply them exactly once.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import type { ArborConfig } from "../../shared/config.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { acquireDirLock } from "./dir-lock.ts";
import * as schema from "./schema.ts";

/** The drizzle handle both drivers share (queries, `transaction`, `.for("update")`). */
export type RegistryDatabase = PgDatabase<PgQueryResultHKT, typeof schema>;

/** The handle inside `db.transaction(async (tx) => …)`. */
export type RegistryTransaction = Parameters<Parameters<RegistryDatabase["transaction"]>[0]>[0];

/** Which database backs the registry. */
export type RegistryKind = "pglite" | "postgres";

/** An open registry database. */
export interface RegistryClient {
  readonly kind: RegistryKind;
  readonly db: RegistryDatabase;
  /** Apply pending migrations (already done by open; safe to call again). */
  migrate(): Promise<void>;
  close(): Promise<void>;
}

/** Folder of the generated SQL migrations. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../migrations", import.meta.url));

/** Advisory lock key (two int4s) that serialises migrations across processes: "arbr", 1. */
const MIGRATION_LOCK = [0x61726272, 1] as const;

/** Open the database named by the config and bring its schema up to date. */
export async function openRegistryDatabase(config: ArborConfig, logger: Logger): Promise<RegistryClient> {
  const client = config.databaseUrl
    ? await openPostgres(config.databaseUrl, logger)
    : await openPglite(path.join(config.home, "registry"), logger);
  try {
    await client.migrate();
  } catch (e) {
    await client.close().catch(() => {});
    throw arborError("DB_UNAVAILABLE", `open registry: applying migrations failed: ${errorText(e)}`, {
      cause: e,
    });
  }
  return client;
}

async function openPostgres(url: string, logger: Logger): Promise<RegistryClient> {
  // onnotice: "schema already exists, skipping" and friends would go to stdout otherwise.
  const sql = postgres(url, { max: 10, onnotice: () => {}, connect_timeout: 10 });
  try {
    await sql`select 1`;
  } catch (e) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw arborError("DB_UNAVAILABLE", `open registry: cannot reach DATABASE_URL: ${errorText(e)}`, {
      cause: e,
    });
  }
  const db = drizzlePostgres(sql, { schema });
  const log = logger.child({ db: "postgres" });
  return {
    kind: "postgres",
    db: db as unknown as RegistryDatabase,
    async migrate() {
      // A session-level lock on a reserved connection; the migrator itself runs on the pool.
      const conn = await sql.reserve();
      try {
        await conn`select pg_advisory_lock(${MIGRATION_LOCK[0]}, ${MIGRATION_LOCK[1]})`;
        await migratePostgres(db, { migrationsFolder: MIGRATIONS_FOLDER });
        log.debug("migrations applied");
      } finally {
        await conn`select pg_advisory_unlock(${MIGRATION_LOCK[0]}, ${MIGRATION_LOCK[1]})`.catch(() => {});
        conn.release();
      }
    },
    async close() {
      await sql.end({ timeout: 5 });
    },
  };
}

async function openPglite(dataDir: string, logger: Logger): Promise<RegistryClient> {
  mkdirSync(path.dirname(dataDir), { recursive: true });
  const releaseLock = acquireDirLock(`${dataDir}.lock`, dataDir);
  let pg: PGlite;
  try {
    pg = await PGlite.create(dataDir);
  } catch (e) {
    releaseLock();
    throw arborError("DB_UNAVAILABLE", `open registry: cannot open PGlite at ${dataDir}: ${errorText(e)}`, {
      cause: e,
    });
  }
  const db = drizzlePglite(pg, { schema });
  const log = logger.child({ db: "pglite", dataDir });
  let closed = false;
  return {
    kind: "pglite",
    db: db as unknown as RegistryDatabase,
    async migrate() {
      // One process at a time (the lock file), so no advisory lock is needed.
      await migratePglite(db, { migrationsFolder: MIGRATIONS_FOLDER });
      log.debug("migrations applied");
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await pg.close();
      } finally {
        releaseLock();
      }
    },
  };
}

/** The Postgres SQLSTATE of an error or of one of its causes (drizzle wraps driver errors). */
export function pgErrorCode(e: unknown): string | undefined {
  for (let cur = e, depth = 0; cur && depth < 5; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

function errorText(e: unknown): string {
  const cause = (e as { cause?: unknown })?.cause;
  const base = e instanceof Error ? e.message : String(e);
  return cause instanceof Error && !base.includes(cause.message) ? `${base} (${cause.message})` : base;
}
