import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { manifestSchema } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import { randomEnsemble, signatureFor } from "../shared/onnx/random.ts";
import { sha256Hex, writeBundle } from "../train/export/bundle.ts";
import { loadBundle } from "../train/export/load.ts";

async function tmp(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), "arbor-bundle-"));
}

describe("bundle", () => {
  test("writeBundle writes the four files with a manifest of sha256 and size; loadBundle verifies them", async () => {
    const root = await tmp();
    try {
      const e = randomEnsemble({ seed: 1, numFeatures: 3, numTrees: 5, depth: 3, categories: [0, 4, 0] });
      const dir = path.join(root, "nested", "model");
      const manifest = await writeBundle(dir, {
        ensemble: e,
        signature: signatureFor(e, "binary", [0, 4, 0]),
        metrics: { auc: 0.9 },
      });
      expect((await readdir(dir)).sort()).toEqual([
        "manifest.json",
        "metrics.json",
        "model.onnx",
        "signature.json",
      ]);
      expect((await readdir(path.join(root, "nested"))).length).toBe(1);
      const onDisk = manifestSchema.parse(
        JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")),
      );
      expect(onDisk).toEqual(manifest);
      for (const f of manifest.files) {
        const data = await readFile(path.join(dir, f.path));
        expect(f.sha256).toBe(sha256Hex(data));
        expect(f.size).toBe(data.byteLength);
      }
      const loaded = await loadBundle(dir);
      expect(loaded.ensemble).toEqual(e);
      // Rewriting the same folder replaces the bundle.
      await writeBundle(dir, {
        ensemble: e,
        signature: signatureFor(e, "binary", [0, 4, 0]),
        metrics: { auc: 1 },
      });
      expect(JSON.parse(await readFile(path.join(dir, "metrics.json"), "utf8"))).toEqual({ auc: 1 });
      // A flipped byte is caught.
      const model = await readFile(path.join(dir, "model.onnx"));
      model[model.length - 5] ^= 1;
      await writeFile(path.join(dir, "model.onnx"), model);
      let err: unknown;
      try {
        await loadBundle(dir);
      } catch (x) {
        err = x;
      }
      expect(isArborError(err, "STORE_INTEGRITY")).toBe(true);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test("a folder with foreign files is not overwritten", async () => {
    const root = await tmp();
    try {
      await writeFile(path.join(root, "notes.txt"), "keep me");
      const e = randomEnsemble({ seed: 1, numFeatures: 2, numTrees: 1, depth: 1 });
      let err: unknown;
      try {
        await writeBundle(root, { ensemble: e, signature: signatureFor(e, "regression", []), metrics: {} });
      } catch (x) {
        err = x;
      }
      expect(isArborError(err, "INVALID_ARGUMENT")).toBe(true);
      expect(await readFile(path.join(root, "notes.txt"), "utf8")).toBe("keep me");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
