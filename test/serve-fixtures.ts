/**
 * Fixtures for the serve tests and bench: random ensembles (shared/onnx/random.ts) encoded with the
 * real ONNX codec, published as bundles in the store layout (manifest with sha256 of every file),
 * and label pointers, written through the real artifact store (atomic puts).
 */
import { createHash } from "node:crypto";
import net from "node:net";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import type { LabelPointer, Manifest, Signature, Task } from "../shared/bundle.ts";
import { encodeEnsembleOnnx } from "../shared/onnx/encode.ts";
import { randomEnsemble } from "../shared/onnx/random.ts";
import { labelKey, versionFileKey } from "../shared/paths.ts";

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** Options of a fixture model. */
export interface FixtureModel {
  name: string;
  version: number;
  task: Task;
  numFeatures: number;
  numTrees: number;
  depth: number;
  seed: number;
  /** Category count per feature index (0 or absent = numeric). */
  categories?: number[];
  numClasses?: number;
}

/** The signature of a fixture model: features f0.., categorical values "c0".."cN". */
export function fixtureSignature(m: FixtureModel): Signature {
  const cats = m.categories ?? [];
  const features = Array.from({ length: m.numFeatures }, (_, i) =>
    (cats[i] ?? 0) > 0
      ? {
          name: `f${i}`,
          type: "categorical" as const,
          categories: Array.from({ length: cats[i] }, (_, c) => `c${c}`),
        }
      : { name: `f${i}`, type: "numeric" as const },
  );
  const k = m.task === "multiclass" ? (m.numClasses ?? 3) : 1;
  return {
    format: "arbor-bundle/1",
    task: m.task,
    target: "y",
    features,
    classes:
      m.task === "binary"
        ? ["no", "yes"]
        : m.task === "multiclass"
          ? Array.from({ length: k }, (_, i) => `k${i}`)
          : undefined,
    objective:
      m.task === "binary"
        ? "binary:logistic"
        : m.task === "multiclass"
          ? "multi:softmax"
          : "reg:squarederror",
    baseScore: new Array(k).fill(0),
    numTrees: m.numTrees,
    source: "arbor",
  };
}

/** Publish a bundle at `models/{name}/v{version}/`; returns the manifest sha256. */
export async function publishFixture(
  store: ArtifactStore,
  m: FixtureModel,
): Promise<{ manifestSha256: string; signature: Signature; onnx: Uint8Array }> {
  const signature = fixtureSignature(m);
  const k = m.task === "multiclass" ? (m.numClasses ?? 3) : 1;
  const ensemble = randomEnsemble({
    seed: m.seed,
    numFeatures: m.numFeatures,
    numTrees: m.numTrees * k,
    depth: m.depth,
    numOutputs: k,
    categories: m.categories,
  });
  signature.baseScore = Array.from(ensemble.baseScore);
  const onnx = encodeEnsembleOnnx(ensemble, signature);
  const files: Record<string, Uint8Array | string> = {
    "model.onnx": onnx,
    "signature.json": JSON.stringify(signature, null, 2),
    "metrics.json": JSON.stringify({ fixture: true, seed: m.seed }),
  };
  const manifest: Manifest = {
    format: "arbor-manifest/1",
    name: m.name,
    version: m.version,
    createdAt: new Date().toISOString(),
    files: Object.entries(files).map(([path, data]) => ({
      path,
      sha256: sha(data),
      size: typeof data === "string" ? Buffer.byteLength(data) : data.length,
    })),
  };
  for (const [path, data] of Object.entries(files))
    await store.put(versionFileKey(m.name, m.version, path), data);
  const manifestText = JSON.stringify(manifest, null, 2);
  await store.put(versionFileKey(m.name, m.version, "manifest.json"), manifestText);
  return { manifestSha256: sha(manifestText), signature, onnx };
}

/** Publish `m` and point its `production` label at it. */
export async function publishProduction(
  store: ArtifactStore,
  m: FixtureModel,
): Promise<{ manifestSha256: string; signature: Signature; onnx: Uint8Array }> {
  const f = await publishFixture(store, m);
  await pointLabel(store, m.name, "production", m.version, f.manifestSha256);
  return f;
}

/** The benchmarks' model: 500 random trees of depth 6 on 28 features, binary. */
export const BENCH_MODEL: FixtureModel = {
  name: "flights",
  version: 1,
  task: "binary",
  numFeatures: 28,
  numTrees: 500,
  depth: 6,
  seed: 42,
};

/**
 * A model whose predictions have big replies: 20 classes (~0.2 KB of msgpack, ~0.4 KB of JSON a
 * row) on 4 features with 2 small trees, so that a big predict costs its reply more than its trees.
 */
export const WIDE_MODEL: FixtureModel = {
  name: "wide",
  version: 1,
  task: "multiclass",
  numClasses: 20,
  numFeatures: 4,
  numTrees: 2,
  depth: 3,
  seed: 5,
};

