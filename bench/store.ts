/**
 * Artifact store throughput: streamed put/get of a large object, small puts, and sequential
 * compare-and-swap latency, on file:// (a temp folder) and gs:// (the real client against the
 * in-memory test/gcs-server.ts, so gs:// figures measure the client and protocol, not Google).
 *
 *   npx bun bench/store.ts [--mb 64] [--small 200] [--cas 200]
 *
 * Prints a table and writes bench/results/store.json.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { startGcsServer } from "../test/gcs-server.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const MB = arg("mb", 64);
const SMALL = arg("small", 200);
const CAS = arg("cas", 200);

interface Row {
  store: string;
  case: string;
  n: number;
  seconds: number;
  rate: string;
}

async function time(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function measure(name: string, store: ArtifactStore): Promise<Row[]> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const rows: Row[] = [];
  const putS = await time(async () => {
    async function* body() {
      for (let i = 0; i < MB; i++) yield chunk;
    }
    await store.put("bench/large.bin", Readable.from(body()));
  });
  rows.push({
    store: name,
    case: `put stream ${MB} MiB`,
    n: 1,
    seconds: putS,
    rate: `${(MB / putS).toFixed(0)} MiB/s`,
  });
  const getS = await time(async () => {
    let n = 0;
    for await (const c of await store.get("bench/large.bin")) n += (c as Buffer).length;
    if (n !== MB << 20) throw new Error(`read ${n} bytes`);
  });
  rows.push({
    store: name,
    case: `get stream ${MB} MiB`,
    n: 1,
    seconds: getS,
    rate: `${(MB / getS).toFixed(0)} MiB/s`,
  });
  const smallS = await time(async () => {
    for (let i = 0; i < SMALL; i++) await store.put(`bench/small/${i}.json`, `{"i":${i}}`);
  });
  rows.push({
    store: name,
    case: "put 10 B (sequential)",
    n: SMALL,
    seconds: smallS,
    rate: `${(SMALL / smallS).toFixed(0)} /s`,
  });
  await store.put("bench/pointer.json", "0");
  const casS = await time(async () => {
    for (let i = 0; i < CAS; i++) {
      const { generation } = await store.read("bench/pointer.json");
      await store.compareAndSwap("bench/pointer.json", String(i + 1), generation);
    }
  });
  rows.push({
    store: name,
    case: "read + compareAndSwap",
    n: CAS,
    seconds: casS,
    rate: `${((casS / CAS) * 1000).toFixed(2)} ms each`,
  });
  const listS = await time(async () => {
    const l = await store.list("bench/small/");
    if (l.length !== SMALL) throw new Error(`listed ${l.length}`);
  });
  rows.push({
    store: name,
    case: `list ${SMALL} keys`,
    n: 1,
    seconds: listS,
    rate: `${(listS * 1000).toFixed(1)} ms`,
  });
  await store.deletePrefix("bench/");
  return rows;
}

const dir = await mkdtemp(path.join(os.tmpdir(), "arbor-bench-store-"));
const gcs = await startGcsServer({ buckets: ["bench"] });
try {
  const rows = [
    ...(await measure("file://", await openArtifactStore(dir))),
    ...(await measure("gs://", await openArtifactStore("gs://bench/x", { gcsEndpoint: gcs.url }))),
  ];
  console.table(rows.map((r) => ({ ...r, seconds: Number(r.seconds.toFixed(3)) })));
  const out = path.join(import.meta.dirname, "results", "store.json");
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(
    out,
    `${JSON.stringify({ runtime: `bun ${process.versions.bun ?? "?"}`, cpus: os.cpus().length, rows }, null, 2)}\n`,
  );
  console.log(`wrote ${out}`);
} finally {
  await gcs.close();
  await rm(dir, { recursive: true, force: true });
}
