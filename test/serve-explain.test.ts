/**
 * TreeSHAP runs on the explain thread, not on the event loop (real node server): while a long
 * explain is being computed, predictions on other connections are answered; the explain's own
 * reply is right (one entry per row and feature, adding up to ORT's prediction).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { pointLabel, publishFixture, type ServeProcess, startServe } from "./serve-fixtures.ts";

const F = 28;
/** Rows of the long explain: 500 trees of depth 6 take ~1 ms a row, so it runs for seconds. */
const ROWS = 3000;

let dir: string;
let store: ArtifactStore;
let server: ServeProcess;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-explain-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  const f = await publishFixture(store, {
    name: "big",
    version: 1,
    task: "binary",
    numFeatures: F,
    numTrees: 500,
    depth: 6,
    seed: 42,
  });
  await pointLabel(store, "big", "production", 1, f.manifestSha256);
  server = await startServe(["--store", pathToFileURL(dir).href], {
    ARBOR_SERVE_MAX_EXPLAIN_ROWS: String(ROWS),
  });
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const row = (r: number) => Array.from({ length: F }, (_, j) => Math.sin(r * F + j) * 2);
const post = (verb: string, instances: number[][]) =>
  fetch(`${server.url}/v1/models/big:${verb}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ instances }),
  });

test("predictions are answered while a long explain is computed", async () => {
  // The first explain starts the explain thread and builds the model's tables there.
  expect((await post("explain", [row(0)])).status).toBe(200);
  const finished: string[] = [];
  const explain = post(
    "explain",
    Array.from({ length: ROWS }, (_, r) => row(r)),
  ).then(async (res) => {
    finished.push("explain");
    return { status: res.status, body: (await res.json()) as { explanations: Record<string, unknown>[] } };
  });
  // Let its body arrive and its TreeSHAP start (seconds of work), then predict, one after another.
  await Bun.sleep(300);
  for (let i = 0; i < 10; i++) {
    const res = await post("predict", [row(i)]);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    finished.push("predict");
  }
  const x = await explain;
  // On the event loop, the explain held every prediction until it was done.
  expect(finished.indexOf("explain")).toBe(10);
  expect(x.status).toBe(200);
  expect(x.body.explanations.length).toBe(ROWS);
  // The thread's SHAP values add up to ORT's prediction: sigmoid(base + Σ contributions) = p(yes).
  for (const e of x.body.explanations.slice(0, 50)) {
    const c = e["contributions"] as Record<string, number>;
    expect(Object.keys(c).length).toBe(F);
    const margin = (e["base_value"] as number) + Object.values(c).reduce((a, b) => a + b, 0);
    const p = (e["prediction"] as { probabilities: number[] }).probabilities[1];
    expect(Math.abs(1 / (1 + Math.exp(-margin)) - p)).toBeLessThan(1e-5);
  }
}, 120_000);
