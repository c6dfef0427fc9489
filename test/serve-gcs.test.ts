/**
 * The serve tier on a gs:// store: bundles and label pointers published through the real
 * @google-cloud/storage client into test/gcs-server.ts; the node server polls pointer generations
 * and hot-swaps when the label moves.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
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

// A test that fails in the middle of an outage must not leave the store failing for the next.
afterEach(() => gcs?.fail(null));

afterAll(async () => {
  if (server) expect(await server.stop()).toBe(0);
  await store?.close();
  await gcs?.close();
});

/** Publish a small 3-feature regression model's version; returns its manifest's sha256. */
async function publish(name: string, version: number, seed: number): Promise<string> {
  const f = await publishFixture(store, {
    name,
    version,
    task: "regression",
    numFeatures: 3,
    numTrees: 5,
    depth: 3,
    seed,
  });
  return f.manifestSha256;
}

test("gs:// store: serves the labelled version and follows the pointer's generation", async () => {
  const shas: string[] = [];
  for (const v of [1, 2]) shas.push(await publish("g", v, 300 + v));
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

/** The value of metric `name`'s first sample whose labels include `label`, in an exposition (0 when absent). */
function sample(text: string, name: string, label = ""): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

test("a store outage: the served version keeps answering, loads answer 503 STORE_UNAVAILABLE, the refresh metrics show it, and the store's return is followed at once", async () => {
  const srv = server!;
  const shas = new Map<number, string>();
  for (const v of [3, 4]) shas.set(v, await publish("g", v, 300 + v));
  const post = async (path: string) => {
    const res = await fetch(`${srv.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [[0.1, 0.2, 0.3]] }),
    });
    return { status: res.status, body: (await res.json()) as { version?: number; error?: { code: string } } };
  };
  const metrics = async () => await (await fetch(`${srv.url}/metrics`)).text();
  const REFRESHES = "arbor_serve_label_refreshes_total";
  const LAST_OK = "arbor_serve_label_refresh_last_ok_timestamp_seconds";
  const before = await metrics();
  expect(sample(before, REFRESHES, 'result="ok"')).toBeGreaterThan(0);
  expect(sample(before, REFRESHES, 'result="failed"')).toBe(0);
  expect(sample(before, LAST_OK)).toBeGreaterThan(Date.now() / 1000 - 5);

  gcs.fail(503);
  // A version not loaded yet cannot be read: 503 STORE_UNAVAILABLE once the client's retries are
  // spent (not a failed bundle, which would be believed for 30 s).
  const explicit = post("/v1/models/g/versions/3:predict");
  const end = Date.now() + 60_000;
  let during = before;
  let served = 0;
  while (sample(during, REFRESHES, 'result="failed"') === 0 && Date.now() < end) {
    const r = await post("/v1/models/g:predict");
    expect(r.status).toBe(200);
    expect(r.body.version).toBe(2);
    served++;
    await Bun.sleep(100);
    during = await metrics();
  }
  expect(sample(during, REFRESHES, 'result="failed"')).toBeGreaterThan(0);
  expect(served).toBeGreaterThan(10);
  expect((await fetch(`${srv.url}/readyz`)).status).toBe(200);
  // V2 metadata lists the store's versions, but does not wait out the store client's retries
  // (~15 s here): it answers with what it knows.
  const metaStart = Date.now();
  const meta = await fetch(`${srv.url}/v2/models/g`);
  expect(meta.status).toBe(200);
  expect(((await meta.json()) as { versions: string[] }).versions).toContain("2");
  expect(Date.now() - metaStart).toBeLessThan(5_000);
  const lastOkDuring = sample(during, LAST_OK);
  const refused = await explicit;
  expect(refused.status).toBe(503);
  expect(refused.body.error?.code).toBe("STORE_UNAVAILABLE");
  // No round succeeds while the store is down.
  expect(sample(await metrics(), LAST_OK)).toBe(lastOkDuring);
  expect(gcs.refused).toBeGreaterThan(0);

  gcs.fail(null);
  await pointLabel(store, "g", "production", 4, shas.get(4)!);
  let v = 2;
  while (v !== 4 && Date.now() < end) {
    await Bun.sleep(50);
    const r = await post("/v1/models/g:predict");
    expect(r.status).toBe(200);
    v = r.body.version!;
  }
  expect(v).toBe(4);
  // The store's failure is believed for 2 s, not the 30 s of a failed bundle.
  const recovered = Date.now();
  let again = await post("/v1/models/g/versions/3:predict");
  while (again.status !== 200 && Date.now() < recovered + 10_000) {
    expect(again.body.error?.code).toBe("STORE_UNAVAILABLE");
    await Bun.sleep(200);
    again = await post("/v1/models/g/versions/3:predict");
  }
  expect(again.status).toBe(200);
  expect(again.body.version).toBe(3);
  expect(sample(await metrics(), LAST_OK)).toBeGreaterThan(lastOkDuring);
  expect(srv.logs()).toContain("the store answers label checks again");

  // Downloads fail, listings and stats work: the label's move is seen, its pointer cannot be read.
  // The label fails with STORE_UNAVAILABLE, keeps serving v4, and is retried at the next poll
  // once downloads work again (a failed bundle waits 30 s).
  gcs.fail(503, /^GET media$/);
  await pointLabel(store, "g", "production", 3, shas.get(3)!);
  const failedLabel = async () => {
    const info = (await (await fetch(`${srv.url}/v1/models/g`)).json()) as {
      labels: Record<string, { state: string; error: { code: string } | null }>;
    };
    return info.labels["production"];
  };
  let label = await failedLabel();
  while (label.state !== "failed" && Date.now() < end) {
    const r = await post("/v1/models/g:predict");
    expect(r.body.version).toBe(4);
    await Bun.sleep(100);
    label = await failedLabel();
  }
  expect(label.state).toBe("failed");
  expect(label.error?.code).toBe("STORE_UNAVAILABLE");
  gcs.fail(null);
  const back = Date.now();
  while (v !== 3 && Date.now() < end) {
    await Bun.sleep(50);
    v = (await post("/v1/models/g:predict")).body.version!;
  }
  expect(v).toBe(3);
  expect(Date.now() - back).toBeLessThan(10_000);
}, 120_000);

test("a store outage at start-up: the label waits for the store (503 STORE_UNAVAILABLE), so even a non-strict replica is not ready until it is served", async () => {
  await pointLabel(store, "h", "production", 1, await publish("h", 1, 400));
  // Listings and stats work, downloads fail: the pointer is found and cannot be read.
  gcs.fail(503, /^GET media$/);
  let srv: ServeProcess | undefined;
  try {
    srv = await startServe(["--store", URI, "--poll-ms", "100", "--models", "h"], {
      STORAGE_EMULATOR_HOST: gcs.url,
      ARBOR_SERVE_STRICT_READINESS: "false",
    });
    expect((await fetch(`${srv.url}/readyz`)).status).toBe(503);
    const r = await fetch(`${srv.url}/v1/models/h:predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [[0.1, 0.2, 0.3]] }),
    });
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe("STORE_UNAVAILABLE");
    gcs.fail(null);
    const end = Date.now() + 30_000;
    while ((await fetch(`${srv.url}/readyz`)).status !== 200 && Date.now() < end) await Bun.sleep(100);
    expect((await fetch(`${srv.url}/readyz`)).status).toBe(200);
  } finally {
    gcs.fail(null);
    if (srv) expect(await srv.stop()).toBe(0);
  }
}, 120_000);
