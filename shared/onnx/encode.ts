/**
 * TreeEnsemble → model.onnx (layout described in layout.ts).
 */
import type { Signature } from "../bundle.ts";
import { arborError } from "../errors.ts";
import { NODE_CATEGORICAL, NODE_LEAF, type TreeEnsemble } from "../tree.ts";
import {
  FORMAT_VERSION,
  IR_VERSION,
  META_COVER,
  META_FORMAT,
  META_GAIN,
  META_LAYOUT,
  META_NUM_FEATURES,
  META_SIGNATURE,
  ML_DOMAIN,
  MODE_LEQ,
  MODE_MEMBER,
  ONNX_INPUT,
  ONNX_MARGIN,
  ONNX_PREDICTION,
  ONNX_PROBABILITIES,
  OPSET_ML,
  OPSET_ONNX,
  toBase64,
} from "./layout.ts";
import {
  AT_INT,
  AT_INTS,
  AT_TENSOR,
  DT_DOUBLE,
  DT_FLOAT,
  doubleTensor,
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  uint8Tensor,
  writeModel,
} from "./onnx-proto.ts";

/** Parallel arrays of a TreeEnsemble-5 node set. */
interface V5Arrays {
  roots: number[];
  featureIds: number[];
  splits: number[];
  modes: number[];
  trueIds: number[];
  trueLeafs: number[];
  falseIds: number[];
  falseLeafs: number[];
  missingTrue: number[];
  membership: number[];
  leafTargets: number[];
  leafWeights: number[];
}

function flatten(ensemble: TreeEnsemble): {
  v5: V5Arrays;
  layout: Uint8Array;
  cover: Float64Array;
  gain: Float64Array;
} {
  const v5: V5Arrays = {
    roots: [],
    featureIds: [],
    splits: [],
    modes: [],
    trueIds: [],
    trueLeafs: [],
    falseIds: [],
    falseLeafs: [],
    missingTrue: [],
    membership: [],
    leafTargets: [],
    leafWeights: [],
  };
  let total = 0;
  for (const t of ensemble.trees) total += t.kind.length;
  const layout = new Uint8Array(total);
  const cover = new Float64Array(total);
  const gain = new Float64Array(total);
  let offset = 0;
  for (let ti = 0; ti < ensemble.trees.length; ti++) {
    const tree = ensemble.trees[ti];
    const n = tree.kind.length;
    const target = ensemble.treeOutput[ti];
    // Arbor index → index in nodes_* (split) or leaf_* (leaf), keeping arbor order within each.
    const pos = new Int32Array(n);
    let nodeBase = v5.featureIds.length;
    let leafBase = v5.leafWeights.length;
    for (let i = 0; i < n; i++) {
      const leaf = tree.kind[i] === NODE_LEAF;
      layout[offset + i] = leaf ? 1 : 0;
      cover[offset + i] = tree.cover[i];
      gain[offset + i] = tree.gain[i];
      if (leaf) {
        pos[i] = leafBase++;
        v5.leafTargets.push(target);
        v5.leafWeights.push(tree.value[i]);
      } else pos[i] = nodeBase++;
    }
    nodeBase = v5.featureIds.length;
    if (tree.kind[0] === NODE_LEAF) {
      // A single-leaf tree: one dummy split whose both branches reach the leaf (ONNX spec).
      v5.roots.push(nodeBase);
      pushNode(v5, 0, 0, MODE_LEQ, pos[0], 1, pos[0], 1, 0);
    } else {
      v5.roots.push(pos[0]);
      for (let i = 0; i < n; i++) {
        const kind = tree.kind[i];
        if (kind === NODE_LEAF) continue;
        const l = tree.left[i];
        const r = tree.right[i];
        const lLeaf = tree.kind[l] === NODE_LEAF ? 1 : 0;
        const rLeaf = tree.kind[r] === NODE_LEAF ? 1 : 0;
        if (kind === NODE_CATEGORICAL) {
          const set = tree.categories[i];
          if (!set || set.length === 0) {
            throw arborError(
              "INVALID_ARGUMENT",
              `encodeEnsembleOnnx: tree ${ti} node ${i} has an empty category set`,
            );
          }
          for (let k = 0; k < set.length; k++) v5.membership.push(set[k]);
          v5.membership.push(Number.NaN);
          pushNode(v5, tree.feature[i], 0, MODE_MEMBER, pos[l], lLeaf, pos[r], rLeaf, tree.defaultLeft[i]);
        } else {
          pushNode(
            v5,
            tree.feature[i],
            tree.threshold[i],
            MODE_LEQ,
            pos[l],
            lLeaf,
            pos[r],
            rLeaf,
            tree.defaultLeft[i],
          );
        }
      }
    }
    offset += n;
  }
  return { v5, layout, cover, gain };
}

function pushNode(
  v5: V5Arrays,
  feature: number,
  split: number,
  mode: number,
  t: number,
  tLeaf: number,
  f: number,
  fLeaf: number,
  missingTrue: number,
): void {
  v5.featureIds.push(feature);
  v5.splits.push(split);
  v5.modes.push(mode);
  v5.trueIds.push(t);
  v5.trueLeafs.push(tLeaf);
  v5.falseIds.push(f);
  v5.falseLeafs.push(fLeaf);
  v5.missingTrue.push(missingTrue);
}

const ints = (name: string, values: number[]): OnnxAttribute => ({ name, type: AT_INTS, ints: values });
const int = (name: string, value: number): OnnxAttribute => ({ name, type: AT_INT, i: value });

