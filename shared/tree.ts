/**
 * The tree-ensemble structure every part of arbor agrees on: the engine builds it, the ONNX codec
 * writes it and reads it back, TreeSHAP walks it, the XGBoost importer produces it.
 *
 * Trees are struct-of-arrays (one typed array per node field) so that walking them touches no
 * objects. Node 0 is the root.
 *
 * Routing, identical in the TypeScript predictor and in onnxruntime:
 * - numeric node: go left when `x <= threshold` (threshold is an exact float32 value, x is float32);
 * - categorical node: go left when `x` is one of `categories[node]` (codes, i.e. dictionary indices);
 * - NaN (missing, or a category not in the dictionary) goes left when `defaultLeft[node] === 1`.
 */

/** `Tree.kind` of a leaf. */
export const NODE_LEAF = 0;
/** `Tree.kind` of a numeric split (`x <= threshold` goes left). */
export const NODE_NUMERIC = 1;
/** `Tree.kind` of a categorical split (`x` in `categories[node]` goes left). */
export const NODE_CATEGORICAL = 2;

/** One tree, struct-of-arrays. */
export interface Tree {
  /** NODE_LEAF | NODE_NUMERIC | NODE_CATEGORICAL per node. */
  kind: Uint8Array;
  /** Feature index of a split node; -1 for a leaf. */
  feature: Int32Array;
  /** Split threshold of a numeric node (exact float32); 0 otherwise. */
  threshold: Float32Array;
  /** Child taken when the condition holds; -1 for a leaf. */
  left: Int32Array;
  /** Child taken otherwise; -1 for a leaf. */
  right: Int32Array;
  /** 1 when NaN goes left. */
  defaultLeft: Uint8Array;
  /** Category codes that go left, sorted ascending, for categorical nodes; null otherwise. */
  categories: (Int32Array | null)[];
  /** Leaf value in raw-margin space, learning rate applied, rounded to float32; 0 for split nodes. */
  value: Float64Array;
  /** Hessian sum of the training rows that reached the node (SHAP's cover). */
  cover: Float64Array;
  /** Loss reduction of the split; 0 for leaves. */
  gain: Float64Array;
}

/** A boosted ensemble: margin[k] = baseScore[k] + Σ value of the leaf reached in each tree of output k. */
export interface TreeEnsemble {
  numFeatures: number;
  /** K: 1 for binary and regression, the number of classes for multiclass. */
  numOutputs: number;
  baseScore: Float64Array;
  trees: Tree[];
  /** Output index (class) of each tree. */
  treeOutput: Int32Array;
}

/** Allocate an empty tree of `n` nodes. */
export function allocTree(n: number): Tree {
  return {
    kind: new Uint8Array(n),
    feature: new Int32Array(n).fill(-1),
    threshold: new Float32Array(n),
    left: new Int32Array(n).fill(-1),
    right: new Int32Array(n).fill(-1),
    defaultLeft: new Uint8Array(n),
    categories: new Array<Int32Array | null>(n).fill(null),
    value: new Float64Array(n),
    cover: new Float64Array(n),
    gain: new Float64Array(n),
  };
}

/** Whether a categorical node sends code `x` left (binary search in the sorted set). */
export function categoryGoesLeft(set: Int32Array, x: number): boolean {
  let lo = 0;
  let hi = set.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = set[mid];
    if (v === x) return true;
    if (v < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** Index of the leaf that row `x` (feature values, float32-representable) reaches. */
export function leafIndex(tree: Tree, x: ArrayLike<number>): number {
  let node = 0;
  const kind = tree.kind;
  while (kind[node] !== NODE_LEAF) {
    const v = x[tree.feature[node]];
    let goLeft: boolean;
    if (Number.isNaN(v)) goLeft = tree.defaultLeft[node] === 1;
    else if (kind[node] === NODE_NUMERIC) goLeft = v <= tree.threshold[node];
    else goLeft = categoryGoesLeft(tree.categories[node]!, v);
    node = goLeft ? tree.left[node] : tree.right[node];
  }
  return node;
}

/** Raw margins of one row (length K), written into `out`. */
export function predictMarginRow(
  ensemble: TreeEnsemble,
  x: ArrayLike<number>,
  out: Float64Array,
): Float64Array {
  for (let k = 0; k < ensemble.numOutputs; k++) out[k] = ensemble.baseScore[k];
  const trees = ensemble.trees;
  for (let t = 0; t < trees.length; t++) {
    const tree = trees[t];
    out[ensemble.treeOutput[t]] += tree.value[leafIndex(tree, x)];
  }
  return out;
}

/** Logistic function in float64. */
export function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

/** In-place softmax over `m[0..k)`. */
export function softmaxInPlace(m: Float64Array, k = m.length): void {
  let max = -Infinity;
  for (let i = 0; i < k; i++) if (m[i] > max) max = m[i];
  let sum = 0;
  for (let i = 0; i < k; i++) {
    m[i] = Math.exp(m[i] - max);
    sum += m[i];
  }
  for (let i = 0; i < k; i++) m[i] /= sum;
}
