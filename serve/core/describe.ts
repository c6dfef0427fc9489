/** Bodies of GET /v1/models and GET /v1/models/{name}: versions loaded, labels, signature, state. */
import { arborError } from "../../shared/errors.ts";
import type { ModelSlot } from "../model-cache/slot.ts";
import type { ServeCore } from "./service.ts";

function slotInfo(core: ServeCore, slot: ModelSlot): Record<string, unknown> {
  return {
    version: slot.version,
    task: slot.signature.task,
    bytes: slot.bytes,
    manifest_sha256: slot.manifestSha256,
    loaded_at: slot.loadedAt,
    in_flight: core.cache.requestsUsing(slot),
  };
}

/** Every followed model with its labels and loaded versions. */
export function listModels(core: ServeCore): Record<string, unknown> {
  const models: Record<string, unknown>[] = [];
  for (const name of core.cache.modelNames()) {
    const labels: Record<string, number | null> = {};
    for (const [label, st] of core.cache.labels(name) ?? [])
      if (st.state !== "absent") labels[label] = st.slot?.version ?? null;
    models.push({ name, labels, versions: core.cache.loadedVersions(name).map((s) => s.version) });
  }
  return { models };
}

/** One model: labels (state, version, errors), loaded versions, failures, signature. */
export function describeModel(core: ServeCore, name: string): Record<string, unknown> {
  const labels = core.cache.labels(name);
  const loaded = core.cache.loadedVersions(name);
  if (labels === undefined && loaded.length === 0) {
    throw arborError("MODEL_NOT_FOUND", `describe model: no model '${name}' is served`);
  }
  const labelOut: Record<string, unknown> = {};
  for (const [label, st] of labels ?? []) {
    labelOut[label] = {
      state: st.state,
      version: st.slot?.version ?? null,
      pointer_version: st.pointerVersion,
      error: st.error,
    };
  }
  const serving = labels?.get(core.defaultLabel)?.slot ?? loaded[loaded.length - 1] ?? null;
  return {
    name,
    labels: labelOut,
    versions: loaded.map((slot) => slotInfo(core, slot)),
    failures: core.cache.failures(name),
    signature: serving?.signature ?? null,
  };
}
