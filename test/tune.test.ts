import { describe, expect, test } from "bun:test";
import { bestSoFar, optimizeInMemory } from "../train/tune/optimize.ts";
import { AshaPruner, MedianPruner } from "../train/tune/pruners/index.ts";
import { createSampler } from "../train/tune/samplers/index.ts";
import { defaultWeights } from "../train/tune/samplers/parzen.ts";
import { RandomSampler } from "../train/tune/samplers/random.ts";
import { ARBOR_TPE_DEFAULTS, defaultGamma, TpeSampler } from "../train/tune/samplers/tpe.ts";
import { contains, type FrozenTrial, type SearchSpace } from "../train/tune/space.ts";
import { BRANIN_SPACE, branin, HARTMANN6_SPACE, hartmann6 } from "../train/tune/test-functions.ts";

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const MIXED: SearchSpace = {
  lr: { type: "float", low: 1e-3, high: 0.3, log: true },
  leaves: { type: "int", low: 4, high: 128, log: true },
  depth: { type: "int", low: 2, high: 10 },
  frac: { type: "float", low: 0.5, high: 1, step: 0.05 },
  growth: { type: "categorical", choices: ["leafwise", "depthwise", "oblivious"] },
};

describe("samplers", () => {
  test("Optuna's gamma and weights", () => {
    expect([1, 10, 11, 100, 250, 1000].map(defaultGamma)).toEqual([1, 1, 2, 10, 25, 25]);
    expect(Array.from(defaultWeights(3))).toEqual([1, 1, 1]);
    const w = defaultWeights(30);
    expect(w[0]).toBeCloseTo(1 / 30, 12);
    expect(w[4]).toBeCloseTo(1, 12);
    expect(Array.from(w.subarray(5))).toEqual(new Array(25).fill(1));
  });

  test("TPE beats random at equal budget on Hartmann-6 and Branin (mean over seeds)", () => {
    for (const [f, space] of [
      [hartmann6, HARTMANN6_SPACE],
      [branin, BRANIN_SPACE],
    ] as const) {
      const tpe: number[] = [];
      const rnd: number[] = [];
      for (let seed = 0; seed < 8; seed++) {
        tpe.push(
          bestSoFar(optimizeInMemory(f, space, new TpeSampler({ ...ARBOR_TPE_DEFAULTS, seed }), 40))[39],
        );
        rnd.push(bestSoFar(optimizeInMemory(f, space, new RandomSampler({ seed }), 40))[39]);
      }
      expect(mean(tpe)).toBeLessThan(mean(rnd));
    }
  });

  test("Optuna-default TPE beats random too", () => {
    const tpe: number[] = [];
    const rnd: number[] = [];
    for (let seed = 0; seed < 8; seed++) {
      tpe.push(bestSoFar(optimizeInMemory(hartmann6, HARTMANN6_SPACE, new TpeSampler({ seed }), 40))[39]);
      rnd.push(bestSoFar(optimizeInMemory(hartmann6, HARTMANN6_SPACE, new RandomSampler({ seed }), 40))[39]);
    }
    expect(mean(tpe)).toBeLessThan(mean(rnd));
  });

  test("every sampler proposes legal values of every kind, deterministically for a seed", () => {
    const objective = (p: Record<string, unknown>) =>
      Math.abs(Math.log(p["lr"] as number) + 3) +
      (p["growth"] === "depthwise" ? 0 : 1) +
      (p["depth"] as number) / 10;
    for (const name of ["tpe", "random", "grid"]) {
      for (const multivariate of [false, true]) {
        const a = optimizeInMemory(objective, MIXED, createSampler(name, { seed: 7, multivariate }), 30);
        const b = optimizeInMemory(objective, MIXED, createSampler(name, { seed: 7, multivariate }), 30);
        expect(a.map((t) => t.params)).toEqual(b.map((t) => t.params));
        for (const t of a) {
          for (const [k, d] of Object.entries(MIXED)) expect(contains(d, t.params[k])).toBe(true);
          expect(Number.isInteger(t.params["leaves"])).toBe(true);
          expect(((t.params["frac"] as number) * 100) % 5).toBeCloseTo(0, 6);
        }
      }
    }
  });

  test("grid visits distinct points and reports exhaustion", () => {
    const space: SearchSpace = {
      a: { type: "categorical", choices: ["x", "y"] },
      b: { type: "int", low: 1, high: 3 },
    };
    const sampler = createSampler("grid", { seed: 1 });
    const trials = optimizeInMemory(() => 0, space, sampler, 6);
    expect(new Set(trials.map((t) => JSON.stringify(t.params))).size).toBe(6);
    expect(sampler.isExhausted?.(space, trials)).toBe(true);
  });
});

/** A trial whose value at step s is `f(s)`, reported up to `steps`. */
function trial(
  number: number,
  state: FrozenTrial["state"],
  steps: number,
  f: (s: number) => number,
): FrozenTrial {
  const iv: Record<string, number> = {};
  for (let s = 1; s <= steps; s++) iv[String(s)] = f(s);
  return { number, state, params: {}, value: state === "complete" ? f(steps) : null, intermediateValues: iv };
}

describe("pruners", () => {
  test("median: waits for startup trials and warm-up, then prunes a trial worse than the median", () => {
    const done = [1, 2, 3, 4, 5].map((k) => trial(k, "complete", 10, (s) => k + 10 / s));
    const bad = trial(9, "running", 3, (s) => 20 + 10 / s);
    const good = trial(10, "running", 3, (s) => 0.5 + 10 / s);
    const p = new MedianPruner({ nWarmupSteps: 2 });
    expect(p.prune(bad, done.slice(0, 4), 3, "minimize")).toBe(false); // 4 < 5 startup trials
    expect(p.prune(bad, done, 2, "minimize")).toBe(false); // warm-up
    expect(p.prune(bad, done, 3, "minimize")).toBe(true);
    expect(p.prune(good, done, 3, "minimize")).toBe(false);
    // Maximising flips the comparison (the trial's best so far is its maximum).
    expect(
      p.prune(
        trial(11, "running", 3, () => -5),
        done,
        3,
        "maximize",
      ),
    ).toBe(true);
    expect(p.prune(bad, done, 3, "maximize")).toBe(false);
  });

  test("ASHA: only at rungs (1, 4, 16, … with η = 4), keeps the top 1/η of trials that reached the rung", () => {
    const p = new AshaPruner({ minResource: 1, reductionFactor: 4 });
    const others = [1, 2, 3, 4, 5, 6, 7, 8].map((k) => trial(k, "complete", 20, () => k));
    expect(
      p.prune(
        trial(20, "running", 3, () => 100),
        others,
        3,
        "minimize",
      ),
    ).toBe(false); // 3 is not a rung
    expect(
      p.prune(
        trial(20, "running", 4, () => 100),
        others,
        4,
        "minimize",
      ),
    ).toBe(true);
    expect(
      p.prune(
        trial(21, "running", 4, () => 1.5),
        others,
        4,
        "minimize",
      ),
    ).toBe(false); // top 9/4 → 2 kept
    expect(
      p.prune(
        trial(22, "running", 4, () => 2.5),
        others,
        4,
        "minimize",
      ),
    ).toBe(true);
    // Before the first rung has ≥ η entries, only the best so far continues.
    expect(
      p.prune(
        trial(23, "running", 1, () => 0.5),
        [],
        1,
        "minimize",
      ),
    ).toBe(false);
  });
});
