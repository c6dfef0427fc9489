/**
 * Hot reload, integrity and lifecycle of the serve tier, against a real node process: a label
 * flipped back and forth under a client loop (zero failures, every reply names its version, after
 * a swap only the new version answers), a corrupted bundle refused while the old version serves,
 * LRU eviction under a small byte budget, graceful SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { labelKey } from "../shared/paths.ts";
import { pointLabel, publishFixture, startServe } from "./serve-fixtures.ts";

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field.
type Json = any;

let dir: string;
let store: ArtifactStore;
const sha: Record<number, string> = {};
const row = [0.5, -1, 1.5, 0.25, -0.75, 2];

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

async function predict(url: string, route = "/v1/models/m:predict"): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ instances: [row] }),
  });
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-reload-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  for (const v of [1, 2, 3]) {
    const f = await publishFixture(store, {
      name: "m",
      version: v,
      task: "regression",
      numFeatures: 6,
      numTrees: 30,
      depth: 5,
      seed: 100 + v,
    });
    sha[v] = f.manifestSha256;
  }
  await pointLabel(store, "m", "production", 1, sha[1]);
});

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("serve: hot reload", () => {
  test("label flips under load: zero failures, replies name their version, no old version after a swap", async () => {
    const server = await startServe(["--store", pathToFileURL(dir).href, "--poll-ms", "100"]);
    try {
      // The expected prediction of each version, from explicit-version routes.
      const expected: Record<number, number> = {};
      for (const v of [1, 2])
        expected[v] = (await predict(server.url, `/v1/models/m/versions/${v}:predict`)).body.predictions[0];
      expect(expected[1]).not.toBe(expected[2]);
      let stop = false;
      let failures = 0;
      let total = 0;
      let wrong = 0;
      // Each flip records when the first reply of the new version arrived; any request started
      // after that moment must be answered by the new version.
      const firstSeen: { version: number; at: number }[] = [];
      let stale = 0;
      let target = 1;
      const client = async () => {
        while (!stop) {
          const started = performance.now();
          const r = await predict(server.url).catch(() => ({ status: 0, body: null }));
          total++;
          if (r.status !== 200) {
            failures++;
            continue;
          }
          const v = r.body.version as number;
          if (r.body.predictions[0] !== expected[v]) wrong++;
          const last = firstSeen[firstSeen.length - 1];
          if (last !== undefined && last.version === target && v !== target && started > last.at) stale++;
          // Only the version the label was just moved to opens a new epoch; late replies of the
          // previous version to requests sent before the swap are legitimate.
          if (v === target && (last === undefined || last.version !== v))
            firstSeen.push({ version: v, at: performance.now() });
        }
      };
      const clients = Array.from({ length: 8 }, client);
      for (const v of [2, 1, 2]) {
        await Bun.sleep(150);
        target = v;
        await pointLabel(store, "m", "production", v, sha[v]);
        await until(`version ${v} to answer`, async () => firstSeen[firstSeen.length - 1]?.version === v);
      }
      await Bun.sleep(150);
      stop = true;
      await Promise.all(clients);
      expect(failures).toBe(0);
      expect(wrong).toBe(0);
      expect(stale).toBe(0);
      expect(total).toBeGreaterThan(50);
      expect(firstSeen.map((s) => s.version)).toEqual([1, 2, 1, 2]);

      // A corrupted bundle (one byte of model.onnx changed after its manifest was written).
      const file = path.join(dir, "models/m/v3/model.onnx");
      const bytes = readFileSync(file);
      bytes[bytes.length - 10] ^= 0xff;
      writeFileSync(file, bytes);
      await pointLabel(store, "m", "production", 3, sha[3]);
      let info: Json = null;
      await until("the failed load to show", async () => {
        info = await (await fetch(`${server.url}/v1/models/m`)).json();
        return info.labels.production.state === "failed";
      });
      expect(info.labels.production.version).toBe(2);
      expect(info.labels.production.pointer_version).toBe(3);
      expect(info.labels.production.error.code).toBe("STORE_INTEGRITY");
      const still = await predict(server.url);
      expect(still.status).toBe(200);
      expect(still.body.version).toBe(2);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/arbor_serve_model_loads_total\{model="m",result="failed"[^}]*\} [1-9]/);
      expect(server.logs()).toContain("label update failed; keeping the previous version");

      // Explicit requests for the version that just failed answer from the failure record (503
      // MODEL_LOAD_FAILED) instead of reading and hashing the bundle again each time.
      const failedLoads = async () =>
        Number(
          /arbor_serve_model_loads_total\{model="m",result="failed"[^}]*\} (\d+)/.exec(
            await (await fetch(`${server.url}/metrics`)).text(),
          )?.[1],
        );
      const failedBefore = await failedLoads();
      for (let i = 0; i < 3; i++) {
        const r = await predict(server.url, "/v1/models/m/versions/3:predict");
        expect(r.status).toBe(503);
        expect(r.body.error.code).toBe("MODEL_LOAD_FAILED");
      }
      expect(await failedLoads()).toBe(failedBefore);

      // Rolling the pointer back to the version still served clears the failure.
      await pointLabel(store, "m", "production", 2, sha[2]);
      await until("the label to be ready again", async () => {
        info = await (await fetch(`${server.url}/v1/models/m`)).json();
        return info.labels.production.state === "ready";
      });
      expect(info.labels.production.version).toBe(2);
      expect(info.labels.production.error).toBeNull();

      // A bundle missing a file its manifest lists is a failed load (not "no such version").
      const v4 = await publishFixture(store, {
        name: "m",
        version: 4,
        task: "regression",
        numFeatures: 6,
        numTrees: 5,
        depth: 3,
        seed: 104,
      });
      rmSync(path.join(dir, "models/m/v4/model.onnx"));
      const failedBeforeV4 = await failedLoads();
      await pointLabel(store, "m", "production", 4, v4.manifestSha256);
      await until("the failed load of v4 to show", async () => {
        info = await (await fetch(`${server.url}/v1/models/m`)).json();
        return info.labels.production.state === "failed";
      });
      expect(info.labels.production.version).toBe(2);
      expect(info.labels.production.pointer_version).toBe(4);
      expect(info.labels.production.error.code).toBe("BUNDLE_INVALID");
      expect(await failedLoads()).toBe(failedBeforeV4 + 1);
      const v4req = await predict(server.url, "/v1/models/m/versions/4:predict");
      expect(v4req.status).toBe(503);
      expect(v4req.body.error.code).toBe("MODEL_LOAD_FAILED");
      expect((await predict(server.url)).body.version).toBe(2);
      expect(await server.stop()).toBe(0);
    } finally {
      await server.stop();
    }
  });
});

describe("serve: LRU cache", () => {
  test("a byte budget of about one bundle evicts the least recently used version", async () => {
    const size = (await store.stat("models/m/v1/model.onnx"))!.size;
    const server = await startServe(["--store", pathToFileURL(dir).href, "--labels", "none"], {
      ARBOR_SERVE_CACHE_MAX_BYTES: String(Math.floor(size * 1.5)),
    });
    try {
      // Ten concurrent requests for a version not in the cache share one load.
      const first = await Promise.all(
        Array.from({ length: 10 }, () => predict(server.url, "/v1/models/m/versions/1:predict")),
      );
      expect(first.every((r) => r.status === 200 && r.body.version === 1)).toBe(true);
      const loads = await (await fetch(`${server.url}/metrics`)).text();
      expect(loads).toMatch(/arbor_serve_model_loads_total\{model="m",result="ok"[^}]*\} 1\n/);
      const a = await predict(server.url, "/v1/models/m/versions/1:predict");
      const b = await predict(server.url, "/v1/models/m/versions/2:predict");
      const a2 = await predict(server.url, "/v1/models/m/versions/1:predict");
      expect([a.status, b.status, a2.status]).toEqual([200, 200, 200]);
      expect(a2.body.predictions).toEqual(a.body.predictions);
      expect(b.body.version).toBe(2);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/arbor_serve_model_evictions_total\{model="m"[^}]*\} 2/);
      expect(metrics).toMatch(/arbor_serve_cache_entries\{[^}]*\} 1/);
      const info: Json = await (await fetch(`${server.url}/v1/models/m`)).json();
      expect(info.versions.map((v: { version: number }) => v.version)).toEqual([1]);
      expect(server.logs()).toContain("released ORT session");
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});

describe("serve: graceful shutdown", () => {
  test("SIGTERM: requests already sent are answered, then exit 0", async () => {
    const server = await startServe(["--store", pathToFileURL(dir).href]);
    // Connections are open before the signal (keep-alive warms them).
    await Promise.all(Array.from({ length: 4 }, () => predict(server.url)));
    const big = JSON.stringify({ instances: Array.from({ length: 5000 }, () => row) });
    const pending = Array.from({ length: 4 }, () =>
      fetch(`${server.url}/v1/models/m/versions/1:predict`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: big,
      })
        .then(async (r) => ({ status: r.status, body: (await r.json()) as Json }))
        .catch((e: Error) => ({ status: 0, body: e.message })),
    );
    await Bun.sleep(30);
    server.proc.kill("SIGTERM");
    const results = await Promise.all(pending);
    for (const r of results) {
      // Either finished, or refused cleanly because it arrived after the signal.
      if (r.status !== 200) expect(r.body.error.code).toBe("SHUTTING_DOWN");
      else expect(r.body.predictions.length).toBe(5000);
    }
    expect(await server.proc.exited).toBe(0);
    expect(server.logs()).toContain("shutting down: finishing in-flight requests");
  });
});

/** A small model's version 1, labelled production (the label pointer tests). */
async function publishSmall(name: string, seed: number) {
  const f = await publishFixture(store, {
    name,
    version: 1,
    task: "regression",
    numFeatures: 6,
    numTrees: 5,
    depth: 3,
    seed,
  });
  await pointLabel(store, name, "production", 1, f.manifestSha256);
  return f;
}

