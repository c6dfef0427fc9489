/**
 * Read a dataset (CSV, Parquet, NDJSON) into a Polars DataFrame from a local path, a `file://` URI
 * or a `gs://` URI, with its sha256 fingerprint and schema. Format comes from the file extension.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import pl from "nodejs-polars";
import type { ArtifactStore } from "../../registry/store/artifact-store.ts";
import { arborError, isArborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";

/** File formats arbor reads. */
export type DataFormat = "csv" | "parquet" | "ndjson";

/** Extensions by format; `.csv.gz` works because Polars' CSV scanner decompresses gzip itself. */
const EXTENSIONS: readonly [string, DataFormat][] = [
  [".csv.gz", "csv"],
  [".csv", "csv"],
  [".parquet", "parquet"],
  [".pq", "parquet"],
  [".ndjson", "ndjson"],
  [".jsonl", "ndjson"],
];

/** Rows Polars looks at to infer CSV/NDJSON column types; more than its default 100 so that a
 * column whose first rows are integers and later ones decimals does not fail to parse. */
const INFER_SCHEMA_ROWS = 10_000;

/** A dataset in memory with what we know about its source. */
export interface Dataset {
  frame: pl.DataFrame;
  /** The URI as given, normalised: `file:///abs/path` or `gs://bucket/key`. */
  sourceUri: string;
  format: DataFormat;
  /** `sha256:` + hex digest of the file's bytes. */
  fingerprint: string;
  /** Size of the file in bytes. */
  bytes: number;
  /** Column name → dtype name (`Int64`, `String`, `Datetime(us)`…), in column order. */
  schema: Record<string, string>;
}

/** What {@link readDataset} needs besides the URI. */
export interface ReadOptions {
  logger: Logger;
  /** Base for relative paths; the process's cwd by default. */
  cwd?: string;
  /** Opens a store for `gs://` URIs (registry/store/open.ts's openArtifactStore in the CLI). */
  openStore?: (uri: string) => Promise<ArtifactStore>;
}

/** The format of a path or URI by its extension. Throws DATA_UNSUPPORTED_FORMAT. */
export function formatOf(pathOrUri: string): DataFormat {
  const lower = pathOrUri.toLowerCase();
  for (const [ext, format] of EXTENSIONS) if (lower.endsWith(ext)) return format;
  throw arborError(
    "DATA_UNSUPPORTED_FORMAT",
    `read data: cannot tell the format of "${pathOrUri}" from its extension (supported: ${EXTENSIONS.map(([e]) => e).join(", ")})`,
  );
}

/** "DataType(Datetime(us,))" → "Datetime(us)". */
export function dtypeName(dtype: unknown): string {
  return String(dtype)
    .replace(/^DataType\((.*)\)$/, "$1")
    .replace(/,\)/g, ")");
}

/** Schema of a frame as column → dtype name. */
export function schemaOf(frame: pl.DataFrame): Record<string, string> {
  // frame.schema is keyed by name and does not promise column order; columns + dtypes do.
  const out: Record<string, string> = {};
  const dtypes = frame.dtypes;
  frame.columns.forEach((name, i) => {
    out[name] = dtypeName(dtypes[i]);
  });
  return out;
}

