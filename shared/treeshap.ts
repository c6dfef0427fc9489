/**
 * Exact path-dependent TreeSHAP over a TreeEnsemble (numeric and categorical nodes, NaN routing by
 * `defaultLeft`), in raw-margin space. Output per row: `[K][F+1]`, the last entry of each output is
 * its base value (expected margin = baseScore + Σ cover-weighted root means).
 *
 * Two exact algorithms, chosen per tree:
 * - "fast" (Fast TreeSHAP v2 idea, Yang 2021, arXiv:2109.09847, reformulated): for a leaf with m
 *   unique path features, zero fractions z_j (products of cover ratios) and the row's set A of
 *   features whose every condition on the path holds, the path-dependent Shapley value is
 *     j ∈ A: φ_j += v·(1−z_j)·P(A)·H(A∖{j}),   j ∉ A: φ_j −= v·P(A)·H(A),
 *   with P(A) = Π_{k∉A} z_k and H(B) = Σ_{S⊆B} |S|!(m−|S|−1)!/m! · Π_{k∈B∖S} z_k. H and v·P are
 *   tabulated per leaf over all 2^m subsets once; a row then costs one walk over the nodes (to get
 *   A per leaf) plus O(m) per leaf, instead of O(m²) per leaf with path extension/unwinding.
 * - "recursive" (Lundberg et al. 2018, Algorithm 2; shap's tree_shap.h): used for trees whose tables
 *   would be too large (deep leaf-wise trees), and as a second implementation for the tests.
 *
 * Covers must be consistent (a split's cover = the sum of its children's) and positive.
 * No allocation per row: every buffer is made in the constructor.
 */
import { arborError } from "./errors.ts";
import { categoryGoesLeft, NODE_CATEGORICAL, NODE_LEAF, type TreeEnsemble } from "./tree.ts";

/** Which exact algorithm to use. */
export type TreeShapAlgorithm = "auto" | "fast" | "recursive";

/** Largest m (unique features on a leaf's path) tabulated by the fast algorithm. */
const MAX_FAST_DEPTH = 12;
/** Budget of table entries per tree before a tree falls back to the recursive algorithm. */
const MAX_TABLE_PER_TREE = 1 << 16;
/** Budget of table entries over the whole ensemble (8 Mi doubles = 64 MiB); later trees fall back. */
const MAX_TABLE_TOTAL = 1 << 23;
/** Rows explained together tree by tree in explainRows (tables stay in cache across the block). */
export const BLOCK_ROWS = 64;

/** Options of {@link TreeExplainer}. */
export interface TreeExplainerOptions {
  algorithm?: TreeShapAlgorithm;
}

/** Precomputed TreeSHAP state of one ensemble; explains rows into caller-provided buffers. */
export class TreeExplainer {
  readonly numFeatures: number;
  readonly numOutputs: number;
  /** Base value per output (expected margin). */
  readonly expectedValue: Float64Array;
  /** Number of trees explained with the tabulated algorithms (per leaf, or per oblivious tree). */
  readonly fastTrees: number;
  /** Of those, oblivious trees explained by one table read per level (φ tabulated per decision vector). */
  readonly obliviousTrees: number;

  readonly #ensemble: TreeEnsemble;
  /** Per tree: 1 when explained by the tabulated algorithm. */
  readonly #useFast: Uint8Array;
  readonly #forest: FastForest;
  readonly #oblivious: ObliviousForest;
  // Recursive algorithm state: path buffers and the row being explained.
  readonly #pFeature: Int32Array;
  readonly #pZero: Float64Array;
  readonly #pOne: Float64Array;
  readonly #pWeight: Float64Array;
  #x: ArrayLike<number> = [];
  #xOff = 0;
  #phi: Float64Array = new Float64Array(0);
  #phiOff = 0;

