/**
 * Load one bundle from the artifact store: read manifest.json, check every file's size and sha256
 * against it (and the manifest's own sha256 against the label pointer when one is given), create
 * the ORT session with one intra-op thread, run a warm-up prediction. Any failure throws and
 * nothing is served from the bundle.
 */
import { createHash } from "node:crypto";
import { Tensor } from "onnxruntime-node";
import type { ArtifactStore } from "../../registry/store/artifact-store.ts";
import { BUNDLE_FILES, type Manifest, manifestSchema, signatureSchema } from "../../shared/bundle.ts";
import { arborError, isArborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { versionFileKey } from "../../shared/paths.ts";
import { OrtSession, SERVE_SESSION_OPTIONS } from "./ort-session.ts";
import { ModelSlot, type SlotBatching } from "./slot.ts";

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Read one file of a bundle. A missing manifest means there is no such version (the client's 404);
 * a file the manifest lists but the store lacks is a broken bundle: a failed load.
 */
async function readKey(
  store: ArtifactStore,
  key: string,
  what: string,
  manifest: boolean,
): Promise<Uint8Array> {
  try {
    return (await store.read(key)).data;
  } catch (e) {
    if (isArborError(e, "STORE_NOT_FOUND")) {
      throw manifest
        ? arborError("VERSION_NOT_FOUND", `load ${what}: '${key}' is not in the store`, { cause: e })
        : arborError(
            "BUNDLE_INVALID",
            `load ${what}: '${key}' is listed in the manifest but not in the store`,
            {
              cause: e,
            },
          );
    }
    throw e;
  }
}

/** Parse JSON bytes, naming the file on failure. */
function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw arborError("BUNDLE_INVALID", `load ${what}: not valid JSON`, { cause: e });
  }
}

/** Load and verify `models/{name}/v{version}/`, returning a warmed-up slot. */
export async function loadSlot(
  store: ArtifactStore,
  name: string,
  version: number,
  options: { batching: SlotBatching; logger: Logger; onReleased?: (slot: ModelSlot) => void },
): Promise<ModelSlot> {
  const what = `${name} v${version}`;
  const manifestBytes = await readKey(
    store,
    versionFileKey(name, version, BUNDLE_FILES.manifest),
    what,
    true,
  );
  const manifestSha256 = sha256(manifestBytes);
  const parsed = manifestSchema.safeParse(parseJson(manifestBytes, `${what} manifest.json`));
  if (!parsed.success)
    throw arborError("BUNDLE_INVALID", `load ${what}: manifest.json: ${parsed.error.message}`);
  const manifest: Manifest = parsed.data;
  const files = new Map<string, Uint8Array>();
  let bytes = manifestBytes.length;
  for (const f of manifest.files) {
    if (f.path.includes("/") || f.path.startsWith(".")) {
      throw arborError("BUNDLE_INVALID", `load ${what}: manifest lists a bad path '${f.path}'`);
    }
    const data = await readKey(store, versionFileKey(name, version, f.path), what, false);
    const actual = sha256(data);
    if (data.length !== f.size || actual !== f.sha256) {
      throw arborError(
        "STORE_INTEGRITY",
        `load ${what}: ${f.path} has sha256 ${actual} (${data.length} bytes), manifest says ${f.sha256} (${f.size} bytes); refusing the bundle`,
      );
    }
    files.set(f.path, data);
    bytes += data.length;
  }
  const modelBytes = files.get(BUNDLE_FILES.model);
  const signatureBytes = files.get(BUNDLE_FILES.signature);
  if (modelBytes === undefined || signatureBytes === undefined) {
    throw arborError("BUNDLE_INVALID", `load ${what}: the manifest must list model.onnx and signature.json`);
  }
  const sig = signatureSchema.safeParse(parseJson(signatureBytes, `${what} signature.json`));
  if (!sig.success) throw arborError("BUNDLE_INVALID", `load ${what}: signature.json: ${sig.error.message}`);
  const metricsBytes = files.get(BUNDLE_FILES.metrics);
  const metrics = metricsBytes
    ? (parseJson(metricsBytes, `${what} metrics.json`) as Record<string, unknown>)
    : {};
  let session: OrtSession;
  try {
    session = new OrtSession(modelBytes, SERVE_SESSION_OPTIONS);
  } catch (e) {
    throw arborError(
      "ONNX_INVALID",
      `load ${what}: onnxruntime refused model.onnx: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const width = sig.data.features.length;
  try {
    if (!session.inputNames.includes("input"))
      throw new Error(`inputs are ${session.inputNames.join(", ")}, not 'input'`);
    // Warm-up: one all-missing row exercises every tree's default path and allocates ORT's buffers.
    const warm = new Float32Array(width).fill(Number.NaN);
    session.run({ input: new Tensor("float32", warm, [1, width]) }, session.outputNames);
  } catch (e) {
    session.release();
    throw arborError("ONNX_INVALID", `load ${what}: warm-up prediction failed: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return new ModelSlot(
    {
      name,
      version,
      signature: sig.data,
      manifest,
      manifestSha256,
      metrics,
      session,
      modelBytes,
      bytes,
      logger: options.logger,
      onReleased: options.onReleased,
    },
    options.batching,
  );
}