/** sha256 of a file's bytes, streamed (never the whole file in memory). Returns `sha256:hex`. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

/** Read a dataset. Throws DATA_NOT_FOUND, DATA_UNREADABLE, DATA_UNSUPPORTED_FORMAT, DATA_EMPTY. */
export async function readDataset(uri: string, options: ReadOptions): Promise<Dataset> {
  if (uri.startsWith("gs://")) return readFromGcs(uri, options);
  let file: string;
  if (uri.startsWith("file://")) {
    try {
      file = fileURLToPath(uri);
    } catch (e) {
      throw arborError("INVALID_ARGUMENT", `--data: "${uri}" is not a valid file:// URI`, { cause: e });
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) {
    throw arborError(
      "INVALID_ARGUMENT",
      `--data: unsupported URI "${uri}"; use a local path, file:// or gs://`,
    );
  } else {
    file = path.resolve(options.cwd ?? process.cwd(), uri);
  }
  const format = formatOf(file);
  const info = await stat(file).catch((e: unknown) => {
    throw arborError("DATA_NOT_FOUND", `read data: no file at "${file}"`, { cause: e });
  });
  if (!info.isFile()) throw arborError("DATA_NOT_FOUND", `read data: "${file}" is not a file`);
  const sourceUri = `file://${file}`;
  const fingerprint = await sha256File(file).catch((e: unknown) => {
    const reason = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw arborError("DATA_UNREADABLE", `read data: cannot read "${file}": ${reason}`, { cause: e });
  });
  return readLocal(file, format, sourceUri, fingerprint, info.size, options.logger);
}

/** Parse a local file whose format, fingerprint and size are known. */
function readLocal(
  file: string,
  format: DataFormat,
  sourceUri: string,
  fingerprint: string,
  bytes: number,
  logger: Logger,
): Dataset {
  if (bytes === 0) throw arborError("DATA_EMPTY", `read data: "${sourceUri}" is an empty file`);
  const started = performance.now();
  let frame: pl.DataFrame;
  try {
    frame = parse(file, format);
  } catch (e) {
    const reason = e instanceof Error ? e.message.split("\n")[0] : String(e);
    if (/empty (csv|reader)|no data/i.test(reason)) {
      throw arborError("DATA_EMPTY", `read data: "${sourceUri}" has no rows (${reason})`, { cause: e });
    }
    throw arborError("DATA_UNREADABLE", `read data: "${sourceUri}" is not readable as ${format}: ${reason}`, {
      cause: e,
    });
  }
  if (frame.height === 0 || frame.width === 0) {
    throw arborError("DATA_EMPTY", `read data: "${sourceUri}" has no rows`);
  }
  const schema = schemaOf(frame);
  logger.info(
    {
      source: sourceUri,
      format,
      rows: frame.height,
      columns: frame.width,
      bytes,
      ms: Math.round(performance.now() - started),
    },
    "data read",
  );
  return { frame, sourceUri, format, fingerprint, bytes, schema };
}

/** Scan + collect: path-only entry points, so a path is never mistaken for inline CSV text. */
function parse(file: string, format: DataFormat): pl.DataFrame {
  switch (format) {
    case "csv":
      return pl.scanCSV(file, { inferSchemaLength: INFER_SCHEMA_ROWS, glob: false }).collectSync();
    case "parquet":
      // readParquet would treat a path not ending in lower-case ".parquet" as inline bytes.
      return pl.scanParquet(file).collectSync();
    case "ndjson":
      return pl.scanJson(file, { inferSchemaLength: INFER_SCHEMA_ROWS }).collectSync();
  }
}

/** Split `gs://bucket/dir/file.csv` into the store URI (`gs://bucket/dir`) and the key (`file.csv`). */
export function splitGcsUri(uri: string): { storeUri: string; key: string } {
  const m = /^gs:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!m || m[2].endsWith("/"))
    throw arborError("INVALID_ARGUMENT", `--data: "${uri}" does not name an object`);
  const slash = m[2].lastIndexOf("/");
  return slash < 0
    ? { storeUri: `gs://${m[1]}`, key: m[2] }
    : { storeUri: `gs://${m[1]}/${m[2].slice(0, slash)}`, key: m[2].slice(slash + 1) };
}

/** Download a `gs://` object to a temporary file (hashing it on the way), read it, remove it. */
async function readFromGcs(uri: string, options: ReadOptions): Promise<Dataset> {
  const format = formatOf(uri);
  if (!options.openStore)
    throw arborError("INVALID_ARGUMENT", `--data: gs:// URIs need an artifact store client`);
  const { storeUri, key } = splitGcsUri(uri);
  const store = await options.openStore(storeUri);
  const dir = await mkdtemp(path.join(os.tmpdir(), "arbor-data-"));
  try {
    const file = path.join(dir, key);
    let body: NodeJS.ReadableStream;
    try {
      body = await store.get(key);
    } catch (e) {
      if (isArborError(e, "STORE_NOT_FOUND"))
        throw arborError("DATA_NOT_FOUND", `read data: no object at "${uri}"`, { cause: e });
      throw e;
    }
    const hash = createHash("sha256");
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(body, tap, createWriteStream(file));
    options.logger.info({ source: uri, bytes }, "data downloaded");
    return readLocal(file, format, uri, `sha256:${hash.digest("hex")}`, bytes, options.logger);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await store.close();
  }
}