function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes: OnnxAttribute[] = [],
  domain = "",
): OnnxNode {
  return { opType, domain, name: `${opType}_${outputs[0]}`, inputs, outputs, attributes };
}

/** Validate the ensemble's shape against the signature before writing anything. */
function check(ensemble: TreeEnsemble, signature: Signature): void {
  const f = signature.features.length;
  if (ensemble.numFeatures !== f) {
    throw arborError(
      "INVALID_ARGUMENT",
      `encodeEnsembleOnnx: ensemble has ${ensemble.numFeatures} features, signature has ${f}`,
    );
  }
  const k = ensemble.numOutputs;
  if (signature.task !== "multiclass" && k !== 1) {
    throw arborError(
      "INVALID_ARGUMENT",
      `encodeEnsembleOnnx: ${signature.task} needs 1 output, ensemble has ${k}`,
    );
  }
  if (ensemble.baseScore.length !== k || ensemble.treeOutput.length !== ensemble.trees.length) {
    throw arborError("INVALID_ARGUMENT", "encodeEnsembleOnnx: baseScore or treeOutput length does not match");
  }
}

/** Encode an ensemble and its signature as ONNX bytes (ai.onnx.ml TreeEnsemble, opset 5). */
export function encodeEnsembleOnnx(ensemble: TreeEnsemble, signature: Signature): Uint8Array {
  check(ensemble, signature);
  const k = ensemble.numOutputs;
  const { v5, layout, cover, gain } = flatten(ensemble);
  const te: OnnxAttribute[] = [
    { name: "aggregate_function", type: AT_INT, i: 1 },
    { name: "post_transform", type: AT_INT, i: 0 },
    int("n_targets", k),
    ints("tree_roots", v5.roots),
    ints("nodes_featureids", v5.featureIds),
    { name: "nodes_splits", type: AT_TENSOR, t: doubleTensor("", v5.splits) },
    { name: "nodes_modes", type: AT_TENSOR, t: uint8Tensor("", v5.modes) },
    ints("nodes_truenodeids", v5.trueIds),
    ints("nodes_trueleafs", v5.trueLeafs),
    ints("nodes_falsenodeids", v5.falseIds),
    ints("nodes_falseleafs", v5.falseLeafs),
    ints("nodes_missing_value_tracks_true", v5.missingTrue),
    ints("leaf_targetids", v5.leafTargets),
    { name: "leaf_weights", type: AT_TENSOR, t: doubleTensor("", v5.leafWeights) },
  ];
  if (v5.membership.length > 0) {
    te.push({ name: "membership_values", type: AT_TENSOR, t: doubleTensor("", v5.membership) });
  }
  const nodes: OnnxNode[] = [
    node("Cast", [ONNX_INPUT], ["x_double"], [int("to", DT_DOUBLE)]),
    node("TreeEnsemble", ["x_double"], ["tree_sum"], te, ML_DOMAIN),
    node("Add", ["tree_sum", "base_score"], ["margin_double"]),
    node("Cast", ["margin_double"], [ONNX_MARGIN], [int("to", DT_FLOAT)]),
  ];
  const initializers = [doubleTensor("base_score", ensemble.baseScore, [1, k])];
  const outputs = [{ name: ONNX_MARGIN, elemType: DT_FLOAT, dims: ["N", k] as (number | string)[] }];
  if (signature.task === "binary") {
    initializers.push(doubleTensor("one", [1], [1, 1]));
    nodes.push(
      node("Sigmoid", ["margin_double"], ["p1"]),
      node("Sub", ["one", "p1"], ["p0"]),
      node("Concat", ["p0", "p1"], ["proba_double"], [int("axis", 1)]),
      node("Cast", ["proba_double"], [ONNX_PROBABILITIES], [int("to", DT_FLOAT)]),
    );
    outputs.push({ name: ONNX_PROBABILITIES, elemType: DT_FLOAT, dims: ["N", 2] });
  } else if (signature.task === "multiclass") {
    nodes.push(
      node("Softmax", ["margin_double"], ["proba_double"], [int("axis", 1)]),
      node("Cast", ["proba_double"], [ONNX_PROBABILITIES], [int("to", DT_FLOAT)]),
    );
    outputs.push({ name: ONNX_PROBABILITIES, elemType: DT_FLOAT, dims: ["N", k] });
  } else {
    nodes.push(node("Cast", ["margin_double"], [ONNX_PREDICTION], [int("to", DT_FLOAT)]));
    outputs.push({ name: ONNX_PREDICTION, elemType: DT_FLOAT, dims: ["N", 1] });
  }
  const model: OnnxModel = {
    irVersion: IR_VERSION,
    opsets: [
      { domain: "", version: OPSET_ONNX },
      { domain: ML_DOMAIN, version: OPSET_ML },
    ],
    producerName: "arbor",
    producerVersion: "0.1.0",
    graphName: "arbor_tree_ensemble",
    nodes,
    initializers,
    inputs: [{ name: ONNX_INPUT, elemType: DT_FLOAT, dims: ["N", ensemble.numFeatures] }],
    outputs,
    metadata: {
      [META_FORMAT]: FORMAT_VERSION,
      [META_SIGNATURE]: JSON.stringify(signature),
      [META_NUM_FEATURES]: String(ensemble.numFeatures),
      [META_LAYOUT]: toBase64(layout),
      [META_COVER]: toBase64(cover),
      [META_GAIN]: toBase64(gain),
    },
  };
  return writeModel(model);
}
