/**
 * XGBoost JSON model (Booster.save_model, tested with 1.7.4) → TreeEnsemble + Signature.
 *
 * - Numeric splits: XGBoost goes left when `x < split_condition` (float32). For float32 x that is
 *   exactly `x <= prevFloat32(split_condition)`, arbor's rule.
 * - Categorical splits (split_type 1): XGBoost sends the listed categories RIGHT and everything
 *   else (incl. unseen codes) left; arbor sends the listed set left and unseen codes right, so the
 *   children are swapped and the default direction flipped.
 * - Missing values: `default_left`; covers: `sum_hessian`; gains: `loss_changes`.
 * - base_score: margin = logit(base_score) for binary:logistic, as is otherwise.
 */
import type { Signature, Task } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import {
  allocTree,
  NODE_CATEGORICAL,
  NODE_LEAF,
  NODE_NUMERIC,
  type Tree,
  type TreeEnsemble,
} from "../../shared/tree.ts";

/** Result of {@link importXgboostJson}. */
export interface ImportedModel {
  ensemble: TreeEnsemble;
  signature: Signature;
}

interface XgbTree {
  left_children: number[];
  right_children: number[];
  split_indices: number[];
  split_conditions: (number | null)[];
  default_left: number[];
  sum_hessian: number[];
  loss_changes: number[];
  split_type?: number[];
  categories?: number[];
  categories_nodes?: number[];
  categories_segments?: number[];
  categories_sizes?: number[];
}

const OBJECTIVES: Record<string, Task> = {
  "binary:logistic": "binary",
  "multi:softprob": "multiclass",
  "multi:softmax": "multiclass",
  "reg:squarederror": "regression",
  "reg:linear": "regression",
};

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);

/** The largest float32 strictly below float32 `c`, so that `x < c` ⇔ `x <= prevFloat32(c)` for float32 x. */
export function prevFloat32(c: number): number {
  const v = Math.fround(c);
  if (Number.isNaN(v) || v === Number.NEGATIVE_INFINITY) return v;
  if (v === 0) return -(2 ** -149);
  f32[0] = v;
  i32[0] += v > 0 ? -1 : 1;
  return f32[0];
}

/** JSON.parse that accepts the bare NaN / Infinity tokens XGBoost writes (as null). */
function parseLenient(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return JSON.parse(
      text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (m) => (m.startsWith('"') ? m : "null")),
    );
  }
}

function unsupported(message: string): never {
  throw arborError("IMPORT_UNSUPPORTED", `import --xgboost: ${message}`);
}

