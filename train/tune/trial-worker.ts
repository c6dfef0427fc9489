/**
 * Worker-thread entry of the GBDT executor: loads the split once, then runs trials on request.
 * Fits run here so that the main thread stays free for heartbeats and the database.
 */
import { openArtifactStore } from "../../registry/store/open.ts";
import { toArborError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/logger.ts";
import type { Dataset } from "../gbdt/dataset.ts";
import type { WorkerReply, WorkerRequest } from "./gbdt-executor.ts";
import { runGbdtTrial } from "./gbdt-trial.ts";
import { createPruner } from "./pruners/index.ts";
import { refitBest } from "./refit.ts";
import { loadSplitData } from "./split-data.ts";

declare const self: Worker;

let data: { train: Dataset; valid: Dataset } | null = null;
const post = (m: WorkerReply) => self.postMessage(m);

self.onmessage = async (event: MessageEvent<WorkerRequest>) => {
  const msg = event.data;
  try {
    if (msg.type === "init") {
      const logger = createLogger({ name: "arbor-trial", level: msg.logLevel });
      const store = await openArtifactStore(msg.storeUri, {
        gcsEndpoint: msg.gcsEndpoint,
        gcsProject: msg.gcsProject,
      });
      try {
        const loaded = await loadSplitData(
          store,
          msg.splitId,
          { target: msg.target, task: msg.fixed.task, categorical: msg.categorical },
          logger,
        );
        data = { train: loaded.train, valid: loaded.valid };
      } finally {
        await store.close();
      }
      post({ type: "ready" });
      return;
    }
    if (msg.type === "refit") {
      // Refits run here too, so the main thread keeps heartbeating (jobs) while the model trains.
      const logger = createLogger({ name: "arbor-refit", level: msg.logLevel });
      const store = await openArtifactStore(msg.storeUri, {
        gcsEndpoint: msg.gcsEndpoint,
        gcsProject: msg.gcsProject,
      });
      try {
        post({ type: "refitted", result: await refitBest(store, { ...msg.input, logger }) });
      } finally {
        await store.close();
      }
      return;
    }
    if (data === null) throw new Error("trial worker: trial before init");
    const pruner = createPruner(msg.pruner.name, msg.pruner.options);
    const outcome = runGbdtTrial(
      data.train,
      data.valid,
      msg.fixed,
      msg.input,
      pruner,
      (values) => post({ type: "values", values }),
      msg.threads,
    );
    post({ type: "done", outcome });
  } catch (e) {
    const err = toArborError(e);
    post({ type: "error", code: err.code, message: err.message });
  }
};
