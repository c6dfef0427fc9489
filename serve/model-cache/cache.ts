/**
 * The model cache: loaded versions in an LRU (lru-cache, bounded by count and bytes), label
 * pointers followed in the store, on-demand loads of explicit versions (bounded concurrency, one
 * load per version at a time). A label swaps to a new slot only after the slot is fully loaded and
 * warmed up; requests already holding the old slot finish on it.
 *
 * One reference count owns a slot's ORT session: the LRU holds a reference while the slot is in
 * it, each label serving it holds one, and each request holds one; the session is released when the
 * last goes. A load hands every caller waiting on it a reference taken the moment it ends, before
 * the slot enters the LRU, so no eviction can release a session between its load and its callers.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { LRUCache } from "lru-cache";
import type { ArtifactStore } from "../../registry/store/artifact-store.ts";
import { decodeLabelPointer } from "../../shared/bundle.ts";
import { arborError, isArborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { labelKey } from "../../shared/paths.ts";
import { NAME_PATTERN, type ServeConfig } from "../config.ts";
import { clientError } from "../core/client-error.ts";
import { forgetExplainer } from "../explain.ts";
import type { ServeMetrics } from "../metrics.ts";
import { loadSlot } from "./loader.ts";
import type { ModelSlot, SlotBatching } from "./slot.ts";

/** What the server knows about one followed label. Mutable in place; read by GET /v1/models. */
export interface LabelState {
  label: string;
  slot: ModelSlot | null;
  /** Version the pointer names (may differ from slot.version while loading or after a failure). */
  pointerVersion: number | null;
  pointerGeneration: string | null;
  state: "loading" | "ready" | "failed" | "absent";
  error: { code: string; message: string; version: number | null; at: string } | null;
  lastAttemptAt: number;
}

/** Load failures of explicit versions, kept for GET /v1/models/{name}. */
interface VersionFailure {
  code: string;
  message: string;
  at: string;
  /** Date.now() of the failure, for the retry back-off. */
  atMs: number;
}

/** A load under way: callers asking for the same version meanwhile share it. */
interface PendingLoad {
  /** Callers waiting on it, each owed a reference to the slot. */
  callers: number;
  slot: Promise<ModelSlot>;
}

const RETRY_FAILED_MS = 30_000;
/** How long "this version is not in the store" is believed without asking the store again. */
const MISSING_TTL_MS = 2_000;
/**
 * How long a failure is believed: a bundle that failed to load fails the same way again, while a
 * store that could not be reached (its client has already retried) is asked again soon.
 */
const retryAfterMs = (code: string): number =>
  code === "STORE_UNAVAILABLE" ? MISSING_TTL_MS : RETRY_FAILED_MS;
const MAX_FAILURES = 1000;
/** How long a metadata request waits for a model's first version listing. */
const LIST_WAIT_MS = 1_000;
/** How long after a version's release its request series are retired. */
const FORGET_AFTER_MS = 1_000;

/** An arbor home folder given as the store (its store is the `store/` folder in it): say so. */
function homeHint(uri: string): { hint?: string } {
  if (!uri.startsWith("file://")) return {};
  const inner = path.join(fileURLToPath(uri), "store");
  return existsSync(path.join(inner, "models"))
    ? { hint: `this looks like an arbor home folder: its store is ${pathToFileURL(inner).href}` }
    : {};
}

