/**
 * Registry under concurrency and crashes, with real processes:
 * - 8 registrations of one model at once against Postgres get versions 1..8;
 * - 8 concurrent promotions leave the label pointer and the database in agreement;
 * - 4 worker processes claiming from one job queue never take a job twice;
 * - a registration SIGKILLed half-way (after copying the files; after writing the manifest) leaves
 *   no visible version and no served bundle, and the next registration works (PGlite and Postgres);
 * - a promotion SIGKILLed between the pointer write and the commit is reported by `show` and
 *   repaired by the next promotion.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import path from "node:path";
import { asc, eq } from "drizzle-orm";
import { sha256Hex } from "../registry/bundle-import.ts";
import { labelEvents } from "../registry/db/schema.ts";
import { openRegistry, type Registry } from "../registry/index.ts";
import { labelPointerSchema, manifestSchema } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import { labelKey, versionFileKey, versionPrefix } from "../shared/paths.ts";
import {
  createTestDatabase,
  databaseKinds,
  POSTGRES_URL,
  type TestDatabase,
  type TestDatabaseKind,
  testLogger,
} from "./helpers/db.ts";
import { writeFakeBundle } from "./helpers/fake-bundle.ts";

// Shared 2-core CI machines: PGlite opens and child processes can take seconds (bunfig has no timeout key).
setDefaultTimeout(60_000);

const CHILD = path.join(import.meta.dir, "helpers", "registry-child.ts");

function spawnChild(tdb: TestDatabase, args: string[]) {
  return Bun.spawn([process.execPath, CHILD, ...args], {
    env: { ...process.env, ...tdb.env, ARBOR_LOG_LEVEL: "warn" },
    stdout: "pipe",
    stderr: "pipe",
  });
}

/** Run a child to completion and parse its JSON line. */
async function runChild(tdb: TestDatabase, args: string[]): Promise<Record<string, unknown>> {
  const proc = spawnChild(tdb, args);
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`child ${args.join(" ")} exited ${code}: ${err}`);
  return JSON.parse(out.trim().split("\n").at(-1) as string);
}

/** Start a child that pauses inside a transaction, wait until it is there, SIGKILL it. */
async function killWhenPaused(
  tdb: TestDatabase,
  args: string[],
  whilePaused?: (pid: number) => Promise<void>,
): Promise<number> {
  const proc = spawnChild(tdb, args);
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value);
  }
  if (!buf.includes("paused")) {
    proc.kill("SIGKILL");
    throw new Error(`child did not pause: ${buf} ${await new Response(proc.stderr).text()}`);
  }
  try {
    await whilePaused?.(proc.pid);
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
  expect(proc.signalCode).toBe("SIGKILL");
  return JSON.parse(buf.trim()).paused as number;
}

async function versionsOf(reg: Registry, name: string): Promise<number[]> {
  try {
    return (await reg.models.show(name)).versionList.map((v) => v.version);
  } catch (e) {
    if (isArborError(e, "MODEL_NOT_FOUND")) return [];
    throw e;
  }
}

/** Every file of the version matches its manifest. */
async function expectIntactBundle(reg: Registry, name: string, version: number, manifestSha256: string) {
  const { data } = await reg.store.read(versionFileKey(name, version, "manifest.json"));
  expect(sha256Hex(data)).toBe(manifestSha256);
  const manifest = manifestSchema.parse(JSON.parse(new TextDecoder().decode(data)));
  expect(manifest.version).toBe(version);
  for (const f of manifest.files) {
    const file = await reg.store.read(versionFileKey(name, version, f.path));
    expect(sha256Hex(file.data)).toBe(f.sha256);
  }
  const keys = (await reg.store.list(versionPrefix(name, version))).map((o) => o.key.split("/").at(-1));
  expect(keys.sort()).toEqual([...manifest.files.map((f) => f.path), "manifest.json"].sort());
}

if (!POSTGRES_URL) {
  console.warn(
    "registry-concurrency: DATABASE_URL is unset, so the Postgres concurrency tests are skipped " +
      "(CI sets it; locally e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/arbor_me)",
  );
}

describe.skipIf(!POSTGRES_URL)("registry concurrency on postgres (separate processes)", () => {
  let tdb: TestDatabase;
  let reg: Registry;
  let bundles: string;

  beforeAll(async () => {
    tdb = await createTestDatabase("postgres");
    bundles = path.join(tdb.home, "bundles");
    for (let i = 1; i <= 8; i++) await writeFakeBundle(path.join(bundles, `b${i}`), i);
  }, 60_000);
  afterAll(async () => {
    await reg?.close();
    await tdb?.drop();
  });

  test("8 registrations of one model at once get versions 1..8, on a fresh database", async () => {
    // The children also race to apply the migrations (advisory lock) on this empty database.
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        runChild(tdb, ["register", "race", path.join(bundles, `b${i + 1}`)]),
      ),
    );
    expect(results.map((r) => r["version"] as number).sort((a, b) => a - b)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8,
    ]);
    reg = await openRegistry(tdb.config(), testLogger());
    expect(await versionsOf(reg, "race")).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const r of results) {
      await expectIntactBundle(reg, "race", r["version"] as number, r["manifestSha256"] as string);
    }
  }, 60_000);

  test("8 concurrent promotions leave the pointer and the database in agreement", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => runChild(tdb, ["promote", "race", String(i + 1), "production"])),
    );
    expect(results).toHaveLength(8);
    const label = await reg.models.getLabel("race", "production");
    const { data } = await reg.store.read(labelKey("race", "production"));
    const pointer = labelPointerSchema.parse(JSON.parse(new TextDecoder().decode(data)));
    expect(pointer.version).toBe(label.version);
    expect(pointer.sha256).toBe(label.manifestSha256);
    expect(pointer.sha256).toBe((await reg.models.getVersion("race", label.version)).manifestSha256);
    // The audit trail is one unbroken chain ending where the label points.
    const model = await reg.models.show("race");
    const events = await reg.db
      .select()
      .from(labelEvents)
      .where(eq(labelEvents.label, "production"))
      .orderBy(asc(labelEvents.id));
    expect(events).toHaveLength(8);
    expect(events[0].fromVersion).toBeNull();
    for (let i = 1; i < events.length; i++) expect(events[i].fromVersion).toBe(events[i - 1].toVersion);
    expect(events.at(-1)?.toVersion).toBe(label.version);
    expect(new Set(events.map((e) => e.toVersion)).size).toBe(8);
    expect(model.labels).toHaveLength(1);
  }, 60_000);

  test("4 worker processes draining 24 jobs take each job exactly once", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) ids.push((await reg.jobs.enqueue({ kind: "noop", payload: { i } })).id);
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) => runChild(tdb, ["drain-jobs", `worker-${i}`])),
    );
    const done = results.flatMap((r) => r["done"] as string[]);
    expect(done.sort()).toEqual([...ids].sort());
    expect((await reg.jobs.list({ state: "succeeded", kind: "noop" })).length).toBe(24);
  }, 60_000);
});

