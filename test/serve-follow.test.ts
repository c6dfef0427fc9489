/**
 * How the label follower scales with the store. In-process: discovery reads no version folder and
 * never lists the store by prefix.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
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
import { createLogger } from "../shared/logger.ts";
import { pointLabel, publishFixture } from "./serve-fixtures.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

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

/** An in-process cache on `store`, logging into `lines`. */
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
});
