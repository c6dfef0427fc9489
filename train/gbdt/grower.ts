/**
 * Tree growers over binned data: `leafwise` (best-first, LightGBM), `depthwise` (level by level,
 * XGBoost), `oblivious` (one shared split per level, CatBoost). Rows of the tree's sample live in
 * one index array cut into row shards (shards.ts); every node owns a contiguous range per shard
 * that a split partitions in place (stable, so row order stays ascending and memory access stays
 * sequential-ish). Only the smaller child's histogram is built (smaller by the split's estimated
 * counts, known before the partition, so partition and build are one parallel job); the larger
 * one is parent − smaller, computed in the parent's buffer.
 */
import { allocTree, NODE_CATEGORICAL, NODE_LEAF, NODE_NUMERIC, type Tree } from "../../shared/tree.ts";
import type { BinnedData } from "./binning.ts";
import { subtractHistogram } from "./histogram.ts";
import type { TrainParams } from "./params.ts";
import { type HistPool, shardStart } from "./shards.ts";
import { findBestSplit, leafWeight, SplitInfo, splitLut } from "./split.ts";

/** Per-fit scratch memory shared by all trees: row indices (shared with histogram workers) and histograms. */
export class GrowScratch {
  readonly idx: Uint32Array;
  readonly pool: HistPool;
  readonly shards: number;

  constructor(idx: Uint32Array, pool: HistPool) {
    this.idx = idx;
    this.pool = pool;
    this.shards = pool.shards;
  }

  /** Nodes reused across trees (allocating a Node and its SplitInfo per node showed in profiles). */
  readonly nodePool: Node[] = [];
  nodesUsed = 0;

  /** A reset node from the pool. */
  node(): Node {
    let n = this.nodePool[this.nodesUsed];
    if (n === undefined) {
      n = new Node(this.shards);
      this.nodePool.push(n);
    } else n.reset();
    this.nodesUsed++;
    return n;
  }

  /** A histogram buffer from the pool. */
  take(): Float64Array {
    return this.pool.take();
  }

  /** Return a buffer to the pool. */
  give(h: Float64Array | null): void {
    this.pool.give(h);
  }
}

/** A grown tree plus what the engine needs to update predictions from bins. */
export interface GrownTree {
  tree: Tree;
  /** Per node: routing table by bin (split nodes only). */
  luts: (Uint8Array | null)[];
  /** Leaf ranges: the sample rows idx[start..end) of each leaf node, per shard (node × shards + t). */
  leafStart: Int32Array;
  leafEnd: Int32Array;
  shards: number;
}

/** Inputs of one tree. */
export interface GrowInput {
  data: BinnedData;
  /** Interleaved gradients and hessians of every row. */
  gh: Float64Array;
  /** Output (class) index of the tree, i.e. which gradient array the histogram workers read. */
  output: number;
  /** The rows of this tree are scratch.idx[0..numSample); when all rows, `allRows` is true. */
  numSample: number;
  allRows: boolean;
  /** Σg and Σh of all rows in row order (used as the root totals when `allRows`). */
  allG: number;
  allH: number;
  featureMask: Uint8Array;
  params: TrainParams;
  scratch: GrowScratch;
}

class Node {
  /** Per shard: this node's rows are idx[st[t]..en[t]). */
  readonly st: Int32Array;
  readonly en: Int32Array;
  /** Per shard: rows sent left by this node's split. */
  readonly nl: Int32Array;
  depth = 0;
  g = 0;
  h = 0;
  c = 0;
  hist: Float64Array | null = null;
  split = new SplitInfo();
  lut: Uint8Array | null = null;
  left = -1;
  right = -1;
  gain = 0;

  constructor(shards: number) {
    this.st = new Int32Array(shards);
    this.en = new Int32Array(shards);
    this.nl = new Int32Array(shards);
  }

  reset(): void {
    this.depth = 0;
    this.g = 0;
    this.h = 0;
    this.c = 0;
    this.hist = null;
    const sp = this.split;
    sp.reset();
    sp.gl = sp.hl = sp.cl = sp.gr = sp.hr = sp.cr = 0;
    this.lut = null;
    this.left = -1;
    this.right = -1;
    this.gain = 0;
  }
}

/** Build the root's histogram (every other node's comes with its parent's split). */
function buildRootHist(input: GrowInput, node: Node): void {
  const { scratch } = input;
  node.hist = scratch.take();
  scratch.pool.build(node.hist, input.output, input.allRows, node.st, node.en, node.c);
}