for (const kind of databaseKinds() as TestDatabaseKind[]) {
  describe(`registration crash safety on ${kind} (SIGKILL)`, () => {
    let tdb: TestDatabase;
    let bundles: string;

    beforeAll(async () => {
      tdb = await createTestDatabase(kind);
      bundles = path.join(tdb.home, "bundles");
      for (let i = 1; i <= 4; i++)
        await writeFakeBundle(path.join(bundles, `b${i}`), i, { modelBytes: 200_000 });
    }, 60_000);
    afterAll(async () => {
      await tdb?.drop();
    });

    test("killed after copying, and after the manifest: nothing visible, the next registration works", async () => {
      // A first version, registered normally.
      const v1 = await runChild(tdb, ["register", "crashy", path.join(bundles, "b1")]);
      expect(v1["version"]).toBe(1);

      // Killed after the files are copied, before the manifest. While it hangs there, another
      // process cannot open an embedded database that is in use.
      const lockedOut = async (pid: number) => {
        if (kind !== "pglite") return;
        const err = await openRegistry(tdb.config(), testLogger()).catch((e: unknown) => e);
        expect(isArborError(err, "DB_LOCKED")).toBe(true);
        expect((err as { details?: unknown }).details).toMatchObject({ pid });
      };
      expect(
        await killWhenPaused(
          tdb,
          ["register-and-hang", "crashy", path.join(bundles, "b2"), "afterCopy"],
          lockedOut,
        ),
      ).toBe(2);
      let reg = await openRegistry(tdb.config(), testLogger());
      expect(await versionsOf(reg, "crashy")).toEqual([1]);
      expect(await reg.store.exists(versionFileKey("crashy", 2, "manifest.json"))).toBe(false);
      await reg.close();

      // Killed after the manifest, before the version row: still not a version.
      expect(
        await killWhenPaused(tdb, ["register-and-hang", "crashy", path.join(bundles, "b3"), "afterManifest"]),
      ).toBe(2);
      reg = await openRegistry(tdb.config(), testLogger());
      expect(await versionsOf(reg, "crashy")).toEqual([1]);
      expect((await reg.models.list()).find((m) => m.name === "crashy")?.latestVersion).toBe(1);
      await reg.close();

      // The next registration takes number 2 and replaces every stale file.
      const v2 = await runChild(tdb, ["register", "crashy", path.join(bundles, "b4")]);
      expect(v2["version"]).toBe(2);
      reg = await openRegistry(tdb.config(), testLogger());
      try {
        expect(await versionsOf(reg, "crashy")).toEqual([1, 2]);
        await expectIntactBundle(reg, "crashy", 2, v2["manifestSha256"] as string);
        const model = await reg.store.read(versionFileKey("crashy", 2, "model.onnx"));
        const expected = await Bun.file(path.join(bundles, "b4", "model.onnx")).bytes();
        expect(sha256Hex(model.data)).toBe(sha256Hex(expected));
        // A brand-new model whose first registration dies leaves no model row at all.
        await reg.close();
        expect(
          await killWhenPaused(tdb, ["register-and-hang", "newborn", path.join(bundles, "b1"), "afterCopy"]),
        ).toBe(1);
        reg = await openRegistry(tdb.config(), testLogger());
        expect(await versionsOf(reg, "newborn")).toEqual([]);
      } finally {
        await reg.close();
      }
    }, 90_000);

    test("killed between the pointer write and the commit: show flags it, promoting again repairs it", async () => {
      await runChild(tdb, ["register", "ptr", path.join(bundles, "b1")]);
      await runChild(tdb, ["register", "ptr", path.join(bundles, "b2")]);
      await runChild(tdb, ["promote", "ptr", "1", "production"]);
      expect(await killWhenPaused(tdb, ["promote-and-hang", "ptr", "2", "production"])).toBe(2);
      const reg = await openRegistry(tdb.config(), testLogger());
      try {
        // The database kept v1 (the transaction died); the pointer got ahead.
        expect((await reg.models.getLabel("ptr", "production")).version).toBe(1);
        const [before] = (await reg.models.show("ptr")).labels;
        expect(before).toMatchObject({ label: "production", version: 1, pointerVersion: 2, inSync: false });
        await reg.models.promote("ptr", 2, "production", { actor: "repair" });
        const [after] = (await reg.models.show("ptr")).labels;
        expect(after).toMatchObject({ version: 2, pointerVersion: 2, inSync: true });
      } finally {
        await reg.close();
      }
    }, 90_000);
  });
}
