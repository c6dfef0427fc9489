/**
 * The model cache in-process, against a real file:// store whose reads of chosen files can be held
 * and let go together, so that loads finish in the same event-loop turn on purpose: the interleavings
 * a busy server meets by chance. Every slot's ORT session must stay alive while the LRU, a label or
 * a request holds it, and be released once none does.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { loadServeConfig, type ServeConfigOverrides } from "../serve/config.ts";
import { createServeMetrics } from "../serve/metrics.ts";
import { ModelCache } from "../serve/model-cache/cache.ts";
import type { ModelSlot } from "../serve/model-cache/slot.ts";
import { createLogger } from "../shared/logger.ts";
import { pointLabel, publishFixture } from "./serve-fixtures.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A store whose reads of keys matching `hold(re)` wait until `open()`. */
class HeldReads {
  #pattern: RegExp | null = null;
  #gate = Promise.withResolvers<void>();
  /** Reads waiting now. */
  waiting = 0;
  readonly store: ArtifactStore;

  constructor(base: ArtifactStore) {
    this.store = new Proxy(base, {
      get: (target, prop) => {
        if (prop === "read")
          return async (key: string) => {
            const data = await target.read(key);
            if (this.#pattern?.test(key)) {
              this.waiting++;
              await this.#gate.promise;
              this.waiting--;
            }
            return data;
          };
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  }

  hold(re: RegExp): void {
    this.#pattern = re;
    this.#gate = Promise.withResolvers<void>();
  }

  async until(n: number): Promise<void> {
    for (let i = 0; this.waiting < n; i++) {
      if (i > 2000) throw new Error(`only ${this.waiting} of ${n} reads held`);
      await sleep(5);
    }
  }

  /** Let every held read go in one turn. */
  open(): void {
    this.#pattern = null;
    this.#gate.resolve();
  }
}

/** A store with versions 1..n of model "m" (v1 labelled production); the sha256 of each manifest. */
async function storeWith(n: number, bigVersions: number[] = []) {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-cache-"));
  dirs.push(dir);
  const uri = pathToFileURL(dir).href;
  const base = await openArtifactStore(uri);
  const sha: Record<number, string> = {};
  for (let v = 1; v <= n; v++) {
    const numTrees = bigVersions.includes(v) ? 400 : 20;
    const f = await publishFixture(base, {
      name: "m",
      version: v,
      task: "regression",
      numFeatures: 6,
      numTrees,
      depth: 4,
      seed: 100 + v,
    });
    sha[v] = f.manifestSha256;
  }
  await pointLabel(base, "m", "production", 1, sha[1]);
  return { uri, base, sha, held: new HeldReads(base) };
}

function cacheOn(uri: string, store: ArtifactStore, over: ServeConfigOverrides = {}) {
  const config = loadServeConfig({}, { store: uri, ...over });
  const metrics = createServeMetrics();
  return {
    cache: new ModelCache(store, config, createLogger({ name: "t", level: "silent" }), metrics),
    metrics,
  };
}

/** Score one row on an acquired slot and release it: the value, or the error's message. */
async function scoreAndRelease(slot: ModelSlot): Promise<number | string> {
  try {
    const s = await slot.scoreAll(new Float32Array(slot.plan.width).fill(0.5), 1);
    return [...s.outputs.tensors.values()][0].data[s.offset];
  } catch (e) {
    return (e as Error).message;
  } finally {
    slot.release();
  }
}

test("a version too big for the cache, loaded once for an explicit request and a label move, keeps serving the label after the request ends", async () => {
  const { uri, base, sha, held } = await storeWith(2, [2]);
  const { cache } = cacheOn(uri, held.store, { cacheMaxBytes: 60_000 });
  await cache.refresh();
  held.hold(/m\/v2\/metrics\.json$/);
  const explicit = cache.acquireVersion("m", 2) as Promise<ModelSlot>;
  await held.until(1);
  await pointLabel(base, "m", "production", 2, sha[2]);
  const refreshing = cache.refresh(false);
  await sleep(100); // the label's refresh joins the load under way
  held.open();
  const slot = await explicit;
  await refreshing;
  expect(cache.labels("m")?.get("production")?.slot).toBe(slot);
  expect(typeof (await scoreAndRelease(slot))).toBe("number");
  for (let i = 0; i < 3; i++)
    expect(typeof (await scoreAndRelease(cache.acquireLabel("m", "production")))).toBe("number");
  expect(slot.released).toBe(false);
  cache.close();
  expect(slot.released).toBe(true);
}, 30_000);

test("an eviction in the turn a load ends cannot release the slot its label or its request is about to use", async () => {
  const { uri, base, sha, held } = await storeWith(4);
  // A label move to v2 and an explicit load of v3 end together; one model fits.
  {
    const { cache } = cacheOn(uri, held.store, { cacheMaxModels: 1 });
    await cache.refresh();
    held.hold(/m\/v[23]\/metrics\.json$/);
    await pointLabel(base, "m", "production", 2, sha[2]);
    const refreshing = cache.refresh(false);
    await held.until(1);
    const explicit = cache.acquireVersion("m", 3) as Promise<ModelSlot>;
    await held.until(2);
    held.open();
    const v3 = await explicit;
    await refreshing;
    expect(typeof (await scoreAndRelease(v3))).toBe("number");
    const label = cache.acquireLabel("m", "production");
    expect(label.version).toBe(2);
    expect(typeof (await scoreAndRelease(label))).toBe("number");
    cache.close();
  }
  // Two explicit loads end together: the second's insert evicts the first before its request runs.
  {
    const { cache } = cacheOn(uri, held.store, { cacheMaxModels: 1 });
    await cache.refresh();
    held.hold(/m\/v[34]\/metrics\.json$/);
    const p3 = cache.acquireVersion("m", 3) as Promise<ModelSlot>;
    const p4 = cache.acquireVersion("m", 4) as Promise<ModelSlot>;
    await held.until(2);
    held.open();
    const [v3, v4] = await Promise.all([p3, p4]);
    expect(typeof (await scoreAndRelease(v3))).toBe("number");
    expect(typeof (await scoreAndRelease(v4))).toBe("number");
    // One model fits: whichever load ended first was evicted and, unused now, released.
    expect([v3.released, v4.released].sort()).toEqual([false, true]);
    cache.close();
  }
}, 30_000);

test("a label pointer whose sha256 names another manifest is refused for the label only: the version still serves explicit requests", async () => {
  const { uri, base, sha } = await storeWith(2);
  const { cache } = cacheOn(uri, base);
  await cache.refresh();
  await pointLabel(base, "m", "production", 2, sha[1]);
  await cache.refresh(false);
  const st = cache.labels("m")?.get("production");
  expect(st?.state).toBe("failed");
  expect(st?.error?.code).toBe("STORE_INTEGRITY");
  expect(st?.slot?.version).toBe(1);
  const v2 = await cache.acquireVersion("m", 2);
  expect(typeof (await scoreAndRelease(v2))).toBe("number");
  cache.close();
}, 30_000);

test("at most loadConcurrency loads run at once, whatever the turn a finished load hands its permit over in", async () => {
  const { uri, base, sha } = await storeWith(4);
  // Loads of v2 (running) and v3 (queued); a label refresh asks for v4 just as v2 ends, its pointer
  // read finishing `hops` microtasks after v2's last read.
  for (let hops = 0; hops < 6; hops++) {
    await pointLabel(base, "m", "production", 1, sha[1]);
    const first = Promise.withResolvers<void>();
    const last = Promise.withResolvers<void>();
    let phase: "off" | "first" | "last" = "off";
    let atFirst = 0;
    let atLast = 0;
    const store = new Proxy(base, {
      get(target, prop) {
        if (prop === "read")
          return async (key: string) => {
            const data = await target.read(key);
            if (phase === "first" && /(v2\/metrics\.json|labels\/production\.json)$/.test(key)) {
              atFirst++;
              await first.promise;
              if (key.endsWith("production.json")) for (let i = 0; i < hops; i++) await null;
            } else if (phase === "last" && /v[34]\/metrics\.json$/.test(key)) {
              atLast++;
              await last.promise;
            }
            return data;
          };
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const { cache } = cacheOn(uri, store, { loadConcurrency: 1 });
    await cache.refresh();
    phase = "first";
    const v2 = cache.acquireVersion("m", 2) as Promise<ModelSlot>;
    const v3 = cache.acquireVersion("m", 3) as Promise<ModelSlot>;
    await pointLabel(base, "m", "production", 4, sha[4]);
    const refreshing = cache.refresh(false);
    while (atFirst < 2) await sleep(5);
    phase = "last";
    first.resolve();
    // One load reaches its last read; a second one there would be over the bound.
    while (atLast < 1) await sleep(5);
    await sleep(100);
    expect({ hops, atOnce: atLast }).toEqual({ hops, atOnce: 1 });
    last.resolve();
    for (const s of await Promise.all([v2, v3])) s.release();
    await refreshing;
    expect(cache.labels("m")?.get("production")?.slot?.version).toBe(4);
    cache.close();
  }
}, 60_000);

test("random label moves, explicit versions and requests against a small cache: no request meets a released session, nothing leaks, the gauges add up", async () => {
  for (const seed of [1, 2, 3]) {
    const { uri, base, sha } = await storeWith(5, [5]);
    await pointLabel(base, "m", "staging", 2, sha[2]);
    const { cache, metrics } = cacheOn(uri, base, {
      labels: ["production", "staging"],
      cacheMaxModels: 2,
      cacheMaxBytes: 60_000, // v5 is bigger than the whole budget
      loadConcurrency: 2,
    });
    await cache.refresh();
    let state = seed;
    const rnd = () => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state / 2147483648;
    };
    const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
    const seen = new Set<ModelSlot>();
    const failures: string[] = [];
    let refreshing: Promise<void> | null = null;
    const refresh = () => {
      // As the follower: one refresh at a time.
      refreshing ??= cache.refresh(false).finally(() => {
        refreshing = null;
      });
      return refreshing;
    };
    const use = async (acquired: () => ModelSlot | Promise<ModelSlot>) => {
      let slot: ModelSlot;
      try {
        slot = await acquired();
      } catch {
        return; // not ready, failed: refused before any session was touched
      }
      seen.add(slot);
      await sleep(Math.floor(rnd() * 4));
      const out = await scoreAndRelease(slot);
      if (typeof out !== "number") failures.push(`v${slot.version}: ${out}`);
    };
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const op = rnd();
      if (op < 0.15) {
        const v = pick([1, 2, 3, 4, 5]);
        await pointLabel(base, "m", pick(["production", "staging"]), v, sha[v]);
        work.push(refresh());
      } else if (op < 0.55) {
        const v = pick([1, 2, 3, 4, 5]);
        work.push(use(() => cache.acquireVersion("m", v)));
      } else {
        const label = pick(["production", "staging"]);
        work.push(use(() => cache.acquireLabel("m", label)));
      }
      if (rnd() < 0.3) await sleep(Math.floor(rnd() * 4));
    }
    await Promise.all(work);
    await refresh();
    expect({ seed, failures }).toEqual({ seed, failures: [] });
    const held = new Set(cache.loadedVersions("m"));
    for (const label of ["production", "staging"]) {
      const slot = cache.labels("m")?.get(label)?.slot;
      if (slot) expect(held.has(slot)).toBe(true);
    }
    for (const slot of seen) {
      // Held by the cache: alive, with no request left on it; else released.
      expect({ seed, v: slot.version, released: slot.released }).toEqual({
        seed,
        v: slot.version,
        released: !held.has(slot),
      });
      if (held.has(slot)) expect(cache.requestsUsing(slot)).toBe(0);
    }
    const gauge = async (name: string) =>
      (await metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;
    expect(await gauge("arbor_serve_cache_entries")).toBe(held.size);
    expect(await gauge("arbor_serve_cache_bytes")).toBe([...held].reduce((n, s) => n + s.bytes, 0));
    cache.close();
    for (const slot of seen) expect(slot.released).toBe(true);
  }
}, 120_000);

test("a version's request series leave /metrics a scrape after its session is released; a loaded version's stay", async () => {
  const { uri, base, sha } = await storeWith(2);
  const { cache, metrics } = cacheOn(uri, base, { cacheMaxModels: 1 });
  await cache.refresh();
  const route = "/v1/models/:name:predict";
  metrics.stats.observe(route, "m", "1", 200, 0.001);
  const scrape = () => metrics.registry.metrics();
  expect(await scrape()).toContain('version="1"');
  // The label moves to v2; v1 leaves the LRU (one model fits) and nothing holds it.
  await pointLabel(base, "m", "production", 2, sha[2]);
  await cache.refresh(false);
  metrics.stats.observe(route, "m", "1", 200, 0.001); // its last request, counted after the release
  metrics.stats.observe(route, "m", "2", 200, 0.001);
  await sleep(1_500);
  const last = await scrape();
  expect(last).toMatch(/arbor_serve_requests_total\{[^}]*version="1"[^}]*\} 2/);
  const next = await scrape();
  expect(next).not.toContain('version="1"');
  expect(next).toMatch(/arbor_serve_requests_total\{[^}]*version="2"[^}]*\} 1/);
  // Loaded again: it counts from zero in new series.
  (await cache.acquireVersion("m", 1)).release();
  metrics.stats.observe(route, "m", "1", 200, 0.001);
  expect(await scrape()).toMatch(/arbor_serve_requests_total\{[^}]*version="1"[^}]*\} 1/);
  cache.close();
}, 30_000);

test("a version unloaded twice between scrapes keeps every request it served in both series", async () => {
  const metrics = createServeMetrics();
  const route = "/v1/models/:name:predict";
  const count = (text: string, name: string) =>
    Number(new RegExp(`^${name}\\{[^}]*version="1"[^}]*\\} (\\d+)`, "m").exec(text)?.[1] ?? -1);
  metrics.stats.observe(route, "m", "1", 200, 0.001);
  metrics.stats.forget("m", "1");
  await metrics.registry.metrics();
  // Loaded again for one request and unloaded again before the next scrape.
  metrics.stats.observe(route, "m", "1", 200, 0.001);
  metrics.stats.observe(route, "m", "1", 200, 0.001);
  metrics.stats.forget("m", "1");
  const text = await metrics.registry.metrics();
  expect(count(text, "arbor_serve_requests_total")).toBe(3);
  expect(count(text, "arbor_serve_request_duration_seconds_count")).toBe(3);
  expect(await metrics.registry.metrics()).not.toContain('version="1"');
});
