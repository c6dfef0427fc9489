/** Standard black-box test functions for sampler benchmarks (Surjanovic & Bingham, SFU library). */
import type { ParamValue, SearchSpace } from "./space.ts";

/** Branin on x1 ∈ [−5, 10], x2 ∈ [0, 15]; global minimum 0.397887. */
export const BRANIN_SPACE: SearchSpace = {
  x1: { type: "float", low: -5, high: 10 },
  x2: { type: "float", low: 0, high: 15 },
};

/** Branin–Hoo function. */
export function branin(p: Record<string, ParamValue>): number {
  const x1 = p["x1"] as number;
  const x2 = p["x2"] as number;
  const b = 5.1 / (4 * Math.PI * Math.PI);
  const c = 5 / Math.PI;
  const t = 1 / (8 * Math.PI);
  return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * Math.cos(x1) + 10;
}

/** Hartmann-6 on [0, 1]^6; global minimum −3.32237. */
export const HARTMANN6_SPACE: SearchSpace = Object.fromEntries(
  [1, 2, 3, 4, 5, 6].map((i) => [`x${i}`, { type: "float", low: 0, high: 1 }]),
);

const H_ALPHA = [1.0, 1.2, 3.0, 3.2];
const H_A = [
  [10, 3, 17, 3.5, 1.7, 8],
  [0.05, 10, 17, 0.1, 8, 14],
  [3, 3.5, 1.7, 10, 17, 8],
  [17, 8, 0.05, 10, 0.1, 14],
];
const H_P = [
  [1312, 1696, 5569, 124, 8283, 5886],
  [2329, 4135, 8307, 3736, 1004, 9991],
  [2348, 1451, 3522, 2883, 3047, 6650],
  [4047, 8828, 8732, 5743, 1091, 381],
].map((row) => row.map((v) => v * 1e-4));

/** Hartmann 6-D function. */
export function hartmann6(p: Record<string, ParamValue>): number {
  let outer = 0;
  for (let i = 0; i < 4; i++) {
    let inner = 0;
    for (let j = 0; j < 6; j++) {
      const x = p[`x${j + 1}`] as number;
      inner += H_A[i][j] * (x - H_P[i][j]) ** 2;
    }
    outer += H_ALPHA[i] * Math.exp(-inner);
  }
  return -outer;
}
