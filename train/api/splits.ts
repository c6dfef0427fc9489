/**
 * `POST /v1/splits`: the same steps as `arbor split` (read → plan → parquet parts + split.json in
 * the store → splits row), over the API's open registry.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { newId } from "../../registry/ids.ts";
import type { Registry, SplitRecord } from "../../registry/index.ts";
import { openArtifactStore } from "../../registry/store/open.ts";
import { NAME_PATTERN } from "../../shared/bundle.ts";
import type { ArborConfig } from "../../shared/config.ts";
import { arborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { splitKey, splitPrefix } from "../../shared/paths.ts";
import { readDataset } from "../data/read.ts";
import { buildReport } from "../data/report.ts";
import { DEFAULT_RATIOS, parseRatios, planSplit, type SplitOptions, STRATEGIES } from "../data/split.ts";
import { takeParts, writeParts } from "../data/write.ts";

/** Body of `POST /v1/splits`. */
export const createSplitSchema = z
  .object({
    data: z.string().min(1, "must be a path, file:// or gs:// URI"),
    target: z.string().min(1),
    strategy: z.enum(STRATEGIES).default("random"),
    ratios: z
      .array(z.number().positive())
      .length(3)
      .default([...DEFAULT_RATIOS]),
    timeColumn: z.string().min(1).optional(),
    groupColumn: z.string().min(1).optional(),
    seed: z.number().int().default(0),
    name: z
      .string()
      .regex(NAME_PATTERN, "use letters, digits, '-', '_' and '.', 1 to 100 characters")
      .optional(),
    tags: z.array(z.string().min(1).max(100)).max(50).optional(),
  })
  .strict();
export type CreateSplitBody = z.infer<typeof createSplitSchema>;

/** Create a split from a data URI; returns the stored record. */
export async function createSplit(
  registry: Registry,
  config: ArborConfig,
  body: CreateSplitBody,
  logger: Logger,
): Promise<SplitRecord> {
  const options: SplitOptions = {
    strategy: body.strategy,
    target: body.target,
    ratios: parseRatios(body.ratios),
    timeColumn: body.timeColumn,
    groupColumn: body.groupColumn,
    seed: body.seed,
  };
  if (options.strategy === "time" && !options.timeColumn) {
    throw arborError("SPLIT_MISSING_COLUMN_OPTION", "body.timeColumn: strategy time needs a time column");
  }
  if (options.strategy === "group" && !options.groupColumn) {
    throw arborError("SPLIT_MISSING_COLUMN_OPTION", "body.groupColumn: strategy group needs a group column");
  }
  const dataset = await readDataset(body.data, {
    logger,
    openStore: (uri) =>
      openArtifactStore(uri, { gcsEndpoint: config.gcsEndpoint, gcsProject: config.gcsProject }),
  });
  const plan = planSplit(dataset.frame, options, logger);
  const frames = takeParts(dataset.frame, plan);
  const dir = await mkdtemp(path.join(os.tmpdir(), "arbor-api-split-"));
  try {
    const files = await writeParts(frames, dir);
    const id = newId("spl");
    const report = buildReport({
      id,
      name: body.name ?? null,
      dataset,
      options,
      plan,
      frames,
      files,
      logger,
    });
    const store = registry.store;
    try {
      for (const f of files) {
        await store.put(splitKey(id, `${f.part}.parquet`), createReadStream(f.file), {
          contentType: "application/vnd.apache.parquet",
        });
      }
      await store.put(splitKey(id, "split.json"), `${JSON.stringify(report, null, 2)}\n`, {
        contentType: "application/json",
      });
      return await registry.splits.create({
        id,
        name: report.name,
        sourceUri: dataset.sourceUri,
        fingerprint: dataset.fingerprint,
        strategy: options.strategy,
        target: options.target,
        options: { ...report.options },
        report: report as unknown as Record<string, unknown>,
        rows: dataset.frame.height,
        tags: body.tags ?? [],
      });
    } catch (e) {
      await store.deletePrefix(splitPrefix(id)).catch(() => {});
      throw e;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