/** Point `label` at `version` (atomic put of the pointer file). */
export async function pointLabel(
  store: ArtifactStore,
  name: string,
  label: string,
  version: number,
  manifestSha256: string,
): Promise<void> {
  const pointer: LabelPointer = {
    model: name,
    label,
    version,
    sha256: manifestSha256,
    updated_at: new Date().toISOString(),
  };
  await store.put(labelKey(name, label), JSON.stringify(pointer));
}

/**
 * The serve suites' standard small model (6 features, 20 trees of depth 4), published as `version`
 * of `name` and labelled `production`.
 */
export async function publishLabelled(
  store: ArtifactStore,
  name: string,
  version: number,
  task: FixtureModel["task"],
  seed: number,
  categories: number[],
): Promise<{ manifestSha256: string; signature: Signature; onnx: Uint8Array }> {
  const f = await publishFixture(store, {
    name,
    version,
    task,
    numFeatures: 6,
    numTrees: 20,
    depth: 4,
    seed,
    categories,
  });
  await pointLabel(store, name, "production", version, f.manifestSha256);
  return f;
}

/** A serve process started by a test. */
export interface ServeProcess {
  port: number;
  url: string;
  proc: import("bun").Subprocess<"ignore", "pipe", "pipe">;
  /** stderr (JSON log lines) collected so far. */
  logs(): string;
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number>;
}

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * The command line of `node --import tsx serve/main.ts` on 127.0.0.1, port 0, one process unless
 * `args` say `--workers` (tests reason about one cache; the default is one per core).
 */
export function serveCommand(args: string[], nodeArgs: string[] = []): string[] {
  return [
    "node",
    ...nodeArgs,
    "--import",
    "tsx",
    "serve/main.ts",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    ...(args.includes("--workers") ? [] : ["--workers", "1"]),
    ...args,
  ];
}

/** Spawn {@link serveCommand} (cwd: the repository) and wait for its `listening` line. */
export async function startServe(
  args: string[],
  env: Record<string, string> = {},
  /** Extra Node.js flags (e.g. `--cpu-prof`, which NODE_OPTIONS does not accept). */
  nodeArgs: string[] = [],
  /** A command to run node under (e.g. `taskset -c 1`). */
  launcher: string[] = [],
): Promise<ServeProcess> {
  const proc = Bun.spawn([...launcher, ...serveCommand(args, nodeArgs)], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      ARBOR_LOG_LEVEL: "info",
      ...env,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let err = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) err += dec.decode(chunk);
  })();
  const reader = proc.stdout.getReader();
  const dec = new TextDecoder();
  let out = "";
  let port = 0;
  while (port === 0) {
    const { value, done } = await reader.read();
    if (done)
      throw new Error(`serve exited before listening (code ${await proc.exited}): ${err.slice(-2000)}`);
    out += dec.decode(value);
    const m = /\{"listening":\{[^\n]*"port":(\d+)/.exec(out);
    if (m) port = Number(m[1]);
  }
  reader.releaseLock();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    proc,
    logs: () => err,
    stop: async () => {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return await proc.exited;
    },
  };
}

const SOME_MASK = Uint8Array.from([1, 2, 3, 4]);

/**
 * A client's WebSocket frame (RFC 6455, one frame, masked): text or binary. The default mask of
 * zeros leaves the payload as it is, so a big frame can be built once and written many times.
 */
export function wsFrame(payload: Uint8Array, text: boolean, mask: Uint8Array = new Uint8Array(4)): Buffer {
  const n = payload.length;
  const head = Buffer.alloc(n < 126 ? 2 : n < 65536 ? 4 : 10);
  head[0] = text ? 0x81 : 0x82;
  if (n < 126) head[1] = 0x80 | n;
  else if (n < 65536) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  const body = Buffer.from(payload);
  for (let i = 0; i < n; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

/**
 * A minimal RFC 6455 client over node:net (so that it can stop reading: `socket.pause()`): masked
 * frames out (text for a string, binary for bytes), unmasked frames in, collected in `frames`.
 */
export async function wsRawClient(port: number) {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  socket.write(
    "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  let buf = Buffer.alloc(0);
  let upgraded = false;
  let closed = false;
  const frames: { opcode: number; payload: Buffer }[] = [];
  let status = "";
  socket.on("close", () => {
    closed = true;
  });
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (!upgraded) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      status = buf.subarray(0, buf.indexOf("\r\n")).toString();
      upgraded = true;
      buf = buf.subarray(end + 4);
    }
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + len) return;
      frames.push({ opcode: buf[0] & 0x0f, payload: buf.subarray(at, at + len) });
      buf = buf.subarray(at + len);
    }
  });
  const send = (message: string | Uint8Array) => {
    const text = typeof message === "string";
    socket.write(wsFrame(text ? Buffer.from(message) : message, text, SOME_MASK));
  };
  const until = async (cond: () => boolean, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error("timed out");
      await Bun.sleep(10);
    }
  };
  return { socket, frames, send, until, status: () => status, closed: () => closed };
}
