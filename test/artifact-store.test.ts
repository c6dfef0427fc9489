/**
 * One ArtifactStore contract suite, run against FileArtifactStore (a temp folder) and GcsArtifactStore
 * (the real @google-cloud/storage client against test/gcs-server.ts on 127.0.0.1), plus checks that
 * only make sense for one of them: crash safety and cross-process races for file://, an unreachable
 * endpoint for gs://, and both stores driven from Node 20 (serve/ runs there).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type File, type GetFilesOptions, Storage } from "@google-cloud/storage";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { GcsArtifactStore } from "../registry/store/gcs-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { type GcsServer, startGcsServer } from "./gcs-server.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const OPEN_TS = path.join(REPO, "registry/store/open.ts");
const BUCKET = "arbor-test";

/** The rejection code of a promise, or "ok". */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

async function drain(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function text(data: Uint8Array): string {
  return Buffer.from(data).toString("utf8");
}

/** Run a TypeScript child (Bun by default) and collect its output. */
function run(
  args: string[],
  opts: {
    cmd?: string;
    env?: Record<string, string>;
    onLine?: (line: string, kill: () => void) => void;
  } = {},
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.cmd ?? process.execPath, args, {
      cwd: REPO,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      for (const line of d.toString().split("\n")) if (line) opts.onLine?.(line, () => child.kill("SIGKILL"));
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

interface Impl {
  name: string;
  open(): Promise<ArtifactStore>;
  teardown(): Promise<void>;
}

let tmpRoot = "";
let gcs: GcsServer;

beforeAll(async () => {
  tmpRoot = await mkdtemp(path.join(os.tmpdir(), "arbor-store-test-"));
  gcs = await startGcsServer({ buckets: [BUCKET] });
});

afterAll(async () => {
  await gcs?.close();
  if (tmpRoot) await rm(tmpRoot, { recursive: true, force: true });
});

const IMPLEMENTATIONS: Impl[] = [
  {
    name: "file://",
    open: () => openArtifactStore(pathToFileURL(path.join(tmpRoot, "contract")).href),
    teardown: async () => {},
  },
  {
    name: "gs://",
    open: () =>
      openArtifactStore(`gs://${BUCKET}/contract`, { gcsEndpoint: gcs.url, gcsProject: "arbor-test" }),
    teardown: async () => {},
  },
];

for (const impl of IMPLEMENTATIONS) {
  describe(`ArtifactStore contract: ${impl.name}`, () => {
    let store: ArtifactStore;
    beforeAll(async () => {
      store = await impl.open();
    });
    afterAll(async () => {
      await store.close();
      await impl.teardown();
    });

    test("put/read/stat/exists round trip; overwrite changes the generation", async () => {
      const a = await store.put("rt/hello.json", '{"a":1}');
      expect(a.key).toBe("rt/hello.json");
      expect(a.size).toBe(7);
      const r = await store.read("rt/hello.json");
      expect(text(r.data)).toBe('{"a":1}');
      expect(r.generation).toBe(a.generation);
      const s = await store.stat("rt/hello.json");
      expect(s?.generation).toBe(a.generation);
      expect(s?.size).toBe(7);
      expect(s?.updatedAt).toBeInstanceOf(Date);
      expect(await store.exists("rt/hello.json")).toBe(true);
      const b = await store.put("rt/hello.json", new Uint8Array([1, 2, 3]));
      expect(b.generation).not.toBe(a.generation);
      expect([...(await store.read("rt/hello.json")).data]).toEqual([1, 2, 3]);
      expect(await store.stat("rt/absent")).toBeNull();
      expect(await store.exists("rt/absent")).toBe(false);
      expect(await store.exists("rt")).toBe(false); // a "folder" is not an object
    });

    test("binary safety: every byte value and multipart-like sequences survive put/get/read", async () => {
      const all = new Uint8Array(256).map((_, i) => i);
      const tricky = Buffer.concat([
        Buffer.from("\r\n--boundary\r\n\r\n--"),
        all,
        randomBytes(4096),
        Buffer.from("\r\n"),
      ]);
      await store.put("bin/tricky.bin", tricky);
      expect(Buffer.from((await store.read("bin/tricky.bin")).data).equals(tricky)).toBe(true);
      expect((await drain(await store.get("bin/tricky.bin"))).equals(tricky)).toBe(true);
      await store.put("bin/empty.bin", new Uint8Array(0));
      expect((await store.read("bin/empty.bin")).data.byteLength).toBe(0);
      expect((await store.stat("bin/empty.bin"))?.size).toBe(0);
    });

    test("multi-MB streamed put and streamed get", async () => {
      const chunk = randomBytes(256 * 1024);
      const n = 24; // 6 MiB in 256 KiB chunks
      const want = createHash("sha256");
      for (let i = 0; i < n; i++) want.update(chunk).update(Buffer.from([i]));
      async function* body() {
        for (let i = 0; i < n; i++) {
          yield chunk;
          yield Buffer.from([i]);
        }
      }
      const info = await store.put("big/stream.bin", Readable.from(body()), {
        contentType: "application/octet-stream",
      });
      expect(info.size).toBe(n * (chunk.length + 1));
      const got = createHash("sha256");
      let size = 0;
      for await (const c of await store.get("big/stream.bin")) {
        got.update(c as Buffer);
        size += (c as Buffer).length;
      }
      expect(size).toBe(info.size);
      expect(got.digest("hex")).toBe(want.digest("hex"));
      expect((await store.stat("big/stream.bin"))?.generation).toBe(info.generation);
    });

    test("a put whose stream fails publishes nothing and keeps the old object", async () => {
      await store.put("fail/obj.bin", "old");
      const failing = new Readable({
        read() {
          this.push(Buffer.alloc(64 * 1024, 1));
          this.destroy(new Error("source broke"));
        },
      });
      // The caller's stream error comes back as it is, not disguised as a store error.
      expect(await outcome(store.put("fail/obj.bin", failing))).toBe("Error: source broke");
      expect(text((await store.read("fail/obj.bin")).data)).toBe("old");
      const failing2 = new Readable({
        read() {
          this.destroy(new Error("source broke"));
        },
      });
      await expect(store.put("fail/new.bin", failing2)).rejects.toThrow();
      expect(await store.exists("fail/new.bin")).toBe(false);
      expect((await store.list("fail/")).map((i) => i.key)).toEqual(["fail/obj.bin"]);
    });

    test("list by prefix: recursive, sorted, partial last segment, nothing for unknown prefixes", async () => {
      for (const k of ["ls/b/5", "ls/a/2", "ls/a/1", "ls/a/sub/3", "ls/ab/4"]) await store.put(k, k);
      const keys = async (p: string) => (await store.list(p)).map((i) => i.key);
      expect(await keys("ls/a/")).toEqual(["ls/a/1", "ls/a/2", "ls/a/sub/3"]);
      expect(await keys("ls/a")).toEqual(["ls/a/1", "ls/a/2", "ls/a/sub/3", "ls/ab/4"]);
      expect(await keys("ls/")).toEqual(["ls/a/1", "ls/a/2", "ls/a/sub/3", "ls/ab/4", "ls/b/5"]);
      expect(await keys("ls/a/s")).toEqual(["ls/a/sub/3"]);
      expect(await keys("ls/zzz/")).toEqual([]);
      expect(await keys("nothing-here/")).toEqual([]);
      const infos = await store.list("ls/a/");
      expect(infos[0].size).toBe("ls/a/1".length);
      expect(infos[0].generation).toBe((await store.stat("ls/a/1"))?.generation as string);
      expect((await keys("")).length).toBeGreaterThanOrEqual(5);
    });

    test("listMatching: `*` within one segment, literal segments, sorted, nothing below skipped folders", async () => {
      for (const k of [
        "lm/models/b/labels/production.json",
        "lm/models/a/labels/staging.json",
        "lm/models/a/labels/production.json",
        "lm/models/a/labels/notes.txt",
        "lm/models/a/labels/deep/x.json",
        "lm/models/a/v1/manifest.json",
        "lm/models/c/v1/manifest.json",
        "lm/models/d.json",
        "lm/models/e/labels.json",
        "lm/models/w[1]{x,y}?/labels/p.json",
      ])
        await store.put(k, k);
      const keys = async (p: string) => (await store.listMatching(p)).map((i) => i.key);
      expect(await keys("lm/models/*/labels/*.json")).toEqual([
        "lm/models/a/labels/production.json",
        "lm/models/a/labels/staging.json",
        "lm/models/b/labels/production.json",
        "lm/models/w[1]{x,y}?/labels/p.json",
      ]);
      expect(await keys("lm/models/*/labels/production.json")).toEqual([
        "lm/models/a/labels/production.json",
        "lm/models/b/labels/production.json",
      ]);
      expect(await keys("lm/models/a/*/manifest.json")).toEqual(["lm/models/a/v1/manifest.json"]);
      expect(await keys("lm/models/*")).toEqual(["lm/models/d.json"]);
      expect(await keys("lm/models/a/labels/prod*")).toEqual(["lm/models/a/labels/production.json"]);
      expect(await keys("lm/models/a/labels/production.json")).toEqual([
        "lm/models/a/labels/production.json",
      ]);
      // Characters GCS's matchGlob would read as wildcards are literal here.
      expect(await keys("lm/models/w[1]{x,y}?/labels/*")).toEqual(["lm/models/w[1]{x,y}?/labels/p.json"]);
      expect(await keys("lm/models/w*/labels/*")).toEqual(["lm/models/w[1]{x,y}?/labels/p.json"]);
      expect(await keys("lm/nothing/*/labels/*.json")).toEqual([]);
      expect(await keys("nothing-here/*")).toEqual([]);
      const [info] = await store.listMatching("lm/models/b/labels/*.json");
      expect(info.size).toBe("lm/models/b/labels/production.json".length);
      expect(info.generation).toBe((await store.stat(info.key))?.generation as string);
      for (const bad of ["", "lm/**/x", "lm//*", "../*", "/lm/*", "lm/*/", "lm/.arbor-*"]) {
        expect(`${bad}: ${await outcome(store.listMatching(bad))}`).toBe(`${bad}: INVALID_ARGUMENT`);
      }
    });

    test("delete is idempotent; deletePrefix removes exactly the prefix and counts", async () => {
      for (const k of ["del/x/1", "del/x/2", "del/x/deep/3", "del/xy/4", "del/y"]) await store.put(k, "v");
      await store.delete("del/y");
      await store.delete("del/y");
      expect(await store.exists("del/y")).toBe(false);
      expect(await store.deletePrefix("del/x/")).toBe(3);
      expect((await store.list("del/")).map((i) => i.key)).toEqual(["del/xy/4"]);
      expect(await store.deletePrefix("del/x/")).toBe(0);
      expect(await outcome(store.deletePrefix(""))).toBe("INVALID_ARGUMENT");
      // The folder of deleted objects can be written again at once.
      await store.put("del/x/1", "again");
      expect(text((await store.read("del/x/1")).data)).toBe("again");
    });

    test("reading a missing key: STORE_NOT_FOUND from get and read", async () => {
      expect(await outcome(store.get("missing/key.bin"))).toBe("STORE_NOT_FOUND");
      expect(await outcome(store.read("missing/key.bin"))).toBe("STORE_NOT_FOUND");
      await store.put("missing/dir/child", "x");
      expect(await outcome(store.read("missing/dir"))).toBe("STORE_NOT_FOUND");
    });

    test("bad keys are refused with INVALID_ARGUMENT by every operation", async () => {
      const bad = [
        "",
        "/abs/path",
        "a//b",
        "../escape",
        "a/../b",
        "a/./b",
        "a/",
        ".",
        "a\\b",
        "a/.arbor-tmp-1",
        "nul\u0000",
      ];
      for (const key of bad) {
        for (const op of [
          () => store.put(key, "x"),
          () => store.get(key),
          () => store.read(key),
          () => store.stat(key),
          () => store.exists(key),
          () => store.delete(key),
          () => store.createIfAbsent(key, "x"),
          () => store.compareAndSwap(key, "x", null),
        ]) {
          expect(`${JSON.stringify(key)}: ${await outcome(op())}`).toBe(
            `${JSON.stringify(key)}: INVALID_ARGUMENT`,
          );
        }
      }
      for (const prefix of ["../", "/abs/", "a//"]) {
        expect(await outcome(store.list(prefix))).toBe("INVALID_ARGUMENT");
        expect(await outcome(store.deletePrefix(prefix))).toBe("INVALID_ARGUMENT");
      }
      expect(await outcome(store.list("ok/prefix/"))).toBe("ok");
    });

    test("createIfAbsent: 8 concurrent writers, exactly one wins", async () => {
      const bodies = Array.from({ length: 8 }, (_, i) => `writer-${i}`);
      const results = await Promise.all(bodies.map((b) => outcome(store.createIfAbsent("cia/once.json", b))));
      expect(results.filter((r) => r === "ok")).toHaveLength(1);
      expect(results.filter((r) => r === "STORE_ALREADY_EXISTS")).toHaveLength(7);
      expect(text((await store.read("cia/once.json")).data)).toBe(bodies[results.indexOf("ok")]);
      expect(await outcome(store.createIfAbsent("cia/once.json", "late"))).toBe("STORE_ALREADY_EXISTS");
    });

    test("compareAndSwap: 8 concurrent swaps from one generation, exactly one wins and its body stays", async () => {
      await store.put("cas/pointer.json", '{"version":0}');
      const { generation } = await store.read("cas/pointer.json");
      const bodies = Array.from({ length: 8 }, (_, i) => `{"version":${i + 1}}`);
      const settled = await Promise.allSettled(
        bodies.map((b) => store.compareAndSwap("cas/pointer.json", b, generation)),
      );
      const winners = settled.flatMap((s, i) => (s.status === "fulfilled" ? [{ i, info: s.value }] : []));
      expect(winners).toHaveLength(1);
      for (const s of settled) {
        if (s.status === "rejected")
          expect((s.reason as { code: string }).code).toBe("STORE_PRECONDITION_FAILED");
      }
      const now = await store.read("cas/pointer.json");
      expect(text(now.data)).toBe(bodies[winners[0].i]);
      expect(now.generation).toBe(winners[0].info.generation);
      // The old generation is spent; the new one works; null means "only if absent".
      expect(await outcome(store.compareAndSwap("cas/pointer.json", "stale", generation))).toBe(
        "STORE_PRECONDITION_FAILED",
      );
      expect(await outcome(store.compareAndSwap("cas/pointer.json", "exists", null))).toBe(
        "STORE_PRECONDITION_FAILED",
      );
      expect(await outcome(store.compareAndSwap("cas/pointer.json", "next", now.generation))).toBe("ok");
      expect(await outcome(store.compareAndSwap("cas/fresh.json", "first", null))).toBe("ok");
      expect(await outcome(store.compareAndSwap("cas/gone.json", "x", now.generation))).toBe(
        "STORE_PRECONDITION_FAILED",
      );
      expect(await outcome(store.compareAndSwap("cas/pointer.json", "x", "not-a-generation"))).toBe(
        "STORE_PRECONDITION_FAILED",
      );
    });

    test("compareAndSwap chains: 8 writers retrying read-modify-write never lose an update", async () => {
      await store.put("cas/counter", "0");
      const bump = async () => {
        for (;;) {
          const { data, generation } = await store.read("cas/counter");
          try {
            await store.compareAndSwap("cas/counter", String(Number(text(data)) + 1), generation);
            return;
          } catch (e) {
            if ((e as { code?: string }).code !== "STORE_PRECONDITION_FAILED") throw e;
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, () => Promise.all([bump(), bump()])));
      expect(text((await store.read("cas/counter")).data)).toBe("16");
    });
  });
}

describe("openArtifactStore", () => {
  test("chooses by scheme; plain paths are file stores; anything else is STORE_BAD_URI", async () => {
    const dir = path.join(tmpRoot, "plain path");
    const s = await openArtifactStore(dir);
    expect(s.uri).toBe(pathToFileURL(dir).href);
    await s.put("k", "v");
    expect(text((await (await openArtifactStore(s.uri)).read("k")).data)).toBe("v");
    const g = await openArtifactStore(`gs://${BUCKET}/some/prefix/`, { gcsEndpoint: gcs.url });
    expect(g.uri).toBe(`gs://${BUCKET}/some/prefix`);
    for (const uri of [
      "",
      "s3://bucket/x",
      "gs://",
      "gs://Bad_Bucket",
      "gs://b/../x",
      "gs://bucket/a//b",
      "http://x/y",
    ]) {
      expect(`${uri}: ${await outcome(openArtifactStore(uri))}`).toBe(`${uri}: STORE_BAD_URI`);
    }
  });
});

describe("GcsArtifactStore specifics", () => {
  test("listMatching sends the pattern as matchGlob: one page for few matches among many objects", async () => {
    const storage = new Storage({ apiEndpoint: gcs.url, projectId: "arbor-test" });
    await storage.createBucket("glob-store");
    const bucket = storage.bucket("glob-store");
    const names = ["pre/models/m/labels/production.json", "pre/models/n/labels/staging.json"];
    for (let v = 1; v <= 1001; v++) names.push(`pre/models/m/v${v}/manifest.json`);
    for (let i = 0; i < names.length; i += 50)
      await Promise.all(names.slice(i, i + 50).map((n) => bucket.file(n).save("{}", { resumable: false })));
    const store = await openArtifactStore("gs://glob-store/pre", { gcsEndpoint: gcs.url, gcsProject: "p" });
    const lists = () => gcs.requests.get("GET b/*/o") ?? 0;
    const before = lists();
    expect((await store.listMatching("models/*/labels/*.json")).map((i) => i.key)).toEqual([
      "models/m/labels/production.json",
      "models/n/labels/staging.json",
    ]);
    expect(lists() - before).toBe(1); // a prefix listing of models/ would take 2 pages of 1000
    expect((await store.list("models/")).length).toBe(1003);
    expect(lists() - before).toBe(3);
  });

  test("listMatching takes the store's prefix literally: a '*' in it does not reach a sibling tree", async () => {
    const opts = { gcsEndpoint: gcs.url, gcsProject: "p" };
    const mine = await openArtifactStore(`gs://${BUCKET}/team*x`, opts);
    const other = await openArtifactStore(`gs://${BUCKET}/team-ax`, opts);
    await other.put("models/secret/labels/production.json", "{}");
    await mine.put("models/mine/labels/production.json", "{}");
    expect((await mine.listMatching("models/*/labels/*.json")).map((i) => i.key)).toEqual([
      "models/mine/labels/production.json",
    ]);
  });

  test("objects live under the URI's prefix in the bucket", async () => {
    const s = await openArtifactStore(`gs://${BUCKET}/pfx/inner`, { gcsEndpoint: gcs.url });
    await s.put("models/m/labels/production.json", "{}");
    expect(gcs.objectNames(BUCKET)).toContain("pfx/inner/models/m/labels/production.json");
    expect((await s.list("models/")).map((i) => i.key)).toEqual(["models/m/labels/production.json"]);
  });

  test("an unreachable endpoint is STORE_UNAVAILABLE", async () => {
    const dead = await startGcsServer();
    const url = dead.url;
    await dead.close();
    const s = await GcsArtifactStore.create(`gs://${BUCKET}/x`, { endpoint: url, maxRetries: 0 });
    expect(await outcome(s.read("a"))).toBe("STORE_UNAVAILABLE");
    expect(await outcome(s.put("a", "b"))).toBe("STORE_UNAVAILABLE");
    expect(await outcome(s.list(""))).toBe("STORE_UNAVAILABLE");
  });

  test("a missing bucket is STORE_NOT_FOUND on reads", async () => {
    const s = await openArtifactStore("gs://no-such-bucket/x", { gcsEndpoint: gcs.url });
    expect(await outcome(s.read("a"))).toBe("STORE_NOT_FOUND");
  });
});

describe("test/gcs-server.ts protocol details (through the real client)", () => {
  test("pagination, delimiters, ifGenerationNotMatch, media uploads, malformed requests", async () => {
    const storage = new Storage({ apiEndpoint: gcs.url, projectId: "arbor-test" });
    await storage.createBucket("pages");
    const bucket = storage.bucket("pages");
    for (const n of ["p/a", "p/b", "p/c/1", "p/c/2", "p/d", "q"])
      await bucket.file(n).save(n, { resumable: false });
    const names: string[] = [];
    let query: GetFilesOptions | null = { prefix: "p/", maxResults: 2, autoPaginate: false };
    let pages = 0;
    while (query) {
      const [files, next]: [File[], GetFilesOptions | null, unknown] = await bucket.getFiles(query);
      names.push(...files.map((f) => f.name));
      query = next;
      pages++;
    }
    expect(names).toEqual(["p/a", "p/b", "p/c/1", "p/c/2", "p/d"]);
    expect(pages).toBe(3);
    const [top, , api] = (await bucket.getFiles({
      prefix: "p/",
      delimiter: "/",
      autoPaginate: false,
    })) as unknown as [File[], unknown, { prefixes?: string[] }];
    expect(top.map((f) => f.name)).toEqual(["p/a", "p/b", "p/d"]);
    expect(api.prefixes).toEqual(["p/c/"]);
    const [meta] = await bucket.file("q").getMetadata();
    const blocked = bucket
      .file("q")
      .save("new", { resumable: false, preconditionOpts: { ifGenerationNotMatch: String(meta.generation) } });
    expect(
      await outcome(blocked.then(() => undefined).catch((e) => Promise.reject({ code: String(e.code) }))),
    ).toBe("412");
    const media = await fetch(`${gcs.url}/upload/storage/v1/b/pages/o?uploadType=media&name=m%2Fraw.bin`, {
      method: "POST",
      body: new Uint8Array([0, 255]),
    });
    expect(((await media.json()) as { size: string }).size).toBe("2");
    expect([...(await bucket.file("m/raw.bin").download())[0]]).toEqual([0, 255]);
    expect((await fetch(`${gcs.url}/storage/v1/b/pages/o/%E0%A4%A`)).status).toBe(400);
    expect((await fetch(`${gcs.url}/storage/v1/b/pages/o/q?ifGenerationMatch=abc`)).status).toBe(400);
    expect((await fetch(`${gcs.url}/storage/v1/b/pages/o/q?alt=media`)).status).toBe(200); // still serving
  });

  test("matchGlob: *, **, ?, [set], [!set], {a,b}, escapes; with prefix and pagination; 400 when malformed", async () => {
    const storage = new Storage({ apiEndpoint: gcs.url, projectId: "arbor-test" });
    await storage.createBucket("globs");
    const bucket = storage.bucket("globs");
    const all = ["a/b", "a/x/b", "a/x/y/b", "a/b.json", "a/c.json", "a/c.txt", "a/d1", "a/d2", "a/dx", "a/*"];
    for (const n of all) await bucket.file(n).save(n, { resumable: false });
    const names = async (matchGlob: string, extra: GetFilesOptions = {}) =>
      (await bucket.getFiles({ matchGlob, ...extra }))[0].map((f) => f.name);
    expect(await names("a/*.json")).toEqual(["a/b.json", "a/c.json"]);
    expect(await names("a/*/b")).toEqual(["a/x/b"]);
    expect(await names("a/**/b")).toEqual(["a/b", "a/x/b", "a/x/y/b"]);
    expect(await names("a/**b")).toEqual(["a/b", "a/x/b", "a/x/y/b"]);
    expect(await names("a/d?")).toEqual(["a/d1", "a/d2", "a/dx"]);
    expect(await names("a/d[12]")).toEqual(["a/d1", "a/d2"]);
    expect(await names("a/d[0-9]")).toEqual(["a/d1", "a/d2"]);
    expect(await names("a/d[!12]")).toEqual(["a/dx"]);
    expect(await names("a/c.{json,txt}")).toEqual(["a/c.json", "a/c.txt"]);
    expect(await names("a/\\*")).toEqual(["a/*"]);
    expect(await names("**", { prefix: "a/x/" })).toEqual(["a/x/b", "a/x/y/b"]);
    const paged: string[] = [];
    let query: GetFilesOptions | null = { matchGlob: "a/**", maxResults: 2, autoPaginate: false };
    while (query) {
      const [files, next]: [File[], GetFilesOptions | null, unknown] = await bucket.getFiles(query);
      paged.push(...files.map((f) => f.name));
      query = next;
    }
    expect(paged).toEqual(all.slice().sort());
    for (const bad of ["a/[b", "a/{b,c", "a/\\"]) {
      const r = await fetch(`${gcs.url}/storage/v1/b/globs/o?matchGlob=${encodeURIComponent(bad)}`);
      expect(`${bad}: ${r.status}`).toBe(`${bad}: 400`);
    }
  });
});

describe("FileArtifactStore specifics", () => {
  test("SIGKILL in the middle of a put leaves no partial object, keeps the old one, and the next put works", async () => {
    const dir = path.join(tmpRoot, "crash");
    const store = await openArtifactStore(dir);
    await store.put("big/object.bin", "previous version");
    const child = path.join(tmpRoot, "crash-child.mts");
    await writeFile(
      child,
      `import { Readable } from "node:stream";
import { openArtifactStore } from ${JSON.stringify(OPEN_TS)};
const store = await openArtifactStore(process.argv[2]);
let n = 0;
const body = new Readable({ read() { n++; this.push(Buffer.alloc(1 << 20, n & 255)); if (n === 8) console.log("writing"); } });
await store.put("big/object.bin", body);
await store.put("big/other.bin", body);
`,
    );
    const r = await run([child, dir], { onLine: (line, kill) => line === "writing" && kill() });
    expect(r.signal).toBe("SIGKILL");
    // The half-written temp file is there, and invisible.
    expect((await readdir(path.join(dir, "big"))).some((n) => n.startsWith(".arbor-tmp-"))).toBe(true);
    expect(text((await store.read("big/object.bin")).data)).toBe("previous version");
    expect((await store.list("")).map((i) => i.key)).toEqual(["big/object.bin"]);
    expect(await store.exists("big/other.bin")).toBe(false);
    await store.put("big/object.bin", "after the crash");
    expect(text((await store.read("big/object.bin")).data)).toBe("after the crash");
    // deletePrefix clears temp files a crash left behind once they are old, and the folder with them.
    for (const n of await readdir(path.join(dir, "big"))) {
      if (n.startsWith(".arbor-tmp-")) await utimes(path.join(dir, "big", n), new Date(0), new Date(0));
    }
    expect(await store.deletePrefix("big/")).toBe(1);
    expect(await readdir(dir)).toEqual([]);
  });

  test("a key below an existing object, or naming a folder of objects, is INVALID_ARGUMENT", async () => {
    const store = await openArtifactStore(path.join(tmpRoot, "conflict"));
    await store.put("a/b", "x");
    expect(await outcome(store.put("a/b/c", "y"))).toBe("INVALID_ARGUMENT");
    expect(await outcome(store.put("a", "y"))).toBe("INVALID_ARGUMENT");
    expect(text((await store.read("a/b")).data)).toBe("x");
    expect((await store.list("")).map((i) => i.key)).toEqual(["a/b"]);
  });

  test("8 processes race: one createIfAbsent and one compareAndSwap win", async () => {
    const dir = path.join(tmpRoot, "procs");
    const store = await openArtifactStore(dir);
    await store.put("labels/production.json", "v0");
    const { generation } = await store.read("labels/production.json");
    const child = path.join(tmpRoot, "race-child.mts");
    await writeFile(
      child,
      `import { openArtifactStore } from ${JSON.stringify(OPEN_TS)};
const [dir, me, gen] = process.argv.slice(2);
const store = await openArtifactStore(dir);
const code = async (p) => { try { await p; return "ok"; } catch (e) { return e.code ?? String(e); } };
const created = await code(store.createIfAbsent("models/m/v1/manifest.json", me));
const swapped = await code(store.compareAndSwap("labels/production.json", me, gen));
console.log(JSON.stringify({ created, swapped }));
`,
    );
    const outs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => run([child, dir, `p${i}`, generation])),
    );
    const results = outs.map((o) => JSON.parse(o.stdout.trim()) as { created: string; swapped: string });
    expect(results.filter((r) => r.created === "ok")).toHaveLength(1);
    expect(results.filter((r) => r.created === "STORE_ALREADY_EXISTS")).toHaveLength(7);
    expect(results.filter((r) => r.swapped === "ok")).toHaveLength(1);
    expect(results.filter((r) => r.swapped === "STORE_PRECONDITION_FAILED")).toHaveLength(7);
    expect(text((await store.read("labels/production.json")).data)).toBe(
      `p${results.findIndex((r) => r.swapped === "ok")}`,
    );
    expect(text((await store.read("models/m/v1/manifest.json")).data)).toBe(
      `p${results.findIndex((r) => r.created === "ok")}`,
    );
  });

  test("a lock left by a dead process does not block compareAndSwap", async () => {
    const dir = path.join(tmpRoot, "stale");
    const store = await openArtifactStore(dir);
    const info = await store.put("labels/l.json", "a");
    const dead = await run(["-e", "console.log(process.pid)"]);
    await writeFile(
      path.join(dir, "labels", ".arbor-lock-l.json"),
      JSON.stringify({ pid: Number(dead.stdout.trim()), host: os.hostname(), token: "x", at: Date.now() }),
    );
    await store.compareAndSwap("labels/l.json", "b", info.generation);
    expect(text((await store.read("labels/l.json")).data)).toBe("b");
    expect((await store.list("labels/")).map((i) => i.key)).toEqual(["labels/l.json"]);
  });
});

describe("Node 20 (the serve tier's runtime)", () => {
  test("gs://: an endpoint that accepts connections and never answers is STORE_UNAVAILABLE after the request timeout", async () => {
    // Under Node only: Bun's HTTP client does not apply the client's request timeout.
    const child = path.join(tmpRoot, "node-silent.mts");
    await writeFile(
      child,
      `import net from "node:net";
import { GcsArtifactStore } from ${JSON.stringify(OPEN_TS.replace(/open\.ts$/, "gcs-store.ts"))};
const silent = net.createServer(() => {});
await new Promise((r) => silent.listen(0, "127.0.0.1", r));
const s = await GcsArtifactStore.create("gs://bucket1/x", { endpoint: "http://127.0.0.1:" + silent.address().port, maxRetries: 0, timeoutMs: 300 });
const out = {};
for (const [op, p] of [["stat", () => s.stat("a")], ["list", () => s.list("")], ["read", () => s.read("a")]])
  out[op] = await p().then(() => "ok", (e) => e.code);
console.log(JSON.stringify(out));
process.exit(0);
`,
    );
    const r = await run(["--import", "tsx", child], { cmd: "node" });
    expect(JSON.parse(r.stdout.trim())).toEqual({
      stat: "STORE_UNAVAILABLE",
      list: "STORE_UNAVAILABLE",
      read: "STORE_UNAVAILABLE",
    });
  });

  test("both stores work under node --import tsx", async () => {
    const child = path.join(tmpRoot, "node-child.mts");
    await writeFile(
      child,
      `import { Readable } from "node:stream";
import { openArtifactStore } from ${JSON.stringify(OPEN_TS)};
const [dir, endpoint, bucket] = process.argv.slice(2);
const out = {};
for (const uri of [dir, "gs://" + bucket + "/node"]) {
  const s = await openArtifactStore(uri, { gcsEndpoint: endpoint });
  await s.put("a/stream.bin", Readable.from([Buffer.from("he"), Buffer.from("llo")]));
  const r = await s.read("a/stream.bin");
  const chunks = [];
  for await (const c of await s.get("a/stream.bin")) chunks.push(c);
  const swapped = await s.compareAndSwap("a/stream.bin", "swapped", r.generation).then(() => "ok", (e) => e.code);
  const stale = await s.compareAndSwap("a/stream.bin", "x", r.generation).then(() => "ok", (e) => e.code);
  const missing = await s.read("nope").then(() => "ok", (e) => e.code);
  out[uri.slice(0, 5)] = { read: Buffer.from(r.data).toString(), get: Buffer.concat(chunks).toString(), swapped, stale, missing, keys: (await s.list("a/")).map((i) => i.key) };
}
console.log(JSON.stringify(out));
`,
    );
    const r = await run(["--import", "tsx", child, path.join(tmpRoot, "node-store"), gcs.url, BUCKET], {
      cmd: "node",
    });
    expect(r.stderr.includes("Error") ? r.stderr : "").toBe("");
    const out = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    const want = {
      read: "hello",
      get: "hello",
      swapped: "ok",
      stale: "STORE_PRECONDITION_FAILED",
      missing: "STORE_NOT_FOUND",
      keys: ["a/stream.bin"],
    };
    expect(out).toEqual({ [path.join(tmpRoot, "node-store").slice(0, 5)]: want, "gs://": want });
  });
});
