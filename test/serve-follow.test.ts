/**
 * How the label follower scales with the store: a real node server on a file:// store of many
 * versions holds one inotify watch per folder where pointers live (not one per file), and sees at
 * once — polling set to 10 minutes, so only watch events can explain it — a flip of an existing
 * model, a model published after it started, a `labels/` folder made after its model folder, a
 * pointer deleted (folder pruned) and written again, and a store that had no `models/` at start.
 * In-process: discovery reads no version folder and never lists the store by prefix; hitting the
 * watch limit falls back to polling with a log line.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { EventEmitter } from "node:events";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import fsp from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { loadServeConfig } from "../serve/config.ts";
import { createServeMetrics } from "../serve/metrics.ts";
import { ModelCache } from "../serve/model-cache/cache.ts";
import { LabelFollower, type WatchFolder } from "../serve/model-cache/follower.ts";
import { createLogger } from "../shared/logger.ts";
import { labelKey } from "../shared/paths.ts";
import { pointLabel, publishFixture, type ServeProcess, startServe } from "./serve-fixtures.ts";

const dirs: string[] = [];
const servers: ServeProcess[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Polling this slow leaves file watch events as the only way to see a change within the test. */
const POLL_NEVER = ["--poll-ms", "600000"];
const row = [0.5, -1, 1.5, 0.25];

function tmpStore(): { dir: string; uri: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-follow-"));
  dirs.push(dir);
  return { dir, uri: pathToFileURL(dir).href };
}

async function publish(store: ArtifactStore, name: string, version: number): Promise<string> {
  const f = await publishFixture(store, {
    name,
    version,
    task: "regression",
    numFeatures: 4,
    numTrees: 3,
    depth: 2,
    seed: version * 7 + name.length,
  });
  return f.manifestSha256;
}

/** inotify watches held by a process: the `inotify wd:` lines of its inotify descriptors. */
function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      n += (readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8").match(/^inotify wd:/gm) ?? []).length;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

async function servedVersion(url: string, name: string): Promise<number | string> {
  const res = await fetch(`${url}/v1/models/${name}:predict`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ instances: [row] }),
  });
  const body = (await res.json()) as { version?: number; error?: { code: string } };
  return res.status === 200 ? (body.version as number) : (body.error?.code ?? String(res.status));
}

/** Milliseconds until `name` answers with `want` (a version, or an error code); fails after 5 s. */
async function untilServed(url: string, name: string, want: number | string): Promise<number> {
  const t0 = performance.now();
  let last: number | string = "";
  while (performance.now() - t0 < 5000) {
    last = await servedVersion(url, name);
    if (last === want) return performance.now() - t0;
    await Bun.sleep(10);
  }
  throw new Error(`${name}: still ${last} after 5 s, wanted ${want}`);
}