function get(obj: unknown, path: string[]): unknown {
  let cur = obj;
  for (const key of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** Parse an XGBoost JSON model. `featureNames` overrides the names stored in the model. */
export function importXgboostJson(text: string, options: { featureNames?: string[] } = {}): ImportedModel {
  let model: unknown;
  try {
    model = parseLenient(text);
  } catch (e) {
    throw arborError("INVALID_ARGUMENT", `import --xgboost: the file is not JSON (${String(e)})`, {
      cause: e,
    });
  }
  const learner = get(model, ["learner"]);
  if (!learner) unsupported("no `learner` object: save the model with Booster.save_model('model.json')");
  const objective = String(get(learner, ["objective", "name"]) ?? "");
  const task = OBJECTIVES[objective];
  if (!task) unsupported(`objective "${objective}" (supported: ${Object.keys(OBJECTIVES).join(", ")})`);
  const booster = String(get(learner, ["gradient_booster", "name"]) ?? "");
  if (booster !== "gbtree") unsupported(`booster "${booster}" (only gbtree)`);
  const param = (get(learner, ["learner_model_param"]) ?? {}) as Record<string, string>;
  const numFeatures = Number(param.num_feature);
  const numClass = Number(param.num_class ?? 0);
  if (Number(param.num_target ?? 1) > 1) unsupported("multi-target models");
  if (!Number.isInteger(numFeatures) || numFeatures < 1) unsupported("num_feature is missing");
  const k = task === "multiclass" ? numClass : 1;
  if (task === "multiclass" && !(k >= 2)) unsupported("multiclass model without num_class");
  const baseScore = Number(param.base_score ?? 0.5);
  if (!Number.isFinite(baseScore)) unsupported(`base_score "${param.base_score}"`);
  let margin = baseScore;
  if (task === "binary") {
    if (!(baseScore > 0 && baseScore < 1)) unsupported(`binary base_score ${baseScore} is not in (0, 1)`);
    margin = Math.fround(-Math.log(1 / baseScore - 1));
  }
  const rawTrees = get(learner, ["gradient_booster", "model", "trees"]) as XgbTree[] | undefined;
  const treeInfo = (get(learner, ["gradient_booster", "model", "tree_info"]) ?? []) as number[];
  if (!Array.isArray(rawTrees)) unsupported("no trees in gradient_booster.model");
  const trees: Tree[] = [];
  const treeOutput = new Int32Array(rawTrees.length);
  let maxCode: number[] = new Array<number>(numFeatures).fill(-1);
  for (let t = 0; t < rawTrees.length; t++) {
    trees.push(convertTree(rawTrees[t], t, numFeatures, maxCode));
    treeOutput[t] = k > 1 ? (treeInfo[t] ?? t % k) : 0;
  }
  const stored = (get(learner, ["feature_names"]) ?? []) as string[];
  const types = (get(learner, ["feature_types"]) ?? []) as string[];
  const names =
    options.featureNames ??
    (stored.length === numFeatures ? stored : Array.from({ length: numFeatures }, (_, i) => `f${i}`));
  if (names.length !== numFeatures) {
    throw arborError(
      "INVALID_ARGUMENT",
      `import --xgboost: --feature-names has ${names.length} names, the model has ${numFeatures} features`,
    );
  }
  maxCode = maxCode.map((m, i) => (types[i] === "c" ? Math.max(m, 0) : m));
  const signature: Signature = {
    format: "arbor-bundle/1",
    task,
    target: "label",
    features: names.map((name, i) =>
      maxCode[i] >= 0
        ? {
            name,
            type: "categorical" as const,
            // XGBoost stores codes only: the dictionary is the codes themselves, as strings.
            categories: Array.from({ length: maxCode[i] + 1 }, (_, c) => String(c)),
          }
        : { name, type: "numeric" as const },
    ),
    classes:
      task === "binary"
        ? ["0", "1"]
        : task === "multiclass"
          ? Array.from({ length: k }, (_, c) => String(c))
          : undefined,
    objective,
    baseScore: new Array<number>(k).fill(margin),
    modelType: "xgboost",
    numTrees: trees.length,
    source: "xgboost-import",
  };
  const ensemble: TreeEnsemble = {
    numFeatures,
    numOutputs: k,
    baseScore: new Float64Array(k).fill(margin),
    trees,
    treeOutput,
  };
  return { ensemble, signature };
}

/** One XGBoost tree → arbor Tree, reachable nodes only, in breadth-first order. */
function convertTree(x: XgbTree, t: number, numFeatures: number, maxCode: number[]): Tree {
  const n = x.left_children?.length ?? 0;
  if (n === 0) unsupported(`tree ${t} has no nodes`);
  for (const key of [
    "right_children",
    "split_indices",
    "split_conditions",
    "default_left",
    "sum_hessian",
  ] as const) {
    if (!Array.isArray(x[key]) || x[key].length !== n)
      unsupported(`tree ${t}: ${key} does not have ${n} entries`);
  }
  const catSets = new Map<number, Int32Array>();
  const catNodes = x.categories_nodes ?? [];
  for (let c = 0; c < catNodes.length; c++) {
    const begin = x.categories_segments![c];
    const size = x.categories_sizes![c];
    catSets.set(catNodes[c], Int32Array.from(x.categories!.slice(begin, begin + size)).sort());
  }
  const order: number[] = [0];
  for (let i = 0; i < order.length; i++) {
    const node = order[i];
    if (x.left_children[node] !== -1) order.push(x.left_children[node], x.right_children[node]);
    if (order.length > n) unsupported(`tree ${t} is not a tree`);
  }
  const pos = new Map<number, number>();
  for (let i = 0; i < order.length; i++) pos.set(order[i], i);
  const tree = allocTree(order.length);
  for (let i = 0; i < order.length; i++) {
    const node = order[i];
    tree.cover[i] = x.sum_hessian[node];
    tree.gain[i] = x.loss_changes?.[node] ?? 0;
    if (x.left_children[node] === -1) {
      tree.kind[i] = NODE_LEAF;
      tree.value[i] = Math.fround(x.split_conditions[node] ?? Number.NaN);
      continue;
    }
    const feature = x.split_indices[node];
    if (feature < 0 || feature >= numFeatures) unsupported(`tree ${t}: split on feature ${feature}`);
    tree.feature[i] = feature;
    const left = pos.get(x.left_children[node])!;
    const right = pos.get(x.right_children[node])!;
    if ((x.split_type?.[node] ?? 0) === 1) {
      const set = catSets.get(node);
      if (!set || set.length === 0) unsupported(`tree ${t}: categorical node ${node} has no categories`);
      tree.kind[i] = NODE_CATEGORICAL;
      tree.categories[i] = set;
      tree.left[i] = right;
      tree.right[i] = left;
      tree.defaultLeft[i] = x.default_left[node] ? 0 : 1;
      maxCode[feature] = Math.max(maxCode[feature], set[set.length - 1]);
    } else {
      const c = x.split_conditions[node];
      if (c === null || Number.isNaN(c)) unsupported(`tree ${t}: node ${node} has no split condition`);
      tree.kind[i] = NODE_NUMERIC;
      tree.threshold[i] = prevFloat32(c);
      tree.left[i] = left;
      tree.right[i] = right;
      tree.defaultLeft[i] = x.default_left[node] ? 1 : 0;
    }
  }
  return tree;
}
