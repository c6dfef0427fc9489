/**
 * The serve tier on a gs:// store: bundles and label pointers published through the real
 * @google-cloud/storage client into test/gcs-server.ts; the node server polls pointer generations
 * and hot-swaps when the label moves.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { type GcsServer, startGcsServer } from "./gcs-server.ts";
import { pointLabel, publishFixture, type ServeProcess, startServe } from "./serve-fixtures.ts";

let gcs: GcsServer;
let store: ArtifactStore;
let server: ServeProcess | undefined;
const URI = "gs://arbor-serve-test/store";

beforeAll(async () => {
  gcs = await startGcsServer({ buckets: ["arbor-serve-test"] });
  store = await openArtifactStore(URI, { gcsEndpoint: gcs.url });
});

afterAll(async () => {
  if (server) expect(await server.stop()).toBe(0);
  await store?.close();
  await gcs?.close();
});

test("gs:// store: serves the labelled version and follows the pointer's generation", async () => {
  const shas: string[] = [];
  for (const v of [1, 2]) {
    const f = await publishFixture(store, {
      name: "g",
      version: v,
      task: "regression",
      numFeatures: 3,
      numTrees: 5,
      depth: 3,
      seed: 300 + v,
    });
    shas.push(f.manifestSha256);
  }
  await pointLabel(store, "g", "production", 1, shas[0]);
  server = await startServe(["--store", URI, "--poll-ms", "100"], { STORAGE_EMULATOR_HOST: gcs.url });
  const predict = async () => {
    const res = await fetch(`${server!.url}/v1/models/g:predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [[0.1, 0.2, 0.3]] }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { version: number; predictions: number[] };
  };
  expect((await predict()).version).toBe(1);
  await pointLabel(store, "g", "production", 2, shas[1]);
  const end = Date.now() + 15_000;
  let v = 1;
  while (v !== 2 && Date.now() < end) {
    await Bun.sleep(50);
    v = (await predict()).version;
  }
  expect(v).toBe(2);
  expect(server.logs()).toContain("label now served by version");
});
