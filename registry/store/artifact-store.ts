/**
 * The artifact store port. Implementations: FileArtifactStore (`file://`, a local folder) and
 * GcsArtifactStore (`gs://bucket/prefix`, @google-cloud/storage). Keys are '/'-separated paths
 * relative to the store root (see shared/paths.ts).
 *
 * Guarantees every implementation gives (checked by one contract suite in test/):
 * - a reader never sees a half-written object: `put` publishes atomically;
 * - `createIfAbsent` succeeds for exactly one of several concurrent writers;
 * - `compareAndSwap` succeeds only if the object's generation is the one the caller read.
 */
import type { Readable } from "node:stream";

/** An object's version token: a GCS generation, or inode + mtime + size locally. Opaque. */
export type Generation = string;

/** Metadata of one stored object. */
export interface ObjectInfo {
  key: string;
  size: number;
  generation: Generation;
  updatedAt: Date;
}

/** A small object read whole, with its generation (for compare-and-swap). */
export interface VersionedObject {
  data: Uint8Array;
  generation: Generation;
}

/** Where artifacts live. */
export interface ArtifactStore {
  /** The store's URI, e.g. `file:///home/me/.arbor/store` or `gs://bucket/prefix`. */
  readonly uri: string;

  /** Write an object from a stream or bytes; atomic (readers see the old object or the whole new one). */
  put(
    key: string,
    body: Readable | Uint8Array | string,
    options?: { contentType?: string },
  ): Promise<ObjectInfo>;

  /** Read an object as a stream. Throws STORE_NOT_FOUND. */
  get(key: string): Promise<Readable>;

  /** Read a small object whole. Throws STORE_NOT_FOUND. */
  read(key: string): Promise<VersionedObject>;

  /** Metadata of an object, or null when absent. */
  stat(key: string): Promise<ObjectInfo | null>;

  /** Whether the object exists. */
  exists(key: string): Promise<boolean>;

  /** Objects whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;

  /**
   * Objects whose key matches `pattern`, sorted by key: '/'-separated segments in which `*` stands
   * for any run of characters other than '/' (the label pointers: `models/`, `*`, `/labels/`,
   * `*.json`); every other character is literal, and `**` is refused. Unlike `list`, the cost follows what the pattern
   * names: a file:// store reads only the folders a segment's `*` ranges over, a gs:// store sends
   * the pattern as `matchGlob`, so neither walks the objects below folders the pattern skips.
   */
  listMatching(pattern: string): Promise<ObjectInfo[]>;

  /** Delete an object; deleting an absent object is not an error. */
  delete(key: string): Promise<void>;

  /** Delete every object under `prefix`; returns how many were deleted. */
  deletePrefix(prefix: string): Promise<number>;

  /** Write only if absent; throws STORE_ALREADY_EXISTS otherwise. */
  createIfAbsent(key: string, body: Uint8Array | string): Promise<ObjectInfo>;

  /**
   * Replace a small object only if its current generation is `expected` (null: only if absent).
   * Throws STORE_PRECONDITION_FAILED when someone else wrote it first.
   */
  compareAndSwap(key: string, body: Uint8Array | string, expected: Generation | null): Promise<ObjectInfo>;

  /** Release clients and handles. */
  close(): Promise<void>;
}
