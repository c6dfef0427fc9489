/**
 * Registry contract suite: run on PGlite always and on Postgres when DATABASE_URL is set, each in a
 * fresh database dropped afterwards. Splits CRUD, model versions, labels, audit trail, error codes,
 * migrations; plus the `arbor models` commands end to end.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { count, eq, sql } from "drizzle-orm";
import { sha256Hex } from "../registry/bundle-import.ts";
import { MIGRATIONS_FOLDER } from "../registry/db/client.ts";
import { labelEvents, modelLabels } from "../registry/db/schema.ts";
import { newId } from "../registry/ids.ts";
import { openRegistry, type Registry } from "../registry/index.ts";
import { ModelRegistry } from "../registry/models.ts";
import { SplitRepository } from "../registry/splits.ts";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { type LabelPointer, labelPointerSchema, manifestSchema } from "../shared/bundle.ts";
import { type ArborError, arborError, isArborError } from "../shared/errors.ts";
import { labelKey, splitKey, versionFileKey } from "../shared/paths.ts";
import { type GcsServer, startGcsServer } from "./gcs-server.ts";
import { runArbor } from "./helpers/cli.ts";
import {
  createTestDatabase,
  databaseKinds,
  type TestDatabase,
  type TestDatabaseKind,
  testLogger,
} from "./helpers/db.ts";
import { writeFakeBundle } from "./helpers/fake-bundle.ts";

// Shared 2-core CI machines: PGlite opens and child processes can take seconds (bunfig has no timeout key).
setDefaultTimeout(60_000);

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isArborError(e)) return e.code;
    throw e;
  }
  throw new Error("expected an ArborError, got success");
}

async function readPointer(store: ArtifactStore, name: string, label: string): Promise<LabelPointer> {
  const { data } = await store.read(labelKey(name, label));
  return labelPointerSchema.parse(JSON.parse(new TextDecoder().decode(data)));
}

const actor = { actor: "tester" };

/** Every database here with the file store, plus PGlite with a gs:// store on a local GCS server. */
const VARIANTS: { kind: TestDatabaseKind; store: "file" | "gs" }[] = [
  ...databaseKinds().map((kind) => ({ kind, store: "file" as const })),
  { kind: "pglite", store: "gs" },
];

