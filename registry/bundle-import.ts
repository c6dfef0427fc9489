/**
 * Reading a bundle folder for registration: check it is a bundle (required files, a valid
 * signature.json, a JSON metrics.json) and copy its files into the store streamed, hashing on the way.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import {
  BUNDLE_FILES,
  type Manifest,
  type ManifestFile,
  manifestSchema,
  REQUIRED_BUNDLE_FILES,
  type Signature,
  signatureSchema,
} from "../shared/bundle.ts";
import { arborError } from "../shared/errors.ts";
import type { ArtifactStore } from "./store/artifact-store.ts";

/** One file of a bundle folder. */
export interface BundleSourceFile {
  name: string;
  path: string;
  size: number;
}

/** A bundle folder that passed validation. */
export interface BundleSource {
  dir: string;
  /** Files to publish (everything at the top level but manifest.json), model/signature/metrics first. */
  files: BundleSourceFile[];
  signature: Signature;
  metrics: Record<string, unknown>;
  /** The folder's own manifest.json when it has one (checked against the copied bytes). */
  sourceManifest: Manifest | null;
}

const ORDER: readonly string[] = [BUNDLE_FILES.model, BUNDLE_FILES.signature, BUNDLE_FILES.metrics];

/** Validate a bundle folder; BUNDLE_INVALID naming the file and the problem. */
export async function inspectBundle(dir: string): Promise<BundleSource> {
  const abs = path.resolve(dir);
  const info = await stat(abs).catch(() => null);
  if (!info?.isDirectory()) {
    throw arborError("BUNDLE_INVALID", `register: --bundle ${dir} is not a folder`);
  }
  const entries = await readdir(abs, { withFileTypes: true });
  const files: BundleSourceFile[] = [];
  for (const e of entries) {
    if (!e.isFile() || e.name.startsWith(".") || e.name === BUNDLE_FILES.manifest) continue;
    const p = path.join(abs, e.name);
    files.push({ name: e.name, path: p, size: (await stat(p)).size });
  }
  const missing = REQUIRED_BUNDLE_FILES.filter((f) => !files.some((x) => x.name === f));
  if (missing.length > 0) {
    throw arborError("BUNDLE_INVALID", `register: bundle ${dir} lacks ${missing.join(", ")}`);
  }
  files.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));

  const signatureJson = await readJson(path.join(abs, BUNDLE_FILES.signature), dir);
  const parsed = signatureSchema.safeParse(signatureJson);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw arborError("BUNDLE_INVALID", `register: ${dir}/signature.json is invalid: ${problems.join("; ")}`);
  }
  const metrics = await readJson(path.join(abs, BUNDLE_FILES.metrics), dir);
  if (metrics === null || typeof metrics !== "object" || Array.isArray(metrics)) {
    throw arborError("BUNDLE_INVALID", `register: ${dir}/metrics.json must hold a JSON object`);
  }

  let sourceManifest: Manifest | null = null;
  const manifestPath = path.join(abs, BUNDLE_FILES.manifest);
  if (entries.some((e) => e.isFile() && e.name === BUNDLE_FILES.manifest)) {
    const m = manifestSchema.safeParse(await readJson(manifestPath, dir));
    if (!m.success) throw arborError("BUNDLE_INVALID", `register: ${dir}/manifest.json is invalid`);
    sourceManifest = m.data;
  }
  return {
    dir: abs,
    files,
    signature: parsed.data,
    metrics: metrics as Record<string, unknown>,
    sourceManifest,
  };
}

/** Stream one file into the store under `key`, returning its sha256 and size as read. */
export async function copyToStore(
  store: ArtifactStore,
  key: string,
  file: BundleSourceFile,
): Promise<ManifestFile> {
  const hash = createHash("sha256");
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const source = createReadStream(file.path);
  source.on("error", (e) => tap.destroy(e));
  try {
    await store.put(key, source.pipe(tap));
  } finally {
    // pipe() does not destroy the source when the store gives up on `tap`: close the file here.
    source.destroy();
  }
  return { path: file.name, sha256: hash.digest("hex"), size };
}

/** BUNDLE_INVALID when the folder's own manifest disagrees with what was copied. */
export function checkAgainstSourceManifest(source: BundleSource, copied: readonly ManifestFile[]): void {
  if (!source.sourceManifest) return;
  for (const expected of source.sourceManifest.files) {
    const got = copied.find((f) => f.path === expected.path);
    if (got && (got.sha256 !== expected.sha256 || got.size !== expected.size)) {
      throw arborError(
        "BUNDLE_INVALID",
        `register: ${source.dir}/${expected.path} differs from the bundle's manifest.json (sha256 or size)`,
      );
    }
  }
}

/** sha256 hex of bytes. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

function rank(name: string): number {
  const i = ORDER.indexOf(name);
  return i === -1 ? ORDER.length : i;
}

async function readJson(file: string, dir: string): Promise<unknown> {
  const text = await readFile(file, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw arborError("BUNDLE_INVALID", `register: ${dir}/${path.basename(file)} is not valid JSON`, {
      cause: e,
    });
  }
}
