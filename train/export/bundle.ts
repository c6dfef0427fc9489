/**
 * Write a model bundle: model.onnx, signature.json, metrics.json, then manifest.json (sha256 and
 * size of each) last. Files go into a temporary sibling folder that is renamed into place, so a
 * reader sees either no bundle or a whole one.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  BUNDLE_FILES,
  type Lineage,
  type Manifest,
  manifestSchema,
  type Signature,
  signatureSchema,
} from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import { encodeEnsembleOnnx } from "../../shared/onnx/encode.ts";
import type { TreeEnsemble } from "../../shared/tree.ts";

/** What goes into a bundle. */
export interface BundleContent {
  ensemble: TreeEnsemble;
  signature: Signature;
  metrics: Record<string, unknown>;
  lineage?: Lineage;
}

/** Hex sha256 of bytes. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

const KNOWN = new Set<string>(Object.values(BUNDLE_FILES));

/** Write the bundle folder `dir` (replacing an earlier bundle there) and return its manifest. */
export async function writeBundle(dir: string, content: BundleContent): Promise<Manifest> {
  const target = path.resolve(dir);
  const signature = signatureSchema.parse(content.signature);
  const files: [string, Uint8Array][] = [
    [BUNDLE_FILES.model, encodeEnsembleOnnx(content.ensemble, signature)],
    [BUNDLE_FILES.signature, new TextEncoder().encode(`${JSON.stringify(signature, null, 2)}\n`)],
    [BUNDLE_FILES.metrics, new TextEncoder().encode(`${JSON.stringify(content.metrics, null, 2)}\n`)],
  ];
  const manifest: Manifest = manifestSchema.parse({
    format: "arbor-manifest/1",
    createdAt: new Date().toISOString(),
    files: files.map(([name, data]) => ({ path: name, sha256: sha256Hex(data), size: data.byteLength })),
    ...(content.lineage ? { lineage: content.lineage } : {}),
  });
  const existing = await readdir(target).catch(() => null);
  if (existing?.some((f) => !KNOWN.has(f))) {
    throw arborError(
      "INVALID_ARGUMENT",
      `write bundle: --out "${dir}" is a folder with other files; give a new or bundle-only folder`,
    );
  }
  await mkdir(path.dirname(target), { recursive: true });
  const suffix = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const tmp = `${target}.tmp-${suffix}`;
  await mkdir(tmp);
  try {
    for (const [name, data] of files) await writeFile(path.join(tmp, name), data);
    await writeFile(path.join(tmp, BUNDLE_FILES.manifest), `${JSON.stringify(manifest, null, 2)}\n`);
    if (existing) {
      const old = `${target}.old-${suffix}`;
      await rename(target, old);
      await rename(tmp, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, target);
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return manifest;
}
