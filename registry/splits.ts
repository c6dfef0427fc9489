/**
 * Split records: one `splits` row per data split, its artifacts under `splits/{id}/` in the store.
 * Delete is soft by default; `purge` removes the row and the artifacts.
 */
import { and, arrayContains, count, desc, eq, isNull, type SQL } from "drizzle-orm";
import { NAME_PATTERN } from "../shared/bundle.ts";
import { arborError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { splitPrefix } from "../shared/paths.ts";
import type { RegistryDatabase } from "./db/client.ts";
import { pgErrorCode } from "./db/client.ts";
import { type SplitRow, splits } from "./db/schema.ts";
import type { ArtifactStore } from "./store/artifact-store.ts";

/** What `arbor split` records. */
export interface NewSplit {
  id: string;
  name: string | null;
  sourceUri: string;
  fingerprint: string;
  strategy: string;
  target: string;
  options: Record<string, unknown>;
  report: Record<string, unknown>;
  rows: number;
  tags?: string[];
}

/** A split as stored (deletedAt set once soft-deleted). */
export type SplitRecord = SplitRow;

/** Filters for {@link SplitRepository.list}. */
export interface SplitFilter {
  includeDeleted?: boolean;
  name?: string;
  strategy?: string;
  /** Only splits carrying this tag. */
  tag?: string;
  limit?: number;
  offset?: number;
}

/** Fields {@link SplitRepository.update} may change. */
export interface SplitPatch {
  name?: string | null;
  tags?: string[];
}

const SPLIT_ID = /^spl_[0-9a-z]{20}$/;

/** The `splits` table plus the split artifacts in the store. */
export class SplitRepository {
  readonly #db: RegistryDatabase;
  readonly #store: ArtifactStore;
  readonly #logger: Logger;

  constructor(db: RegistryDatabase, store: ArtifactStore, logger: Logger) {
    this.#db = db;
    this.#store = store;
    this.#logger = logger;
  }

  /** Record a new split; CONFLICT when the id exists. */
  async create(input: NewSplit): Promise<SplitRecord> {
    if (!SPLIT_ID.test(input.id)) {
      throw arborError("INVALID_ARGUMENT", `create split: id "${input.id}" is not spl_ + 20 base32 chars`);
    }
    if (input.name !== null) checkName(input.name, "create split");
    if (!Number.isInteger(input.rows) || input.rows < 0) {
      throw arborError("INVALID_ARGUMENT", `create split: rows must be a non-negative integer`);
    }
    try {
      const [row] = await this.#db
        .insert(splits)
        .values({
          id: input.id,
          name: input.name,
          sourceUri: input.sourceUri,
          fingerprint: input.fingerprint,
          strategy: input.strategy,
          target: input.target,
          options: input.options,
          report: input.report,
          rows: input.rows,
          tags: input.tags ?? [],
        })
        .returning();
      return row;
    } catch (e) {
      if (pgErrorCode(e) === "23505") {
        throw arborError("CONFLICT", `create split: a split with id ${input.id} exists`, { cause: e });
      }
      throw e;
    }
  }

  /** One split; SPLIT_NOT_FOUND when absent (or soft-deleted, unless `includeDeleted`). */
  async get(id: string, options: { includeDeleted?: boolean } = {}): Promise<SplitRecord> {
    const [row] = await this.#db.select().from(splits).where(eq(splits.id, id)).limit(1);
    if (!row || (row.deletedAt !== null && !options.includeDeleted)) {
      throw arborError("SPLIT_NOT_FOUND", `get split: no split with id "${id}"`);
    }
    return row;
  }

  /** Splits, newest first. */
  async list(filter: SplitFilter = {}): Promise<SplitRecord[]> {
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
    return this.#db
      .select()
      .from(splits)
      .where(this.#where(filter))
      .orderBy(desc(splits.createdAt), desc(splits.id))
      .limit(limit)
      .offset(Math.max(filter.offset ?? 0, 0));
  }

  /** How many splits match (for pagination). */
  async count(filter: SplitFilter = {}): Promise<number> {
    const [row] = await this.#db.select({ n: count() }).from(splits).where(this.#where(filter));
    return Number(row?.n ?? 0);
  }

  /** Rename or retag a split. */
  async update(id: string, patch: SplitPatch): Promise<SplitRecord> {
    if (patch.name !== undefined && patch.name !== null) checkName(patch.name, "update split");
    const set: Partial<typeof splits.$inferInsert> = { updatedAt: new Date() };
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.tags !== undefined) set.tags = patch.tags;
    const [row] = await this.#db
      .update(splits)
      .set(set)
      .where(and(eq(splits.id, id), isNull(splits.deletedAt)))
      .returning();
    if (!row) throw arborError("SPLIT_NOT_FOUND", `update split: no split with id "${id}"`);
    return row;
  }

  /** Mark a split deleted; its artifacts stay. Deleting twice keeps the first time. */
  async softDelete(id: string): Promise<SplitRecord> {
    const [row] = await this.#db
      .update(splits)
      .set({ deletedAt: new Date(), updatedAt: new Date() })
      .where(and(eq(splits.id, id), isNull(splits.deletedAt)))
      .returning();
    if (row) return row;
    return this.get(id, { includeDeleted: true });
  }

  /**
   * Soft-delete the row, delete the split's artifacts under `splits/{id}/`, then the row. A purge
   * that dies half-way leaves a hidden (soft-deleted) row, never a listed split with files missing;
   * purging it again finishes the job.
   */
  async purge(id: string): Promise<{ id: string; deletedObjects: number }> {
    await this.softDelete(id);
    const deletedObjects = await this.#store.deletePrefix(splitPrefix(id));
    await this.#db.delete(splits).where(eq(splits.id, id));
    this.#logger.info({ split: id, deletedObjects }, "split purged");
    return { id, deletedObjects };
  }

  #where(filter: SplitFilter): SQL | undefined {
    const conditions: SQL[] = [];
    if (!filter.includeDeleted) conditions.push(isNull(splits.deletedAt));
    if (filter.name !== undefined) conditions.push(eq(splits.name, filter.name));
    if (filter.strategy !== undefined) conditions.push(eq(splits.strategy, filter.strategy));
    if (filter.tag !== undefined) conditions.push(arrayContains(splits.tags, [filter.tag]));
    return conditions.length > 0 ? and(...conditions) : undefined;
  }
}

function checkName(name: string, op: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw arborError("BAD_NAME", `${op}: name "${name}" is not a valid name`);
  }
}