/** A split to apply: the node, its routing table over feature f, and what its children need. */
interface Pending {
  node: Node;
  f: number;
  lut: Uint8Array;
  /** Which child's histogram to build (by the split's estimated counts, known before the partition). */
  leftSmaller: boolean;
  wantHist: boolean;
  /** Children totals: left g, h, right g, h. */
  gl: number;
  hl: number;
  gr: number;
  hr: number;
}

/**
 * Apply a batch of splits (a level, or one leafwise split) as OP_SPLIT jobs: partition every
 * node's rows in every shard, build the expected-smaller child's histogram where wanted (the other
 * child's is the parent's minus it), and create the children in batch order.
 */
function splitNodes(input: GrowInput, nodes: Node[], batch: Pending[]): void {
  const { scratch } = input;
  const pool = scratch.pool;
  const T = scratch.shards;
  const cap = pool.batchCapacity;
  const built: (Float64Array | null)[] = [];
  const nls: Int32Array[] = [];
  for (let s0 = 0; s0 < batch.length; s0 += cap) {
    const count = Math.min(cap, batch.length - s0);
    let rows = 0;
    for (let j = 0; j < count; j++) {
      const b = batch[s0 + j];
      built[j] = b.wantHist ? scratch.take() : null;
      nls[j] = b.node.nl;
      pool.batchNode(j, b.f, b.lut, b.wantHist ? (b.leftSmaller ? 1 : 2) : 0, b.node.st, b.node.en, built[j]);
      rows += b.node.c;
    }
    pool.runBatch(count, input.output, rows, nls);
    for (let j = 0; j < count; j++) {
      const b = batch[s0 + j];
      const node = b.node;
      const left = scratch.node();
      const right = scratch.node();
      let nl = 0;
      for (let t = 0; t < T; t++) {
        left.st[t] = node.st[t];
        left.en[t] = right.st[t] = node.st[t] + node.nl[t];
        right.en[t] = node.en[t];
        nl += node.nl[t];
      }
      left.depth = right.depth = node.depth + 1;
      left.g = b.gl;
      left.h = b.hl;
      left.c = nl;
      right.g = b.gr;
      right.h = b.hr;
      right.c = node.c - nl;
      node.left = nodes.length;
      nodes.push(left);
      node.right = nodes.length;
      nodes.push(right);
      const h = built[j];
      if (h !== null) {
        const small = b.leftSmaller ? left : right;
        const large = b.leftSmaller ? right : left;
        small.hist = h;
        subtractHistogram(node.hist!, node.hist!, h);
        large.hist = node.hist;
      } else scratch.give(node.hist);
      node.hist = null;
    }
  }
}

function canSplit(node: Node, p: TrainParams, maxDepth: number): boolean {
  return (maxDepth === 0 || node.depth < maxDepth) && node.c >= 2 * p.minDataInLeaf && node.c >= 2;
}

/** Grow one tree. */
export function growTree(input: GrowInput): GrownTree {
  const p = input.params;
  const nodes: Node[] = [];
  input.scratch.nodesUsed = 0;
  const root = input.scratch.node();
  const T = input.scratch.shards;
  for (let t = 0; t < T; t++) {
    root.st[t] = shardStart(input.numSample, t, T);
    root.en[t] = shardStart(input.numSample, t + 1, T);
  }
  const gh = input.gh;
  const idx = input.scratch.idx;
  if (input.allRows) {
    root.g = input.allG;
    root.h = input.allH;
  } else {
    for (let i = 0; i < input.numSample; i++) {
      const r = idx[i];
      root.g += gh[2 * r];
      root.h += gh[2 * r + 1];
    }
  }
  root.c = input.numSample;
  nodes.push(root);
  if (p.growth === "oblivious") growOblivious(input, nodes);
  else growGreedy(input, nodes);
  for (const n of nodes) input.scratch.give(n.hist);
  return finish(input, nodes);
}

function evaluate(input: GrowInput, node: Node): void {
  findBestSplit(
    node.hist!,
    input.data.offsets,
    input.data.mappers,
    input.featureMask,
    node,
    input.params,
    node.split,
  );
}

/** The pending split of `node` by its best split. */
function pendingSplit(input: GrowInput, node: Node, wantHist: boolean): Pending {
  const s = node.split;
  const mapper = input.data.mappers[s.feature];
  node.lut = splitLut(s, mapper, new Uint8Array(256));
  node.gain = s.gain;
  return {
    node,
    f: s.feature,
    lut: node.lut,
    leftSmaller: s.cl <= s.cr,
    wantHist,
    gl: s.gl,
    hl: s.hl,
    gr: s.gr,
    hr: s.hr,
  };
}

