/**
 * GcsArtifactStore: the artifact store in a Cloud Storage bucket (`gs://bucket/prefix`) through the
 * official `@google-cloud/storage` client.
 *
 * - generation: the object's GCS generation number, as a decimal string.
 * - put: small bodies in one multipart upload; streams as a resumable upload. GCS publishes an object
 *   only when its upload completes, so readers never see part of one.
 * - createIfAbsent: `ifGenerationMatch=0`; compareAndSwap: `ifGenerationMatch=<expected>` (0 when
 *   absent). GCS answers 412 to all but one writer.
 * - retries: the client retries idempotent requests only (reads, lists, conditional writes by its
 *   RetryConditional strategy); its multipart uploads are never retried, so a conditional write can
 *   not "fail" with 412 because its own earlier attempt already succeeded.
 *
 * Node 20 and Bun alike (serve/ imports this through open.ts).
 */
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Bucket, type File, type FileMetadata, Storage } from "@google-cloud/storage";
import { type ArborError, arborError, isArborError } from "../../shared/errors.ts";
import type { ArtifactStore, Generation, ObjectInfo, VersionedObject } from "./artifact-store.ts";
import {
  assertDeletePrefix,
  assertKey,
  assertPrefix,
  compareKeys,
  isBodyStreamError,
  parsePattern,
  patternRegExp,
} from "./keys.ts";

/** Options of {@link GcsArtifactStore.create}. */
export interface GcsStoreOptions {
  /** Endpoint of a GCS-protocol server (`http://127.0.0.1:4443`); the real service when absent. */
  endpoint?: string | undefined;
  /** Project id given to the client. */
  projectId?: string | undefined;
  /** How often the client retries an idempotent request (default 3). */
  maxRetries?: number | undefined;
  /** How long one request may take, in ms (default 30 s). */
  timeoutMs?: number | undefined;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
const DELETE_CONCURRENCY = 8;
const CONTENT_TYPES: Record<string, string> = {
  json: "application/json",
  parquet: "application/vnd.apache.parquet",
  onnx: "application/octet-stream",
  csv: "text/csv",
};

/** Split `gs://bucket/prefix/` into bucket and prefix (no slashes at its ends); STORE_BAD_URI otherwise. */
function parseGsUri(uri: string): { bucket: string; prefix: string } {
  const m = /^gs:\/\/([^/]+)(?:\/(.*))?$/.exec(uri);
  if (!m || !BUCKET_NAME.test(m[1])) {
    throw arborError(
      "STORE_BAD_URI",
      `open gcs store: '${uri}' is not gs://bucket[/prefix] with a valid bucket name`,
    );
  }
  const prefix = (m[2] ?? "").replace(/\/+$/, "");
  if (prefix !== "") {
    try {
      assertKey(prefix, "open gcs store");
    } catch (e) {
      throw arborError("STORE_BAD_URI", `open gcs store: bad prefix in '${uri}': ${(e as Error).message}`, {
        cause: e,
      });
    }
  }
  return { bucket: m[1], prefix };
}

function toBuffer(body: Uint8Array | string): Buffer {
  return typeof body === "string"
    ? Buffer.from(body, "utf8")
    : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

function httpStatus(e: unknown): number | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const o = e as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  if (typeof o.code === "number") return o.code;
  if (typeof o.status === "number") return o.status;
  if (typeof o.response?.status === "number") return o.response.status;
  return undefined;
}

/** The artifact store in a GCS bucket. */
export class GcsArtifactStore implements ArtifactStore {
  readonly uri: string;
  readonly #bucket: Bucket;
  readonly #prefix: string;

  private constructor(uri: string, storage: Storage, bucket: string, prefix: string) {
    this.uri = uri;
    this.#bucket = storage.bucket(bucket);
    this.#prefix = prefix;
  }

