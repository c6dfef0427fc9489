/**
 * A Google Cloud Storage JSON-API server for tests, in memory, on 127.0.0.1 — enough of the protocol
 * for the real `@google-cloud/storage` 7.x client: buckets get/insert/list; objects insert
 * (`uploadType=media|multipart|resumable`), get metadata, download (`alt=media`), list (prefix,
 * delimiter, matchGlob, pagination), delete; generation numbers; `ifGenerationMatch` (0 = must not exist),
 * `ifGenerationNotMatch` and `ifMetagenerationMatch` answered with 412 like GCS; crc32c/md5 on
 * every object so the client's integrity checks run for real.
 *
 * In a test:   `await using gcs = await startGcsServer({ buckets: ["b"] });` then give the client
 *              `apiEndpoint: gcs.url`.
 * Standalone:  `npx bun test/gcs-server.ts --port 0 --bucket b` prints the URL on stdout's first line
 *              and runs until SIGTERM/SIGINT.
 * Only node:http and node:crypto, so it runs under Bun and Node alike.
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";

interface StoredObject {
  data: Buffer;
  generation: bigint;
  metageneration: number;
  contentType: string;
  metadata: Record<string, string> | undefined;
  created: Date;
  updated: Date;
  md5: string;
  crc32c: string;
}

interface ResumableSession {
  bucket: string;
  name: string;
  contentType: string;
  metadata: Record<string, string> | undefined;
  query: URLSearchParams;
  chunks: Buffer[];
  received: number;
  done: StoredObject | null;
}

/** A running server. */
export interface GcsServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`: pass as the client's `apiEndpoint` (or STORAGE_EMULATOR_HOST). */
  readonly url: string;
  readonly port: number;
  /** Names of the objects in a bucket, sorted (for assertions). */
  objectNames(bucket: string): string[];
  /** How many requests were served, by `METHOD kind` (e.g. `POST upload:multipart`). */
  readonly requests: Map<string, number>;
  /**
   * An outage: from now on every request (or those whose `METHOD kind`, as counted in `requests`,
   * `only` matches) is answered with `status` (GCS's error body, reason `backendError`) and
   * counted in `refused`, until `fail(null)`.
   */
  fail(status: number | null, only?: RegExp): void;
  /** Requests answered by {@link fail}'s status. */
  readonly refused: number;
  close(): Promise<void>;
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC32C (Castagnoli) as GCS reports it: big-endian, base64. */
export function crc32cBase64(data: Uint8Array): string {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0);
  return out.toString("base64");
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  const body = Buffer.concat(chunks);
  // The client's HTTP layer may compress request bodies (seen under Bun for JSON bodies).
  switch (req.headers["content-encoding"]) {
    case "gzip":
      return gunzipSync(body);
    case "deflate":
      return inflateSync(body);
    case "br":
      return brotliDecompressSync(body);
    default:
      return body;
  }
}

/** Split a `multipart/related` body into [metadata JSON, media bytes]. */
function parseMultipart(body: Buffer, contentType: string): { meta: Record<string, unknown>; data: Buffer } {
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!m) throw new HttpError(400, "invalid", "multipart body without boundary");
  const delim = Buffer.from(`--${m[1]}`);
  const parts: Buffer[] = [];
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    const start = pos + delim.length;
    if (body[start] === 0x2d && body[start + 1] === 0x2d) break; // closing "--boundary--"
    const next = body.indexOf(Buffer.concat([Buffer.from("\r\n"), delim]), start);
    if (next < 0) throw new HttpError(400, "invalid", "unterminated multipart body");
    parts.push(body.subarray(start + 2, next)); // skip the CRLF after the boundary
    pos = next + 2;
  }
  if (parts.length !== 2)
    throw new HttpError(400, "invalid", `multipart body has ${parts.length} parts, not 2`);
  const split = (p: Buffer) => {
    const i = p.indexOf("\r\n\r\n");
    return i < 0 ? p.subarray(0, 0) : p.subarray(i + 4);
  };
  return {
    meta: JSON.parse(split(parts[0]).toString("utf8") || "{}") as Record<string, unknown>,
    data: split(parts[1]),
  };
}

/**
 * GCS's `matchGlob` (objects.list) as a RegExp over whole object names: `*` any run of characters
 * but '/', `**` any run including '/' (a whole segment `**` followed by '/' also matches no folder
 * at all), `?` one character but '/', `[abc]` / `[a-z]` / `[!abc]` one character of (not of) a set,
 * `{x,y}` one of the alternatives, a backslash escapes the next character. A malformed pattern is a
 * 400, as on GCS.
 */
export function globRegExp(glob: string): RegExp {
  const bad = () => new HttpError(400, "invalid", `Invalid matchGlob pattern: '${glob}'`);
  const esc = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  let out = "";
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "\\") {
      if (i + 1 >= glob.length) throw bad();
      out += esc(glob[++i]);
    } else if (c === "*") {
      if (glob[i + 1] === "*") {
        i++;
        // "**/" also matches no folder at all: a/**/b matches a/b.
        if (glob[i + 1] === "/" && (i < 2 || glob[i - 2] === "/")) {
          i++;
          out += "(?:.*/)?";
        } else out += ".*";
      } else out += "[^/]*";
    } else if (c === "?") out += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) throw bad();
      let set = glob.slice(i + 1, end);
      const negate = set.startsWith("!");
      if (negate) set = set.slice(1);
      if (set === "") throw bad();
      out += `[${negate ? "^/" : ""}${set.replace(/[\\\]^]/g, "\\$&")}]`;
      i = end;
    } else if (c === "{") {
      braces++;
      out += "(?:";
    } else if (c === "}" && braces > 0) {
      braces--;
      out += ")";
    } else if (c === "," && braces > 0) out += "|";
    else out += esc(c);
  }
  if (braces !== 0) throw bad();
  return new RegExp(`^${out}$`, "s");
}

function send(
  res: http.ServerResponse,
  status: number,
  body?: unknown,
  headers: Record<string, string> = {},
): void {
  if (body === undefined) {
    res.writeHead(status, { "content-length": "0", ...headers });
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=UTF-8",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** Start a server on 127.0.0.1 (port 0 = any free port). */
export async function startGcsServer(
  options: { port?: number; buckets?: string[] } = {},
): Promise<GcsServer> {
  const buckets = new Map<string, Map<string, StoredObject>>();
  for (const b of options.buckets ?? []) buckets.set(b, new Map());
  const sessions = new Map<string, ResumableSession>();
  const requests = new Map<string, number>();
  let failing: number | null = null;
  let failingOnly: RegExp | undefined;
  let refused = 0;
  // Generations grow strictly, like GCS's microsecond timestamps.
  let lastGeneration = BigInt(Date.now()) * 1000n;
  let url = "";

  const bucketOf = (name: string) => {
    const b = buckets.get(name);
    if (!b) throw new HttpError(404, "notFound", `The specified bucket does not exist: ${name}`);
    return b;
  };

  /** GCS answers a failed precondition with 412, except ifGenerationNotMatch on reads: 304. */
  const checkPreconditions = (q: URLSearchParams, current: StoredObject | undefined, read = false) => {
    const num = (name: string): bigint | null => {
      const v = q.get(name);
      if (v === null) return null;
      if (!/^\d+$/.test(v)) throw new HttpError(400, "invalid", `Invalid argument for ${name}: '${v}'`);
      return BigInt(v);
    };
    const failed = () =>
      new HttpError(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.");
    const gen = current?.generation ?? 0n;
    const match = num("ifGenerationMatch");
    if (match !== null && match !== gen) throw failed();
    const notMatch = num("ifGenerationNotMatch");
    if (notMatch !== null && notMatch === gen)
      throw read ? new HttpError(304, "notModified", "Not Modified") : failed();
    const metaMatch = num("ifMetagenerationMatch");
    if (metaMatch !== null && metaMatch !== BigInt(current?.metageneration ?? 0)) throw failed();
  };

  const resource = (bucket: string, name: string, o: StoredObject) => {
    const id = `${bucket}/${name}/${o.generation}`;
    const path = `${url}/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}`;
    return {
      kind: "storage#object",
      id,
      selfLink: path,
      mediaLink: `${url}/download/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}?generation=${o.generation}&alt=media`,
      name,
      bucket,
      generation: String(o.generation),
      metageneration: String(o.metageneration),
      contentType: o.contentType,
      storageClass: "STANDARD",
      size: String(o.data.length),
      md5Hash: o.md5,
      crc32c: o.crc32c,
      etag: Buffer.from(id).toString("base64"),
      timeCreated: o.created.toISOString(),
      updated: o.updated.toISOString(),
      ...(o.metadata ? { metadata: o.metadata } : {}),
    };
  };

  const insert = (
    bucket: string,
    name: string,
    data: Buffer,
    q: URLSearchParams,
    contentType: string,
    metadata: Record<string, string> | undefined,
  ): StoredObject => {
    if (name === "") throw new HttpError(400, "required", "Required parameter: name");
    const objects = bucketOf(bucket);
    // Node's event loop makes check-then-set atomic here: no await between them.
    checkPreconditions(q, objects.get(name));
    const nowGen = BigInt(Date.now()) * 1000n;
    lastGeneration = nowGen > lastGeneration ? nowGen : lastGeneration + 1n;
    const now = new Date();
    const o: StoredObject = {
      data,
      generation: lastGeneration,
      metageneration: 1,
      contentType,
      metadata,
      created: now,
      updated: now,
      md5: createHash("md5").update(data).digest("base64"),
      crc32c: crc32cBase64(data),
    };
    objects.set(name, o);
    return o;
  };

  const getObject = (bucket: string, name: string, q: URLSearchParams, read: boolean) => {
    const o = bucketOf(bucket).get(name);
    const gen = q.get("generation");
    if (!o || (gen !== null && gen !== String(o.generation))) {
      throw new HttpError(404, "notFound", `No such object: ${bucket}/${name}`);
    }
    checkPreconditions(q, o, read);
    return o;
  };

  const handleUpload = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    bucket: string,
    q: URLSearchParams,
  ) => {
    const type = q.get("uploadType");
    if (req.method === "POST" && type === "media") {
      const data = await readBody(req);
      const o = insert(
        bucket,
        q.get("name") ?? "",
        data,
        q,
        req.headers["content-type"] ?? "application/octet-stream",
        undefined,
      );
      return send(res, 200, resource(bucket, q.get("name") ?? "", o));
    }
    if (req.method === "POST" && type === "multipart") {
      const { meta, data } = parseMultipart(await readBody(req), req.headers["content-type"] ?? "");
      const name = q.get("name") ?? (typeof meta.name === "string" ? meta.name : "");
      const ct = typeof meta.contentType === "string" ? meta.contentType : "application/octet-stream";
      const o = insert(bucket, name, data, q, ct, meta.metadata as Record<string, string> | undefined);
      return send(res, 200, resource(bucket, name, o));
    }
    if (req.method === "POST" && type === "resumable") {
      const body = await readBody(req);
      const meta = (body.length > 0 ? JSON.parse(body.toString("utf8")) : {}) as Record<string, unknown>;
      const name = q.get("name") ?? (typeof meta.name === "string" ? meta.name : "");
      checkPreconditions(q, bucketOf(bucket).get(name)); // GCS checks at start and again at the end
      const id = randomBytes(16).toString("hex");
      sessions.set(id, {
        bucket,
        name,
        contentType: String(
          req.headers["x-upload-content-type"] ?? meta.contentType ?? "application/octet-stream",
        ),
        metadata: meta.metadata as Record<string, string> | undefined,
        query: q,
        chunks: [],
        received: 0,
        done: null,
      });
      const location = `${url}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
      return send(res, 200, undefined, { location });
    }
    if (req.method === "PUT" && q.get("upload_id") !== null) {
      const s = sessions.get(q.get("upload_id") ?? "");
      if (!s) throw new HttpError(404, "notFound", "No such upload session");
      const body = await readBody(req);
      if (s.done) return send(res, 200, resource(s.bucket, s.name, s.done));
      // Content-Range: "bytes A-B/T", "bytes A-*/T" (single streamed request), "bytes */T" (status or final).
      const range = /^bytes (\*|(\d+)-(\d+|\*))\/(\d+|\*)$/.exec(
        String(req.headers["content-range"] ?? "bytes */*"),
      );
      if (!range) throw new HttpError(400, "invalid", `bad Content-Range '${req.headers["content-range"]}'`);
      const total = range[4] === "*" ? null : Number(range[4]);
      if (range[2] !== undefined) {
        const start = Number(range[2]);
        if (start > s.received)
          throw new HttpError(400, "invalid", `chunk starts at ${start}, have ${s.received}`);
        const fresh = body.subarray(s.received - start); // drop bytes already received (client retry)
        s.chunks.push(fresh);
        s.received += fresh.length;
      }
      const finished =
        (total !== null && s.received >= total) || (range[3] === "*" && range[2] !== undefined);
      if (!finished) {
        const headers: Record<string, string> = s.received > 0 ? { range: `bytes=0-${s.received - 1}` } : {};
        return send(res, 308, undefined, headers);
      }
      const o = insert(s.bucket, s.name, Buffer.concat(s.chunks), s.query, s.contentType, s.metadata);
      s.done = o;
      s.chunks = [];
      return send(res, 200, resource(s.bucket, s.name, o));
    }
    throw new HttpError(400, "invalid", `unsupported upload: ${req.method} uploadType=${type}`);
  };

  const handleJson = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    parts: string[],
    q: URLSearchParams,
  ) => {
    // parts: ["b"], ["b", bucket], ["b", bucket, "o"], ["b", bucket, "o", name]
    if (parts[0] !== "b") throw new HttpError(404, "notFound", `no route for /${parts.join("/")}`);
    if (parts.length === 1 && req.method === "POST") {
      const meta = JSON.parse((await readBody(req)).toString("utf8") || "{}") as { name?: string };
      if (!meta.name) throw new HttpError(400, "required", "Required: bucket name");
      if (buckets.has(meta.name))
        throw new HttpError(
          409,
          "conflict",
          "Your previous request to create the named bucket succeeded and you already own it.",
        );
      buckets.set(meta.name, new Map());
      return send(res, 200, { kind: "storage#bucket", id: meta.name, name: meta.name });
    }
    if (parts.length === 1 && req.method === "GET") {
      return send(res, 200, {
        kind: "storage#buckets",
        items: [...buckets.keys()].sort().map((name) => ({ kind: "storage#bucket", id: name, name })),
      });
    }
    const bucket = parts[1];
    if (parts.length === 2 && req.method === "GET") {
      bucketOf(bucket);
      return send(res, 200, {
        kind: "storage#bucket",
        id: bucket,
        name: bucket,
        location: "US",
        storageClass: "STANDARD",
      });
    }
    if (parts.length === 2 && req.method === "DELETE") {
      if (bucketOf(bucket).size > 0)
        throw new HttpError(409, "conflict", "The bucket you tried to delete is not empty.");
      buckets.delete(bucket);
      return send(res, 204);
    }
    if (parts[2] !== "o") throw new HttpError(404, "notFound", `no route for /${parts.join("/")}`);
    if (parts.length === 3 && req.method === "GET") return list(res, bucket, q);
    const name = parts[3];
    if (req.method === "GET") {
      const o = getObject(bucket, name, q, true);
      if (q.get("alt") !== "media") return send(res, 200, resource(bucket, name, o));
      res.writeHead(200, {
        "content-type": o.contentType,
        "content-length": String(o.data.length),
        "x-goog-generation": String(o.generation),
        "x-goog-metageneration": String(o.metageneration),
        "x-goog-hash": `crc32c=${o.crc32c},md5=${o.md5}`,
        "x-goog-stored-content-encoding": "identity",
        "x-goog-stored-content-length": String(o.data.length),
      });
      res.end(o.data);
      return;
    }
    if (req.method === "DELETE") {
      getObject(bucket, name, q, false);
      bucketOf(bucket).delete(name);
      return send(res, 204);
    }
    throw new HttpError(405, "invalid", `${req.method} not supported on objects`);
  };

  const list = (res: http.ServerResponse, bucket: string, q: URLSearchParams) => {
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") ?? "";
    const glob = q.get("matchGlob");
    const globRe = glob === null ? null : globRegExp(glob);
    const max = Math.max(1, Math.min(Number(q.get("maxResults") ?? 1000) || 1000, 1000));
    const after = q.get("pageToken")
      ? Buffer.from(q.get("pageToken") ?? "", "base64url").toString("utf8")
      : null;
    const names = [...bucketOf(bucket).keys()]
      .filter((n) => n.startsWith(prefix) && (globRe === null || globRe.test(n)))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const items: ReturnType<typeof resource>[] = [];
    const prefixes = new Set<string>();
    let last: string | null = null;
    let more = false;
    for (const n of names) {
      if (after !== null && Buffer.compare(Buffer.from(n), Buffer.from(after)) <= 0) continue;
      if (items.length + prefixes.size >= max) {
        more = true;
        break;
      }
      last = n;
      const rest = n.slice(prefix.length);
      const d = delimiter === "" ? -1 : rest.indexOf(delimiter);
      if (d >= 0) prefixes.add(prefix + rest.slice(0, d + delimiter.length));
      else items.push(resource(bucket, n, bucketOf(bucket).get(n) as StoredObject));
    }
    const body: Record<string, unknown> = { kind: "storage#objects" };
    if (items.length > 0) body.items = items;
    if (prefixes.size > 0) body.prefixes = [...prefixes];
    if (more && last !== null) body.nextPageToken = Buffer.from(last).toString("base64url");
    return send(res, 200, body);
  };

  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://127.0.0.1");
    const q = u.searchParams;
    // Paths arrive with or without "/storage/v1" (STORAGE_EMULATOR_HOST is used verbatim as the base URL).
    const path = u.pathname.replace(/^\/+/, "");
    const upload = /^upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(path);
    const json = path.replace(/^(download\/)?storage\/v1\//, "");
    const kind = upload
      ? `upload:${q.get("uploadType") ?? "?"}${q.get("upload_id") ? "-put" : ""}`
      : q.get("alt") === "media"
        ? "media"
        : json
            .split("/")
            .slice(0, 3)
            .map((s, i) => (i === 1 ? "*" : s))
            .join("/");
    requests.set(`${req.method} ${kind}`, (requests.get(`${req.method} ${kind}`) ?? 0) + 1);
    if (failing !== null && (failingOnly?.test(`${req.method} ${kind}`) ?? true)) {
      refused++;
      req.resume();
      const message = "We encountered an internal error. Please try again.";
      return send(res, failing, {
        error: { code: failing, message, errors: [{ domain: "global", reason: "backendError", message }] },
      });
    }
    const work = (async () => {
      if (upload) return handleUpload(req, res, decodeURIComponent(upload[1]), q);
      const segs = json.split("/");
      // The object name is one percent-encoded segment that may decode to several '/'-separated ones.
      const parts =
        segs.length > 3
          ? [segs[0], decodeURIComponent(segs[1]), segs[2], decodeURIComponent(segs.slice(3).join("/"))]
          : segs.map((p) => decodeURIComponent(p));
      return handleJson(req, res, parts, q);
    })();
    work.catch((e: unknown) => {
      // Malformed percent-encoding or JSON in a request is the client's fault: 400, like GCS.
      const bad = e instanceof URIError || e instanceof SyntaxError;
      const status = e instanceof HttpError ? e.status : bad ? 400 : 500;
      const reason = e instanceof HttpError ? e.reason : bad ? "invalid" : "backendError";
      const message = e instanceof Error ? e.message : String(e);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      req.resume();
      if (status === 304) return send(res, 304);
      send(res, status, {
        error: { code: status, message, errors: [{ domain: "global", reason, message }] },
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  url = `http://127.0.0.1:${port}`;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections?.();
    });
  return {
    url,
    port,
    requests,
    fail: (status, only) => {
      failing = status;
      failingOnly = only;
    },
    get refused() {
      return refused;
    },
    objectNames: (bucket) => [...bucketOf(bucket).keys()].sort(),
    close,
    [Symbol.asyncDispose]: close,
  };
}

// Standalone: `bun test/gcs-server.ts [--port N] [--bucket NAME]…` prints the URL and serves until killed.
// import.meta.main is Bun's; under Node (`node --import tsx test/gcs-server.ts`) compare with argv[1].
const isMain =
  import.meta.main ??
  (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href);
if (isMain) {
  const args = process.argv.slice(2);
  let port = 0;
  const bucketNames: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") port = Number(args[++i]);
    else if (args[i] === "--bucket") bucketNames.push(args[++i]);
  }
  const s = await startGcsServer({ port, buckets: bucketNames });
  process.stdout.write(`${s.url}\n`);
  const stop = () => void s.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
