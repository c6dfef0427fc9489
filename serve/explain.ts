/**
 * Explain glue: SHAP contributions and global importance for a loaded slot. TreeSHAP runs on a
 * thread of its own ({@link ExplainPool}; ~1-2 ms a row for 500 trees of depth 6), so that a
 * 100-row explain does not stall every prediction of the process for a few hundred milliseconds;
 * the thread decodes the slot's own model.onnx on first use (a bundle explains itself: covers
 * travel in the ONNX metadata). Values are in raw-margin space: base_value + Σ contributions = margin.
 */
import { Worker } from "node:worker_threads";
import { type ArborError, arborError, isArborError } from "../shared/errors.ts";
import { splitImportance } from "../shared/importance.ts";
import { decodeEnsembleOnnx } from "../shared/onnx/decode.ts";
import type { TreeEnsemble } from "../shared/tree.ts";
import { type ClassPrediction, classLabels } from "./core/predictions.ts";
import type { ExplainAnswer, ExplainJob } from "./explain-worker.ts";
import type { ModelSlot } from "./model-cache/slot.ts";

/** What a slot keeps for explain (its `explainState`). */
interface ExplainState {
  /** The slot's explainer in the explain thread. */
  readonly key: number;
  /** The thread start ({@link ExplainPool}'s generation) that has the model: later jobs do not send it. */
  generation: number;
  /** Why the model cannot be explained, once known: every request after is refused at once. */
  refused: ArborError | null;
  /** Σ |SHAP| per feature over the rows explained here, and their count (GET …/importance). */
  readonly absSums: Float64Array;
  rows: number;
  /** Decoded on the first importance request (split gains and counts). */
  ensemble: TreeEnsemble | null;
}

let nextKey = 1;

function stateOf(slot: ModelSlot): ExplainState {
  if (slot.explainState === null) {
    const state: ExplainState = {
      key: nextKey++,
      generation: 0,
      refused: null,
      absSums: new Float64Array(slot.plan.width),
      rows: 0,
      ensemble: null,
    };
    slot.explainState = state;
  }
  const st = slot.explainState as ExplainState;
  if (st.refused !== null) throw st.refused;
  return st;
}

/** Jobs posted to the thread at once: one running and the next ready behind it. */
const POSTED = 2;

/** An explain waiting for the thread, or on it. */
interface Job {
  slot: ModelSlot;
  st: ExplainState;
  x: Float32Array;
  rows: number;
  /** Whether the client has left (its job is then dropped before it reaches the thread). */
  gone: (() => boolean) | undefined;
  resolve: (a: ExplainAnswer) => void;
  reject: (e: Error) => void;
}

/**
 * The explain thread of this process. Jobs wait here, in order, and go to the thread two at a time:
 * a job whose client has left by then is dropped, and past {@link maxQueuedRows} rows waiting a new
 * job is refused (503 SERVER_BUSY), so explain traffic cannot queue unbounded work. Started on
 * first use; if the thread dies, the jobs on it fail (INTERNAL) and the next one starts a new
 * thread, which is sent each model again.
 */
class ExplainPool {
  /** Rows that may wait for the thread (set from ARBOR_SERVE_MAX_EXPLAIN_ROWS by the server). */
  maxQueuedRows = 32 * 100;
  #worker: Worker | null = null;
  #generation = 0;
  #nextId = 1;
  readonly #queue: Job[] = [];
  #queuedRows = 0;
  readonly #posted = new Map<number, Job>();

