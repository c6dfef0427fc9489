/**
 * Read a bundle folder for scoring: verify every file against manifest.json (STORE_INTEGRITY),
 * decode model.onnx into a TreeEnsemble, parse signature.json.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  BUNDLE_FILES,
  type Manifest,
  manifestSchema,
  type Signature,
  signatureSchema,
} from "../../shared/bundle.ts";
import { arborError, isArborError } from "../../shared/errors.ts";
import { decodeEnsembleOnnx } from "../../shared/onnx/decode.ts";
import type { TreeEnsemble } from "../../shared/tree.ts";
import { sha256Hex } from "./bundle.ts";

/** A verified bundle in memory. */
export interface LoadedBundle {
  dir: string;
  manifest: Manifest;
  signature: Signature;
  modelBytes: Uint8Array;
  ensemble: TreeEnsemble;
}

async function readOrThrow(file: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (e) {
    throw arborError("BUNDLE_INVALID", `load bundle: cannot read ${what} "${file}"`, { cause: e });
  }
}

/** Load and verify the bundle in `dir`. */
export async function loadBundle(dir: string): Promise<LoadedBundle> {
  const root = path.resolve(dir);
  const manifestBytes = await readOrThrow(path.join(root, BUNDLE_FILES.manifest), "manifest");
  let manifest: Manifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(new TextDecoder().decode(manifestBytes)));
  } catch (e) {
    throw arborError(
      "BUNDLE_INVALID",
      `load bundle: ${BUNDLE_FILES.manifest} in "${dir}" is not a manifest`,
      {
        cause: e,
      },
    );
  }
  const contents = new Map<string, Uint8Array>();
  for (const f of manifest.files) {
    if (f.path.includes("/") || f.path.includes("\\") || f.path.startsWith(".")) {
      throw arborError("BUNDLE_INVALID", `load bundle: manifest names an unexpected path "${f.path}"`);
    }
    const data = await readOrThrow(path.join(root, f.path), f.path);
    if (data.byteLength !== f.size || sha256Hex(data) !== f.sha256) {
      throw arborError(
        "STORE_INTEGRITY",
        `load bundle: ${f.path} in "${dir}" does not match its manifest sha256/size`,
      );
    }
    contents.set(f.path, data);
  }
  const modelBytes = contents.get(BUNDLE_FILES.model);
  const signatureBytes = contents.get(BUNDLE_FILES.signature);
  if (!modelBytes || !signatureBytes) {
    throw arborError(
      "BUNDLE_INVALID",
      `load bundle: the manifest of "${dir}" lacks model.onnx or signature.json`,
    );
  }
  let signature: Signature;
  try {
    signature = signatureSchema.parse(JSON.parse(new TextDecoder().decode(signatureBytes)));
  } catch (e) {
    throw arborError("BUNDLE_INVALID", `load bundle: signature.json in "${dir}" is not valid`, { cause: e });
  }
  let ensemble: TreeEnsemble;
  try {
    ensemble = decodeEnsembleOnnx(modelBytes).ensemble;
  } catch (e) {
    if (isArborError(e)) throw e;
    throw arborError("ONNX_INVALID", `load bundle: model.onnx in "${dir}" could not be decoded`, {
      cause: e,
    });
  }
  if (ensemble.numFeatures !== signature.features.length) {
    throw arborError("BUNDLE_INVALID", `load bundle: model.onnx and signature.json disagree on the features`);
  }
  return { dir: root, manifest, signature, modelBytes, ensemble };
}