  constructor(ensemble: TreeEnsemble, options: TreeExplainerOptions = {}) {
    const algorithm = options.algorithm ?? "auto";
    this.#ensemble = ensemble;
    this.numFeatures = ensemble.numFeatures;
    this.numOutputs = ensemble.numOutputs;
    const trees = ensemble.trees;
    this.expectedValue = Float64Array.from(ensemble.baseScore);
    this.#useFast = new Uint8Array(trees.length);
    let maxDepth = 0;
    const infos: (PathInfo | null)[] = [];
    const obliviousLevelsOf = new Map<number, Int32Array>();
    let tableTotal = 0;
    for (let t = 0; t < trees.length; t++) {
      const tree = trees[t];
      this.expectedValue[ensemble.treeOutput[t]] += nodeMeans(tree)[0];
      const info = pathInfo(tree);
      maxDepth = Math.max(maxDepth, info.maxDepth);
      let treeTable = 0;
      for (const leaf of info.leaves) treeTable += 2 ** leaf.features.length;
      const fast =
        info.minZero > 0 &&
        (algorithm === "fast" ||
          (algorithm === "auto" &&
            info.maxUnique <= MAX_FAST_DEPTH &&
            treeTable <= MAX_TABLE_PER_TREE &&
            tableTotal + treeTable <= MAX_TABLE_TOTAL));
      if (fast) tableTotal += treeTable;
      if (fast && info.maxUnique > 24) {
        throw arborError(
          "INVALID_ARGUMENT",
          `TreeExplainer: tree ${t} has too many path features for "fast"`,
        );
      }
      const levels = fast && algorithm === "auto" ? obliviousLevels(tree) : null;
      this.#useFast[t] = fast ? 1 : 0;
      if (levels) obliviousLevelsOf.set(t, levels);
      infos.push(fast ? info : null);
    }
    this.#forest = buildForest(ensemble, infos);
    this.fastTrees = this.#forest.treeIndex.length;
    this.#oblivious = buildOblivious(ensemble, this.#forest, obliviousLevelsOf);
    this.obliviousTrees = this.#oblivious.tree.length;
    const pathLen = ((maxDepth + 2) * (maxDepth + 3)) / 2;
    this.#pFeature = new Int32Array(pathLen);
    this.#pZero = new Float64Array(pathLen);
    this.#pOne = new Float64Array(pathLen);
    this.#pWeight = new Float64Array(pathLen);
  }

  /** Size of one row's output: K·(F+1). */
  get rowSize(): number {
    return this.numOutputs * (this.numFeatures + 1);
  }

  /**
   * SHAP values of the row `x[xOffset .. xOffset+F)` written into `out[outOffset .. +K·(F+1))`:
   * for output k, `out[k·(F+1) + j]` is feature j's contribution and `out[k·(F+1) + F]` the base value.
   */
  explainRow(x: ArrayLike<number>, out: Float64Array, xOffset = 0, outOffset = 0): Float64Array {
    return this.explainBlock(x, xOffset, 1, out, outOffset);
  }

