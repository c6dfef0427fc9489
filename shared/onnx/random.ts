/**
 * Seeded random tree ensembles and matching data, for the codec, TreeSHAP and ORT parity tests and
 * the SHAP benchmark. Covers are consistent (a split's cover is the sum of its children's), as
 * TreeSHAP requires.
 */
import type { Signature, Task } from "../bundle.ts";
import {
  allocTree,
  NODE_CATEGORICAL,
  NODE_LEAF,
  NODE_NUMERIC,
  type Tree,
  type TreeEnsemble,
} from "../tree.ts";

/** Mulberry32: small, fast, seeded. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@link randomEnsemble}. */
export interface RandomEnsembleOptions {
  seed: number;
  numFeatures: number;
  numTrees: number;
  /** Maximum depth; leaves appear earlier with probability `earlyLeaf`. */
  depth: number;
  numOutputs?: number;
  /** Number of categories of each categorical feature (index = feature); 0 = numeric. */
  categories?: number[];
  earlyLeaf?: number;
  /** Same split for every node of a level (oblivious trees). */
  oblivious?: boolean;
}

/** A random ensemble; numeric thresholds are float32 values in [-2, 2]. */
export function randomEnsemble(o: RandomEnsembleOptions): TreeEnsemble {
  const r = rng(o.seed);
  const k = o.numOutputs ?? 1;
  const cats = o.categories ?? [];
  const trees: Tree[] = [];
  const treeOutput = new Int32Array(o.numTrees);
  for (let t = 0; t < o.numTrees; t++) {
    treeOutput[t] = t % k;
    const maxNodes = 2 ** (o.depth + 1) - 1;
    const tmp = allocTree(maxNodes);
    let count = 0;
    const levelSplits: { feature: number; threshold: number; set: Int32Array | null; dl: number }[] = [];
    const randomSplit = () => {
      const feature = Math.floor(r() * o.numFeatures);
      const nc = cats[feature] ?? 0;
      let set: Int32Array | null = null;
      if (nc > 0) {
        const members: number[] = [];
        for (let c = 0; c < nc; c++) if (r() < 0.5) members.push(c);
        if (members.length === 0) members.push(Math.floor(r() * nc));
        set = Int32Array.from(members);
      }
      return { feature, threshold: Math.fround(r() * 4 - 2), set, dl: r() < 0.5 ? 1 : 0 };
    };
    const build = (depth: number): number => {
      const id = count++;
      const leaf = depth === o.depth || (!o.oblivious && depth > 0 && r() < (o.earlyLeaf ?? 0.1));
      if (leaf) {
        tmp.kind[id] = NODE_LEAF;
        tmp.value[id] = Math.fround(r() * 2 - 1);
        tmp.cover[id] = 1 + Math.floor(r() * 100);
        return id;
      }
      if (o.oblivious && levelSplits[depth] === undefined) levelSplits[depth] = randomSplit();
      const s = o.oblivious ? levelSplits[depth] : randomSplit();
      tmp.kind[id] = s.set ? NODE_CATEGORICAL : NODE_NUMERIC;
      tmp.feature[id] = s.feature;
      tmp.threshold[id] = s.set ? 0 : s.threshold;
      tmp.categories[id] = s.set;
      tmp.defaultLeft[id] = s.dl;
      tmp.gain[id] = r() * 10;
      const left = build(depth + 1);
      const right = build(depth + 1);
      tmp.left[id] = left;
      tmp.right[id] = right;
      tmp.cover[id] = tmp.cover[left] + tmp.cover[right];
      return id;
    };
    build(0);
    trees.push(sliceTree(tmp, count));
  }
  const baseScore = new Float64Array(k);
  for (let i = 0; i < k; i++) baseScore[i] = r() - 0.5;
  return { numFeatures: o.numFeatures, numOutputs: k, baseScore, trees, treeOutput };
}

function sliceTree(t: Tree, n: number): Tree {
  const out = allocTree(n);
  out.kind.set(t.kind.subarray(0, n));
  out.feature.set(t.feature.subarray(0, n));
  out.threshold.set(t.threshold.subarray(0, n));
  out.left.set(t.left.subarray(0, n));
  out.right.set(t.right.subarray(0, n));
  out.defaultLeft.set(t.defaultLeft.subarray(0, n));
  for (let i = 0; i < n; i++) out.categories[i] = t.categories[i];
  out.value.set(t.value.subarray(0, n));
  out.cover.set(t.cover.subarray(0, n));
  out.gain.set(t.gain.subarray(0, n));
  return out;
}

/** Row-major float32 rows: numeric values in [-2.5, 2.5] (some equal to thresholds' neighbours), codes for categoricals, NaN at `nanRate`. */
export function randomRows(
  seed: number,
  rows: number,
  numFeatures: number,
  categories: number[] = [],
  nanRate = 0.1,
): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(rows * numFeatures);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < numFeatures; j++) {
      const nc = categories[j] ?? 0;
      let v: number;
      if (r() < nanRate) v = Number.NaN;
      else if (nc > 0) v = Math.floor(r() * nc);
      else v = r() * 5 - 2.5;
      x[i * numFeatures + j] = v;
    }
  }
  return x;
}

/** A signature for a random ensemble. */
export function signatureFor(ensemble: TreeEnsemble, task: Task, categories: number[]): Signature {
  return {
    format: "arbor-bundle/1",
    task,
    target: "y",
    features: Array.from({ length: ensemble.numFeatures }, (_, i) =>
      (categories[i] ?? 0) > 0
        ? {
            name: `f${i}`,
            type: "categorical" as const,
            categories: Array.from({ length: categories[i] }, (_, c) => `c${c}`),
          }
        : { name: `f${i}`, type: "numeric" as const },
    ),
    classes:
      task === "binary"
        ? ["no", "yes"]
        : task === "multiclass"
          ? Array.from({ length: ensemble.numOutputs }, (_, c) => `k${c}`)
          : undefined,
    objective:
      task === "binary" ? "binary:logistic" : task === "multiclass" ? "multi:softprob" : "reg:squarederror",
    baseScore: [...ensemble.baseScore],
    numTrees: ensemble.trees.length,
    source: "arbor",
  };
}