/** Evaluate a new child; keep it open (pushed to `open`) when it has a usable split. */
function openChild(input: GrowInput, nodes: Node[], ci: number, maxDepth: number, open: number[]): void {
  const child = nodes[ci];
  if (canSplit(child, input.params, maxDepth)) {
    evaluate(input, child);
    if (child.split.feature >= 0) {
      open.push(ci);
      return;
    }
  }
  input.scratch.give(child.hist);
  child.hist = null;
}

function growGreedy(input: GrowInput, nodes: Node[]): void {
  const p = input.params;
  const leafwise = p.growth === "leafwise";
  const maxLeaves = leafwise ? p.numLeaves : p.numLeaves > 0 ? p.numLeaves : Number.POSITIVE_INFINITY;
  const maxDepth = p.maxDepth;
  const root = nodes[0];
  if (!canSplit(root, p, maxDepth)) return;
  buildRootHist(input, root);
  evaluate(input, root);
  if (root.split.feature < 0) {
    input.scratch.give(root.hist);
    root.hist = null;
    return;
  }
  // Open leaves with a usable split. Leafwise splits the best gain, one at a time; depthwise
  // splits a whole level in one batch, in creation order (the same splits, children and leaf
  // budget as taking the level one node at a time).
  let open: number[] = [0];
  let leaves = 1;
  const batch: Pending[] = [];
  while (leaves < maxLeaves && open.length > 0) {
    batch.length = 0;
    let taken = 0;
    if (leafwise) {
      let pick = 0;
      for (let i = 1; i < open.length; i++)
        if (nodes[open[i]].split.gain > nodes[open[pick]].split.gain) pick = i;
      const ni = open[pick];
      open.splice(pick, 1);
      open.unshift(ni);
    }
    const limit = leafwise ? 1 : open.length;
    for (; taken < limit && leaves < maxLeaves; taken++) {
      const node = nodes[open[taken]];
      const childMaySplit =
        (maxDepth === 0 || node.depth + 1 < maxDepth) &&
        node.c >= 2 * p.minDataInLeaf &&
        leaves + 1 < maxLeaves;
      batch.push(pendingSplit(input, node, childMaySplit));
      leaves++;
    }
    const rest = open.slice(taken);
    const first = nodes.length;
    splitNodes(input, nodes, batch);
    const next: number[] = leafwise ? rest : [];
    for (let j = 0; j < batch.length; j++) {
      if (!batch[j].wantHist) continue;
      openChild(input, nodes, first + 2 * j, maxDepth, next);
      openChild(input, nodes, first + 2 * j + 1, maxDepth, next);
    }
    if (!leafwise) {
      // Nodes of the level left over by the leaf budget stay leaves.
      for (const ni of rest) {
        input.scratch.give(nodes[ni].hist);
        nodes[ni].hist = null;
      }
    }
    open = next;
  }
  for (const ni of open) {
    input.scratch.give(nodes[ni].hist);
    nodes[ni].hist = null;
  }
}

function growOblivious(input: GrowInput, nodes: Node[]): void {
  const p = input.params;
  const { data } = input;
  let level = [0];
  buildRootHist(input, nodes[0]);
  const acc = new Float64Array(512);
  for (let d = 0; d < p.maxDepth; d++) {
    const best = bestObliviousSplit(
      input,
      level.map((i) => nodes[i]),
      acc,
    );
    if (best === null) break;
    const [f, lutBest, gain] = best;
    const last = d === p.maxDepth - 1;
    const next: number[] = [];
    const batch: Pending[] = [];
    for (const ni of level) {
      const node = nodes[ni];
      const s = node.split;
      s.reset();
      s.feature = f;
      s.gain = gain;
      // Children totals from the histogram of feature f (g/h sums by bin).
      let gl = 0;
      let hl = 0;
      const o = data.offsets[f] * 2;
      const nb = data.mappers[f].numBins;
      for (let b = 0; b <= nb; b++) {
        if (lutBest[b] === 1) {
          gl += node.hist![o + b * 2];
          hl += node.hist![o + b * 2 + 1];
        }
      }
      s.gl = gl;
      s.hl = hl;
      s.gr = node.g - gl;
      s.hr = node.h - hl;
      node.lut = Uint8Array.from(lutBest);
      node.gain = gain / level.length;
      // Estimated counts (h × rows/Σh, as in split finding) pick the child to build.
      batch.push({
        node,
        f,
        lut: node.lut,
        leftSmaller: hl <= s.hr,
        wantHist: !last,
        gl,
        hl,
        gr: s.gr,
        hr: s.hr,
      });
    }
    splitNodes(input, nodes, batch);
    for (const b of batch) next.push(b.node.left, b.node.right);
    level = next;
  }
  for (const ni of level) {
    input.scratch.give(nodes[ni].hist);
    nodes[ni].hist = null;
  }
}

