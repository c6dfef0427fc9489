/**
 * A loaded model version: its ORT session, the feature plan, the batcher, and a reference count
 * that owns the session: the cache's LRU, each label serving the version and each request using it
 * hold a reference, and the session is released when the last one goes.
 */
import { Tensor } from "onnxruntime-node";
import type { Manifest, Signature } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { FeaturePlan } from "../core/plan.ts";
import { PredictWriter } from "../core/predictions.ts";
import { V2Writer } from "../core/v2-json.ts";
import { Batcher, type BatchSlice, type BatchTarget, type BatchWaiter, type RunOutputs } from "./batcher.ts";
import type { OrtSession } from "./ort-session.ts";

/** Batching settings a slot is created with. */
export interface SlotBatching {
  enabled: boolean;
  maxRows: number;
  maxWaitUs: number;
  onRun?(rows: number): void;
}

/** Everything a loaded version consists of. */
export interface SlotParts {
  name: string;
  version: number;
  signature: Signature;
  manifest: Manifest;
  manifestSha256: string;
  metrics: Record<string, unknown>;
  session: OrtSession;
  modelBytes: Uint8Array;
  bytes: number;
  logger: Logger;
  /** Called once the session is released (the version is no longer loaded in this slot). */
  onReleased?: (slot: ModelSlot) => void;
}

/** One model version in memory. Fields are all set in the constructor (stable shape). */
export class ModelSlot {
  readonly name: string;
  readonly version: number;
  readonly signature: Signature;
  readonly manifest: Manifest;
  readonly manifestSha256: string;
  readonly metrics: Record<string, unknown>;
  readonly plan: FeaturePlan;
  /** Writes this version's V1 predict replies. */
  readonly predictWriter: PredictWriter;
  readonly bytes: number;
  readonly loadedAt: string;
  /** The ONNX bytes, kept for explain (decoded to a TreeEnsemble on first use). */
  readonly modelBytes: Uint8Array;
  /** Output names fetched from ORT for {@link scoreAll} (every output the graph has). */
  readonly fetches: readonly string[];
  /** A V2 infer's outputs when it names none: every tensor of the graph, then a classifier's label. */
  readonly v2Outputs: readonly string[];
  /** Writes this version's V2 infer replies (JSON). */
  readonly v2Writer: V2Writer;
  readonly #session: OrtSession;
  /**
   * Batches of predictions and explanations ({@link reserve}, {@link commitTo}): they
   * fetch only what a prediction shows, class probabilities or the regression value (each output
   * fetched costs a conversion to a JS tensor: ~35k instructions per run for a binary model's
   * margin, ~2.5 % of a single-row request; bench/serve-callgrind.ts). One batcher for both keeps
   * a stream's predict and explain replies in arrival order.
   */
  readonly #batcher: Batcher;
  /** Batches of {@link scoreAll} (V2 infer, which may ask for any output). */
  readonly #allBatcher: Batcher;
  readonly #logger: Logger;
  readonly #onReleased: ((slot: ModelSlot) => void) | undefined;
  #refs = 0;
  #released = false;
  /** Owned by serve/explain.ts: the decoded ensemble and SHAP sums, or the error that refused them. */
  explainState: unknown = null;

  constructor(parts: SlotParts, batching: SlotBatching) {
    this.name = parts.name;
    this.version = parts.version;
    this.signature = parts.signature;
    this.manifest = parts.manifest;
    this.manifestSha256 = parts.manifestSha256;
    this.metrics = parts.metrics;
    this.plan = new FeaturePlan(parts.signature);
    this.predictWriter = new PredictWriter(parts.signature, parts.name, parts.version);
    this.bytes = parts.bytes;
    this.loadedAt = new Date().toISOString();
    this.modelBytes = parts.modelBytes;
    this.#session = parts.session;
    this.#logger = parts.logger;
    this.#onReleased = parts.onReleased;
    const want = ["margin", "probabilities", "prediction"];
    this.fetches = want.filter((n) => parts.session.outputNames.includes(n));
    this.v2Outputs = [
      "margin",
      ...this.fetches.filter((f) => f !== "margin"),
      // The label is the argmax of the probabilities: only a model that outputs them has one.
      ...(this.fetches.includes("probabilities") ? ["label"] : []),
    ];
    this.v2Writer = new V2Writer(parts.signature, parts.name, parts.version);
    const shown = ["probabilities", "prediction"].find((n) => this.fetches.includes(n));
    const batcher = (fetches: readonly string[]): Batcher =>
      new Batcher({
        enabled: batching.enabled,
        maxRows: batching.maxRows,
        maxWaitUs: batching.maxWaitUs,
        width: this.plan.width,
        onRun: batching.onRun,
        onWaiterError: (e) =>
          this.#logger.error({ err: (e as Error)?.stack ?? String(e) }, "answering a failed request threw"),
        run: (data, rows) => this.#run(data, rows, fetches),
      });
    this.#allBatcher = batcher(this.fetches);
    this.#batcher = shown === undefined ? this.#allBatcher : batcher([shown]);
  }

  #run(data: Float32Array, rows: number, fetches: readonly string[]): RunOutputs {
    const input = new Tensor("float32", data, [rows, this.plan.width]);
    const out = this.#session.run({ input }, fetches);
    const tensors = new Map<string, { data: Float32Array; width: number }>();
    for (const name of fetches) {
      const t = out[name];
      const flat = t.data as Float32Array;
      tensors.set(name, { data: flat, width: rows === 0 ? 0 : flat.length / rows });
    }
    return { rows, tensors };
  }

  /** Score a validated matrix with every output of the graph ({@link fetches}). */
  scoreAll(data: Float32Array, rows: number): Promise<BatchSlice> {
    return this.#allBatcher.score(data, rows);
  }

  /** Room for `rows` rows in the batch being filled (a RowSink: see {@link Batcher.reserve}). */
  reserve(rows: number): BatchTarget {
    return this.#batcher.reserve(rows);
  }

  /** Score rows written into a target from {@link reserve}, before any other reserve. */
  commitTo(target: BatchTarget, rows: number, waiter: BatchWaiter): void {
    this.#batcher.commitTo(target, rows, waiter);
  }

  /** {@link reserve} for a batch of {@link scoreAll}'s (every output). */
  reserveAll(rows: number): BatchTarget {
    return this.#allBatcher.reserve(rows);
  }

  /** {@link commitTo} for a target from {@link reserveAll}. */
  commitAllTo(target: BatchTarget, rows: number, waiter: BatchWaiter): void {
    this.#allBatcher.commitTo(target, rows, waiter);
  }

  /** Take a reference (the LRU's, a label's, or one request's). */
  acquire(): this {
    // A released session cannot come back: reaching one is a bug in whoever kept the slot.
    if (this.#released)
      throw arborError("INTERNAL", `${this.name} v${this.version}: acquire of a released session`);
    this.#refs++;
    return this;
  }

  /** Whether the ORT session has been released (no reference is left). */
  get released(): boolean {
    return this.#released;
  }

  /** References held now. */
  get references(): number {
    return this.#refs;
  }

  /** Drop a reference; the last one releases the session. */
  release(): void {
    if (--this.#refs === 0) this.#dispose();
  }

  #dispose(): void {
    if (this.#released) return;
    this.#released = true;
    this.#logger.info({ model: this.name, version: this.version }, "released ORT session");
    try {
      this.#session.release();
    } catch (e) {
      this.#logger.warn({ err: e }, "session release failed");
    }
    this.#onReleased?.(this);
  }
}