describe("label follower on a file:// store of many versions (real server, polling every 10 min)", () => {
  test("one watch per pointer folder, not per file; flips, new models, late labels/ folders and deleted pointers seen at once", async () => {
    const { dir, uri } = tmpStore();
    const store = await openArtifactStore(uri);
    const big = await publish(store, "big", 1);
    await pointLabel(store, "big", "production", 1, big);
    // 400 versions of ~5 files: the old recursive watch held one inotify watch per entry (~2,400).
    for (let v = 2; v <= 400; v++)
      cpSync(path.join(dir, "models/big/v1"), path.join(dir, `models/big/v${v}`), { recursive: true });
    const sha = { 1: await publish(store, "m", 1), 2: await publish(store, "m", 2) };
    await pointLabel(store, "m", "production", 1, sha[1]);
    const server = await startServe(["--store", uri, ...POLL_NEVER]);
    servers.push(server);
    const pid = server.proc.pid;
    // root, models/, and models/{big,m} with their labels/ folders
    expect(inotifyWatches(pid)).toBe(6);
    expect(await servedVersion(server.url, "m")).toBe(1);

    // An existing model's label flipped, twice.
    await pointLabel(store, "m", "production", 2, sha[2]);
    expect(await untilServed(server.url, "m", 2)).toBeLessThan(2000);
    await pointLabel(store, "m", "production", 1, sha[1]);
    expect(await untilServed(server.url, "m", 1)).toBeLessThan(2000);

    // A model published and labelled after start: its folder, labels/ folder and pointer all new.
    const n1 = await publish(store, "n", 1);
    await pointLabel(store, "n", "production", 1, n1);
    expect(await untilServed(server.url, "n", 1)).toBeLessThan(2000);

    // A model whose labels/ folder appears well after its model folder was watched.
    const p1 = await publish(store, "p", 1);
    await Bun.sleep(300);
    expect(await servedVersion(server.url, "p")).toBe("MODEL_NOT_FOUND");
    await pointLabel(store, "p", "production", 1, p1);
    expect(await untilServed(server.url, "p", 1)).toBeLessThan(2000);

    // The pointer deleted: its empty labels/ folder is pruned with it. Then written again.
    await store.delete(labelKey("p", "production"));
    expect(await untilServed(server.url, "p", "LABEL_NOT_FOUND")).toBeLessThan(2000);
    await Bun.sleep(100);
    await pointLabel(store, "p", "production", 1, p1);
    expect(await untilServed(server.url, "p", 1)).toBeLessThan(2000);

    // A whole model folder removed and made again: the new folders are watched, not the dead ones.
    rmSync(path.join(dir, "models/n"), { recursive: true });
    expect(await untilServed(server.url, "n", "LABEL_NOT_FOUND")).toBeLessThan(2000);
    const n2 = await publish(store, "n", 2);
    await pointLabel(store, "n", "production", 2, n2);
    expect(await untilServed(server.url, "n", 2)).toBeLessThan(2000);

    // Still root + models/ + 2 per model, with four models now; nothing leaked.
    await Bun.sleep(200);
    expect(inotifyWatches(pid)).toBe(10);
    expect(server.logs()).toContain('"watching label pointers"');
    expect(server.logs()).not.toContain("polling only");
  }, 60_000);

  test("a store with no models/ folder at start: the first promotion is served at once", async () => {
    const { uri } = tmpStore();
    const server = await startServe(["--store", uri, ...POLL_NEVER]);
    servers.push(server);
    expect(inotifyWatches(server.proc.pid)).toBe(1); // the store folder
    const store = await openArtifactStore(uri);
    const sha = await publish(store, "first", 1);
    await pointLabel(store, "first", "production", 1, sha);
    expect(await untilServed(server.url, "first", 1)).toBeLessThan(2000);
    await Bun.sleep(200);
    expect(inotifyWatches(server.proc.pid)).toBe(4);
  }, 30_000);
});

/** An in-process cache and follower on `store`, logging into `lines`. */
function inProcess(uri: string, store: ArtifactStore, pollMs = 600_000) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    name: "t",
    level: "info",
    destination: new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n")) if (l !== "") lines.push(JSON.parse(l));
        done();
      },
    }),
  });
  const config = loadServeConfig({}, { store: uri, pollIntervalMs: pollMs });
  const cache = new ModelCache(store, config, logger, createServeMetrics());
  return { cache, logger, lines };
}

