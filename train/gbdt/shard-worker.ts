/**
 * A shard worker: waits for a job on the shared control block (spinning a while, then sleeping in
 * Atomics.wait), claims shards of it until none is left, runs each and reports it done. Runs a
 * blocking loop, so it never returns to its event loop until told to stop.
 */
import { CTRL, claimShard, ShardJob, type ShardWorkerInit, WORKER_SPINS } from "./shards.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<ShardWorkerInit>) => {
  const job = new ShardJob(event.data);
  const ctrl = job.ctrl;
  let seen = 0;
  for (;;) {
    for (let i = 0; i < WORKER_SPINS && Atomics.load(ctrl, CTRL.seq) === seen; i++);
    // Announce the sleep before re-checking the counter in Atomics.wait: the main thread stores the
    // counter before reading `sleeping`, so either it notifies or the wait sees the new value.
    Atomics.add(ctrl, CTRL.sleeping, 1);
    Atomics.wait(ctrl, CTRL.seq, seen);
    Atomics.sub(ctrl, CTRL.sleeping, 1);
    const tag = Atomics.load(ctrl, CTRL.seq);
    seen = tag;
    if (Atomics.load(ctrl, CTRL.stop) === 1) break;
    for (;;) {
      const t = claimShard(ctrl, tag, job.shards);
      if (t < 0) break;
      try {
        job.run(t);
      } catch (e) {
        console.error("arbor shard worker:", e);
        Atomics.store(ctrl, CTRL.failed, 1);
      }
      Atomics.add(ctrl, CTRL.done, 1);
    }
  }
};
