/** Pruner factory: a name and options (as stored with a study) → a Pruner. */
import { arborError } from "../../../shared/errors.ts";
import { type AshaOptions, AshaPruner } from "./asha.ts";
import { MedianPruner, type PercentilePrunerOptions } from "./median.ts";
import { NopPruner, type Pruner } from "./types.ts";

export type { Pruner } from "./types.ts";
export { AshaPruner, MedianPruner, NopPruner };

/** Pruner names the CLI and the API accept. */
export const PRUNER_NAMES = ["median", "asha", "none"] as const;
export type PrunerName = (typeof PRUNER_NAMES)[number];

/** Build a pruner from its stored description. */
export function createPruner(name: string, options: Record<string, unknown> = {}): Pruner {
  switch (name) {
    case "median":
      return new MedianPruner(options as PercentilePrunerOptions);
    case "asha":
      return new AshaPruner(options as AshaOptions);
    case "none":
      return new NopPruner();
    default:
      throw arborError(
        "INVALID_ARGUMENT",
        `pruner: unknown pruner "${name}" (use ${PRUNER_NAMES.join(", ")})`,
      );
  }
}
