/**
 * Open the artifact store a URI names: `file://…` or a local path → FileArtifactStore,
 * `gs://bucket/prefix` → GcsArtifactStore (loaded lazily so file-only processes never load the
 * Cloud Storage client).
 */
import { arborError } from "../../shared/errors.ts";
import type { ArtifactStore } from "./artifact-store.ts";
import { FileArtifactStore } from "./file-store.ts";

/** Options for {@link openArtifactStore}; both come from config (`STORAGE_EMULATOR_HOST`, `ARBOR_GCS_PROJECT`). */
export interface OpenStoreOptions {
  /** Cloud Storage endpoint, e.g. `http://127.0.0.1:4443` for a test server. */
  gcsEndpoint?: string | undefined;
  /** Project id for the Cloud Storage client. */
  gcsProject?: string | undefined;
}

/** A store opener bound to the GCS settings of a configuration, for code that opens URIs it is given. */
export function storeOpener(options: OpenStoreOptions): (uri: string) => Promise<ArtifactStore> {
  return (uri) =>
    openArtifactStore(uri, { gcsEndpoint: options.gcsEndpoint, gcsProject: options.gcsProject });
}

/** Open the store named by `uri`; STORE_BAD_URI for any other scheme. */
export async function openArtifactStore(uri: string, options: OpenStoreOptions = {}): Promise<ArtifactStore> {
  if (typeof uri !== "string" || uri.length === 0) {
    throw arborError("STORE_BAD_URI", "open artifact store: uri must be a non-empty string");
  }
  if (uri.startsWith("gs://")) {
    const { GcsArtifactStore } = await import("./gcs-store.ts");
    return GcsArtifactStore.create(uri, { endpoint: options.gcsEndpoint, projectId: options.gcsProject });
  }
  if (uri.startsWith("file:") || !/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(uri)) return FileArtifactStore.create(uri);
  throw arborError(
    "STORE_BAD_URI",
    `open artifact store: '${uri}' is not a file:// URI, gs:// URI or local path`,
  );
}
