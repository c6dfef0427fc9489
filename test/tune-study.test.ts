import { afterAll, describe, expect, test } from "bun:test";
import { openRegistry, type Registry } from "../registry/index.ts";
import { createPruner } from "../train/tune/pruners/index.ts";
import { type StudyDefinition, StudyStorage } from "../train/tune/storage.ts";
import { runStudy, type TrialExecutor } from "../train/tune/study.ts";
import { BRANIN_SPACE, branin } from "../train/tune/test-functions.ts";
import { createTestDatabase, databaseKinds, type TestDatabase, testLogger } from "./helpers/db.ts";

/** An executor on a closed-form objective: "rounds" converge towards Branin(x), reported every round. */
function braninExecutor(pruner = createPruner("none")): TrialExecutor {
  return {
    async run(input, onValues, signal) {
      const target = branin(input.params);
      const iv: Record<string, number> = {};
      const self = {
        number: input.number,
        state: "running" as const,
        params: input.params,
        value: null,
        intermediateValues: iv,
      };
      for (let step = 1; step <= 20; step++) {
        if (signal.aborted) throw new Error("aborted");
        iv[String(step)] = target + 50 / step;
        onValues({ ...iv });
        if (pruner.prune(self, input.others, step, input.direction)) {
          return { state: "pruned", value: null, intermediateValues: iv };
        }
        await Bun.sleep(0);
      }
      return { state: "complete", value: target, intermediateValues: iv };
    },
    async close() {},
  };
}

function definition(name: string, nTrials: number, extra: Partial<StudyDefinition> = {}): StudyDefinition {
  return {
    name,
    splitId: null,
    task: "regression",
    target: "y",
    modelType: null,
    metric: "rmse",
    direction: "minimize",
    sampler: { name: "tpe", options: { seed: 1, multivariate: true } },
    pruner: { name: "none", options: {} },
    searchSpace: BRANIN_SPACE,
    settings: { nTrials, staleSeconds: 2, maxAttempts: 2 },
    ...extra,
  };
}

for (const kind of databaseKinds()) {
  describe(`studies on ${kind}`, () => {
    let db: TestDatabase;
    let registry: Registry;
    const logger = testLogger();
    afterAll(async () => {
      await registry?.close();
      await db?.drop();
    }, 60_000);

    test("parallel slots claim distinct trial numbers; the study closes with its best trial", async () => {
      db = await createTestDatabase(kind);
      registry = await openRegistry(db.config(), logger);
      const storage = new StudyStorage(registry.db);
      const { study } = await storage.createOrLoad(definition("par", 14));
      const summary = await runStudy({
        storage,
        study,
        parallel: 3,
        makeExecutor: () => braninExecutor(),
        logger,
      });
      const rows = await storage.trials(study.id);
      expect(rows.map((r) => r.number)).toEqual(Array.from({ length: 14 }, (_, i) => i));
      expect(rows.every((r) => r.state === "complete")).toBe(true);
      expect(summary.closed?.status).toBe("complete");
      const best = Math.min(...rows.map((r) => r.value!));
      expect(summary.closed?.bestValue).toBe(best);
      expect(Object.keys(rows[0].intermediateValues).length).toBe(20);
    }, 60_000);

    test("resuming by name continues numbering; a mismatching study is refused", async () => {
      const storage = new StudyStorage(registry.db);
      const { study, created } = await storage.createOrLoad(definition("par", 14));
      expect(created).toBe(false);
      await storage.updateSettings(study.id, {
        ...(study.settings as { nTrials: number; staleSeconds: number; maxAttempts: number }),
        nTrials: 18,
      });
      await runStudy({ storage, study, parallel: 1, makeExecutor: () => braninExecutor(), logger });
      expect((await storage.trials(study.id)).length).toBe(18);
      await expect(storage.createOrLoad(definition("par", 5, { metric: "mae" }))).rejects.toMatchObject({
        code: "STUDY_MISMATCH",
      });
    }, 60_000);

    test("a trial whose worker died is taken back by heartbeat and retried", async () => {
      const storage = new StudyStorage(registry.db);
      const { study } = await storage.createOrLoad(definition("dead", 4));
      const claim = await storage.claim(study.id, "ghost:1", () => ({
        params: { x1: 0, x2: 0 },
        distributions: {},
      }));
      expect(claim.kind).toBe("trial");
      // The ghost never heartbeats; another worker runs the study to the end.
      const summary = await runStudy({
        storage,
        study,
        parallel: 1,
        makeExecutor: () => braninExecutor(),
        logger,
      });
      const rows = await storage.trials(study.id);
      expect(rows.length).toBe(4);
      expect(rows.every((r) => r.state === "complete")).toBe(true);
      expect(rows[0].attempts).toBe(2);
      expect(rows[0].workerId).toBe(summary.workerId);
    }, 60_000);

    test("an interrupted worker hands its trial back at once; resuming retries it", async () => {
      const storage = new StudyStorage(registry.db);
      const { study } = await storage.createOrLoad(definition("interrupted", 3));
      const controller = new AbortController();
      const hanging: TrialExecutor = {
        run: (_input, _onValues, signal) =>
          new Promise((_resolve, reject) => {
            signal.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
            controller.abort();
          }),
        async close() {},
      };
      const first = await runStudy({
        storage,
        study,
        parallel: 1,
        signal: controller.signal,
        makeExecutor: () => hanging,
        logger,
      });
      expect(first.stoppedBy).toBe("signal");
      expect(first.closed).toBeNull();
      const [released] = await storage.trials(study.id);
      expect([released.state, released.attempts, released.workerId]).toEqual(["waiting", 0, null]);
      await runStudy({ storage, study, parallel: 1, makeExecutor: () => braninExecutor(), logger });
      const rows = await storage.trials(study.id);
      expect(rows.map((r) => [r.state, r.attempts])).toEqual([
        ["complete", 1],
        ["complete", 1],
        ["complete", 1],
      ]);
    }, 60_000);

    test("--timeout stops starting trials; the study closes with the trials it has", async () => {
      const storage = new StudyStorage(registry.db);
      const { study } = await storage.createOrLoad(definition("timed", 1000));
      const slow: TrialExecutor = {
        async run(input) {
          await Bun.sleep(100);
          return { state: "complete", value: branin(input.params), intermediateValues: {} };
        },
        async close() {},
      };
      const summary = await runStudy({
        storage,
        study,
        parallel: 1,
        timeoutSeconds: 0.5,
        makeExecutor: () => slow,
        logger,
      });
      expect(summary.stoppedBy).toBe("timeout");
      const rows = await storage.trials(study.id);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.length).toBeLessThan(1000);
      expect(summary.closed?.status).toBe("complete");
    }, 60_000);

    test("the median pruner stops bad trials and they are recorded as pruned", async () => {
      const storage = new StudyStorage(registry.db);
      const { study } = await storage.createOrLoad(
        definition("prune", 20, {
          sampler: { name: "random", options: { seed: 3 } },
          pruner: { name: "median", options: {} },
        }),
      );
      await runStudy({
        storage,
        study,
        parallel: 1,
        makeExecutor: () => braninExecutor(createPruner("median")),
        logger,
      });
      const rows = await storage.trials(study.id);
      const pruned = rows.filter((r) => r.state === "pruned");
      expect(pruned.length).toBeGreaterThan(0);
      for (const r of pruned) expect(Object.keys(r.intermediateValues).length).toBeLessThan(20);
    }, 60_000);
  });
}
