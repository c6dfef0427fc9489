/**
 * `POST /v1/splits`, and the steps it shares with `arbor split` ({@link storeSplit}: read → plan →
 * parquet parts + split.json in the store → splits row).
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
import { buildReport, type SplitReport } from "../data/report.ts";
import {
  DEFAULT_RATIOS,
  PARTS,
  parseRatios,
  planSplit,
  type SplitOptions,
  STRATEGIES,
} from "../data/split.ts";
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
  const { record } = await storeSplit(
    registry,
    config,
    { data: body.data, name: body.name ?? null, options, tags: body.tags ?? [] },
    logger,
  );
  return record;
}

/**
 * The steps of `arbor split` and `POST /v1/splits`: read → plan → parquet parts and split.json in
 * the store → the splits row. A failure leaves no row and no files.
 */
export async function storeSplit(
  registry: Registry,
  config: ArborConfig,
  input: { data: string; name: string | null; options: SplitOptions; tags?: string[] },
  logger: Logger,
  say: (message: string) => void = () => {},
): Promise<{ record: SplitRecord; report: SplitReport }> {
  const { options } = input;
  say(`reading ${input.data}`);
  const dataset = await readDataset(input.data, {
    logger,
    openStore: (uri) =>
      openArtifactStore(uri, { gcsEndpoint: config.gcsEndpoint, gcsProject: config.gcsProject }),
  });
  say(`read ${dataset.frame.height} rows × ${dataset.frame.width} columns (${dataset.format})`);
  const plan = planSplit(dataset.frame, options, logger);
  const frames = takeParts(dataset.frame, plan);
  say(`split ${options.strategy}: ${PARTS.map((p, i) => `${p} ${frames[i].height}`).join(", ")}`);
  const dir = await mkdtemp(path.join(os.tmpdir(), "arbor-split-"));
  try {
    const files = await writeParts(frames, dir);
    const id = newId("spl");
    const report = buildReport({ id, name: input.name, dataset, options, plan, frames, files, logger });
    const store = registry.store;
    let record: SplitRecord;
    try {
      for (const f of files) {
        await store.put(splitKey(id, `${f.part}.parquet`), createReadStream(f.file), {
          contentType: "application/vnd.apache.parquet",
        });
      }
      await store.put(splitKey(id, "split.json"), `${JSON.stringify(report, null, 2)}\n`, {
        contentType: "application/json",
      });
      record = await registry.splits.create({
        id,
        name: report.name,
        sourceUri: dataset.sourceUri,
        fingerprint: dataset.fingerprint,
        strategy: options.strategy,
        target: options.target,
        options: { ...report.options },
        report: report as unknown as Record<string, unknown>,
        rows: dataset.frame.height,
        tags: input.tags ?? [],
      });
    } catch (e) {
      // No row without artifacts, and no orphaned artifacts without a row.
      await store.deletePrefix(splitPrefix(id)).catch((err: unknown) => {
        logger.warn({ err, split: id }, "could not remove the artifacts of a failed split");
      });
      throw e;
    }
    logger.info({ split: id, rows: dataset.frame.height, strategy: options.strategy }, "split stored");
    say(`stored split ${id} in ${store.uri}/${splitPrefix(id)}`);
    return { record, report };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