  /**
   * SHAP values of `rows` consecutive row-major rows starting at `x[xOffset]`, into `out` from
   * `outOffset` (rowSize values per row). Tree by tree over the block, so that a tree's tables stay
   * in cache while every row of the block uses them.
   */
  explainBlock(
    x: ArrayLike<number>,
    xOffset: number,
    rows: number,
    out: Float64Array,
    outOffset = 0,
  ): Float64Array {
    const f = this.numFeatures;
    const f1 = f + 1;
    const k = this.numOutputs;
    const size = k * f1;
    for (let r = 0; r < rows; r++) {
      const o0 = outOffset + r * size;
      for (let i = 0; i < size; i++) out[o0 + i] = 0;
      for (let o = 0; o < k; o++) out[o0 + o * f1 + f] = this.expectedValue[o];
    }
    const trees = this.#ensemble.trees;
    const treeOutput = this.#ensemble.treeOutput;
    if (this.fastTrees > this.obliviousTrees) {
      fastShap(this.#forest, treeOutput, x, xOffset, f, rows, out, outOffset, size, f1);
    }
    if (this.obliviousTrees > 0)
      obliviousShap(this.#oblivious, treeOutput, x, xOffset, f, rows, out, outOffset, size, f1);
    if (this.fastTrees === trees.length) return out;
    this.#x = x;
    this.#phi = out;
    for (let r = 0; r < rows; r++) {
      this.#xOff = xOffset + r * f;
      for (let t = 0; t < trees.length; t++) {
        if (this.#useFast[t] === 1) continue;
        this.#phiOff = outOffset + r * size + treeOutput[t] * f1;
        this.#recurse(t, 0, 0, 1, 1, -1, 0);
      }
    }
    return out;
  }

  /** SHAP values of `rows` row-major rows: a Float64Array of rows·K·(F+1). */
  explainRows(x: Float32Array | Float64Array, rows: number): Float64Array {
    const out = new Float64Array(rows * this.rowSize);
    for (let r = 0; r < rows; r += BLOCK_ROWS) {
      const n = Math.min(BLOCK_ROWS, rows - r);
      this.explainBlock(x, r * this.numFeatures, n, out, r * this.rowSize);
    }
    return out;
  }

  // ── Algorithm 2 (recursive), path buffers shared across levels as in shap's tree_shap.h ──

  #recurse(
    t: number,
    node: number,
    depth: number,
    zeroFraction: number,
    oneFraction: number,
    featureIndex: number,
    pathStart: number,
  ): void {
    const tree = this.#ensemble.trees[t];
    const pf = this.#pFeature;
    const pz = this.#pZero;
    const po = this.#pOne;
    const pw = this.#pWeight;
    // The parent's path is at [pathStart - depth, pathStart) in this buffer when depth > 0: copy it.
    if (depth > 0) {
      const src = pathStart - depth;
      for (let i = 0; i < depth; i++) {
        pf[pathStart + i] = pf[src + i];
        pz[pathStart + i] = pz[src + i];
        po[pathStart + i] = po[src + i];
        pw[pathStart + i] = pw[src + i];
      }
    }
    extendPath(pf, pz, po, pw, pathStart, depth, zeroFraction, oneFraction, featureIndex);
    if (tree.kind[node] === NODE_LEAF) {
      const v = tree.value[node];
      const phi = this.#phi;
      for (let i = 1; i <= depth; i++) {
        const w = unwoundPathSum(pf, pz, po, pw, pathStart, depth, i);
        phi[this.#phiOff + pf[pathStart + i]] += w * (po[pathStart + i] - pz[pathStart + i]) * v;
      }
      return;
    }
    const f = tree.feature[node];
    const x = this.#x[this.#xOff + f];
    let goLeft: boolean;
    if (Number.isNaN(x)) goLeft = tree.defaultLeft[node] === 1;
    else if (tree.kind[node] === NODE_CATEGORICAL) goLeft = categoryGoesLeft(tree.categories[node]!, x);
    else goLeft = x <= tree.threshold[node];
    const hot = goLeft ? tree.left[node] : tree.right[node];
    const cold = goLeft ? tree.right[node] : tree.left[node];
    const hotZero = coverRatio(tree, node, hot);
    const coldZero = coverRatio(tree, node, cold);
    let incomingZero = 1;
    let incomingOne = 1;
    let d = depth;
    let k = 1;
    for (; k <= d; k++) if (pf[pathStart + k] === f) break;
    if (k <= d) {
      incomingZero = pz[pathStart + k];
      incomingOne = po[pathStart + k];
      unwindPath(pf, pz, po, pw, pathStart, d, k);
      d -= 1;
    }
    const next = pathStart + d + 1;
    this.#recurse(t, hot, d + 1, hotZero * incomingZero, incomingOne, f, next);
    this.#recurse(t, cold, d + 1, coldZero * incomingZero, 0, f, next);
  }
}

function extendPath(
  pf: Int32Array,
  pz: Float64Array,
  po: Float64Array,
  pw: Float64Array,
  s: number,
  depth: number,
  zero: number,
  one: number,
  feature: number,
): void {
  pf[s + depth] = feature;
  pz[s + depth] = zero;
  po[s + depth] = one;
  pw[s + depth] = depth === 0 ? 1 : 0;
  for (let i = depth - 1; i >= 0; i--) {
    pw[s + i + 1] += (one * pw[s + i] * (i + 1)) / (depth + 1);
    pw[s + i] = (zero * pw[s + i] * (depth - i)) / (depth + 1);
  }
}

function unwindPath(
  pf: Int32Array,
  pz: Float64Array,
  po: Float64Array,
  pw: Float64Array,
  s: number,
  depth: number,
  index: number,
): void {
  const one = po[s + index];
  const zero = pz[s + index];
  let nextOne = pw[s + depth];
  for (let i = depth - 1; i >= 0; i--) {
    if (one !== 0) {
      const tmp = pw[s + i];
      pw[s + i] = (nextOne * (depth + 1)) / ((i + 1) * one);
      nextOne = tmp - (pw[s + i] * zero * (depth - i)) / (depth + 1);
    } else {
      pw[s + i] = (pw[s + i] * (depth + 1)) / (zero * (depth - i));
    }
  }
  for (let i = index; i < depth; i++) {
    pf[s + i] = pf[s + i + 1];
    pz[s + i] = pz[s + i + 1];
    po[s + i] = po[s + i + 1];
  }
}

function unwoundPathSum(
  _pf: Int32Array,
  pz: Float64Array,
  po: Float64Array,
  pw: Float64Array,
  s: number,
  depth: number,
  index: number,
): number {
  const one = po[s + index];
  const zero = pz[s + index];
  let nextOne = pw[s + depth];
  let total = 0;
  for (let i = depth - 1; i >= 0; i--) {
    if (one !== 0) {
      const tmp = (nextOne * (depth + 1)) / ((i + 1) * one);
      total += tmp;
      nextOne = pw[s + i] - tmp * zero * ((depth - i) / (depth + 1));
    } else if (zero !== 0) {
      total += pw[s + i] / zero / ((depth - i) / (depth + 1));
    }
  }
  return total;
}

/**
 * The tabulated trees flattened into one preorder node array (parents before children), so a
 * row's walk is a single forward loop; categorical sets become bitsets.
 */
interface FastForest {
  /** Ensemble index of each tabulated tree, its node range [start[i], start[i+1]). */
  treeIndex: Int32Array;
  start: Int32Array;
  /** 0 leaf, 1 numeric, 2 categorical. */
  kind: Uint8Array;
  feature: Int32Array;
  threshold: Float32Array;
  left: Int32Array;
  right: Int32Array;
  defaultLeft: Uint8Array;
  /** Categorical nodes: bitset offset (words) and size (codes); leaves: leaf index. */
  aux: Int32Array;
  auxSize: Int32Array;
  bits: Uint32Array;
  /** Bit of the node's feature on the path, and 1 when the feature first appears there. */
  posBit: Int32Array;
  isNew: Uint8Array;
  /** Per leaf: m, offsets into path arrays and tables. */
  leafM: Int32Array;
  leafFeat: Int32Array;
  leafTable: Int32Array;
  pathFeature: Int32Array;
  /** (1 − z_j) / z_j per path feature. */
  pathRatio: Float64Array;
  /** T(B) = v·P(B)·H(B) per subset. */
  tableT: Float64Array;
  /** Per-node satisfied-feature bitmask of the current row (scratch). */
  a: Int32Array;
  /** 1 for trees handled by the oblivious kernel instead. */
  skip: Uint8Array;
}

function buildForest(ensemble: TreeEnsemble, infos: (PathInfo | null)[]): FastForest {
  const treeIndex: number[] = [];
  const start: number[] = [0];
  let total = 0;
  let bitWords = 0;
  let leaves = 0;
  let pathLen = 0;
  let tableLen = 0;
  for (let t = 0; t < infos.length; t++) {
    const info = infos[t];
    if (!info) continue;
    const tree = ensemble.trees[t];
    treeIndex.push(t);
    total += tree.kind.length;
    start.push(total);
    for (let i = 0; i < tree.kind.length; i++) {
      const set = tree.categories[i];
      if (tree.kind[i] === NODE_CATEGORICAL && set && set.length > 0)
        bitWords += (set[set.length - 1] >> 5) + 1;
    }
    for (const leaf of info.leaves) {
      leaves++;
      pathLen += leaf.features.length;
      tableLen += 2 ** leaf.features.length;
    }
  }
  const ff: FastForest = {
    treeIndex: Int32Array.from(treeIndex),
    start: Int32Array.from(start),
    kind: new Uint8Array(total),
    feature: new Int32Array(total),
    threshold: new Float32Array(total),
    left: new Int32Array(total),
    right: new Int32Array(total),
    defaultLeft: new Uint8Array(total),
    aux: new Int32Array(total),
    auxSize: new Int32Array(total),
    bits: new Uint32Array(bitWords),
    posBit: new Int32Array(total),
    isNew: new Uint8Array(total),
    leafM: new Int32Array(leaves),
    leafFeat: new Int32Array(leaves),
    leafTable: new Int32Array(leaves),
    pathFeature: new Int32Array(pathLen),
    pathRatio: new Float64Array(pathLen),
    tableT: new Float64Array(tableLen),
    a: new Int32Array(total),
    skip: new Uint8Array(treeIndex.length),
  };
  let node = 0;
  let word = 0;
  let leaf = 0;
  let path = 0;
  let table = 0;
  for (let ti = 0; ti < treeIndex.length; ti++) {
    const tree = ensemble.trees[treeIndex[ti]];
    const info = infos[treeIndex[ti]]!;
    const base = node;
    // Preorder numbering.
    const order: number[] = [];
    const stack = [0];
    while (stack.length > 0) {
      const i = stack.pop()!;
      order.push(i);
      if (tree.kind[i] !== NODE_LEAF) stack.push(tree.right[i], tree.left[i]);
    }
    const pos = new Int32Array(tree.kind.length);
    for (let i = 0; i < order.length; i++) pos[order[i]] = base + i;
    const leafOf = new Map<number, LeafPath>();
    for (const l of info.leaves) leafOf.set(l.node, l);
    for (const i of order) {
      const g = pos[i];
      ff.kind[g] = tree.kind[i];
      if (tree.kind[i] === NODE_LEAF) {
        const l = leafOf.get(i)!;
        ff.aux[g] = leaf;
        fillLeaf(ff, leaf, l, tree.value[i], path, table);
        path += l.features.length;
        table += 2 ** l.features.length;
        leaf++;
        continue;
      }
      ff.feature[g] = tree.feature[i];
      ff.threshold[g] = tree.threshold[i];
      ff.left[g] = pos[tree.left[i]];
      ff.right[g] = pos[tree.right[i]];
      ff.defaultLeft[g] = tree.defaultLeft[i];
      ff.posBit[g] = info.posBit[i];
      ff.isNew[g] = info.isNew[i];
      const set = tree.categories[i];
      if (tree.kind[i] === NODE_CATEGORICAL && set && set.length > 0) {
        const words = (set[set.length - 1] >> 5) + 1;
        ff.aux[g] = word;
        ff.auxSize[g] = words * 32;
        for (let k = 0; k < set.length; k++) ff.bits[word + (set[k] >> 5)] |= 1 << (set[k] & 31);
        word += words;
      }
    }
    node += order.length;
  }
  return ff;
}

/**
 * Table of one leaf over all subsets B of its m path features: T(B) = v·P(B)·H(B). Since
 * v·P(A) = v·P(A∖{j})/z_j for j ∈ A, both cases of the kernel read one entry:
 * j ∈ A: φ_j += (1−z_j)/z_j · T(A∖{j});  j ∉ A: φ_j −= T(A).
 */
function fillLeaf(ff: FastForest, leaf: number, l: LeafPath, v: number, path: number, table: number): void {
  const m = l.features.length;
  ff.leafM[leaf] = m;
  ff.leafFeat[leaf] = path;
  ff.leafTable[leaf] = table;
  for (let j = 0; j < m; j++) {
    ff.pathFeature[path + j] = l.features[j];
    ff.pathRatio[path + j] = (1 - l.zero[j]) / l.zero[j];
  }
  const size = 2 ** m;
  // coef[s] = s!(m−s−1)!/m!
  const coef = new Float64Array(m + 1);
  for (let s = 0; s < m; s++) coef[s] = 1 / (m * binomial(m - 1, s));
  // Elementary symmetric polynomials of the z's of each subset, built by adding its lowest element.
  const w = m + 1;
  const esym = new Float64Array(size * w);
  esym[0] = 1;
  for (let b = 1; b < size; b++) {
    const low = 31 - Math.clz32(b & -b);
    const prev = b & (b - 1);
    const z = l.zero[low];
    const cnt = popcount(b);
    for (let r = 0; r <= cnt; r++) {
      esym[b * w + r] = (r < cnt ? esym[prev * w + r] : 0) + (r > 0 ? z * esym[prev * w + r - 1] : 0);
    }
  }
  for (let b = 0; b < size; b++) {
    const cnt = popcount(b);
    // H(B) = Σ_s coef[s]·e_{|B|−s}(z_B): S ⊆ B of size s, the rest of B contributes its z's.
    let h = 0;
    if (cnt < m) for (let s = 0; s <= cnt; s++) h += coef[s] * esym[b * w + cnt - s];
    let p = v;
    for (let j = 0; j < m; j++) if ((b & (1 << j)) === 0) p *= l.zero[j];
    ff.tableT[table + b] = p * h;
  }
}

/** The tabulated kernel: adds every fast tree's SHAP values of one row into `phi`. */
function fastShap(
  ff: FastForest,
  treeOutput: Int32Array,
  x: ArrayLike<number>,
  xOff0: number,
  numFeatures: number,
  rows: number,
  phi: Float64Array,
  outOff0: number,
  rowSize: number,
  f1: number,
): void {
  const { kind, feature, threshold, left, right, defaultLeft, aux, auxSize, bits, posBit, isNew, a } = ff;
  const { leafM, leafFeat, leafTable, pathFeature, pathRatio, tableT, start, treeIndex } = ff;
  const skip = ff.skip;
  for (let ti = 0; ti < treeIndex.length; ti++) {
    if (skip[ti] === 1) continue;
    const begin = start[ti];
    const end = start[ti + 1];
    const outK = treeOutput[treeIndex[ti]] * f1;
    for (let r = 0; r < rows; r++) {
      const xOff = xOff0 + r * numFeatures;
      const phiOff = outOff0 + r * rowSize + outK;
      a[begin] = 0;
      for (let g = begin; g < end; g++) {
        const k = kind[g];
        const ag = a[g];
        if (k === NODE_LEAF) {
          const l = aux[g];
          const m = leafM[l];
          if (m === 0) continue;
          const tb = leafTable[l];
          const fb = leafFeat[l];
          const neg = tableT[tb + ag];
          for (let j = 0; j < m; j++) {
            const bit = 1 << j;
            if ((ag & bit) !== 0)
              phi[phiOff + pathFeature[fb + j]] += pathRatio[fb + j] * tableT[tb + (ag ^ bit)];
            else phi[phiOff + pathFeature[fb + j]] -= neg;
          }
          continue;
        }
        const v = x[xOff + feature[g]];
        let goLeft: boolean;
        if (Number.isNaN(v)) goLeft = defaultLeft[g] === 1;
        else if (k === NODE_CATEGORICAL) {
          goLeft =
            v >= 0 && v < auxSize[g] && (v | 0) === v && (bits[aux[g] + (v >> 5)] & (1 << (v & 31))) !== 0;
        } else goLeft = v <= threshold[g];
        const bit = posBit[g];
        const hot = isNew[g] === 1 ? ag | bit : ag;
        const cold = ag & ~bit;
        if (goLeft) {
          a[left[g]] = hot;
          a[right[g]] = cold;
        } else {
          a[left[g]] = cold;
          a[right[g]] = hot;
        }
      }
    }
  }
}

/**
 * Oblivious trees (one split per level, every leaf at depth D): a row's path through the tree is
 * fully given by its D level decisions, so the tree's SHAP values are a function of a D-bit number.
 * They are tabulated once for all 2^D decision vectors (with the per-leaf kernel's walk), and a row
 * then costs D comparisons plus one table row (CatBoost's trick, catboost/benchmarks shap_speed).
 */
interface ObliviousForest {
  tree: Int32Array;
  depth: Int32Array;
  /** Offset of each tree's levels in the level arrays, and of its features/table. */
  levelBase: Int32Array;
  uBase: Int32Array;
  uCount: Int32Array;
  tableBase: Int32Array;
  kind: Uint8Array;
  feature: Int32Array;
  threshold: Float32Array;
  defaultLeft: Uint8Array;
  bitsOff: Int32Array;
  bitsSize: Int32Array;
  bits: Uint32Array;
  uFeature: Int32Array;
  table: Float64Array;
}

/** The node of each level when `tree` is oblivious (complete, same split per level), else null. */
function obliviousLevels(tree: TreeEnsemble["trees"][number]): Int32Array | null {
  const reps: number[] = [];
  let level = [0];
  while (tree.kind[level[0]] !== NODE_LEAF) {
    if (reps.length >= 16) return null;
    const rep = level[0];
    const next: number[] = [];
    for (const node of level) {
      if (tree.kind[node] !== tree.kind[rep] || tree.feature[node] !== tree.feature[rep]) return null;
      if (tree.defaultLeft[node] !== tree.defaultLeft[rep]) return null;
      if (!Object.is(tree.threshold[node], tree.threshold[rep])) return null;
      const a = tree.categories[node];
      const b = tree.categories[rep];
      if (
        (a === null) !== (b === null) ||
        (a && b && (a.length !== b.length || a.some((v, i) => v !== b[i])))
      ) {
        return null;
      }
      next.push(tree.left[node], tree.right[node]);
    }
    reps.push(rep);
    level = next;
  }
  for (const node of level) if (tree.kind[node] !== NODE_LEAF) return null;
  return reps.length > 0 ? Int32Array.from(reps) : null;
}

function buildOblivious(
  ensemble: TreeEnsemble,
  ff: FastForest,
  levelsOf: Map<number, Int32Array>,
): ObliviousForest {
  const trees: number[] = [];
  const forestIndex: number[] = [];
  let levels = 0;
  let us = 0;
  let tables = 0;
  let words = 0;
  const uniques = new Map<number, number[]>();
  for (let fi = 0; fi < ff.treeIndex.length; fi++) {
    const t = ff.treeIndex[fi];
    const reps = levelsOf.get(t);
    if (!reps) continue;
    const tree = ensemble.trees[t];
    const u: number[] = [];
    for (const r of reps) {
      if (!u.includes(tree.feature[r])) u.push(tree.feature[r]);
      const set = tree.categories[r];
      if (set && set.length > 0) words += (set[set.length - 1] >> 5) + 1;
    }
    uniques.set(t, u);
    trees.push(t);
    forestIndex.push(fi);
    levels += reps.length;
    us += u.length;
    tables += 2 ** reps.length * u.length;
  }
  const o: ObliviousForest = {
    tree: Int32Array.from(trees),
    depth: new Int32Array(trees.length),
    levelBase: new Int32Array(trees.length),
    uBase: new Int32Array(trees.length),
    uCount: new Int32Array(trees.length),
    tableBase: new Int32Array(trees.length),
    kind: new Uint8Array(levels),
    feature: new Int32Array(levels),
    threshold: new Float32Array(levels),
    defaultLeft: new Uint8Array(levels),
    bitsOff: new Int32Array(levels),
    bitsSize: new Int32Array(levels),
    bits: new Uint32Array(words),
    uFeature: new Int32Array(us),
    table: new Float64Array(tables),
  };
  let lb = 0;
  let ub = 0;
  let tb = 0;
  let wb = 0;
  const phi = new Float64Array(ensemble.numFeatures);
  for (let i = 0; i < trees.length; i++) {
    const t = trees[i];
    const tree = ensemble.trees[t];
    const reps = levelsOf.get(t)!;
    const u = uniques.get(t)!;
    const d = reps.length;
    o.depth[i] = d;
    o.levelBase[i] = lb;
    o.uBase[i] = ub;
    o.uCount[i] = u.length;
    o.tableBase[i] = tb;
    for (let l = 0; l < d; l++) {
      const r = reps[l];
      o.kind[lb + l] = tree.kind[r];
      o.feature[lb + l] = tree.feature[r];
      o.threshold[lb + l] = tree.threshold[r];
      o.defaultLeft[lb + l] = tree.defaultLeft[r];
      const set = tree.categories[r];
      if (tree.kind[r] === NODE_CATEGORICAL && set && set.length > 0) {
        const w = (set[set.length - 1] >> 5) + 1;
        o.bitsOff[lb + l] = wb;
        o.bitsSize[lb + l] = w * 32;
        for (const c of set) o.bits[wb + (c >> 5)] |= 1 << (c & 31);
        wb += w;
      }
    }
    for (let j = 0; j < u.length; j++) o.uFeature[ub + j] = u[j];
    for (let bitsD = 0; bitsD < 2 ** d; bitsD++) {
      phi.fill(0);
      decisionShap(ff, forestIndex[i], bitsD, phi);
      for (let j = 0; j < u.length; j++) o.table[tb + bitsD * u.length + j] = phi[u[j]];
    }
    ff.skip[forestIndex[i]] = 1;
    lb += d;
    ub += u.length;
    tb += 2 ** d * u.length;
  }
  return o;
}

/** The per-leaf kernel's walk for one tree of the forest with level decisions given as bits (1 = left). */
function decisionShap(ff: FastForest, fi: number, decisions: number, phi: Float64Array): void {
  const {
    kind,
    left,
    right,
    aux,
    posBit,
    isNew,
    a,
    leafM,
    leafFeat,
    leafTable,
    pathFeature,
    pathRatio,
    tableT,
  } = ff;
  const begin = ff.start[fi];
  const end = ff.start[fi + 1];
  const level = new Int32Array(end - begin);
  a[begin] = 0;
  for (let g = begin; g < end; g++) {
    const ag = a[g];
    if (kind[g] === NODE_LEAF) {
      const l = aux[g];
      const m = leafM[l];
      const tb = leafTable[l];
      const fb = leafFeat[l];
      for (let j = 0; j < m; j++) {
        const bit = 1 << j;
        if ((ag & bit) !== 0) phi[pathFeature[fb + j]] += pathRatio[fb + j] * tableT[tb + (ag ^ bit)];
        else phi[pathFeature[fb + j]] -= tableT[tb + ag];
      }
      continue;
    }
    const goLeft = ((decisions >> level[g - begin]) & 1) === 1;
    const bit = posBit[g];
    const hot = isNew[g] === 1 ? ag | bit : ag;
    const cold = ag & ~bit;
    a[left[g]] = goLeft ? hot : cold;
    a[right[g]] = goLeft ? cold : hot;
    level[left[g] - begin] = level[g - begin] + 1;
    level[right[g] - begin] = level[g - begin] + 1;
  }
}

/** The oblivious kernel: D decisions → one table row per tree. */
function obliviousShap(
  o: ObliviousForest,
  treeOutput: Int32Array,
  x: ArrayLike<number>,
  xOff0: number,
  numFeatures: number,
  rows: number,
  phi: Float64Array,
  outOff0: number,
  rowSize: number,
  f1: number,
): void {
  const { kind, feature, threshold, defaultLeft, bitsOff, bitsSize, bits, uFeature, table } = o;
  for (let i = 0; i < o.tree.length; i++) {
    const d = o.depth[i];
    const lb = o.levelBase[i];
    const ub = o.uBase[i];
    const uc = o.uCount[i];
    const tb = o.tableBase[i];
    const outK = treeOutput[o.tree[i]] * f1;
    for (let r = 0; r < rows; r++) {
      const xOff = xOff0 + r * numFeatures;
      let decisions = 0;
      for (let l = 0; l < d; l++) {
        const g = lb + l;
        const v = x[xOff + feature[g]];
        let goLeft: boolean;
        if (Number.isNaN(v)) goLeft = defaultLeft[g] === 1;
        else if (kind[g] === NODE_CATEGORICAL) {
          goLeft =
            v >= 0 &&
            v < bitsSize[g] &&
            (v | 0) === v &&
            (bits[bitsOff[g] + (v >> 5)] & (1 << (v & 31))) !== 0;
        } else goLeft = v <= threshold[g];
        if (goLeft) decisions |= 1 << l;
      }
      const row = tb + decisions * uc;
      const phiOff = outOff0 + r * rowSize + outK;
      for (let j = 0; j < uc; j++) phi[phiOff + uFeature[ub + j]] += table[row + j];
    }
  }
}

/** Smallest zero fraction used: keeps 1/z finite in the tables and the unwinding of Algorithm 2. */
const MIN_FRACTION = 1e-150;

/**
 * Share of `node`'s cover that reaches `child`. The denominator is the children's sum, so the two
 * shares add up to 1 even when stored covers are rounded (XGBoost's float32 sum_hess). A child the
 * training rows never reached (cover 0, e.g. in oblivious trees) gets MIN_FRACTION instead of 0;
 * a node without cover splits evenly, so SHAP stays finite and locally accurate.
 */
export function coverRatio(tree: TreeEnsemble["trees"][number], node: number, child: number): number {
  const l = tree.cover[tree.left[node]];
  const r = tree.cover[tree.right[node]];
  const total = l + r;
  if (!(total > 0)) return 0.5;
  return Math.max(tree.cover[child] / total, MIN_FRACTION);
}

/** Cover-weighted mean leaf value under every node (E[f] at the root). */
export function nodeMeans(tree: TreeEnsemble["trees"][number]): Float64Array {
  const n = tree.kind.length;
  const mean = new Float64Array(n);
  // Children have larger indices than parents in no guaranteed order, so walk in post-order.
  const order = new Int32Array(n);
  const stack = [0];
  let c = 0;
  while (stack.length > 0) {
    const node = stack.pop()!;
    order[c++] = node;
    if (tree.kind[node] !== NODE_LEAF) stack.push(tree.left[node], tree.right[node]);
  }
  for (let i = c - 1; i >= 0; i--) {
    const node = order[i];
    if (tree.kind[node] === NODE_LEAF) mean[node] = tree.value[node];
    else {
      const l = tree.left[node];
      const r = tree.right[node];
      mean[node] = coverRatio(tree, node, l) * mean[l] + coverRatio(tree, node, r) * mean[r];
    }
  }
  return mean;
}

interface LeafPath {
  node: number;
  features: number[];
  zero: number[];
}

/** Static path facts: per node its feature's bit on the path and whether it is new; per leaf its unique features and zero fractions. */
interface PathInfo {
  posBit: Int32Array;
  isNew: Uint8Array;
  leaves: LeafPath[];
  maxDepth: number;
  maxUnique: number;
  /** Smallest zero fraction on any path (0 when a child has no cover: the table form divides by it). */
  minZero: number;
}

function pathInfo(tree: TreeEnsemble["trees"][number]): PathInfo {
  const n = tree.kind.length;
  const posBit = new Int32Array(n);
  const isNew = new Uint8Array(n);
  const leaves: LeafPath[] = [];
  let maxDepth = 0;
  let maxUnique = 0;
  let minZero = 1;
  const walk = (node: number, depth: number, features: number[], zero: number[]): void => {
    maxDepth = Math.max(maxDepth, depth);
    if (tree.kind[node] === NODE_LEAF) {
      maxUnique = Math.max(maxUnique, features.length);
      for (const z of zero) minZero = Math.min(minZero, z);
      leaves.push({ node, features: [...features], zero: [...zero] });
      return;
    }
    const f = tree.feature[node];
    let p = features.indexOf(f);
    const fresh = p < 0;
    if (fresh) p = features.length;
    posBit[node] = p < 31 ? 1 << p : 0;
    isNew[node] = fresh ? 1 : 0;
    for (const child of [tree.left[node], tree.right[node]]) {
      const ratio = coverRatio(tree, node, child);
      const fs = fresh ? [...features, f] : features;
      const zs = fresh ? [...zero, ratio] : zero.map((z, i) => (i === p ? z * ratio : z));
      walk(child, depth + 1, fs, zs);
    }
  };
  walk(0, 0, [], []);
  return { posBit, isNew, leaves, maxDepth, maxUnique, minZero };
}

function popcount(b: number): number {
  let c = 0;
  for (let v = b; v !== 0; v &= v - 1) c++;
  return c;
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}
