/** `arbor split`: read a dataset, split it into train/valid/test, store the parts and the report. */
import { z } from "zod";
import { openRegistry } from "../../registry/index.ts";
import { NAME_PATTERN } from "../../shared/bundle.ts";
import { arborError } from "../../shared/errors.ts";
import { operationLogger } from "../../shared/logger.ts";
import { storeSplit } from "../api/splits.ts";
import { defineCommand } from "../cli/command.ts";
import { DEFAULT_RATIOS, parseRatios, type SplitOptions, STRATEGIES } from "../data/split.ts";

/** Seed when `--seed` is not given. */
export const DEFAULT_SEED = 0;

/** `arbor split`. */
export const splitCommand = defineCommand({
  name: "split",
  summary: "split a dataset into train/valid/test parquet files in the store and print the split id",
  flags: [
    {
      name: "data",
      type: "string",
      placeholder: "URI",
      required: true,
      description: "CSV, Parquet or NDJSON file: local path, file:// or gs:// URI",
    },
    { name: "target", type: "string", placeholder: "COL", required: true, description: "target column" },
    {
      name: "strategy",
      type: "string",
      choices: STRATEGIES,
      default: "random",
      description: "how rows are assigned to parts",
    },
    {
      name: "ratios",
      type: "list",
      placeholder: "TRAIN,VALID,TEST",
      default: DEFAULT_RATIOS.map(String),
      description: "part sizes, summing to 1",
    },
    {
      name: "time-column",
      type: "string",
      placeholder: "COL",
      description: "time order column (strategy time)",
    },
    {
      name: "group-column",
      type: "string",
      placeholder: "COL",
      description: "group column (strategy group)",
    },
    { name: "seed", type: "integer", placeholder: "N", default: DEFAULT_SEED, description: "random seed" },
    { name: "name", type: "string", placeholder: "NAME", description: "a name to find the split by" },
  ],
  schema: z.object({
    _: z.array(z.string()),
    data: z.string().min(1),
    target: z.string().min(1),
    strategy: z.enum(STRATEGIES),
    ratios: z.array(z.string()),
    timeColumn: z.string().min(1).optional(),
    groupColumn: z.string().min(1).optional(),
    seed: z.number().int().refine(Number.isSafeInteger, "must be a safe integer"),
    name: z.string().regex(NAME_PATTERN, "letters, digits, '-', '_' and '.', 1 to 100 characters").optional(),
  }),
  examples: [
    "arbor split --data flights.parquet --target late --strategy stratified --name flights",
    "arbor split --data gs://bucket/flights.csv --target delay --strategy time --time-column date",
    "arbor split --data file:///data/f.ndjson --target y --strategy group --group-column user --seed 7",
  ],
  async run(ctx, args) {
    const logger = operationLogger(ctx.logger, "split");
    const options: SplitOptions = {
      strategy: args.strategy,
      target: args.target,
      ratios: parseRatios(args.ratios),
      timeColumn: args.timeColumn,
      groupColumn: args.groupColumn,
      seed: args.seed,
    };
    if (options.strategy === "time" && !options.timeColumn) {
      throw arborError("SPLIT_MISSING_COLUMN_OPTION", "split: --strategy time needs --time-column");
    }
    if (options.strategy === "group" && !options.groupColumn) {
      throw arborError("SPLIT_MISSING_COLUMN_OPTION", "split: --strategy group needs --group-column");
    }
    // Open the registry first: a wrong DATABASE_URL should fail before minutes of work.
    const registry = await openRegistry(ctx.config, logger);
    ctx.onClose(() => registry.close());

    const { report } = await storeSplit(
      registry,
      ctx.config,
      { data: args.data, name: args.name ?? null, options },
      logger,
      ctx.say,
    );
    return { json: report, text: report.id };
  },
});
