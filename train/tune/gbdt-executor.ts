/**
 * TrialExecutor that runs GBDT trials in a worker thread (one per parallel slot). The thread keeps
 * the split in memory across trials; an aborted trial terminates the thread, and the next trial
 * starts a fresh one.
 */
import { arborError, type ErrorCode } from "../../shared/errors.ts";
import type { FixedFitSettings } from "./gbdt-trial.ts";
import type { RefitResult, refitBest } from "./refit.ts";
import type { TrialExecutor, TrialInput, TrialOutcome } from "./study.ts";

/** Messages to the worker. */
export type WorkerRequest =
  | {
      type: "init";
      storeUri: string;
      gcsEndpoint?: string | undefined;
      gcsProject?: string | undefined;
      splitId: string;
      target: string;
      categorical?: string[] | undefined;
      fixed: FixedFitSettings;
      logLevel: string;
    }
  | {
      type: "refit";
      storeUri: string;
      gcsEndpoint?: string | undefined;
      gcsProject?: string | undefined;
      logLevel: string;
      input: Omit<Parameters<typeof refitBest>[1], "logger">;
    }
  | {
      type: "trial";
      input: TrialInput;
      fixed: FixedFitSettings;
      pruner: { name: string; options: Record<string, unknown> };
      /** Engine threads of the trial's fit (cores ÷ parallel trials). */
      threads: number;
    };

/** Messages from the worker. */
export type WorkerReply =
  | { type: "ready" }
  | { type: "values"; values: Record<string, number> }
  | { type: "done"; outcome: TrialOutcome }
  | { type: "refitted"; result: RefitResult }
  | { type: "error"; code: ErrorCode; message: string };

/** Everything the executor needs to start its worker. */
export interface GbdtExecutorOptions {
  init: Extract<WorkerRequest, { type: "init" }>;
  pruner: { name: string; options: Record<string, unknown> };
  /** Engine threads per trial. */
  threads: number;
}

/** Runs trials in a dedicated worker thread. */
export class GbdtExecutor implements TrialExecutor {
  readonly #options: GbdtExecutorOptions;
  #worker: Worker | null = null;
  #ready: Promise<void> | null = null;

  constructor(options: GbdtExecutorOptions) {
    this.#options = options;
  }

  #start(): Promise<void> {
    if (this.#ready) return this.#ready;
    const worker = new Worker(new URL("./trial-worker.ts", import.meta.url).href);
    this.#worker = worker;
    this.#ready = new Promise<void>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<WorkerReply>) => {
        if (e.data.type === "ready") resolve();
        else if (e.data.type === "error") reject(arborError(e.data.code, e.data.message));
      };
      worker.onerror = (e) => reject(arborError("INTERNAL", `trial worker: ${e.message}`));
      worker.postMessage(this.#options.init);
    });
    this.#ready.catch(() => this.#stop());
    return this.#ready;
  }

  #stop(): void {
    this.#worker?.terminate();
    this.#worker = null;
    this.#ready = null;
  }

  async run(
    input: TrialInput,
    onValues: (v: Record<string, number>) => void,
    signal: AbortSignal,
  ): Promise<TrialOutcome> {
    await this.#start();
    const worker = this.#worker!;
    return new Promise<TrialOutcome>((resolve, reject) => {
      const onAbort = () => {
        this.#stop();
        reject(arborError("SHUTTING_DOWN", `trial ${input.number} aborted`));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      worker.onmessage = (e: MessageEvent<WorkerReply>) => {
        const m = e.data;
        if (m.type === "values") onValues(m.values);
        else if (m.type === "done") {
          signal.removeEventListener("abort", onAbort);
          resolve(m.outcome);
        } else if (m.type === "error") {
          signal.removeEventListener("abort", onAbort);
          reject(arborError(m.code, m.message));
        }
      };
      worker.onerror = (e) => {
        signal.removeEventListener("abort", onAbort);
        this.#stop();
        reject(arborError("INTERNAL", `trial worker crashed: ${e.message}`));
      };
      worker.postMessage({
        type: "trial",
        input,
        fixed: this.#options.init.fixed,
        pruner: this.#options.pruner,
        threads: this.#options.threads,
      } satisfies WorkerRequest);
    });
  }

  async close(): Promise<void> {
    this.#stop();
  }
}

/** Run {@link refitBest} in a worker thread of its own (the caller's event loop stays free). */
export function refitInWorker(request: Extract<WorkerRequest, { type: "refit" }>): Promise<RefitResult> {
  const worker = new Worker(new URL("./trial-worker.ts", import.meta.url).href);
  return new Promise<RefitResult>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<WorkerReply>) => {
      if (e.data.type === "refitted") resolve(e.data.result);
      else if (e.data.type === "error") reject(arborError(e.data.code, e.data.message));
    };
    worker.onerror = (e) => reject(arborError("INTERNAL", `refit worker: ${e.message}`));
    worker.postMessage(request);
  }).finally(() => worker.terminate());
}
