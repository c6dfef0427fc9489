/**
 * FileArtifactStore: the artifact store in a local folder (`file:///path` or a plain path).
 *
 * - put: write `.arbor-tmp-*` in the target folder, fsync, rename over the key, fsync the folder;
 *   rename(2) is atomic, so readers see the old file or the whole new one, and a crash leaves only
 *   an invisible temp file.
 * - createIfAbsent: temp file + link(2), which fails with EEXIST for all but one writer.
 * - compareAndSwap: a per-key lock file (file-lock.ts, O_EXCL); under it, compare the generation and
 *   rename. Readers never take the lock.
 * - generation: inode, mtime (ns) and size of the file, read with fstat on the same descriptor as
 *   the data, so `read` returns a generation that matches its bytes. Every publish is a new file
 *   whose mtime we set with a random microsecond (see #writeTemp), so two writes practically never
 *   share a generation. No content hashing: stat and list stay cheap on large artifacts.
 *
 * Node 20 and Bun alike (serve/ imports this): only node:fs, no Bun APIs.
 */
import { randomBytes, randomInt } from "node:crypto";
import fs from "node:fs";
import fsp, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { arborError, isArborError } from "../../shared/errors.ts";
import type { ArtifactStore, Generation, ObjectInfo, VersionedObject } from "./artifact-store.ts";
import { acquireLock, errno } from "./file-lock.ts";
import {
  assertDeletePrefix,
  assertKey,
  assertPrefix,
  compareKeys,
  INTERNAL_PREFIX,
  isBodyStreamError,
  isInternalPath,
  type PatternSegment,
  parsePattern,
} from "./keys.ts";

const TMP_PREFIX = `${INTERNAL_PREFIX}tmp-`;
const LOCK_PREFIX = `${INTERNAL_PREFIX}lock-`;
/** A temp file untouched this long belongs to a put that crashed; deletePrefix may remove it. */
const STALE_TEMP_MS = 60 * 60_000;

interface BigStats {
  ino: bigint;
  mtimeNs: bigint;
  size: bigint;
  mtime: Date;
  isFile(): boolean;
}

function generationOf(s: BigStats): Generation {
  return `${s.ino.toString(36)}.${s.mtimeNs.toString(36)}.${s.size.toString(36)}`;
}

function infoOf(key: string, s: BigStats): ObjectInfo {
  return { key, size: Number(s.size), generation: generationOf(s), updatedAt: s.mtime };
}

function toBytes(body: Uint8Array | string): Uint8Array {
  return typeof body === "string" ? Buffer.from(body, "utf8") : body;
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, off, bytes.byteLength - off);
    off += bytesWritten;
  }
}

/** fsync a folder so a rename or link in it survives a power loss; not every file system allows it. */
async function syncDir(dir: string): Promise<void> {
  let h: FileHandle | undefined;
  try {
    h = await fsp.open(dir, "r");
    await h.sync();
  } catch (e) {
    const code = errno(e);
    if (code !== "EISDIR" && code !== "EINVAL" && code !== "EPERM" && code !== "EBADF") throw e;
  } finally {
    await h?.close();
  }
}

/** Turn a `file://` URI or a local path into an absolute folder path; STORE_BAD_URI otherwise. */
function fileStoreRoot(uri: string): string {
  if (typeof uri !== "string" || uri.length === 0) {
    throw arborError("STORE_BAD_URI", "open file store: uri must be a non-empty string");
  }
  if (uri.startsWith("file:")) {
    try {
      return path.resolve(fileURLToPath(uri));
    } catch (e) {
      throw arborError("STORE_BAD_URI", `open file store: '${uri}' is not a valid file:// URI`, { cause: e });
    }
  }
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(uri)) {
    throw arborError("STORE_BAD_URI", `open file store: '${uri}' is not a file:// URI or a local path`);
  }
  return path.resolve(uri);
}

/** The artifact store in a local folder. */
export class FileArtifactStore implements ArtifactStore {
  readonly uri: string;
  readonly root: string;

  private constructor(root: string) {
    this.root = root;
    this.uri = pathToFileURL(root).href.replace(/\/+$/, "");
  }

  /** Open (and create if needed) the store folder named by a `file://` URI or a path. */
  static async create(uri: string): Promise<FileArtifactStore> {
    const root = fileStoreRoot(uri);
    try {
      await fsp.mkdir(root, { recursive: true });
    } catch (e) {
      throw arborError("STORE_UNAVAILABLE", `open file store: cannot create folder '${root}': ${String(e)}`, {
        cause: e,
      });
    }
    return new FileArtifactStore(root);
  }

