/**
 * The registry facade: one database (PGlite or Postgres) and one artifact store, with the split
 * and model repositories over them. Every train/ command and the control plane open it here.
 */
import type { ArborConfig } from "../shared/config.ts";
import type { Logger } from "../shared/logger.ts";
import { openRegistryDatabase, type RegistryDatabase, type RegistryKind } from "./db/client.ts";
import { JobQueue } from "./jobs.ts";
import { ModelRegistry, type RegisterHooks } from "./models.ts";
import { SplitRepository } from "./splits.ts";
import type { ArtifactStore } from "./store/artifact-store.ts";
import { openArtifactStore } from "./store/open.ts";

export type { RegistryDatabase, RegistryKind } from "./db/client.ts";
export type * from "./jobs.ts";
export { JobQueue } from "./jobs.ts";
export type * from "./models.ts";
export { ModelRegistry } from "./models.ts";
export type * from "./splits.ts";
export { SplitRepository } from "./splits.ts";

/** An open registry. */
export interface Registry {
  readonly kind: RegistryKind;
  /** drizzle handle (schema in registry/db/schema.ts). */
  readonly db: RegistryDatabase;
  /** The artifact store named by config.store. */
  readonly store: ArtifactStore;
  readonly splits: SplitRepository;
  readonly models: ModelRegistry;
  /** Queued work for `arbor worker` (claimed with SKIP LOCKED, leases by heartbeat). */
  readonly jobs: JobQueue;
  /** Close the store and the database (PGlite: releases the data directory). */
  close(): Promise<void>;
}

/** Extra options, for tests. */
export interface OpenRegistryOptions {
  /** Called inside registrations (the crash-safety suite pauses there). */
  registerHooks?: RegisterHooks;
}

/** Open the database (applying migrations) and the store that `config` names. */
export async function openRegistry(
  config: ArborConfig,
  logger: Logger,
  options: OpenRegistryOptions = {},
): Promise<Registry> {
  const log = logger.child({ component: "registry" });
  const store = await openArtifactStore(config.store, {
    gcsEndpoint: config.gcsEndpoint,
    gcsProject: config.gcsProject,
  });
  let client: Awaited<ReturnType<typeof openRegistryDatabase>>;
  try {
    client = await openRegistryDatabase(config, log);
  } catch (e) {
    await store.close().catch(() => {});
    throw e;
  }
  let closed = false;
  return {
    kind: client.kind,
    db: client.db,
    store,
    splits: new SplitRepository(client.db, store, log),
    models: new ModelRegistry(client.db, store, log, options.registerHooks),
    jobs: new JobQueue(client.db, log),
    async close() {
      if (closed) return;
      closed = true;
      try {
        await store.close();
      } finally {
        await client.close();
      }
    },
  };
}