  /** The SHAP matrix of `rows` rows of `x` (rows × rowSize), computed on the explain thread. */
  async shap(
    slot: ModelSlot,
    x: Float32Array,
    rows: number,
    gone?: () => boolean,
  ): Promise<{ shap: Float64Array; rowSize: number }> {
    const st = stateOf(slot);
    if (this.#queue.length > 0 && this.#queuedRows + rows > this.maxQueuedRows)
      throw arborError(
        "SERVER_BUSY",
        `explain: ${this.#queuedRows} rows wait for the explain thread (at most ${this.maxQueuedRows}: 32 x ARBOR_SERVE_MAX_EXPLAIN_ROWS); retry shortly`,
      );
    const answer = await new Promise<ExplainAnswer>((resolve, reject) => {
      this.#queue.push({ slot, st, x, rows, gone, resolve, reject });
      this.#queuedRows += rows;
      this.#pump();
    });
    if ("shap" in answer) return answer;
    if (!answer.unexplainable) {
      // A job posted right behind the one that found the model unexplainable.
      if (st.refused !== null) throw st.refused;
      // The thread may not have kept the model: send it again with the next job.
      st.generation = 0;
      throw arborError("INTERNAL", `explain thread: ${answer.error}`);
    }
    st.refused ??= arborError("EXPLAIN_UNAVAILABLE", `explain: ${answer.error}`);
    throw st.refused;
  }

  /** The slot's session is released: drop its explainer from the thread. */
  forget(slot: ModelSlot): void {
    const st = slot.explainState as ExplainState | null;
    if (st !== null && this.#worker !== null) this.#worker.postMessage({ forget: st.key });
  }

  /** Post waiting jobs while fewer than POSTED are on the thread. */
  #pump(): void {
    while (this.#posted.size < POSTED && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      this.#queuedRows -= job.rows;
      if (job.gone?.() === true) {
        job.reject(arborError("CLIENT_GONE", "explain: the client left before its explain ran"));
        continue;
      }
      const worker = this.#start();
      const id = this.#nextId++;
      const message: ExplainJob = {
        id,
        key: job.st.key,
        model: job.st.generation === this.#generation ? null : job.slot.modelBytes,
        x: job.x,
        rows: job.rows,
      };
      job.st.generation = this.#generation;
      this.#posted.set(id, job);
      worker.postMessage(message);
    }
  }

  #start(): Worker {
    if (this.#worker !== null) return this.#worker;
    // Bun runs the TypeScript entry; Node.js needs the .mjs one, which loads it through tsx.
    const entry = process.versions["bun"] !== undefined ? "./explain-worker.ts" : "./explain-worker.mjs";
    const worker = new Worker(new URL(entry, import.meta.url));
    // The server's sockets keep the process alive; the thread must not keep it from exiting.
    worker.unref();
    worker.on("message", (a: ExplainAnswer) => {
      const job = this.#posted.get(a.id);
      if (job === undefined) return;
      this.#posted.delete(a.id);
      job.resolve(a);
      this.#pump();
    });
    worker.on("error", (e) => this.#lost(worker, e.message));
    worker.on("exit", (code) => this.#lost(worker, `exited with code ${code}`));
    this.#worker = worker;
    this.#generation++;
    return worker;
  }

  #lost(worker: Worker, why: string): void {
    if (this.#worker !== worker) return;
    this.#worker = null;
    const err = arborError("INTERNAL", `explain thread: ${why}`);
    for (const job of this.#posted.values()) job.reject(err);
    this.#posted.clear();
    // Jobs still waiting go to a new thread.
    this.#pump();
  }
}

const pool = new ExplainPool();

/** The slot's session is released: its explainer leaves the explain thread. */
export function forgetExplainer(slot: ModelSlot): void {
  pool.forget(slot);
}

/** How many explain requests' rows may wait for the explain thread: 32 of the largest. */
export function configureExplain(maxExplainRows: number): void {
  pool.maxQueuedRows = 32 * maxExplainRows;
}

/**
 * A shutdown: the messages it runs were accepted before it (parked stream messages, all at once),
 * and no new work comes in, so none is refused for the bound.
 */
export function unboundExplain(): void {
  pool.maxQueuedRows = Number.POSITIVE_INFINITY;
}

/** Per-row explanations: prediction, base value(s), contributions keyed by feature (top_k by |value|). */
export async function explainRows(
  slot: ModelSlot,
  data: Float32Array,
  rows: number,
  topK: number | null,
  predictions: (number | ClassPrediction)[],
  gone?: () => boolean,
): Promise<Record<string, unknown>[]> {
  const { shap, rowSize } = await pool.shap(slot, data, rows, gone);
  const st = stateOf(slot);
  const f = slot.plan.width;
  const k = rowSize / (f + 1);
  const names = slot.plan.names;
  const outputs = k === 1 ? null : classLabels(slot.signature, k);
  const out: Record<string, unknown>[] = new Array(rows);
  const order = new Int32Array(f);
  for (let r = 0; r < rows; r++) {
    const perOutput: Record<string, number>[] = [];
    const bases: number[] = [];
    const margins: number[] = [];
    for (let o = 0; o < k; o++) {
      const base = r * rowSize + o * (f + 1);
      let margin = shap[base + f];
      for (let j = 0; j < f; j++) {
        order[j] = j;
        st.absSums[j] += Math.abs(shap[base + j]);
        margin += shap[base + j];
      }
      let sorted: ArrayLike<number> = order;
      if (topK !== null && topK < f) {
        sorted = Array.from(order)
          .sort((a, b) => Math.abs(shap[base + b]) - Math.abs(shap[base + a]))
          .slice(0, topK);
      }
      const c: Record<string, number> = {};
      for (let i = 0; i < sorted.length; i++) c[names[sorted[i]]] = shap[base + sorted[i]];
      perOutput.push(c);
      bases.push(shap[base + f]);
      margins.push(margin);
    }
    st.rows++;
    if (outputs === null) {
      out[r] = {
        prediction: predictions[r],
        base_value: bases[0],
        margin: margins[0],
        contributions: perOutput[0],
      };
    } else {
      const contributions: Record<string, Record<string, number>> = {};
      const baseValues: Record<string, number> = {};
      const marginOut: Record<string, number> = {};
      for (let o = 0; o < k; o++) {
        contributions[outputs[o]] = perOutput[o];
        baseValues[outputs[o]] = bases[o];
        marginOut[outputs[o]] = margins[o];
      }
      out[r] = { prediction: predictions[r], base_values: baseValues, margins: marginOut, contributions };
    }
  }
  return out;
}

/** Global importance: gain and split count from the ensemble, mean |SHAP| over rows explained here. */
export function importanceOf(slot: ModelSlot): Record<string, unknown> {
  const st = stateOf(slot);
  if (st.ensemble === null) {
    try {
      st.ensemble = decodeEnsembleOnnx(slot.modelBytes).ensemble;
    } catch (e) {
      if (!isArborError(e)) throw e;
      st.refused = arborError("EXPLAIN_UNAVAILABLE", `explain: ${e.message}`, { cause: e });
      throw st.refused;
    }
  }
  const imp = splitImportance(st.ensemble);
  const features = imp
    .map((x) => ({
      feature: slot.plan.names[x.feature],
      gain: x.gain,
      splits: x.splits,
      mean_abs_shap: st.rows > 0 ? st.absSums[x.feature] / st.rows : null,
    }))
    .sort((a, b) => b.gain - a.gain);
  return { features, shap_rows: st.rows };
}

/** SHAP values as a flat matrix for the V2 `treeshap_output` tensor: [N, F+1] or [N, K, F+1]. */
export async function shapMatrix(
  slot: ModelSlot,
  data: Float32Array,
  rows: number,
  gone?: () => boolean,
): Promise<{ shape: number[]; data: number[] }> {
  const { shap: all, rowSize: size } = await pool.shap(slot, data, rows, gone);
  const st = stateOf(slot);
  const f = slot.plan.width;
  const k = size / (f + 1);
  // These rows are explained too: GET …/importance averages |SHAP| over them as over V1's.
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < k; o++) {
      const base = r * size + o * (f + 1);
      for (let j = 0; j < f; j++) st.absSums[j] += Math.abs(all[base + j]);
    }
  }
  st.rows += rows;
  return { shape: k === 1 ? [rows, f + 1] : [rows, k, f + 1], data: Array.from(all) };
}
