/** Engine-side prediction: walk float32 trees over column-major data (validation/test sets). */
import {
  categoryGoesLeft,
  NODE_LEAF,
  NODE_NUMERIC,
  type Tree,
  type TreeEnsemble,
} from "../../shared/tree.ts";

/** Add the tree's leaf values to out[r*k + output] for every row of column-major `columns`. */
export function addTreeColumns(
  tree: Tree,
  columns: readonly Float32Array[],
  numRows: number,
  out: Float64Array,
  k: number,
  output: number,
): void {
  const { kind, feature, threshold, left, right, defaultLeft, categories, value } = tree;
  for (let r = 0; r < numRows; r++) {
    let node = 0;
    while (kind[node] !== NODE_LEAF) {
      const x = columns[feature[node]][r];
      let goLeft: boolean;
      if (Number.isNaN(x)) goLeft = defaultLeft[node] === 1;
      else if (kind[node] === NODE_NUMERIC) goLeft = x <= threshold[node];
      else goLeft = categoryGoesLeft(categories[node]!, x);
      node = goLeft ? left[node] : right[node];
    }
    out[r * k + output] += value[node];
  }
}

/** Raw margins [N × K] of an ensemble over column-major data. */
export function predictMarginColumns(
  ensemble: TreeEnsemble,
  columns: readonly Float32Array[],
  numRows: number,
): Float64Array {
  const k = ensemble.numOutputs;
  const out = new Float64Array(numRows * k);
  for (let r = 0; r < numRows; r++) for (let j = 0; j < k; j++) out[r * k + j] = ensemble.baseScore[j];
  for (let t = 0; t < ensemble.trees.length; t++) {
    addTreeColumns(ensemble.trees[t], columns, numRows, out, k, ensemble.treeOutput[t]);
  }
  return out;
}