describe("label follower in-process", () => {
  test("discovery lists label pointers only: no prefix listing, no version folder read", async () => {
    const { dir, uri } = tmpStore();
    const base = await openArtifactStore(uri);
    for (const name of ["a", "b"]) {
      const sha = await publish(base, name, 1);
      await publish(base, name, 2);
      await pointLabel(base, name, "production", 1, sha);
    }
    await publish(base, "unlabelled", 1);
    const calls: string[] = [];
    const store = new Proxy(base, {
      get: (target, prop) => {
        const v = Reflect.get(target, prop);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => {
          calls.push(`${String(prop)} ${String(args[0])}`);
          return v.apply(target, args);
        };
      },
    });
    const { cache } = inProcess(uri, store);
    await cache.refresh(true); // loads a@1 and b@1
    const readdirs: string[] = [];
    const realReaddir = fsp.readdir;
    (fsp as { readdir: unknown }).readdir = (p: string, ...rest: unknown[]) => {
      readdirs.push(path.relative(dir, String(p)));
      return (realReaddir as (...a: unknown[]) => unknown)(p, ...rest);
    };
    calls.length = 0;
    try {
      await cache.refresh(true);
    } finally {
      (fsp as { readdir: unknown }).readdir = realReaddir;
    }
    expect(cache.modelNames()).toEqual(["a", "b"]);
    expect(calls.filter((c) => c.startsWith("list ")).length).toBe(0);
    expect(calls).toContain("listMatching models/*/labels/*.json");
    // models/, then each model's labels/ folder (absent for "unlabelled"): no v1/, v2/ folders.
    expect(readdirs.sort()).toEqual([
      "models",
      "models/a/labels",
      "models/b/labels",
      "models/unlabelled/labels",
    ]);
    cache.close();
  });

  test("a model folder whose name no request can use is not followed (one warning); an arbor home given as the store gets a hint", async () => {
    const { dir, uri } = tmpStore();
    const inner = path.join(dir, "store");
    const store = await openArtifactStore(pathToFileURL(inner).href);
    await pointLabel(store, "ok", "production", 1, await publish(store, "ok", 1));
    const bad = path.join(inner, "models", "my reg", "labels");
    await fsp.mkdir(bad, { recursive: true });
    cpSync(path.join(inner, "models", "ok", "labels", "production.json"), path.join(bad, "production.json"));
    const { cache, lines } = inProcess(pathToFileURL(inner).href, store);
    await cache.refresh(true);
    await cache.refresh(true);
    expect(cache.modelNames()).toEqual(["ok"]);
    expect(cache.ready()).toBe(true);
    const warned = lines.filter((l) => String(l["msg"]).includes("a name no request can use"));
    expect(warned.map((l) => l["model"])).toEqual(["my reg"]);
    cache.close();

    const home = inProcess(uri, await openArtifactStore(uri));
    await home.cache.refresh(true);
    const nothing = home.lines.find((l) => String(l["msg"]).startsWith("no followed label points"));
    expect(nothing?.["hint"]).toContain(pathToFileURL(inner).href);
    home.cache.close();
  });

  test("the watch limit reached: watching is given up with a log line, and polling still follows", async () => {
    const { uri } = tmpStore();
    const store = await openArtifactStore(uri);
    const sha = { 1: await publish(store, "m", 1), 2: await publish(store, "m", 2) };
    await pointLabel(store, "m", "production", 1, sha[1]);
    const { cache, logger, lines } = inProcess(uri, store);
    let opened = 0;
    const limited: WatchFolder = () => {
      if (opened >= 2) {
        throw Object.assign(new Error("ENOSPC: System limit for number of file watchers reached, watch"), {
          code: "ENOSPC",
        });
      }
      opened++;
      return fakeWatcher();
    };
    const follower = new LabelFollower(cache, logger, limited);
    await follower.start(uri, 50, true);
    expect(follower.watchCount).toBe(0);
    expect(
      lines.some(
        (l) => l.level === "warn" && String(l.msg).includes("watch limit reached") && l.watches === 2,
      ),
    ).toBe(true);
    expect(cache.labels("m")?.get("production")?.slot?.version).toBe(1);
    await pointLabel(store, "m", "production", 2, sha[2]);
    const t0 = Date.now();
    while (cache.labels("m")?.get("production")?.slot?.version !== 2) {
      if (Date.now() - t0 > 5000) throw new Error("polling did not follow the flip");
      await Bun.sleep(20);
    }
    await follower.stop();
    cache.close();
  });
});

/** A watcher that never fires (what the limited watch hands out before the limit). */
function fakeWatcher(): ReturnType<WatchFolder> {
  const w = new EventEmitter() as unknown as ReturnType<WatchFolder>;
  Object.assign(w, { close() {}, ref: () => w, unref: () => w });
  return w;
}