  /** Make a client for `gs://bucket/prefix`; no request is sent until the first operation. */
  static async create(uri: string, options: GcsStoreOptions = {}): Promise<GcsArtifactStore> {
    const { bucket, prefix } = parseGsUri(uri);
    let endpoint = options.endpoint;
    // STORAGE_EMULATOR_HOST is conventionally given as host:port.
    if (endpoint !== undefined && endpoint !== "" && !/^https?:\/\//.test(endpoint))
      endpoint = `http://${endpoint}`;
    // The client also reads STORAGE_EMULATOR_HOST itself, as given, and refuses one without a
    // scheme ("Only HTTP(S) protocols are supported"): give it the same form.
    const emulator = process.env["STORAGE_EMULATOR_HOST"];
    if (emulator !== undefined && emulator !== "" && !/^https?:\/\//.test(emulator))
      process.env["STORAGE_EMULATOR_HOST"] = `http://${emulator}`;
    const storage = new Storage({
      // Per request: without one the client waits for ever on an endpoint that accepts the
      // connection and never answers (the server then never follows a label again).
      timeout: options.timeoutMs ?? 30_000,
      ...(endpoint ? { apiEndpoint: endpoint.replace(/\/+$/, "") } : {}),
      ...(options.projectId ? { projectId: options.projectId } : {}),
      retryOptions: {
        autoRetry: (options.maxRetries ?? 3) > 0,
        maxRetries: options.maxRetries ?? 3,
        maxRetryDelay: 8,
        totalTimeout: 60,
      },
    });
    return new GcsArtifactStore(`gs://${bucket}${prefix ? `/${prefix}` : ""}`, storage, bucket, prefix);
  }

  #name(key: string): string {
    return this.#prefix ? `${this.#prefix}/${key}` : key;
  }

  #key(name: string): string {
    return this.#prefix ? name.slice(this.#prefix.length + 1) : name;
  }

  #info(key: string, m: FileMetadata): ObjectInfo {
    return {
      key,
      size: Number(m.size ?? 0),
      generation: String(m.generation),
      updatedAt: new Date(String(m.updated ?? m.timeCreated ?? 0)),
    };
  }

