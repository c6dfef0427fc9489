import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import pl from "nodejs-polars";
import { openArtifactStore } from "../registry/store/open.ts";
import { type ErrorCode, isArborError } from "../shared/errors.ts";
import { createLogger, type Logger } from "../shared/logger.ts";
import { formatOf, readDataset, splitGcsUri } from "../train/data/read.ts";
import { columnToDenseCodes, columnToFloat64 } from "../train/data/to-js.ts";
import { startGcsServer } from "./gcs-server.ts";

const logger = createLogger({ name: "test", level: "silent" });
let dir: string;

const CSV = "id,city,score,when\n1,Lyon,0.5,2024-01-02\n2,Paris,1.5,2024-01-03\n3,,2.5,2024-01-04\n";
const NDJSON =
  '{"id":1,"city":"Lyon","score":0.5}\n{"id":2,"city":"Paris","score":1.5}\n{"id":3,"city":null,"score":2.5}\n';

function file(name: string, body: string | Uint8Array): string {
  const p = path.join(dir, name);
  writeFileSync(p, body);
  return p;
}

async function code(p: Promise<unknown>): Promise<ErrorCode | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    if (isArborError(e)) return e.code;
    throw e;
  }
}

/** A logger whose JSON lines land in an array. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    name: "test",
    level: "debug",
    destination: { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  });
  return { logger, lines };
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "arbor-data-test-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("readDataset", () => {
  test("CSV: frame, schema, sha256 fingerprint of the bytes, file:// source", async () => {
    const p = file("a.csv", CSV);
    const ds = await readDataset(p, { logger });
    expect(ds.format).toBe("csv");
    expect(ds.frame.height).toBe(3);
    expect(ds.schema).toEqual({ id: "Int64", city: "String", score: "Float64", when: "String" });
    expect(Object.keys(ds.schema)).toEqual(ds.frame.columns);
    expect(ds.fingerprint).toBe(`sha256:${createHash("sha256").update(CSV).digest("hex")}`);
    expect(ds.bytes).toBe(Buffer.byteLength(CSV));
    expect(ds.sourceUri).toBe(`file://${p}`);
    expect(ds.frame.getColumn("city").nullCount()).toBe(1);
  });

  test("gzip-compressed CSV (.csv.gz) reads like the plain file", async () => {
    const p = file("a.csv.gz", gzipSync(CSV));
    const ds = await readDataset(p, { logger });
    expect(ds.frame.height).toBe(3);
    expect(ds.schema.score).toBe("Float64");
  });

  test("Parquet keeps dtypes (datetime, booleans)", async () => {
    const df = pl.DataFrame({
      t: pl
        .Series("t", [new Date("2024-01-01T00:00:00Z"), new Date("2024-01-02T00:00:00Z")])
        .cast(pl.Datetime("us")),
      b: [true, false],
      x: [1.5, 2.5],
    });
    const p = path.join(dir, "a.parquet");
    df.writeParquet(p);
    const ds = await readDataset(p, { logger });
    expect(ds.format).toBe("parquet");
    expect(ds.schema).toEqual({ t: "Datetime(us)", b: "Bool", x: "Float64" });
    expect(ds.fingerprint).toBe(`sha256:${createHash("sha256").update(readFileSync(p)).digest("hex")}`);
    // Upper-case and .pq extensions are read as files too.
    const upper = path.join(dir, "B.PQ");
    df.writeParquet(upper);
    expect((await readDataset(upper, { logger })).frame.height).toBe(2);
  });

  test("NDJSON as .ndjson and .jsonl", async () => {
    for (const name of ["a.ndjson", "a.jsonl"]) {
      const ds = await readDataset(file(name, NDJSON), { logger });
      expect(ds.format).toBe("ndjson");
      expect(ds.frame.height).toBe(3);
      expect(ds.schema).toEqual({ id: "Int64", city: "String", score: "Float64" });
    }
  });

  test("file:// URIs and relative paths (against cwd)", async () => {
    const p = file("b.csv", CSV);
    expect((await readDataset(pathToFileURL(p).href, { logger })).frame.height).toBe(3);
    expect((await readDataset("b.csv", { logger, cwd: dir })).frame.height).toBe(3);
  });

  test("gs:// URIs: downloaded through the real GCS client (test server), hashed, read, temp removed", async () => {
    const gcs = await startGcsServer({ buckets: ["bkt"] });
    try {
      const openStore = (uri: string) =>
        openArtifactStore(uri, { gcsEndpoint: gcs.url, gcsProject: "arbor-test" });
      const upload = await openStore("gs://bkt/raw");
      await upload.put("c.csv", CSV);
      await upload.close();
      const opened: string[] = [];
      const tmpBefore = readdirSync(os.tmpdir()).filter((f) => f.startsWith("arbor-data-"));
      const ds = await readDataset("gs://bkt/raw/c.csv", {
        logger,
        openStore: (uri) => {
          opened.push(uri);
          return openStore(uri);
        },
      });
      expect(opened).toEqual(["gs://bkt/raw"]);
      expect(ds.sourceUri).toBe("gs://bkt/raw/c.csv");
      expect(ds.frame.height).toBe(3);
      expect(ds.bytes).toBe(Buffer.byteLength(CSV));
      expect(ds.fingerprint).toBe(`sha256:${createHash("sha256").update(CSV).digest("hex")}`);
      const tmpAfter = readdirSync(os.tmpdir()).filter((f) => f.startsWith("arbor-data-"));
      expect(tmpAfter.filter((f) => !tmpBefore.includes(f))).toEqual([]);
      expect(await code(readDataset("gs://bkt/raw/none.csv", { logger, openStore }))).toBe("DATA_NOT_FOUND");
    } finally {
      await gcs.close();
    }
    expect(await code(readDataset("gs://bkt/raw/x.csv", { logger }))).toBe("INVALID_ARGUMENT");
    expect(splitGcsUri("gs://b/k.csv")).toEqual({ storeUri: "gs://b", key: "k.csv" });
    expect(splitGcsUri("gs://b/a/b/k.csv")).toEqual({ storeUri: "gs://b/a/b", key: "k.csv" });
    expect(() => splitGcsUri("gs://b/")).toThrow();
  });

  test("bad inputs get stable codes", async () => {
    expect(await code(readDataset(path.join(dir, "nope.csv"), { logger }))).toBe("DATA_NOT_FOUND");
    mkdirSync(path.join(dir, "folder.csv"), { recursive: true });
    expect(await code(readDataset(path.join(dir, "folder.csv"), { logger }))).toBe("DATA_NOT_FOUND");
    expect(await code(readDataset(file("x.txt", "a\n1\n"), { logger }))).toBe("DATA_UNSUPPORTED_FORMAT");
    expect(await code(readDataset(file("x.xlsx", "PK"), { logger }))).toBe("DATA_UNSUPPORTED_FORMAT");
    expect(await code(readDataset(file("bad.parquet", "not a parquet file"), { logger }))).toBe(
      "DATA_UNREADABLE",
    );
    expect(await code(readDataset(file("bad.ndjson", '{"a":1\n{{{\n'), { logger }))).toBe("DATA_UNREADABLE");
    expect(await code(readDataset(file("bad.csv", 'a,b\n1,2,3,4\n"x\n'), { logger }))).toBe(
      "DATA_UNREADABLE",
    );
    expect(await code(readDataset(file("empty.csv", ""), { logger }))).toBe("DATA_EMPTY");
    expect(await code(readDataset(file("header.csv", "a,b\n"), { logger }))).toBe("DATA_EMPTY");
    expect(await code(readDataset("http://example.com/a.csv", { logger }))).toBe("INVALID_ARGUMENT");
  });

  test("a file that exists but cannot be read → DATA_UNREADABLE, not an internal error", async () => {
    // chmod 000 does not stop root (CI); /proc/self/mem stats as a regular file and fails with EIO.
    const unreadable = path.join(dir, "unreadable.csv");
    symlinkSync("/proc/self/mem", unreadable);
    expect(await code(readDataset(unreadable, { logger }))).toBe("DATA_UNREADABLE");
  });

  test("the parser's reason is in the DATA_UNREADABLE message", async () => {
    try {
      await readDataset(file("bad2.parquet", "garbage"), { logger });
      throw new Error("expected a failure");
    } catch (e) {
      expect(isArborError(e, "DATA_UNREADABLE")).toBe(true);
      expect((e as Error).message).toContain("parquet");
    }
  });

  test("formatOf", () => {
    expect(formatOf("gs://b/x/Y.PARQUET")).toBe("parquet");
    expect(formatOf("a.jsonl")).toBe("ndjson");
    expect(() => formatOf("a.json")).toThrow();
  });
});

describe("to-js", () => {
  test("every conversion is logged with rows, columns and bytes", () => {
    const { logger: log, lines } = capturingLogger();
    const df = pl.DataFrame({ s: ["b", "a", null, "b"], x: [1.5, null, 3, 4] });
    const codes = columnToDenseCodes(log, "codes", df, "s");
    expect(Array.from(codes)).toEqual([2, 1, 0, 2]);
    const x = columnToFloat64(log, "x", df, "x");
    expect(Number.isNaN(x[1])).toBe(true);
    const conv = lines.filter((l) => l.msg === "polars → js");
    expect(conv.length).toBeGreaterThanOrEqual(2);
    const last = conv[conv.length - 1];
    expect(last).toMatchObject({ conversion: "x", rows: 4, columns: 1, bytes: 32 });
    expect(conv.find((l) => l.conversion === "codes")).toMatchObject({ rows: 4, columns: 1, bytes: 16 });
  });

  test("dense codes follow sorted order for numbers and strings", () => {
    const df = pl.DataFrame({ n: [30, 10, 20, 10], s: ["zz", "a", "m", "a"] });
    expect(Array.from(columnToDenseCodes(logger, "n", df, "n"))).toEqual([3, 1, 2, 1]);
    expect(Array.from(columnToDenseCodes(logger, "s", df, "s"))).toEqual([3, 1, 2, 1]);
  });
});
