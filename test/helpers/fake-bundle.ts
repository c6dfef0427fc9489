/**
 * Small fake bundle folders for registry tests: a valid signature.json and metrics.json; the
 * model.onnx bytes are arbitrary (the registry never parses them).
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Lineage, Manifest, Signature } from "../../shared/bundle.ts";

/** A minimal valid binary-classifier signature. */
const FAKE_SIGNATURE: Signature = {
  format: "arbor-bundle/1",
  task: "binary",
  target: "delayed",
  features: [
    { name: "distance", type: "numeric" },
    { name: "carrier", type: "categorical", categories: ["AA", "UA"] },
  ],
  classes: ["0", "1"],
  objective: "binary:logistic",
  baseScore: [0],
  numTrees: 3,
  source: "arbor",
};

/** Write a fake bundle under `dir`; `seed` varies the model bytes so versions differ. */
export async function writeFakeBundle(
  dir: string,
  seed = 0,
  options: { modelBytes?: number; manifestLineage?: Lineage } = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const size = options.modelBytes ?? 2048;
  const model = new Uint8Array(size);
  for (let i = 0; i < size; i++) model[i] = (i * 31 + seed * 7) & 0xff;
  await writeFile(path.join(dir, "model.onnx"), model);
  await writeFile(path.join(dir, "signature.json"), JSON.stringify(FAKE_SIGNATURE));
  await writeFile(path.join(dir, "metrics.json"), JSON.stringify({ valid: { auc: 0.7 + seed / 1000 } }));
  if (options.manifestLineage) {
    // Like train/export/bundle.ts: the bundle's own manifest, with its lineage.
    const files = [];
    for (const f of ["model.onnx", "signature.json", "metrics.json"]) {
      const bytes = await readFile(path.join(dir, f));
      files.push({ path: f, sha256: createHash("sha256").update(bytes).digest("hex"), size: bytes.length });
    }
    const manifest: Manifest = {
      format: "arbor-manifest/1",
      createdAt: new Date().toISOString(),
      files,
      lineage: options.manifestLineage,
    };
    await writeFile(path.join(dir, "manifest.json"), JSON.stringify(manifest));
  }
  return dir;
}