  /** Map client errors to store codes; 412 becomes `on412` (which depends on the operation). */
  #map(
    e: unknown,
    op: string,
    key: string,
    on412: "STORE_PRECONDITION_FAILED" | "STORE_ALREADY_EXISTS" = "STORE_PRECONDITION_FAILED",
  ): ArborError {
    if (isArborError(e)) return e;
    const status = httpStatus(e);
    const detail = e instanceof Error ? e.message : String(e);
    if (status === 404)
      return arborError("STORE_NOT_FOUND", `${op}: no object '${key}' in ${this.uri}`, { cause: e });
    if (status === 412) {
      const what = on412 === "STORE_ALREADY_EXISTS" ? "exists already" : "changed since it was read";
      return arborError(on412, `${op}: object '${key}' in ${this.uri} ${what}`, { cause: e });
    }
    if (
      status !== undefined &&
      status >= 400 &&
      status < 500 &&
      status !== 408 &&
      status !== 429 &&
      status !== 401 &&
      status !== 403
    ) {
      return arborError("INTERNAL", `${op}: '${key}' in ${this.uri}: GCS answered ${status}: ${detail}`, {
        cause: e,
      });
    }
    return arborError("STORE_UNAVAILABLE", `${op}: '${key}' in ${this.uri}: ${detail}`, { cause: e });
  }

  /** One multipart upload of a small body, optionally conditional on the generation. */
  async #upload(
    key: string,
    body: Buffer,
    ifGenerationMatch: string | undefined,
    contentType?: string,
  ): Promise<ObjectInfo> {
    const file = this.#bucket.file(this.#name(key));
    await file.save(body, {
      resumable: false,
      contentType: contentType ?? this.#contentType(key),
      ...(ifGenerationMatch === undefined ? {} : { preconditionOpts: { ifGenerationMatch } }),
    });
    return this.#info(key, file.metadata);
  }

  #contentType(key: string): string {
    const ext = key.slice(key.lastIndexOf(".") + 1).toLowerCase();
    return CONTENT_TYPES[ext] ?? "application/octet-stream";
  }

  async put(
    key: string,
    body: Readable | Uint8Array | string,
    options?: { contentType?: string },
  ): Promise<ObjectInfo> {
    assertKey(key, "put");
    try {
      if (typeof body === "string" || body instanceof Uint8Array) {
        return await this.#upload(key, toBuffer(body), undefined, options?.contentType);
      }
      const file = this.#bucket.file(this.#name(key));
      await pipeline(
        body,
        file.createWriteStream({
          resumable: true,
          contentType: options?.contentType ?? this.#contentType(key),
        }),
      );
      return this.#info(key, file.metadata);
    } catch (e) {
      if (isBodyStreamError(body, e)) throw e;
      throw this.#map(e, "put", key);
    }
  }

  async get(key: string): Promise<Readable> {
    assertKey(key, "get");
    // Stat first: a missing key fails here, and pinning the generation keeps the stream one version.
    const info = await this.stat(key);
    if (info === null) throw arborError("STORE_NOT_FOUND", `get: no object '${key}' in ${this.uri}`);
    const src = this.#bucket
      .file(this.#name(key), { generation: Number(info.generation) })
      .createReadStream();
    const out = new PassThrough();
    src.on("error", (e) => out.destroy(this.#map(e, "get", key)));
    out.on("close", () => src.destroy());
    src.pipe(out);
    return out;
  }

  async read(key: string): Promise<VersionedObject> {
    assertKey(key, "read");
    // A write between stat and download makes the pinned generation vanish (404): read again.
    for (let attempt = 0; ; attempt++) {
      const info = await this.stat(key);
      if (info === null) throw arborError("STORE_NOT_FOUND", `read: no object '${key}' in ${this.uri}`);
      try {
        const [data] = await this.#bucket
          .file(this.#name(key), { generation: Number(info.generation) })
          .download();
        return {
          data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
          generation: info.generation,
        };
      } catch (e) {
        if (httpStatus(e) !== 404 || attempt >= 3) throw this.#map(e, "read", key);
      }
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    assertKey(key, "stat");
    try {
      const [m] = await this.#bucket.file(this.#name(key)).getMetadata();
      return this.#info(key, m);
    } catch (e) {
      if (httpStatus(e) === 404) return null;
      throw this.#map(e, "stat", key);
    }
  }

  async exists(key: string): Promise<boolean> {
    assertKey(key, "exists");
    return (await this.stat(key)) !== null;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    assertPrefix(prefix, "list");
    const full = this.#prefix ? `${this.#prefix}/${prefix}` : prefix;
    let files: File[];
    try {
      [files] = await this.#bucket.getFiles({ prefix: full, autoPaginate: true });
    } catch (e) {
      throw this.#map(e, "list", prefix);
    }
    const out = files.map((f) => this.#info(this.#key(f.name), f.metadata));
    out.sort(compareKeys);
    return out;
  }

  async listMatching(pattern: string): Promise<ObjectInfo[]> {
    parsePattern(pattern, "listMatching");
    // The store's own prefix is literal, whatever characters it holds: only the pattern matches.
    const base = this.#prefix ? `${this.#prefix}/` : "";
    const star = pattern.indexOf("*");
    // GCS's matchGlob has more wildcards than `*` (`?`, `[…]`, `{…,…}`, `\`): names using those
    // characters literally (or any glob character in the prefix) are listed by their literal
    // prefix alone and filtered here.
    const glob =
      /[*?[\]{},\\]/.test(base) || /[?[\]{},\\]/.test(pattern) ? {} : { matchGlob: base + pattern };
    const re = patternRegExp(pattern);
    let files: File[];
    try {
      [files] = await this.#bucket.getFiles({
        prefix: base + (star < 0 ? pattern : pattern.slice(0, star)),
        ...glob,
        autoPaginate: true,
      });
    } catch (e) {
      throw this.#map(e, "listMatching", pattern);
    }
    // Filtered again here: a GCS-protocol server that ignores matchGlob still gives the right answer.
    const out = files
      .filter((f) => f.name.startsWith(base) && re.test(f.name.slice(base.length)))
      .map((f) => this.#info(this.#key(f.name), f.metadata));
    out.sort(compareKeys);
    return out;
  }

  async delete(key: string): Promise<void> {
    assertKey(key, "delete");
    try {
      await this.#bucket.file(this.#name(key)).delete({ ignoreNotFound: true });
    } catch (e) {
      throw this.#map(e, "delete", key);
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertDeletePrefix(prefix, "deletePrefix");
    const queue = (await this.list(prefix)).map((i) => i.key);
    let deleted = 0;
    const worker = async () => {
      for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
        try {
          await this.#bucket.file(this.#name(key)).delete();
          deleted++;
        } catch (e) {
          if (httpStatus(e) !== 404) throw this.#map(e, "deletePrefix", key);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, queue.length) }, worker));
    return deleted;
  }

  async createIfAbsent(key: string, body: Uint8Array | string): Promise<ObjectInfo> {
    assertKey(key, "createIfAbsent");
    try {
      return await this.#upload(key, toBuffer(body), "0");
    } catch (e) {
      throw this.#map(e, "createIfAbsent", key, "STORE_ALREADY_EXISTS");
    }
  }

  async compareAndSwap(
    key: string,
    body: Uint8Array | string,
    expected: Generation | null,
  ): Promise<ObjectInfo> {
    assertKey(key, "compareAndSwap");
    if (expected !== null && !/^[1-9][0-9]*$/.test(expected)) {
      // Not a GCS generation (e.g. one read from another store): it cannot be the current one.
      throw arborError(
        "STORE_PRECONDITION_FAILED",
        `compareAndSwap: '${expected}' is not a generation of ${this.uri}`,
      );
    }
    try {
      return await this.#upload(key, toBuffer(body), expected ?? "0");
    } catch (e) {
      throw this.#map(e, "compareAndSwap", key);
    }
  }

  async close(): Promise<void> {
    // The client keeps no sockets that need closing (its HTTP agent's keep-alive sockets are unref'd).
  }
}