  #path(key: string): string {
    return path.join(this.root, ...key.split("/"));
  }

  /** Create a temp file in the key's folder (making the folder), retrying if a delete pruned it. */
  async #openTemp(file: string): Promise<{ handle: FileHandle; tmp: string }> {
    const dir = path.dirname(file);
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.mkdir(dir, { recursive: true });
      } catch (e) {
        if (errno(e) !== "EEXIST" && errno(e) !== "ENOTDIR") throw e;
        // GCS allows objects "a" and "a/b" side by side; a folder cannot. Say so instead of ENOTDIR.
        const key = path.relative(this.root, file).split(path.sep).join("/");
        throw arborError(
          "INVALID_ARGUMENT",
          `put: key '${key}' lies below an existing object in ${this.uri}`,
          {
            cause: e,
          },
        );
      }
      const tmp = path.join(dir, `${TMP_PREFIX}${randomBytes(8).toString("hex")}`);
      try {
        return { handle: await fsp.open(tmp, "wx", 0o644), tmp };
      } catch (e) {
        // A concurrent deletePrefix may remove the empty folder between mkdir and open.
        if (errno(e) !== "ENOENT" || attempt >= 5) throw e;
      }
    }
  }

  /** Write `body` to a fresh temp file, fsync it and return its path and stats (not yet published). */
  async #writeTemp(
    file: string,
    body: Readable | Uint8Array | string,
  ): Promise<{ tmp: string; stats: BigStats }> {
    const { handle, tmp } = await this.#openTemp(file);
    try {
      if (typeof body === "string" || body instanceof Uint8Array) {
        await writeAll(handle, toBytes(body));
      } else {
        for await (const chunk of body) {
          await writeAll(
            handle,
            typeof chunk === "string" ? Buffer.from(chunk, "utf8") : (chunk as Uint8Array),
          );
        }
      }
      // The kernel stamps mtime at tick granularity (~4 ms), and ext4 may hand a freed inode to the
      // next file: two versions could then share inode, mtime and size, i.e. a generation (ABA).
      // A random microsecond within the current millisecond makes that a 1-in-1000 coincidence on
      // top of an already rare one, and keeps mtime accurate to the millisecond.
      const stamp = (Date.now() * 1000 + randomInt(1000)) / 1e6;
      await handle.utimes(stamp, stamp);
      await handle.sync();
      const stats = (await handle.stat({ bigint: true })) as unknown as BigStats;
      await handle.close();
      return { tmp, stats };
    } catch (e) {
      await handle.close().catch(() => {});
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw e;
    }
  }

  async put(
    key: string,
    body: Readable | Uint8Array | string,
    _options?: { contentType?: string },
  ): Promise<ObjectInfo> {
    assertKey(key, "put");
    const file = this.#path(key);
    try {
      const { tmp, stats } = await this.#writeTemp(file, body);
      try {
        await fsp.rename(tmp, file);
      } catch (e) {
        await fsp.rm(tmp, { force: true }).catch(() => {});
        throw this.#renameError(e, "put", key);
      }
      await syncDir(path.dirname(file));
      return infoOf(key, stats);
    } catch (e) {
      if (isBodyStreamError(body, e)) throw e;
      throw this.#wrap(e, "put", key);
    }
  }

  async get(key: string): Promise<Readable> {
    assertKey(key, "get");
    const file = this.#path(key);
    // Open first so a missing key fails here with STORE_NOT_FOUND, not later on the stream. A raw fd,
    // not a FileHandle: the stream closes it, and a FileHandle collected later would close it again
    // (possibly someone else's reused fd).
    let fd: number;
    try {
      fd = await new Promise<number>((resolve, reject) =>
        fs.open(file, "r", (e, n) => (e ? reject(e) : resolve(n))),
      );
    } catch (e) {
      throw this.#wrap(e, "get", key);
    }
    let stats: fs.Stats;
    try {
      stats = await new Promise<fs.Stats>((resolve, reject) =>
        fs.fstat(fd, (e, st) => (e ? reject(e) : resolve(st))),
      );
    } catch (e) {
      fs.close(fd, () => {});
      throw this.#wrap(e, "get", key);
    }
    if (!stats.isFile()) {
      fs.close(fd, () => {});
      throw arborError("STORE_NOT_FOUND", `get: no object '${key}' in ${this.uri}`);
    }
    return fs.createReadStream(file, { fd, autoClose: true });
  }

  async read(key: string): Promise<VersionedObject> {
    assertKey(key, "read");
    let handle: FileHandle | undefined;
    try {
      handle = await fsp.open(this.#path(key), "r");
      const stats = (await handle.stat({ bigint: true })) as unknown as BigStats;
      if (!stats.isFile()) throw arborError("STORE_NOT_FOUND", `read: no object '${key}' in ${this.uri}`);
      const data = new Uint8Array(await handle.readFile());
      return { data, generation: generationOf(stats) };
    } catch (e) {
      throw this.#wrap(e, "read", key);
    } finally {
      await handle?.close();
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    assertKey(key, "stat");
    const s = await this.#statFile(this.#path(key), "stat", key);
    return s === null ? null : infoOf(key, s);
  }

  async exists(key: string): Promise<boolean> {
    assertKey(key, "exists");
    return (await this.#statFile(this.#path(key), "exists", key)) !== null;
  }

  async #statFile(file: string, op: string, key: string): Promise<BigStats | null> {
    try {
      const s = (await fsp.stat(file, { bigint: true })) as unknown as BigStats;
      return s.isFile() ? s : null;
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") return null;
      throw this.#wrap(e, op, key);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    assertPrefix(prefix, "list");
    // Walk only the folder the prefix points into; a partial last segment ("splits/spl_a") filters.
    const base =
      prefix === "" || prefix.endsWith("/") ? prefix.replace(/\/$/, "") : path.posix.dirname(prefix);
    const start = base === "." || base === "" ? "" : base;
    const out: ObjectInfo[] = [];
    await this.#walk(start, prefix, out);
    out.sort(compareKeys);
    return out;
  }

  /** The entries of folder `rel` (none when it is not there, or not a folder). */
  async #readFolder(rel: string, op: string, what: string): Promise<fs.Dirent[]> {
    try {
      return await fsp.readdir(rel === "" ? this.root : this.#path(rel), { withFileTypes: true });
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") return [];
      throw this.#wrap(e, op, what);
    }
  }

  async #walk(rel: string, prefix: string, out: ObjectInfo[]): Promise<void> {
    for (const entry of await this.#readFolder(rel, "list", prefix)) {
      if (entry.name.startsWith(INTERNAL_PREFIX)) continue;
      const key = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        // Descend only where keys below can still match the prefix.
        if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) await this.#walk(key, prefix, out);
      } else if (entry.isFile() && key.startsWith(prefix) && !isInternalPath(key)) {
        const s = await this.#statFile(this.#path(key), "list", key);
        if (s !== null) out.push(infoOf(key, s)); // null: deleted between readdir and stat
      }
    }
  }

  async listMatching(pattern: string): Promise<ObjectInfo[]> {
    const segments = parsePattern(pattern, "listMatching");
    const out: ObjectInfo[] = [];
    await this.#match("", segments, 0, pattern, out);
    out.sort(compareKeys);
    return out;
  }

  /** Match `segments[i..]` below folder `rel`: literal segments are looked up, `*` ones read. */
  async #match(
    rel: string,
    segments: PatternSegment[],
    i: number,
    pattern: string,
    out: ObjectInfo[],
  ): Promise<void> {
    const seg = segments[i];
    const last = i === segments.length - 1;
    const child = (name: string) => (rel === "" ? name : `${rel}/${name}`);
    if ("literal" in seg) {
      const key = child(seg.literal);
      if (!last) return this.#match(key, segments, i + 1, pattern, out); // absent: readdir says so
      const s = await this.#statFile(this.#path(key), "listMatching", pattern);
      if (s !== null) out.push(infoOf(key, s));
      return;
    }
    for (const entry of await this.#readFolder(rel, "listMatching", pattern)) {
      if (entry.name.startsWith(INTERNAL_PREFIX) || !seg.match.test(entry.name)) continue;
      const key = child(entry.name);
      if (!last) {
        if (entry.isDirectory()) await this.#match(key, segments, i + 1, pattern, out);
      } else if (entry.isFile()) {
        const s = await this.#statFile(this.#path(key), "listMatching", pattern);
        if (s !== null) out.push(infoOf(key, s)); // null: deleted between readdir and stat
      }
    }
  }

  async delete(key: string): Promise<void> {
    assertKey(key, "delete");
    const file = this.#path(key);
    try {
      await fsp.unlink(file);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw this.#wrap(e, "delete", key);
    }
    await this.#pruneEmptyDirs(path.dirname(file));
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertDeletePrefix(prefix, "deletePrefix");
    let n = 0;
    for (const info of await this.list(prefix)) {
      const file = this.#path(info.key);
      try {
        await fsp.unlink(file);
        n++;
      } catch (e) {
        if (errno(e) !== "ENOENT") throw this.#wrap(e, "deletePrefix", info.key);
      }
      await this.#pruneEmptyDirs(path.dirname(file));
    }
    if (prefix.endsWith("/")) {
      // The folder belongs to the prefix alone: also clear temp files left by crashed puts.
      const dir = this.#path(prefix.slice(0, -1));
      await this.#sweepTemps(dir);
      await this.#pruneEmptyDirs(dir);
    }
    return n;
  }

  /** Remove `.arbor-tmp-*` files older than STALE_TEMP_MS below `dir`, and folders left empty. */
  async #sweepTemps(dir: string): Promise<void> {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        await this.#sweepTemps(p);
        await fsp.rmdir(p).catch(() => {});
      } else if (entry.name.startsWith(TMP_PREFIX)) {
        // Young temp files may belong to a put still running; leave those alone.
        const s = await fsp.stat(p).catch(() => null);
        if (s !== null && Date.now() - s.mtimeMs > STALE_TEMP_MS) await fsp.rm(p, { force: true });
      }
    }
  }

  /** Remove empty folders up to (not including) the root; a folder still in use just stays. */
  async #pruneEmptyDirs(dir: string): Promise<void> {
    let d = dir;
    while (d.length > this.root.length && d.startsWith(this.root)) {
      try {
        await fsp.rmdir(d);
      } catch {
        return; // ENOTEMPTY (temp files, other objects), ENOENT, or a concurrent writer's mkdir
      }
      d = path.dirname(d);
    }
  }

  async createIfAbsent(key: string, body: Uint8Array | string): Promise<ObjectInfo> {
    assertKey(key, "createIfAbsent");
    try {
      return await this.#linkNew(key, body, "createIfAbsent");
    } catch (e) {
      throw this.#wrap(e, "createIfAbsent", key);
    }
  }

  /** Publish with link(2): fails with STORE_ALREADY_EXISTS if the key exists, atomically. */
  async #linkNew(key: string, body: Uint8Array | string, op: string): Promise<ObjectInfo> {
    const file = this.#path(key);
    const { tmp, stats } = await this.#writeTemp(file, body);
    try {
      await fsp.link(tmp, file);
    } catch (e) {
      if (errno(e) === "EEXIST")
        throw arborError("STORE_ALREADY_EXISTS", `${op}: object '${key}' exists already`);
      throw e;
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
    await syncDir(path.dirname(file));
    return infoOf(key, stats);
  }

  async compareAndSwap(
    key: string,
    body: Uint8Array | string,
    expected: Generation | null,
  ): Promise<ObjectInfo> {
    assertKey(key, "compareAndSwap");
    const file = this.#path(key);
    try {
      if (expected === null) {
        // link(2) is already exclusive against every other writer of an absent key.
        try {
          return await this.#linkNew(key, body, "compareAndSwap");
        } catch (e) {
          if (isArborError(e, "STORE_ALREADY_EXISTS")) {
            throw arborError("STORE_PRECONDITION_FAILED", `compareAndSwap: object '${key}' exists already`);
          }
          throw e;
        }
      }
      const lock = await acquireLock(
        path.join(path.dirname(file), `${LOCK_PREFIX}${path.basename(file)}`),
        `compareAndSwap of '${key}'`,
      );
      try {
        const current = await this.#statFile(file, "compareAndSwap", key);
        if (current === null || generationOf(current) !== expected) {
          throw arborError(
            "STORE_PRECONDITION_FAILED",
            `compareAndSwap: object '${key}' is at generation ${current === null ? "(absent)" : generationOf(current)}, not ${expected}`,
          );
        }
        const { tmp, stats } = await this.#writeTemp(file, body);
        await lock.verify();
        try {
          await fsp.rename(tmp, file);
        } catch (e) {
          await fsp.rm(tmp, { force: true }).catch(() => {});
          throw this.#renameError(e, "compareAndSwap", key);
        }
        await syncDir(path.dirname(file));
        return infoOf(key, stats);
      } finally {
        await lock.release();
      }
    } catch (e) {
      throw this.#wrap(e, "compareAndSwap", key);
    }
  }

  /** rename(2) onto a folder fails with EISDIR: the key is the folder of other objects. */
  #renameError(e: unknown, op: string, key: string): unknown {
    if (errno(e) !== "EISDIR" && errno(e) !== "ENOTEMPTY" && errno(e) !== "EEXIST") return e;
    return arborError("INVALID_ARGUMENT", `${op}: key '${key}' is a folder of other objects in ${this.uri}`, {
      cause: e,
    });
  }

  /** Map file-system errors to store codes; ArborErrors pass through. */
  #wrap(e: unknown, op: string, key: string): Error {
    if (isArborError(e)) return e;
    const code = errno(e);
    if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") {
      return arborError("STORE_NOT_FOUND", `${op}: no object '${key}' in ${this.uri}`, { cause: e });
    }
    return arborError("STORE_UNAVAILABLE", `${op}: '${key}' in ${this.uri}: ${String(e)}`, { cause: e });
  }

  async close(): Promise<void> {
    // Nothing to release: every handle is closed by the operation that opened it.
  }
}
