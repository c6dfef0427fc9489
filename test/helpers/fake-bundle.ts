/**
 * Small fake bundle folders for registry tests: a valid signature.json and metrics.json; the
 * model.onnx bytes are arbitrary (the registry never parses them).
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Signature } from "../../shared/bundle.ts";

/** A minimal valid binary-classifier signature. */
export const FAKE_SIGNATURE: Signature = {
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
  options: { modelBytes?: number } = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const size = options.modelBytes ?? 2048;
  const model = new Uint8Array(size);
  for (let i = 0; i < size; i++) model[i] = (i * 31 + seed * 7) & 0xff;
  await writeFile(path.join(dir, "model.onnx"), model);
  await writeFile(path.join(dir, "signature.json"), JSON.stringify(FAKE_SIGNATURE));
  await writeFile(path.join(dir, "metrics.json"), JSON.stringify({ valid: { auc: 0.7 + seed / 1000 } }));
  return dir;
}
