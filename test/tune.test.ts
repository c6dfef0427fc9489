import { describe, expect, test } from "bun:test";
import { bestSoFar, optimizeInMemory } from "../train/tune/optimize.ts";
import { createSampler } from "../train/tune/samplers/index.ts";
import { defaultWeights } from "../train/tune/samplers/parzen.ts";
import { RandomSampler } from "../train/tune/samplers/random.ts";
import { ARBOR_TPE_DEFAULTS, defaultGamma, TpeSampler } from "../train/tune/samplers/tpe.ts";
import { contains, type SearchSpace } from "../train/tune/space.ts";
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
