/**
 * Every CLI command, in help order. Each area adds its commands here (one import, one entry).
 */

import { apiCommand } from "../commands/api.ts";
import { explainCommand } from "../commands/explain.ts";
import { fitCommand } from "../commands/fit.ts";
import { importCommand } from "../commands/import.ts";
import { configCommand, versionCommand } from "../commands/info.ts";
import { MODELS_COMMANDS } from "../commands/models.ts";
import { predictCommand } from "../commands/predict.ts";
import { serveCommand } from "../commands/serve.ts";
import { splitCommand } from "../commands/split.ts";
import { splitsDeleteCommand, splitsListCommand, splitsShowCommand } from "../commands/splits.ts";
import { STUDIES_COMMANDS } from "../commands/studies.ts";
import { tuneCommand } from "../commands/tune.ts";
import { workerCommand } from "../commands/worker.ts";
import type { Command } from "./command.ts";

export const COMMANDS: readonly Command<unknown>[] = [
  versionCommand,
  configCommand,
  splitCommand,
  splitsListCommand,
  splitsShowCommand,
  splitsDeleteCommand,
  fitCommand,
  ...MODELS_COMMANDS,
  tuneCommand,
  predictCommand,
  explainCommand,
  importCommand,
  ...STUDIES_COMMANDS,
  apiCommand,
  workerCommand,
  serveCommand,
];