describe("serve: label pointer deleted", () => {
  test("a malformed label pointer fails the label with STORE_INTEGRITY naming the file; the served version stays; a label with none answers 503 MODEL_LOAD_FAILED and holds /readyz unless ARBOR_SERVE_STRICT_READINESS=false", async () => {
    await publishSmall("ptr", 8);
    const server = await startServe(["--store", pathToFileURL(dir).href, "--poll-ms", "100"]);
    const key = labelKey("ptr", "production");
    const label = async () =>
      ((await (await fetch(`${server.url}/v1/models/ptr`)).json()) as Json).labels.production;
    try {
      expect((await predict(server.url, "/v1/models/ptr:predict")).status).toBe(200);
      for (const [body, says] of [
        ["{oops", "is not JSON"],
        [
          JSON.stringify({ model: "ptr", label: "production", version: 1, sha256: "abc", updated_at: "" }),
          "sha256:",
        ],
      ]) {
        await store.put(key, body);
        await until("the label to fail", async () => (await label()).error?.message.includes(says) === true);
        const l = await label();
        expect(l.state).toBe("failed");
        expect(l.error.code).toBe("STORE_INTEGRITY");
        expect(l.error.message).toContain(key);
        expect(l.error.message).not.toContain("\n");
        const served = await predict(server.url, "/v1/models/ptr:predict");
        expect({ status: served.status, version: served.body.version }).toEqual({ status: 200, version: 1 });
      }
      expect(server.logs()).toContain("label update failed; keeping the previous version");
    } finally {
      expect(await server.stop()).toBe(0);
    }
    // Started with the bad pointer: nothing to serve for the label.
    const fresh = await startServe(["--store", pathToFileURL(dir).href, "--poll-ms", "100"]);
    try {
      const r = await predict(fresh.url, "/v1/models/ptr:predict");
      expect({ status: r.status, code: r.body.error.code }).toEqual({
        status: 503,
        code: "MODEL_LOAD_FAILED",
      });
      expect(r.body.error.message).toContain(key);
      expect(fresh.logs()).toContain("label update failed; the label has no version to serve");
      expect((await fetch(`${fresh.url}/readyz`)).status).toBe(503); // every label, by default
    } finally {
      expect(await fresh.stop()).toBe(0);
    }
    // Without strict readiness the replica is ready once the label's first load has ended.
    const lenient = await startServe(["--store", pathToFileURL(dir).href], {
      ARBOR_SERVE_STRICT_READINESS: "false",
    });
    try {
      expect((await fetch(`${lenient.url}/readyz`)).status).toBe(200);
      expect((await fetch(`${lenient.url}/v2/health/ready`)).status).toBe(200);
      expect((await predict(lenient.url, "/v1/models/ptr:predict")).status).toBe(503);
      expect((await predict(lenient.url, "/v1/models/ptr/versions/1:predict")).status).toBe(200);
    } finally {
      expect(await lenient.stop()).toBe(0);
      await store.delete(key);
    }
  });

  test("the label stops being served (404 LABEL_NOT_FOUND); explicit versions still answer; re-pointing restores it", async () => {
    const f = await publishSmall("gone", 7);
    const server = await startServe(["--store", pathToFileURL(dir).href, "--poll-ms", "100"]);
    try {
      expect((await predict(server.url, "/v1/models/gone:predict")).status).toBe(200);
      await store.delete(labelKey("gone", "production"));
      let last = { status: 0, body: null as Json };
      await until("the deleted label to stop answering", async () => {
        last = await predict(server.url, "/v1/models/gone:predict");
        return last.status === 404;
      });
      expect(last.body.error.code).toBe("LABEL_NOT_FOUND");
      expect((await predict(server.url, "/v1/models/gone/labels/production:predict")).status).toBe(404);
      expect((await predict(server.url, "/v1/models/gone/versions/1:predict")).status).toBe(200);
      expect(server.logs()).toContain("label pointer deleted from the store; label no longer served");
      await pointLabel(store, "gone", "production", 1, f.manifestSha256);
      await until("the re-pointed label to answer", async () => {
        return (await predict(server.url, "/v1/models/gone:predict")).status === 200;
      });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
