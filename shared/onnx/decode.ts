/**
 * model.onnx → TreeEnsemble (+ the embedded signature), the inverse of encode.ts. Reads the
 * TreeEnsemble-5 node arrays for the structure and metadata_props for covers, gains and node order;
 * without arbor metadata, nodes are numbered in preorder and covers are zero.
 */
import { type Signature, signatureSchema } from "../bundle.ts";
import { arborError, isArborError } from "../errors.ts";
import {
  allocTree,
  NODE_CATEGORICAL,
  NODE_LEAF,
  NODE_NUMERIC,
  type Tree,
  type TreeEnsemble,
} from "../tree.ts";
import {
  fromBase64,
  META_COVER,
  META_GAIN,
  META_LAYOUT,
  META_NUM_FEATURES,
  META_SIGNATURE,
  ML_DOMAIN,
  MODE_LEQ,
  MODE_MEMBER,
} from "./layout.ts";
import {
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
  readModel,
  tensorValues,
} from "./onnx-proto.ts";
import { ProtoError } from "./proto.ts";

/** What {@link decodeEnsembleOnnx} returns. */
export interface DecodedOnnx {
  ensemble: TreeEnsemble;
  signature?: Signature;
  metadata: Record<string, string>;
}

function invalid(message: string, cause?: unknown): never {
  throw arborError(
    "ONNX_INVALID",
    `decodeEnsembleOnnx: ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

function attr(node: OnnxNode, name: string): OnnxAttribute | undefined {
  return node.attributes.find((a) => a.name === name);
}

function intsOf(node: OnnxNode, name: string, required = true): number[] {
  const a = attr(node, name);
  if (!a?.ints) {
    if (required) invalid(`TreeEnsemble attribute ${name} is missing`);
    return [];
  }
  return a.ints;
}

function tensorOf(node: OnnxNode, name: string, required = true): Float64Array {
  const a = attr(node, name);
  if (!a?.t) {
    if (required) invalid(`TreeEnsemble attribute ${name} is missing`);
    return new Float64Array(0);
  }
  return tensorValues(a.t);
}

function initializer(model: OnnxModel, name: string): OnnxTensor | undefined {
  return model.initializers.find((t) => t.name === name);
}

/** Decode arbor's ONNX layout; throws ONNX_INVALID on anything else. */
export function decodeEnsembleOnnx(bytes: Uint8Array): DecodedOnnx {
  let model: OnnxModel;
  try {
    model = readModel(bytes);
  } catch (e) {
    if (e instanceof ProtoError) invalid(`not an ONNX protobuf (${e.message})`, e);
    throw e;
  }
  const te = model.nodes.find((n) => n.opType === "TreeEnsemble" && n.domain === ML_DOMAIN);
  if (!te) invalid("no ai.onnx.ml TreeEnsemble node in the graph");
  try {
    return build(model, te);
  } catch (e) {
    if (isArborError(e)) throw e;
    // Anything else thrown while reading corrupt arrays is still a bad file, not a crash.
    invalid(e instanceof Error ? e.message : String(e), e);
  }
}

function float64s(b64: string, key: string): Float64Array {
  const bytes = fromBase64(b64);
  if (bytes.length % 8 !== 0) invalid(`${key} is not a whole number of float64 values`);
  return new Float64Array(bytes.buffer);
}

function build(model: OnnxModel, te: OnnxNode): DecodedOnnx {
  const k = attr(te, "n_targets")?.i ?? 1;
  const agg = attr(te, "aggregate_function")?.i ?? 1;
  const post = attr(te, "post_transform")?.i ?? 0;
  if (agg !== 1 || post !== 0) invalid("only aggregate_function SUM and post_transform NONE are supported");
  const roots = intsOf(te, "tree_roots");
  const featureIds = intsOf(te, "nodes_featureids");
  const splits = tensorOf(te, "nodes_splits");
  const modes = tensorOf(te, "nodes_modes");
  const trueIds = intsOf(te, "nodes_truenodeids");
  const trueLeafs = intsOf(te, "nodes_trueleafs");
  const falseIds = intsOf(te, "nodes_falsenodeids");
  const falseLeafs = intsOf(te, "nodes_falseleafs");
  const missingTrue = intsOf(te, "nodes_missing_value_tracks_true", false);
  const leafTargets = intsOf(te, "leaf_targetids");
  const leafWeights = tensorOf(te, "leaf_weights");
  const membership = tensorOf(te, "membership_values", false);
  const n = featureIds.length;
  for (const [name, arr] of [
    ["nodes_splits", splits],
    ["nodes_modes", modes],
    ["nodes_truenodeids", trueIds],
    ["nodes_trueleafs", trueLeafs],
    ["nodes_falsenodeids", falseIds],
    ["nodes_falseleafs", falseLeafs],
  ] as const) {
    if (arr.length !== n) invalid(`${name} has ${arr.length} entries, nodes_featureids has ${n}`);
  }
  if (leafTargets.length !== leafWeights.length) invalid("leaf_targetids and leaf_weights differ in length");

  // Membership lists in node order, NaN-delimited.
  const sets = new Map<number, Int32Array>();
  let mpos = 0;
  for (let i = 0; i < n; i++) {
    if (modes[i] === MODE_MEMBER) {
      const members: number[] = [];
      while (mpos < membership.length && !Number.isNaN(membership[mpos])) members.push(membership[mpos++]);
      mpos++;
      sets.set(i, Int32Array.from(members).sort());
    } else if (modes[i] !== MODE_LEQ)
      invalid(`node ${i} has mode ${modes[i]}; arbor writes only LEQ and MEMBER`);
  }

  const meta = model.metadata;
  const layout = meta[META_LAYOUT] ? fromBase64(meta[META_LAYOUT]) : null;
  const cover = meta[META_COVER] ? float64s(meta[META_COVER], META_COVER) : null;
  const gain = meta[META_GAIN] ? float64s(meta[META_GAIN], META_GAIN) : null;
  const trees: Tree[] = [];
  const treeOutput = new Int32Array(roots.length);
  let offset = 0;
  for (let t = 0; t < roots.length; t++) {
    // Collect this tree's split and leaf indices in preorder.
    const splitsOfTree: number[] = [];
    const leavesOfTree: number[] = [];
    const order: { leaf: boolean; id: number }[] = [];
    const stack: { leaf: boolean; id: number }[] = [{ leaf: false, id: roots[t] }];
    const single =
      trueLeafs[roots[t]] === 1 && falseLeafs[roots[t]] === 1 && trueIds[roots[t]] === falseIds[roots[t]];
    if (single) stack[0] = { leaf: true, id: trueIds[roots[t]] };
    while (stack.length > 0) {
      const cur = stack.pop()!;
      if (order.length > n + leafWeights.length) invalid(`tree ${t} is not a tree (cycle)`);
      order.push(cur);
      if (cur.leaf) {
        if (cur.id < 0 || cur.id >= leafWeights.length)
          invalid(`tree ${t}: leaf index ${cur.id} out of range`);
        leavesOfTree.push(cur.id);
        continue;
      }
      if (cur.id < 0 || cur.id >= n) invalid(`tree ${t}: node index ${cur.id} out of range`);
      splitsOfTree.push(cur.id);
      stack.push({ leaf: falseLeafs[cur.id] === 1, id: falseIds[cur.id] });
      stack.push({ leaf: trueLeafs[cur.id] === 1, id: trueIds[cur.id] });
    }
    const size = order.length;
    // Arbor numbering: from the layout (splits and leaves each in ascending ONNX order) or preorder.
    let numbering: { leaf: boolean; id: number }[] = order;
    if (layout) {
      if (offset + size > layout.length) invalid("arbor.layout is shorter than the trees");
      const s = [...splitsOfTree].sort((a, b) => a - b);
      const l = [...leavesOfTree].sort((a, b) => a - b);
      let si = 0;
      let li = 0;
      numbering = [];
      for (let i = 0; i < size; i++) {
        const leaf = layout[offset + i] === 1;
        const id = leaf ? l[li++] : s[si++];
        if (id === undefined) invalid(`tree ${t}: arbor.layout does not match the nodes`);
        numbering.push({ leaf, id });
      }
    }
    const index = new Map<string, number>();
    for (let i = 0; i < size; i++) index.set(`${numbering[i].leaf ? "L" : "N"}${numbering[i].id}`, i);
    const tree = allocTree(size);
    for (let i = 0; i < size; i++) {
      const { leaf, id } = numbering[i];
      if (leaf) {
        tree.kind[i] = NODE_LEAF;
        tree.value[i] = leafWeights[id];
        treeOutput[t] = leafTargets[id];
      } else {
        tree.feature[i] = featureIds[id];
        tree.left[i] = index.get(`${trueLeafs[id] === 1 ? "L" : "N"}${trueIds[id]}`)!;
        tree.right[i] = index.get(`${falseLeafs[id] === 1 ? "L" : "N"}${falseIds[id]}`)!;
        tree.defaultLeft[i] = missingTrue[id] ?? 0;
        const set = sets.get(id);
        if (set) {
          tree.kind[i] = NODE_CATEGORICAL;
          tree.categories[i] = set;
        } else {
          tree.kind[i] = NODE_NUMERIC;
          tree.threshold[i] = splits[id];
        }
      }
      if (cover) tree.cover[i] = cover[offset + i];
      if (gain) tree.gain[i] = gain[offset + i];
    }
    trees.push(tree);
    offset += size;
  }
  if (cover && offset !== cover.length) invalid("arbor.cover does not match the number of nodes");

  const base = initializer(model, "base_score");
  const baseScore = base ? tensorValues(base) : new Float64Array(k);
  if (baseScore.length !== k) invalid(`base_score has ${baseScore.length} values, n_targets is ${k}`);
  const inputDims = model.inputs[0]?.dims ?? [];
  const numFeatures = Number(
    meta[META_NUM_FEATURES] ?? (typeof inputDims[1] === "number" ? inputDims[1] : NaN),
  );
  if (!Number.isInteger(numFeatures) || numFeatures < 1) invalid("the number of features is unknown");

  let signature: Signature | undefined;
  if (meta[META_SIGNATURE]) {
    try {
      signature = signatureSchema.parse(JSON.parse(meta[META_SIGNATURE]));
    } catch (e) {
      invalid("arbor.signature is not a valid signature", e);
    }
  }
  return {
    ensemble: { numFeatures, numOutputs: k, baseScore, trees, treeOutput },
    signature,
    metadata: meta,
  };
}
