/** `arbor explain`: exact TreeSHAP contributions of every row, from the trees inside model.onnx. */
import { availableParallelism } from "node:os";
import path from "node:path";
import { z } from "zod";
import { operationLogger } from "../../shared/logger.ts";
import { TreeExplainer } from "../../shared/treeshap.ts";
import { defineCommand } from "../cli/command.ts";
import { explainColumns, loadScoringInput, writeColumns } from "../export/score.ts";

/** `arbor explain`. */
export const explainCommand = defineCommand({
  name: "explain",
  summary: "write SHAP contributions (raw-margin space) per row and feature, plus base_value",
  flags: [
    { name: "model", type: "string", placeholder: "DIR", required: true, description: "bundle folder" },
    {
      name: "data",
      type: "string",
      placeholder: "URI",
      required: true,
      description: "CSV, Parquet or NDJSON: local path, file:// or gs:// URI",
    },
    {
      name: "out",
      type: "string",
      placeholder: "FILE",
      required: true,
      description:
        "output .csv or .parquet: one column per feature + base_value (multiclass: <class>:<feature>)",
    },
    {
      name: "threads",
      type: "integer",
      description: "threads computing SHAP (default: number of cores; results do not depend on it)",
    },
    {
      name: "top-k",
      type: "integer",
      placeholder: "N",
      description: "instead of every feature, the N largest |SHAP| per row as top<i>_feature, top<i>_shap",
    },
  ],
  schema: z.object({
    _: z.array(z.string()),
    model: z.string().min(1),
    data: z.string().min(1),
    out: z.string().min(1),
    topK: z.number().int().positive().optional(),
    threads: z.number().int().positive().max(256).optional(),
  }),
  examples: ["arbor explain --model ./bundle --data test.parquet --out shap.parquet --top-k 3"],
  // No registry: a DATABASE_URL or ARBOR_API_TOKENS meant for other commands is not read.
  unusedConfig: ["databaseUrl", "apiTokens"],
  async run(ctx, args) {
    const logger = operationLogger(ctx.logger, "explain");
    const { bundle, data, rows } = await loadScoringInput(args.model, args.data, ctx.config, logger);
    const started = performance.now();
    const explainer = new TreeExplainer(bundle.ensemble);
    const threads = args.threads ?? availableParallelism();
    const { columns, meanAbs } = await explainColumns(
      explainer,
      bundle.ensemble,
      bundle.signature,
      data,
      rows,
      args.topK,
      threads,
      logger,
    );
    const seconds = (performance.now() - started) / 1000;
    await writeColumns(args.out, columns);
    const importance = bundle.signature.features
      .map((s, j) => ({ feature: s.name, meanAbsShap: meanAbs[j] }))
      .sort((a, b) => b.meanAbsShap - a.meanAbsShap);
    ctx.say(`explained ${rows} rows in ${seconds.toFixed(2)} s → ${args.out}`);
    return {
      json: { out: path.resolve(args.out), rows, seconds, importance },
      text: path.resolve(args.out),
    };
  },
});