for (const { kind, store } of VARIANTS) {
  describe(`registry contract on ${kind} with a ${store}:// store`, () => {
    let gcs: GcsServer | undefined;
    const config = () =>
      gcs ? tdb.config({ store: "gs://arbor-test/registry", gcsEndpoint: gcs.url }) : tdb.config();
    let tdb: TestDatabase;
    let reg: Registry;
    let bundles: string;

    beforeAll(async () => {
      tdb = await createTestDatabase(kind);
      if (store === "gs") gcs = await startGcsServer({ buckets: ["arbor-test"] });
      reg = await openRegistry(config(), testLogger());
      bundles = path.join(tdb.home, "bundles");
      for (let i = 1; i <= 3; i++) await writeFakeBundle(path.join(bundles, `b${i}`), i);
    }, 60_000);
    afterAll(async () => {
      await reg?.close();
      await tdb?.drop();
      await gcs?.close();
    });

    test("migrations are applied once and re-applying them changes nothing", async () => {
      expect(reg.kind).toBe(kind);
      expect(reg.store.uri.startsWith(`${store}://`)).toBe(true);
      const journal = JSON.parse(readFileSync(path.join(MIGRATIONS_FOLDER, "meta", "_journal.json"), "utf8"));
      const count1 = await migrationCount(reg);
      expect(count1).toBe(journal.entries.length);
      await reg.models.register({ name: "persist", bundleDir: path.join(bundles, "b1") });
      // Close and reopen: migrations run again (no-op), data survives.
      await reg.close();
      reg = await openRegistry(config(), testLogger());
      expect(await migrationCount(reg)).toBe(count1);
      expect((await reg.models.show("persist")).latestVersion).toBe(1);
    });

    if (kind === "pglite") {
      test("a second process-level open of the same PGlite directory is refused with DB_LOCKED", async () => {
        expect(await codeOf(openRegistry(config(), testLogger()))).toBe("DB_LOCKED");
      });
    }

    test("splits: create, get, list with filters, update, count", async () => {
      const id = newId("spl");
      const created = await reg.splits.create({
        id,
        name: "flights-2024",
        sourceUri: "file:///data/flights.parquet",
        fingerprint: "a".repeat(64),
        strategy: "time",
        target: "delayed",
        options: { ratios: [0.7, 0.15, 0.15] },
        report: { rows: { train: 7, valid: 2, test: 1 } },
        rows: 10,
        tags: ["nightly"],
      });
      expect(created.id).toBe(id);
      expect(created.deletedAt).toBeNull();
      expect((await reg.splits.get(id)).report).toEqual({ rows: { train: 7, valid: 2, test: 1 } });
      const other = newId("spl");
      await reg.splits.create({ ...base(other), strategy: "random" });
      expect((await reg.splits.list({ strategy: "time" })).map((s) => s.id)).toEqual([id]);
      expect((await reg.splits.list({ name: "flights-2024" })).map((s) => s.id)).toEqual([id]);
      expect((await reg.splits.list({ tag: "nightly" })).map((s) => s.id)).toEqual([id]);
      expect((await reg.splits.list({ limit: 1 })).map((s) => s.id)).toEqual([other]);
      expect(await reg.splits.count()).toBe(2);
      const updated = await reg.splits.update(id, { name: "renamed", tags: ["a", "b"] });
      expect(updated.name).toBe("renamed");
      expect(updated.tags).toEqual(["a", "b"]);
    });

    test("splits: error codes", async () => {
      const id = newId("spl");
      await reg.splits.create(base(id));
      expect(await codeOf(reg.splits.create(base(id)))).toBe("CONFLICT");
      expect(await codeOf(reg.splits.create({ ...base(newId("spl")), name: "no spaces" }))).toBe("BAD_NAME");
      expect(await codeOf(reg.splits.create(base("nope")))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(reg.splits.get(newId("spl")))).toBe("SPLIT_NOT_FOUND");
      expect(await codeOf(reg.splits.update(newId("spl"), { name: "x" }))).toBe("SPLIT_NOT_FOUND");
      expect(await codeOf(reg.splits.purge(newId("spl")))).toBe("SPLIT_NOT_FOUND");
    });

    test("splits: soft delete hides, purge removes the row and the artifacts", async () => {
      const id = newId("spl");
      await reg.splits.create(base(id));
      await reg.store.put(splitKey(id, "train.parquet"), "fake parquet");
      await reg.store.put(splitKey(id, "split.json"), "{}");
      const deleted = await reg.splits.softDelete(id);
      expect(deleted.deletedAt).toBeInstanceOf(Date);
      expect(await codeOf(reg.splits.get(id))).toBe("SPLIT_NOT_FOUND");
      expect((await reg.splits.get(id, { includeDeleted: true })).id).toBe(id);
      expect((await reg.splits.list()).some((s) => s.id === id)).toBe(false);
      expect((await reg.splits.list({ includeDeleted: true })).some((s) => s.id === id)).toBe(true);
      expect(await reg.store.exists(splitKey(id, "train.parquet"))).toBe(true);
      const purged = await reg.splits.purge(id);
      expect(purged.deletedObjects).toBe(2);
      expect(await reg.store.exists(splitKey(id, "train.parquet"))).toBe(false);
      expect(await codeOf(reg.splits.get(id, { includeDeleted: true }))).toBe("SPLIT_NOT_FOUND");
    });

    test("splits: a purge that fails half-way leaves the split hidden, and purging again finishes", async () => {
      const id = newId("spl");
      await reg.splits.create(base(id));
      await reg.store.put(splitKey(id, "train.parquet"), "fake parquet");
      // The store deletes one file, then fails (a crash or an outage in the middle of the purge).
      const failing = new Proxy(reg.store, {
        get(target, prop, receiver) {
          if (prop === "deletePrefix") {
            return async (prefix: string) => {
              await target.delete(splitKey(id, "train.parquet"));
              throw arborError("STORE_UNAVAILABLE", `injected fault deleting ${prefix}`);
            };
          }
          const value = Reflect.get(target, prop, receiver);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const broken = new SplitRepository(reg.db, failing, testLogger());
      expect(await codeOf(broken.purge(id))).toBe("STORE_UNAVAILABLE");
      expect(await codeOf(reg.splits.get(id))).toBe("SPLIT_NOT_FOUND");
      expect((await reg.splits.list()).some((s) => s.id === id)).toBe(false);
      await reg.splits.purge(id);
      expect(await codeOf(reg.splits.get(id, { includeDeleted: true }))).toBe("SPLIT_NOT_FOUND");
    });

    test("register: versions 1, 2…; files, manifest and lineage in the store", async () => {
      const splitId = newId("spl");
      await reg.splits.create({ ...base(splitId), fingerprint: "f".repeat(64) });
      const r1 = await reg.models.register({
        name: "flights",
        bundleDir: path.join(bundles, "b1"),
        lineage: { splitId },
        description: "first",
      });
      const r2 = await reg.models.register({ name: "flights", bundleDir: path.join(bundles, "b2") });
      expect([r1.version, r2.version]).toEqual([1, 2]);
      if (gcs) expect(gcs.objectNames("arbor-test")).toContain("registry/models/flights/v1/manifest.json");
      const { data } = await reg.store.read(versionFileKey("flights", 1, "manifest.json"));
      expect(sha256Hex(data)).toBe(r1.manifestSha256);
      const manifest = manifestSchema.parse(JSON.parse(new TextDecoder().decode(data)));
      expect(manifest.files.map((f) => f.path)).toEqual(["model.onnx", "signature.json", "metrics.json"]);
      expect(manifest.lineage).toEqual({ splitId, dataFingerprint: "f".repeat(64) });
      const model = await reg.store.read(versionFileKey("flights", 1, "model.onnx"));
      expect(sha256Hex(model.data)).toBe(manifest.files[0].sha256);
      expect(manifest.files[0].size).toBe(model.data.length);
      const v1 = await reg.models.getVersion("flights", 1);
      expect(v1.splitId).toBe(splitId);
      expect(v1.task).toBe("binary");
      expect(v1.metrics).toEqual({ valid: { auc: 0.701 } });
      expect(v1.description).toBe("first");
    });

    test("register: bad bundles, names and lineage are refused with stable codes", async () => {
      const bad = path.join(tdb.home, "bad");
      await writeFakeBundle(path.join(bad, "nomodel"));
      await Bun.write(path.join(bad, "nomodel", "model.onnx"), "");
      await Bun.$`rm ${path.join(bad, "nomodel", "model.onnx")}`.quiet();
      await writeFakeBundle(path.join(bad, "badsig"));
      await Bun.write(path.join(bad, "badsig", "signature.json"), JSON.stringify({ format: "nope" }));
      await writeFakeBundle(path.join(bad, "badjson"));
      await Bun.write(path.join(bad, "badjson", "metrics.json"), "{not json");
      const reject = (dir: string) => codeOf(reg.models.register({ name: "bad", bundleDir: dir }));
      expect(await reject(path.join(bad, "nomodel"))).toBe("BUNDLE_INVALID");
      expect(await reject(path.join(bad, "badsig"))).toBe("BUNDLE_INVALID");
      expect(await reject(path.join(bad, "badjson"))).toBe("BUNDLE_INVALID");
      expect(await reject(path.join(bad, "missing-folder"))).toBe("BUNDLE_INVALID");
      const ok = path.join(bundles, "b1");
      expect(await codeOf(reg.models.register({ name: "../etc", bundleDir: ok }))).toBe("BAD_NAME");
      expect(
        await codeOf(reg.models.register({ name: "m", bundleDir: ok, lineage: { splitId: newId("spl") } })),
      ).toBe("SPLIT_NOT_FOUND");
      expect(
        await codeOf(reg.models.register({ name: "m", bundleDir: ok, lineage: { studyId: "stu_x" } })),
      ).toBe("STUDY_NOT_FOUND");
      // Nothing was half-created by the refusals.
      expect((await reg.models.list()).some((m) => m.name === "bad" || m.name === "m")).toBe(false);
    });

    test("register: lineage from the bundle's own manifest; a file that differs from it is refused", async () => {
      const dir = path.join(tdb.home, "with-manifest");
      const lineage = { splitId: newId("spl"), dataFingerprint: "d".repeat(64), params: { eta: 0.1 } };
      await writeFakeBundle(dir, 7, { manifestLineage: lineage });
      const r = await reg.models.register({ name: "inherit", bundleDir: dir, lineage: { trialNumber: 4 } });
      const v = await reg.models.getVersion("inherit", r.version);
      expect(v.lineage).toEqual({ ...lineage, trialNumber: 4 });
      // The split is not in this registry: kept in the lineage, not linked.
      expect(v.splitId).toBeNull();
      expect(v.dataFingerprint).toBe("d".repeat(64));
      await Bun.write(path.join(dir, "metrics.json"), JSON.stringify({ tampered: true }));
      expect(await codeOf(reg.models.register({ name: "inherit", bundleDir: dir }))).toBe("BUNDLE_INVALID");
      expect((await reg.models.show("inherit")).latestVersion).toBe(1);
      expect(await reg.store.exists(versionFileKey("inherit", 2, "model.onnx"))).toBe(false);
    });

    test("promote, rollback and the audit trail; pointer and database agree", async () => {
      const name = "labels";
      for (let i = 1; i <= 3; i++)
        await reg.models.register({ name, bundleDir: path.join(bundles, `b${i}`) });
      const p1 = await reg.models.promote(name, 1, "production", { ...actor, reason: "first" });
      expect(p1.previousVersion).toBeNull();
      await reg.models.promote(name, 2, "production", actor);
      await reg.models.promote(name, 3, "production", actor);
      await reg.models.promote(name, 1, "staging", actor);
      expect((await readPointer(reg.store, name, "production")).version).toBe(3);
      const back = await reg.models.rollback(name, "production", { ...actor, reason: "bad AUC" });
      expect([back.previousVersion, back.version]).toEqual([3, 2]);
      expect((await reg.models.rollback(name, "production", actor)).version).toBe(1);
      expect(await codeOf(reg.models.rollback(name, "production", actor))).toBe("NO_PREVIOUS_VERSION");
      const pointer = await readPointer(reg.store, name, "production");
      const label = await reg.models.getLabel(name, "production");
      expect(pointer.version).toBe(1);
      expect(label.version).toBe(1);
      expect(pointer.sha256).toBe(label.manifestSha256);
      const { data } = await reg.store.read(versionFileKey(name, 1, "manifest.json"));
      expect(pointer.sha256).toBe(sha256Hex(data));
      const shown = await reg.models.show(name);
      expect(shown.labels.every((l) => l.inSync && l.pointerVersion === l.version)).toBe(true);
      expect(shown.labels.map((l) => [l.label, l.version])).toEqual([
        ["production", 1],
        ["staging", 1],
      ]);
      expect(shown.events.map((e) => [e.action, e.fromVersion, e.toVersion])).toEqual([
        ["rollback", 2, 1],
        ["rollback", 3, 2],
        ["promote", null, 1],
        ["promote", 2, 3],
        ["promote", 1, 2],
        ["promote", null, 1],
      ]);
      expect(shown.events[3].actor).toBe("tester");
      expect(shown.events[1].reason).toBe("bad AUC");
      expect(shown.events.at(-1)?.reason).toBe("first");
      expect(shown.versionList.find((v) => v.version === 1)?.labels).toEqual(["production", "staging"]);
    });

    test("promote/rollback/getLabel error codes", async () => {
      await reg.models.register({ name: "errs", bundleDir: path.join(bundles, "b1") });
      expect(await codeOf(reg.models.promote("errs", 9, "production", actor))).toBe("VERSION_NOT_FOUND");
      expect(await codeOf(reg.models.promote("ghost", 1, "production", actor))).toBe("MODEL_NOT_FOUND");
      expect(await codeOf(reg.models.promote("errs", 1, "prod/../x", actor))).toBe("BAD_NAME");
      expect(await codeOf(reg.models.promote("errs", 0, "production", actor))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(reg.models.rollback("errs", "production", actor))).toBe("LABEL_NOT_FOUND");
      expect(await codeOf(reg.models.getLabel("errs", "production"))).toBe("LABEL_NOT_FOUND");
      await reg.models.promote("errs", 1, "production", actor);
      expect(await codeOf(reg.models.rollback("errs", "production", actor))).toBe("NO_PREVIOUS_VERSION");
      expect(await codeOf(reg.models.show("ghost"))).toBe("MODEL_NOT_FOUND");
    });

    test("archive: refused while labelled, archived versions cannot be promoted or rolled back to", async () => {
      const name = "arch";
      for (let i = 1; i <= 3; i++)
        await reg.models.register({ name, bundleDir: path.join(bundles, `b${i}`) });
      await reg.models.promote(name, 1, "production", actor);
      await reg.models.promote(name, 2, "production", actor);
      await reg.models.promote(name, 3, "production", actor);
      const inUse = await reg.models.archive(name, 3).catch((e: ArborError) => e);
      expect((inUse as ArborError).code).toBe("VERSION_IN_USE");
      expect((inUse as ArborError).details).toEqual({ labels: ["production"] });
      const archived = await reg.models.archive(name, 2);
      expect(archived.archivedAt).toBeInstanceOf(Date);
      expect((await reg.models.archive(name, 2)).archivedAt).toEqual(archived.archivedAt);
      expect(await codeOf(reg.models.promote(name, 2, "staging", actor))).toBe("VERSION_ARCHIVED");
      expect(await codeOf(reg.models.archive(name, 7))).toBe("VERSION_NOT_FOUND");
      // Rollback skips the archived v2 and lands on v1.
      expect((await reg.models.rollback(name, "production", actor)).version).toBe(1);
      const summary = (await reg.models.list()).find((m) => m.name === name);
      expect(summary).toMatchObject({ latestVersion: 3, versions: 2, labels: { production: 1 } });
      // The bundle files of an archived version stay.
      expect(await reg.store.exists(versionFileKey(name, 2, "manifest.json"))).toBe(true);
    });

    test("register refuses to overwrite a labelled bundle the database does not know", async () => {
      // As after a database reset: the store already has a pointer to "orphan" v1.
      const sha = "e".repeat(64);
      const pointer = { model: "orphan", label: "production", version: 1, sha256: sha, updated_at: "x" };
      await reg.store.put(labelKey("orphan", "production"), JSON.stringify(pointer));
      await reg.store.put(versionFileKey("orphan", 1, "manifest.json"), "{}");
      const dir = path.join(bundles, "b1");
      expect(await codeOf(reg.models.register({ name: "orphan", bundleDir: dir }))).toBe("CONFLICT");
      expect(await reg.store.exists(versionFileKey("orphan", 1, "manifest.json"))).toBe(true);
      expect(await codeOf(reg.models.show("orphan"))).toBe("MODEL_NOT_FOUND");
    });

    test("jobs: priority order, leases, retries, cancel, reaping dead workers", async () => {
      const low = await reg.jobs.enqueue({ kind: "study", payload: { n: 1 } });
      const high = await reg.jobs.enqueue({ kind: "study", payload: { n: 2 }, priority: 5, maxAttempts: 2 });
      expect(low.state).toBe("queued");
      expect(await codeOf(reg.jobs.enqueue({ kind: "Bad Kind" }))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(reg.jobs.get("job_missing"))).toBe("JOB_NOT_FOUND");
      expect(await reg.jobs.claim("w1", { kinds: ["other"] })).toBeNull();

      const first = await reg.jobs.claim("w1");
      expect(first?.id).toBe(high.id);
      expect(first).toMatchObject({ state: "running", workerId: "w1", attempts: 1 });
      expect(await reg.jobs.heartbeat(high.id, "w1")).toEqual({ cancelRequested: false });
      expect(await codeOf(reg.jobs.heartbeat(high.id, "w2"))).toBe("CONFLICT");
      // A failure with attempts left queues it again; the next claim takes it (priority 5).
      expect((await reg.jobs.fail(high.id, "w1", "boom")).state).toBe("queued");
      const again = await reg.jobs.claim("w2");
      expect(again).toMatchObject({ id: high.id, attempts: 2, workerId: "w2" });
      // Its worker dies: the lease expires and, attempts used up, the job fails for good.
      expect(await reg.jobs.reapExpired(0)).toEqual({ requeued: [], failed: [high.id] });
      expect((await reg.jobs.get(high.id)).state).toBe("failed");
      expect(await codeOf(reg.jobs.complete(high.id, "w2", {}))).toBe("CONFLICT");

      const second = await reg.jobs.claim("w3");
      expect(second?.id).toBe(low.id);
      expect(await reg.jobs.reapExpired(0)).toEqual({ requeued: [low.id], failed: [] });
      const third = await reg.jobs.claim("w4");
      expect(third).toMatchObject({ id: low.id, attempts: 2 });
      expect((await reg.jobs.cancel(low.id)).cancelRequestedAt).toBeInstanceOf(Date);
      expect(await reg.jobs.heartbeat(low.id, "w4")).toEqual({ cancelRequested: true });
      const cancelled = await reg.jobs.complete(low.id, "w4", { stopped: true }, "cancelled");
      expect(cancelled).toMatchObject({ state: "cancelled", result: { stopped: true } });

      const queued = await reg.jobs.enqueue({ kind: "study" });
      expect((await reg.jobs.cancel(queued.id)).state).toBe("cancelled");
      const done = await reg.jobs.enqueue({ kind: "study" });
      await reg.jobs.claim("w5");
      expect((await reg.jobs.complete(done.id, "w5", { ok: 1 })).state).toBe("succeeded");
      expect((await reg.jobs.list({ state: "cancelled" })).map((j) => j.id).sort()).toEqual(
        [low.id, queued.id].sort(),
      );
      expect(await reg.jobs.claim("w6")).toBeNull();
    });

    test("jobs: a release after a cancel request cancels the job; without one it queues it again", async () => {
      const job = await reg.jobs.enqueue({ kind: "release-race" });
      expect((await reg.jobs.claim("r1", { kinds: ["release-race"] }))?.id).toBe(job.id);
      expect(await reg.jobs.release(job.id, "r1")).toBe(true);
      expect(await reg.jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 0, workerId: null });
      expect((await reg.jobs.claim("r2", { kinds: ["release-race"] }))?.id).toBe(job.id);
      await reg.jobs.cancel(job.id);
      expect(await reg.jobs.release(job.id, "r2")).toBe(true);
      expect((await reg.jobs.get(job.id)).state).toBe("cancelled");
      expect(await reg.jobs.release(job.id, "r2")).toBe(false);
      expect(await reg.jobs.claim("r3", { kinds: ["release-race"] })).toBeNull();
    });

    test("jobs: a failure after a cancel request ends the job instead of queueing it again", async () => {
      const job = await reg.jobs.enqueue({ kind: "cancel-race", maxAttempts: 5 });
      expect((await reg.jobs.claim("c1", { kinds: ["cancel-race"] }))?.id).toBe(job.id);
      expect((await reg.jobs.cancel(job.id)).state).toBe("running");
      expect((await reg.jobs.fail(job.id, "c1", "stopped")).state).toBe("failed");
      expect(await reg.jobs.claim("c2", { kinds: ["cancel-race"] })).toBeNull();
      expect(await codeOf(reg.jobs.fail("job_missing", "c1", "boom"))).toBe("JOB_NOT_FOUND");
    });

    test("a failing pointer write rolls the database back; a failure after it restores the pointer", async () => {
      const name = "faulty";
      await reg.models.register({ name, bundleDir: path.join(bundles, "b1") });
      await reg.models.register({ name, bundleDir: path.join(bundles, "b2") });
      await reg.models.promote(name, 1, "production", actor);
      const events = async () =>
        Number((await reg.db.select({ n: count() }).from(labelEvents)).at(0)?.n ?? 0);
      const before = await events();

      // Store refuses the write: nothing changes in the database.
      const refusing = faultyStore(reg.store, "before");
      const m1 = new ModelRegistry(reg.db, refusing, testLogger());
      expect(await codeOf(m1.promote(name, 2, "production", actor))).toBe("STORE_UNAVAILABLE");
      expect((await reg.models.getLabel(name, "production")).version).toBe(1);
      expect(await events()).toBe(before);
      expect((await readPointer(reg.store, name, "production")).version).toBe(1);

      // The write lands but reports failure (a lost response): undone, database unchanged.
      const lying = faultyStore(reg.store, "after");
      const m2 = new ModelRegistry(reg.db, lying, testLogger());
      expect(await codeOf(m2.promote(name, 2, "production", actor))).toBe("STORE_UNAVAILABLE");
      expect((await reg.models.getLabel(name, "production")).version).toBe(1);
      expect((await readPointer(reg.store, name, "production")).version).toBe(1);
      expect(await events()).toBe(before);

      // The write succeeds and the transaction fails after it: the old pointer is put back.
      const m3 = new ModelRegistry(reg.db, reg.store, testLogger(), {
        afterPointerWrite: () => {
          throw arborError("DB_UNAVAILABLE", "injected commit failure");
        },
      });
      expect(await codeOf(m3.promote(name, 2, "production", actor))).toBe("DB_UNAVAILABLE");
      expect((await reg.models.getLabel(name, "production")).version).toBe(1);
      expect((await readPointer(reg.store, name, "production")).version).toBe(1);
      expect(await events()).toBe(before);
      const rows = await reg.db.select().from(modelLabels).where(eq(modelLabels.label, "production"));
      expect(rows.map((r) => r.version)).toContain(1);

      // A first promotion that fails leaves no pointer at all.
      expect(await codeOf(m3.promote(name, 2, "canary", actor))).toBe("DB_UNAVAILABLE");
      expect(await reg.store.exists(labelKey(name, "canary"))).toBe(false);
      // A pointer the database does not know (a first promotion killed before its commit) is shown.
      const stray = { model: name, label: "shadow", version: 2, sha256: "a".repeat(64), updated_at: "x" };
      await reg.store.put(labelKey(name, "shadow"), JSON.stringify(stray));
      expect((await reg.models.show(name)).strayPointers).toEqual([{ label: "shadow", version: 2 }]);
      await reg.models.promote(name, 2, "shadow", actor);
      expect((await reg.models.show(name)).strayPointers).toEqual([]);
    });
  });
}

describe("arbor models commands (PGlite)", () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase("pglite");
    await writeFakeBundle(path.join(tdb.home, "b1"), 1);
    await writeFakeBundle(path.join(tdb.home, "b2"), 2);
    // The first open of a PGlite directory runs initdb (seconds); do it here, not in a test.
    await (await openRegistry(tdb.config(), testLogger())).close();
  }, 60_000);
  afterAll(async () => {
    await tdb?.drop();
  });

  function cli(...argv: string[]) {
    return runArbor(argv, { env: { ...tdb.env, ARBOR_USER: "ci-bot" }, cwd: tdb.home });
  }

  test("register, promote, rollback, archive, list, show; text and --json", async () => {
    const r1 = await cli("models", "register", "--bundle", path.join(tdb.home, "b1"), "--name", "cli");
    expect(r1.stderr).toContain("registered cli v1");
    expect(r1.stdout.trim()).toBe("1");
    const r2 = await cli(
      ...["models", "register", "--bundle", path.join(tdb.home, "b2"), "--name", "cli", "--json"],
    );
    expect(JSON.parse(r2.stdout)).toMatchObject({ name: "cli", version: 2 });
    expect((await cli("models", "promote", "cli", "1", "--label", "production")).stdout).toContain("-> v1");
    const p2 = await cli(
      "models",
      "promote",
      "cli",
      "2",
      "--label",
      "production",
      "--reason",
      "better",
      "--json",
    );
    expect(JSON.parse(p2.stdout)).toMatchObject({ version: 2, previousVersion: 1, label: "production" });
    const rb = await cli("models", "rollback", "cli", "--label", "production", "--json");
    expect(JSON.parse(rb.stdout)).toMatchObject({ version: 1, previousVersion: 2 });
    const refused = await cli("models", "archive", "cli", "1");
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("VERSION_IN_USE");
    expect((await cli("models", "archive", "cli", "2")).stdout).toContain("archived cli v2");
    const list = JSON.parse((await cli("models", "list", "--json")).stdout);
    expect(list.models).toEqual([
      expect.objectContaining({ name: "cli", latestVersion: 2, labels: { production: 1 } }),
    ]);
    expect((await cli("models", "list")).stdout).toContain("production=v1");
    const show = JSON.parse((await cli("models", "show", "cli", "--json")).stdout);
    expect(show.events[0]).toMatchObject({ action: "rollback", actor: "ci-bot" });
    expect(show.versionList).toHaveLength(2);
    const text = (await cli("models", "show", "cli")).stdout;
    expect(text).toContain("archived");
    expect(text).toContain("better");
  }, 60_000);

  test("stale PGlite locks are taken over: a dead pid, or a reused pid with another start time", async () => {
    const lock = path.join(tdb.home, "registry.lock");
    for (const owner of [
      { pid: 2 ** 22 + 17, start: null },
      { pid: process.pid, start: "1" },
      { pid: 1, start: "-5" },
    ]) {
      await Bun.write(lock, JSON.stringify(owner));
      const r = await cli("models", "list", "--json");
      expect(r.code).toBe(0);
      expect(await Bun.file(lock).exists()).toBe(false);
    }
  }, 30_000);

  test("bad arguments exit non-zero with one line and a stable code", async () => {
    const badVersion = await cli("models", "promote", "cli", "x", "--label", "production");
    expect(badVersion.code).toBe(2);
    expect(badVersion.stderr).toContain("VERSION");
    const missing = await cli("models", "show", "nope", "--json");
    expect(JSON.parse(missing.stdout).error.code).toBe("MODEL_NOT_FOUND");
    const noBundle = await cli("models", "register", "--bundle", "nowhere", "--name", "cli");
    expect(noBundle.stderr.trim().split("\n")).toHaveLength(1);
    expect(noBundle.stderr).toContain("BUNDLE_INVALID");
  }, 30_000);
});

function base(id: string) {
  return {
    id,
    name: null,
    sourceUri: "file:///data/x.csv",
    fingerprint: "0".repeat(64),
    strategy: "random",
    target: "y",
    options: {},
    report: {},
    rows: 3,
  };
}

async function migrationCount(reg: Registry): Promise<number> {
  const rows = await reg.db.execute<{ n: number }>(
    // drizzle's migrator keeps its journal here on both drivers.
    sql.raw("select count(*)::int as n from drizzle.__drizzle_migrations"),
  );
  const list = Array.isArray(rows) ? rows : (rows as unknown as { rows: { n: number }[] }).rows;
  return Number(list[0].n);
}

/** A real store with one injected fault on label pointer writes: refuse them, or fail right after. */
function faultyStore(store: ArtifactStore, when: "before" | "after"): ArtifactStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "compareAndSwap") {
        return async (...args: Parameters<ArtifactStore["compareAndSwap"]>) => {
          if (when === "after") await target.compareAndSwap(...args);
          throw arborError("STORE_UNAVAILABLE", "injected fault");
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