/**
 * The best split shared by all nodes of a level: Σ over nodes of each node's gain for the same
 * (feature, bin or category, missing side). A node where the split breaks a constraint adds 0.
 */
function bestObliviousSplit(
  input: GrowInput,
  level: Node[],
  acc: Float64Array,
): [number, Uint8Array, number] | null {
  const p = input.params;
  const { mappers, offsets } = input.data;
  const { lambda, alpha, minDataInLeaf, minChildWeight } = p;
  let bestGain = Math.max(p.minSplitGain, 1e-12);
  let best: [number, Uint8Array, number] | null = null;
  for (let f = 0; f < mappers.length; f++) {
    if (input.featureMask[f] === 0) continue;
    const m = mappers[f];
    const nb = m.numBins;
    if (nb < 2) continue;
    acc.fill(0, 0, 2 * nb);
    const o = offsets[f] * 2;
    for (const node of level) {
      const hist = node.hist!;
      const parent = score(node.g, node.h, lambda, alpha);
      const cf = node.h > 0 ? node.c / node.h : 0;
      const mo = o + nb * 2;
      const mg = hist[mo];
      const mh = hist[mo + 1];
      const mc = mh * cf;
      let gl = 0;
      let hl = 0;
      let cl = 0;
      for (let b = 0; b < nb; b++) {
        const k = o + b * 2;
        // numeric: cumulative bins 0..b; categorical: category b alone (one-vs-rest)
        if (m.categorical) {
          gl = hist[k];
          hl = hist[k + 1];
        } else {
          if (b === nb - 1) break;
          gl += hist[k];
          hl += hist[k + 1];
        }
        cl = hl * cf;
        for (let ml = 0; ml < 2; ml++) {
          const g1 = ml ? gl + mg : gl;
          const h1 = ml ? hl + mh : hl;
          const c1 = ml ? cl + mc : cl;
          const c2 = node.c - c1;
          const h2 = node.h - h1;
          if (c1 < minDataInLeaf || c2 < minDataInLeaf || h1 < minChildWeight || h2 < minChildWeight)
            continue;
          acc[b * 2 + ml] += score(g1, h1, lambda, alpha) + score(node.g - g1, h2, lambda, alpha) - parent;
        }
      }
    }
    for (let j = 0; j < 2 * nb; j++) {
      if (acc[j] > bestGain) {
        bestGain = acc[j];
        const b = j >> 1;
        const lut = new Uint8Array(256);
        if (m.categorical) lut[b] = 1;
        else lut.fill(1, 0, b + 1);
        lut[nb] = j & 1;
        best = [f, lut, bestGain];
      }
    }
  }
  return best;
}

function score(g: number, h: number, lambda: number, alpha: number): number {
  const t = alpha === 0 ? g : g > alpha ? g - alpha : g < -alpha ? g + alpha : 0;
  const d = h + lambda;
  return d > 0 ? (t * t) / d : 0;
}

/** Turn the node list into a shared Tree with float32 leaf values (learning rate applied). */
function finish(input: GrowInput, nodes: Node[]): GrownTree {
  const p = input.params;
  const tree = allocTree(nodes.length);
  const luts: (Uint8Array | null)[] = new Array(nodes.length).fill(null);
  const T = input.scratch.shards;
  const leafStart = new Int32Array(nodes.length * T).fill(-1);
  const leafEnd = new Int32Array(nodes.length * T).fill(-1);
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i];
    tree.cover[i] = n.h;
    if (n.left < 0) {
      tree.kind[i] = NODE_LEAF;
      tree.value[i] = Math.fround(leafWeight(n.g, n.h, p.lambda, p.alpha) * p.learningRate);
      leafStart.set(n.st, i * T);
      leafEnd.set(n.en, i * T);
      continue;
    }
    const s = n.split;
    const m = input.data.mappers[s.feature];
    const lut = n.lut!;
    luts[i] = lut;
    tree.feature[i] = s.feature;
    tree.left[i] = n.left;
    tree.right[i] = n.right;
    tree.gain[i] = n.gain;
    tree.defaultLeft[i] = lut[m.numBins];
    if (m.categorical) {
      tree.kind[i] = NODE_CATEGORICAL;
      let k = 0;
      for (let b = 0; b < m.numBins; b++) k += lut[b];
      const set = new Int32Array(k);
      k = 0;
      for (let b = 0; b < m.numBins; b++) if (lut[b] === 1) set[k++] = b;
      tree.categories[i] = set;
    } else {
      tree.kind[i] = NODE_NUMERIC;
      let last = 0;
      while (last + 1 < m.numBins && lut[last + 1] === 1) last++;
      tree.threshold[i] = m.upper[last];
    }
  }
  return { tree, luts, leafStart, leafEnd, shards: T };
}