/** Cache of loaded versions plus the label pointers the server follows. */
export class ModelCache {
  readonly #store: ArtifactStore;
  readonly #config: ServeConfig;
  readonly #logger: Logger;
  readonly #metrics: ServeMetrics;
  readonly #batching: SlotBatching;
  readonly #lru: LRUCache<string, ModelSlot>;
  readonly #pins = new Map<ModelSlot, number>();
  readonly #labels = new Map<string, Map<string, LabelState>>();
  readonly #loading = new Map<string, PendingLoad>();
  readonly #failures = new Map<string, VersionFailure>();
  /** Versions requested but not in the store, by `name@version`: when, and the error to answer. */
  readonly #missing = new Map<
    string,
    { atMs: number; code: "VERSION_NOT_FOUND" | "MODEL_NOT_FOUND"; message: string }
  >();
  #active = 0;
  readonly #waiters: (() => void)[] = [];
  #scanned = false;
  #closed = false;
  /** Versions with a manifest in the store, by model: when listed, and what. */
  readonly #listed = new Map<
    string,
    { atMs: number; versions: number[] | null; listing: Promise<void> | null }
  >();
  /** Model folders with label pointers whose names are not model names (warned about once). */
  readonly #badNames = new Set<string>();
  /** Date.now() of the first of the latest run of label refreshes that met store errors. */
  #storeFailingSince: number | null = null;

