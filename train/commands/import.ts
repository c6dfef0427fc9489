/** `arbor import --xgboost`: turn an XGBoost JSON model into an arbor bundle. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { arborError } from "../../shared/errors.ts";
import { defineCommand } from "../cli/command.ts";
import { writeBundle } from "../export/bundle.ts";
import { importXgboostJson } from "../import/xgboost.ts";

/** `arbor import`. */
export const importCommand = defineCommand({
  name: "import",
  summary: "import an XGBoost JSON model (binary:logistic, multi:softprob, reg:squarederror) as a bundle",
  flags: [
    {
      name: "xgboost",
      type: "string",
      placeholder: "FILE",
      required: true,
      description: "model saved with Booster.save_model('model.json')",
    },
    {
      name: "out",
      type: "string",
      placeholder: "DIR",
      required: true,
      description: "bundle folder to write",
    },
    {
      name: "feature-names",
      type: "list",
      placeholder: "A,B,…",
      description: "feature names in model order (default: the model's, else f0,f1,…)",
    },
  ],
  schema: z.object({
    _: z.array(z.string()),
    xgboost: z.string().min(1),
    out: z.string().min(1),
    featureNames: z.array(z.string().min(1)).optional(),
  }),
  examples: ["arbor import --xgboost model.json --out ./bundle --feature-names age,income,city"],
  // No registry: a DATABASE_URL or ARBOR_API_TOKENS meant for other commands is not read.
  unusedConfig: ["databaseUrl", "apiTokens"],
  async run(ctx, args) {
    let text: string;
    try {
      text = await readFile(args.xgboost, "utf8");
    } catch (e) {
      throw arborError("NOT_FOUND", `import --xgboost: cannot read "${args.xgboost}"`, { cause: e });
    }
    const { ensemble, signature } = importXgboostJson(text, { featureNames: args.featureNames });
    const manifest = await writeBundle(args.out, {
      ensemble,
      signature,
      metrics: {
        source: "xgboost-import",
        importedFrom: path.resolve(args.xgboost),
        numTrees: ensemble.trees.length,
      },
    });
    ctx.say(`imported ${ensemble.trees.length} trees (${signature.objective}) → ${args.out}`);
    return {
      json: { out: path.resolve(args.out), task: signature.task, numTrees: ensemble.trees.length, manifest },
      text: path.resolve(args.out),
    };
  },
});
