/** `arbor predict`: score a dataset with a bundle through onnxruntime-node. */
import path from "node:path";
import { z } from "zod";
import { operationLogger } from "../../shared/logger.ts";
import { defineCommand } from "../cli/command.ts";
import { loadScoringInput, predictionColumns, runOnnx, writeColumns } from "../export/score.ts";

/** `arbor predict`. */
export const predictCommand = defineCommand({
  name: "predict",
  summary: "score a dataset with a model bundle (onnxruntime) and write CSV or Parquet",
  flags: [
    { name: "model", type: "string", placeholder: "DIR", required: true, description: "bundle folder" },
    {
      name: "data",
      type: "string",
      placeholder: "URI",
      required: true,
      description:
        "CSV, Parquet or NDJSON: local path, file:// or gs:// URI; columns matched by feature name",
    },
    {
      name: "out",
      type: "string",
      placeholder: "FILE",
      required: true,
      description:
        "output .csv or .parquet (binary: label,probability; multiclass: label,probability_<class>…; regression: prediction)",
    },
  ],
  schema: z.object({
    _: z.array(z.string()),
    model: z.string().min(1),
    data: z.string().min(1),
    out: z.string().min(1),
  }),
  examples: ["arbor predict --model ./bundle --data test.parquet --out predictions.csv"],
  // No registry: a DATABASE_URL or ARBOR_API_TOKENS meant for other commands is not read.
  unusedConfig: ["databaseUrl", "apiTokens"],
  async run(ctx, args) {
    const logger = operationLogger(ctx.logger, "predict");
    const { bundle, data, rows } = await loadScoringInput(args.model, args.data, ctx.config, logger);
    const started = performance.now();
    const { outputs, width } = await runOnnx(bundle.modelBytes, bundle.signature, data, rows, logger);
    const seconds = (performance.now() - started) / 1000;
    await writeColumns(args.out, predictionColumns(bundle.signature, outputs, width, rows));
    ctx.say(`scored ${rows} rows in ${seconds.toFixed(2)} s → ${args.out}`);
    return {
      json: { out: path.resolve(args.out), rows, task: bundle.signature.task, seconds },
      text: path.resolve(args.out),
    };
  },
});