  constructor(store: ArtifactStore, config: ServeConfig, logger: Logger, metrics: ServeMetrics) {
    this.#store = store;
    this.#config = config;
    this.#logger = logger;
    this.#metrics = metrics;
    this.#batching = {
      enabled: config.batching,
      maxRows: config.batchMaxRows,
      maxWaitUs: config.batchMaxWaitUs,
      onRun: (rows) => metrics.batchRows.observe(rows),
    };
    this.#lru = new LRUCache<string, ModelSlot>({
      max: config.cacheMaxModels,
      maxSize: config.cacheMaxBytes,
      sizeCalculation: (slot) => Math.max(1, slot.bytes),
      dispose: (slot, key, reason) => {
        if (reason === "evict") {
          metrics.evictions.inc({ model: slot.name });
          this.#logger.info({ model: slot.name, version: slot.version, key }, "evicted from the model cache");
        }
        slot.release(); // the LRU's reference
        this.#updateGauges();
      },
    });
  }

  /**
   * A version's session is gone: its explainer leaves the explain thread, and its request series
   * go too (after one more scrape; see RequestStats.forget) — later, since its last requests
   * release it before their replies are written and counted.
   */
  readonly #onReleased = (slot: ModelSlot): void => {
    forgetExplainer(slot);
    if (this.#closed) return;
    setTimeout(() => {
      // Loaded again meanwhile (a new slot of the same version): its series are in use.
      if (this.#held(slot.name, slot.version, false) !== undefined) return;
      this.#metrics.stats.forget(slot.name, String(slot.version));
    }, FORGET_AFTER_MS).unref();
  };

  /**
   * The loaded slot of `name@version` the cache holds: in the LRU (`touch`: as used, for its
   * recency), or evicted from it but still served by a label (no second copy is loaded).
   */
  #held(name: string, version: number, touch = true): ModelSlot | undefined {
    const key = `${name}@${version}`;
    const cached = touch ? this.#lru.get(key) : this.#lru.peek(key);
    if (cached !== undefined) return cached;
    for (const slot of this.#pins.keys()) if (slot.name === name && slot.version === version) return slot;
    return undefined;
  }

  #updateGauges(): void {
    let bytes = this.#lru.calculatedSize;
    let entries = this.#lru.size;
    // Pinned slots outside the LRU (evicted while a label still points at them) still hold memory.
    for (const slot of this.#pins.keys()) {
      if (this.#lru.peek(`${slot.name}@${slot.version}`) !== slot) {
        bytes += slot.bytes;
        entries++;
      }
    }
    this.#metrics.cacheBytes.set(bytes);
    this.#metrics.cacheEntries.set(entries);
  }

  /** A label starts serving `slot`, with a reference its caller already holds. */
  #pin(slot: ModelSlot): void {
    this.#pins.set(slot, (this.#pins.get(slot) ?? 0) + 1);
  }

  /** A label stops serving `slot`: its reference goes. */
  #unpin(slot: ModelSlot): void {
    const n = (this.#pins.get(slot) ?? 0) - 1;
    if (n > 0) this.#pins.set(slot, n);
    else this.#pins.delete(slot);
    slot.release();
  }

  async #acquireLoadPermit(): Promise<void> {
    // Queued callers go first: a free permit is only free when nobody waits for it.
    if (this.#active < this.#config.loadConcurrency && this.#waiters.length === 0) {
      this.#active++;
      return;
    }
    // The permit is handed over by #releaseLoadPermit, so no call can take it in between.
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  #releaseLoadPermit(): void {
    const next = this.#waiters.shift();
    if (next !== undefined) next();
    else this.#active--;
  }

  /**
   * A version, loaded once however many callers ask for it meanwhile, and kept in the LRU. Resolves
   * with a reference taken for this caller: release it, or make it a label's (see {@link #pin}).
   */
  #load(name: string, version: number): Promise<ModelSlot> {
    const key = `${name}@${version}`;
    const held = this.#held(name, version);
    if (held !== undefined) return Promise.resolve(held.acquire());
    const pending = this.#loading.get(key);
    if (pending !== undefined) {
      pending.callers++;
      return pending.slot;
    }
    const load: PendingLoad = { callers: 1, slot: this.#loadFromStore(name, version, () => load.callers) };
    this.#loading.set(key, load);
    return load.slot;
  }

  async #loadFromStore(name: string, version: number, callers: () => number): Promise<ModelSlot> {
    const key = `${name}@${version}`;
    await this.#acquireLoadPermit();
    const started = performance.now();
    try {
      const slot = await loadSlot(this.#store, name, version, {
        batching: this.#batching,
        logger: this.#logger,
        onReleased: this.#onReleased,
      });
      this.#metrics.loads.inc({ model: name, result: "ok" });
      this.#failures.delete(key);
      this.#logger.info(
        { model: name, version, bytes: slot.bytes, ms: Math.round(performance.now() - started) },
        "loaded model version",
      );
      // One reference per caller, taken before the LRU can evict anything.
      for (let i = callers(); i > 0; i--) slot.acquire();
      this.#lru.set(key, slot);
      // A slot bigger than the whole byte budget is not kept: its callers' references are all.
      if (this.#lru.peek(key) === slot) slot.acquire();
      this.#updateGauges();
      return slot;
    } catch (e) {
      const err = isArborError(e) ? e : arborError("MODEL_LOAD_FAILED", String(e), { cause: e });
      // A version that is not in the store is the client's 404, not a failed load: no failure
      // record, no metric (its model name comes from the URL), no error log.
      if (err.code === "VERSION_NOT_FOUND") {
        this.#logger.debug({ model: name, version, err: err.message }, "requested version not in the store");
        throw err;
      }
      this.#metrics.loads.inc({ model: name, result: "failed" });
      // Bounded: requests for random versions must not grow memory without limit.
      if (this.#failures.size >= MAX_FAILURES) this.#failures.delete(this.#failures.keys().next().value!);
      const now = Date.now();
      this.#failures.set(key, {
        code: err.code,
        message: err.message,
        at: new Date(now).toISOString(),
        atMs: now,
      });
      this.#logger.error(
        { model: name, version, code: err.code, err: err.message },
        "model version load failed",
      );
      throw err;
    } finally {
      this.#releaseLoadPermit();
      this.#loading.delete(key);
    }
  }

  /** The slot a label points at, acquired; MODEL_NOT_FOUND / LABEL_NOT_FOUND / MODEL_NOT_READY. */
  acquireLabel(name: string, label: string): ModelSlot {
    const labels = this.#labels.get(name);
    if (labels === undefined) {
      // Before the first listing of the store succeeded, nothing can be called unknown yet.
      if (!this.#scanned)
        throw arborError("MODEL_NOT_READY", "resolve model: the store has not been read yet; retry shortly");
      throw clientError("MODEL_NOT_FOUND", `resolve model: no model '${name}' is served`);
    }
    const st = labels.get(label);
    if (st === undefined || st.state === "absent") {
      throw clientError("LABEL_NOT_FOUND", `resolve model: model '${name}' has no label '${label}' served`);
    }
    if (st.slot === null) {
      throw arborError(
        st.state !== "failed"
          ? "MODEL_NOT_READY"
          : st.error?.code === "STORE_UNAVAILABLE"
            ? "STORE_UNAVAILABLE"
            : "MODEL_LOAD_FAILED",
        `resolve model: '${name}' label '${label}' is ${st.state}${st.error ? `: ${st.error.message}` : ""}`,
      );
    }
    return st.slot.acquire();
  }

  /**
   * The slot of an explicit version, acquired: at once when it is loaded (so a stream's messages
   * for it keep their order with the others), else loaded on demand.
   */
  acquireVersion(name: string, version: number): ModelSlot | Promise<ModelSlot> {
    const key = `${name}@${version}`;
    const held = this.#held(name, version);
    if (held !== undefined) return held.acquire();
    // A version that just failed to load fails the same way again: answer from the record for
    // RETRY_FAILED_MS instead of reading and hashing the whole bundle once per request.
    const failed = this.#failures.get(key);
    if (failed !== undefined && Date.now() - failed.atMs < retryAfterMs(failed.code)) {
      throw arborError(
        failed.code === "STORE_UNAVAILABLE" ? "STORE_UNAVAILABLE" : "MODEL_LOAD_FAILED",
        `resolve model: '${name}' v${version} failed to load at ${failed.at}: ${failed.message}`,
      );
    }
    // Likewise a version found missing a moment ago: one store read per MISSING_TTL_MS, not one
    // per request.
    const missing = this.#missing.get(key);
    if (missing !== undefined && Date.now() - missing.atMs < MISSING_TTL_MS)
      throw clientError(missing.code, missing.message);
    return this.#loadVersion(name, version);
  }

  /** Whether `name@version` is loaded (acquiring it would not load it). */
  isLoaded(name: string, version: number): boolean {
    return this.#held(name, version, false) !== undefined;
  }

  async #loadVersion(name: string, version: number): Promise<ModelSlot> {
    let loaded: ModelSlot;
    try {
      loaded = await this.#load(name, version);
    } catch (e) {
      if (isArborError(e, "VERSION_NOT_FOUND")) {
        const missing = (await this.#modelInStore(name))
          ? {
              code: "VERSION_NOT_FOUND" as const,
              message: `resolve model: '${name}' has no version ${version} in the store`,
            }
          : { code: "MODEL_NOT_FOUND" as const, message: `resolve model: no model '${name}' in the store` };
        if (this.#missing.size >= MAX_FAILURES) this.#missing.delete(this.#missing.keys().next().value!);
        this.#missing.set(`${name}@${version}`, { atMs: Date.now(), ...missing });
        throw clientError(missing.code, missing.message);
      }
      throw arborError(
        isArborError(e, "STORE_UNAVAILABLE") ? "STORE_UNAVAILABLE" : "MODEL_LOAD_FAILED",
        `resolve model: '${name}' v${version} failed to load: ${(e as Error).message}`,
        { cause: e },
      );
    }
    return loaded; // with this request's reference
  }

  /** Whether the store has anything of model `name` (a store that cannot be asked: assume so). */
  async #modelInStore(name: string): Promise<boolean> {
    if (this.#labels.has(name)) return true;
    try {
      return (await this.#store.list(`models/${name}/`)).length > 0;
    } catch {
      return true;
    }
  }

  /**
   * Model names to follow: the configured ones, or every model with a pointer in the store. Only
   * the label pointers are listed (`models/*` then each model's `labels/`; one matchGlob request on
   * gs://), never the version folders: a listing of `models/` grows with every file of every
   * version, and discovery runs on every label event and every few polls.
   */
  async #modelNames(): Promise<string[]> {
    if (this.#config.models.length > 0) return [...this.#config.models];
    const names = new Set<string>();
    for (const obj of await this.#store.listMatching("models/*/labels/*.json")) {
      const name = obj.key.split("/")[1];
      if (NAME_PATTERN.test(name)) names.add(name);
      else if (!this.#badNames.has(name) && this.#badNames.size < MAX_FAILURES) {
        // No request could name it (the routes take the same names): say so once, not serve it.
        this.#badNames.add(name);
        this.#logger.warn(
          { model: name.slice(0, 200) },
          "a model folder in the store has a name no request can use; not served",
        );
      }
    }
    return [...names].sort();
  }

  /**
   * Check every followed label once (pointer generations) and load what moved. With `discover`,
   * first list the store for models that gained a label pointer (a listing of `models/` is far
   * costlier than a stat per pointer on gs://, so the follower asks for it less often).
   */
  async refresh(discover = true): Promise<void> {
    let answered = false;
    try {
      answered = await this.#checkLabels(discover);
    } finally {
      this.#refreshed(answered);
    }
  }

  /** Count a round of label checks; say when the store answers again after errors. */
  #refreshed(answered: boolean): void {
    this.#metrics.labelRefreshes.inc({ result: answered ? "ok" : "failed" });
    const now = Date.now();
    if (!answered) {
      this.#storeFailingSince ??= now;
      return;
    }
    this.#metrics.labelRefreshLastOk.set(now / 1000);
    if (this.#storeFailingSince !== null) {
      this.#logger.info(
        { store: this.#store.uri, failing_ms: now - this.#storeFailingSince },
        "the store answers label checks again",
      );
      this.#storeFailingSince = null;
    }
  }

  /** {@link refresh}; false when the store could not be read for some label. */
  async #checkLabels(discover: boolean): Promise<boolean> {
    // Known models stay in the list even when a listing no longer shows them: their pointers were
    // deleted, and only a stat of each pointer takes their labels out of service.
    const names =
      discover || this.#labels.size === 0
        ? [...new Set([...(await this.#modelNames()), ...this.#labels.keys()])]
        : [...this.#labels.keys()];
    const work: Promise<boolean>[] = [];
    for (const name of names) {
      let labels = this.#labels.get(name);
      if (labels === undefined) {
        labels = new Map();
        this.#labels.set(name, labels);
      }
      for (const label of this.#config.labels) {
        let st = labels.get(label);
        if (st === undefined) {
          st = {
            label,
            slot: null,
            pointerVersion: null,
            pointerGeneration: null,
            state: "loading",
            error: null,
            lastAttemptAt: 0,
          };
          labels.set(label, st);
        }
        work.push(this.#refreshLabel(name, st));
      }
    }
    const answered = (await Promise.all(work)).every(Boolean);
    if (!this.#scanned) {
      // Say so when the first scan finds nothing to serve: most often a wrong --store or --models.
      const unserved = names.filter(
        (n) => ![...this.#labels.get(n)!.values()].some((st) => st.state !== "absent"),
      );
      if (names.length === 0 || unserved.length === names.length) {
        this.#logger.warn(
          {
            store: this.#store.uri,
            labels: this.#config.labels,
            models: names,
            ...homeHint(this.#store.uri),
          },
          "no followed label points at a version in this store: nothing is served until one does",
        );
      } else if (unserved.length > 0) {
        this.#logger.warn({ models: unserved, labels: this.#config.labels }, "models with no followed label");
      }
    }
    this.#scanned = true;
    return answered;
  }

  /** Check one label's pointer and load what it names if it moved; false when the store failed. */
  async #refreshLabel(name: string, st: LabelState): Promise<boolean> {
    const key = labelKey(name, st.label);
    const info = await this.#store.stat(key).catch((e: unknown) => {
      this.#logger.warn(
        { model: name, label: st.label, err: (e as Error).message },
        "label pointer stat failed",
      );
      return undefined;
    });
    if (info === undefined) return false; // store unreachable: keep serving what we have
    if (info === null) {
      // The pointer is gone (a definite "not found", not an unreachable store): the label is
      // unpublished, so stop serving it (404 LABEL_NOT_FOUND) rather than answer with a stale
      // version nobody points at any more. Requests holding the slot finish on it.
      const old = st.slot;
      st.slot = null;
      st.state = "absent";
      st.pointerVersion = null;
      st.pointerGeneration = null;
      st.error = null;
      if (old !== null) {
        this.#unpin(old);
        this.#updateGauges();
        this.#logger.warn(
          { model: name, label: st.label, version: old.version },
          "label pointer deleted from the store; label no longer served",
        );
      }
      return true;
    }
    // A failed bundle is tried again after RETRY_FAILED_MS; a store that failed, at every poll.
    const failedRecently =
      st.state === "failed" &&
      st.error?.code !== "STORE_UNAVAILABLE" &&
      Date.now() - st.lastAttemptAt < RETRY_FAILED_MS;
    if (info.generation === st.pointerGeneration && (st.state !== "failed" || failedRecently)) return true;
    st.lastAttemptAt = Date.now();
    let version: number | null = null;
    try {
      const obj = await this.#store.read(key);
      const pointer = decodeLabelPointer(obj.data, key);
      version = pointer.version;
      st.pointerVersion = version;
      if (st.slot !== null && st.slot.version === version && st.slot.manifestSha256 === pointer.sha256) {
        // The pointer is back on the version we serve (e.g. a failed promotion rolled back): the
        // earlier failure no longer describes this label.
        st.pointerGeneration = obj.generation;
        st.state = "ready";
        st.error = null;
        return true;
      }
      if (st.slot === null) st.state = "loading";
      const slot = await this.#load(name, version);
      // The pointer names the manifest it promoted: a bundle that is intact on its own terms but
      // not that one is refused for the label (an explicit-version request may still use it).
      if (slot.manifestSha256 !== pointer.sha256) {
        slot.release();
        this.#metrics.loads.inc({ model: name, result: "failed" });
        throw arborError(
          "STORE_INTEGRITY",
          `load ${name} v${version}: manifest.json sha256 ${slot.manifestSha256} differs from the label pointer's ${pointer.sha256}`,
        );
      }
      // Atomic swap: one assignment; requests that already acquired the old slot keep it. The
      // load's reference becomes the label's.
      const old = st.slot;
      this.#pin(slot);
      st.slot = slot;
      st.pointerGeneration = obj.generation;
      st.state = "ready";
      st.error = null;
      if (old !== null && old !== slot) this.#unpin(old);
      this.#updateGauges();
      this.#logger.info(
        { model: name, label: st.label, version, previous: old?.version ?? null },
        "label now served by version",
      );
      return true;
    } catch (e) {
      const err = isArborError(e) ? e : arborError("MODEL_LOAD_FAILED", String(e), { cause: e });
      // #load counts failed loads, but not a version missing from the store (the client's 404 on
      // an explicit-version route); a label pointing at one is a failed update of the label.
      if (err.code === "VERSION_NOT_FOUND") this.#metrics.loads.inc({ model: name, result: "failed" });
      st.pointerGeneration = info.generation;
      // null when the pointer itself could not be read: the version it names is unknown now.
      st.pointerVersion = version;
      st.error = { code: err.code, message: err.message, version, at: new Date().toISOString() };
      st.state = "failed";
      this.#logger.error(
        {
          model: name,
          label: st.label,
          version,
          code: err.code,
          err: err.message,
          serving: st.slot?.version ?? null,
        },
        st.slot === null
          ? "label update failed; the label has no version to serve"
          : "label update failed; keeping the previous version",
      );
      return err.code !== "STORE_UNAVAILABLE";
    }
  }

  /**
   * True once every label found in the store is served by a loaded version; without strict
   * readiness (ARBOR_SERVE_STRICT_READINESS=false), once every label's first load has ended, so
   * that one bad bundle does not take every replica out of its load balancer.
   */
  ready(): boolean {
    if (!this.#scanned) return false;
    for (const labels of this.#labels.values()) {
      for (const st of labels.values()) {
        if (st.slot !== null || st.state === "absent") continue;
        // A first load the store could not serve is still to come, not over.
        if (this.#config.strictReadiness || st.state === "loading" || st.error?.code === "STORE_UNAVAILABLE")
          return false;
      }
    }
    return true;
  }

  /** Names of the models followed. */
  modelNames(): string[] {
    return [...this.#labels.keys()];
  }

  /** Whether a model is followed. */
  hasModel(name: string): boolean {
    return this.#labels.has(name);
  }

  /** Label states of a model (undefined when not followed). */
  labels(name: string): ReadonlyMap<string, LabelState> | undefined {
    return this.#labels.get(name);
  }

  /** Loaded versions of a model (LRU plus pinned). */
  loadedVersions(name: string): ModelSlot[] {
    const seen = new Set<ModelSlot>();
    for (const slot of this.#lru.values()) if (slot.name === name) seen.add(slot);
    for (const slot of this.#pins.keys()) if (slot.name === name) seen.add(slot);
    return [...seen].sort((a, b) => a.version - b.version);
  }

  /**
   * The versions of a model that may be requested, ascending: those loaded, and those with a
   * manifest in the store. The store is listed at most once per MISSING_TTL_MS and one listing at
   * a time; a request waits for the first listing at most LIST_WAIT_MS (a store that does not
   * answer would hold it through its client's retries), then answers from the last listing.
   */
  async availableVersions(name: string): Promise<number[]> {
    let listed = this.#listed.get(name);
    if (listed === undefined) {
      if (this.#listed.size >= MAX_FAILURES) this.#listed.delete(this.#listed.keys().next().value!);
      listed = { atMs: 0, versions: null, listing: null };
      this.#listed.set(name, listed);
    }
    if (listed.listing === null && Date.now() - listed.atMs >= MISSING_TTL_MS) {
      const entry = listed;
      entry.listing = this.#store
        .listMatching(`models/${name}/v*/manifest.json`)
        .then(
          (objects) => {
            const versions: number[] = [];
            for (const o of objects) {
              const v = /^v([1-9]\d*)$/.exec(o.key.split("/")[2]);
              if (v !== null) versions.push(Number(v[1]));
            }
            entry.versions = versions;
          },
          (e: unknown) =>
            this.#logger.warn(
              { model: name, err: (e as Error).message },
              "listing the model's versions failed",
            ),
        )
        .finally(() => {
          entry.atMs = Date.now();
          entry.listing = null;
        });
    }
    if (listed.versions === null && listed.listing !== null) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        listed.listing,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, LIST_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    const all = new Set(listed.versions);
    for (const slot of this.loadedVersions(name)) all.add(slot.version);
    return [...all].sort((a, b) => a - b);
  }

  /** Requests holding `slot` now: its references less the LRU's and the labels'. */
  requestsUsing(slot: ModelSlot): number {
    const inLru = this.#lru.peek(`${slot.name}@${slot.version}`) === slot ? 1 : 0;
    return slot.references - inLru - (this.#pins.get(slot) ?? 0);
  }

  /** Failed loads of explicit versions of a model. */
  failures(name: string): { version: number; code: string; message: string; at: string }[] {
    const out: { version: number; code: string; message: string; at: string }[] = [];
    for (const [key, f] of this.#failures) {
      const at = key.lastIndexOf("@");
      if (key.slice(0, at) === name)
        out.push({ version: Number(key.slice(at + 1)), code: f.code, message: f.message, at: f.at });
    }
    return out;
  }

  /** Drop everything (shutdown). */
  close(): void {
    this.#closed = true;
    for (const labels of this.#labels.values()) {
      for (const st of labels.values()) if (st.slot !== null) this.#unpin(st.slot);
    }
    this.#lru.clear();
  }
}
