/**
 * The one pino factory. Logs are JSON on stderr (stdout belongs to `--json` output), with a
 * `request_id` on request logs and an `op_id` on long operations.
 */
import { randomUUID } from "node:crypto";
import pino, { type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Component name, e.g. "serve" or "train". */
  name: string;
  level?: string;
  /** Where lines go; stderr (fd 2) by default. */
  destination?: DestinationStream;
}

/** Create the root logger of a process. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? "info",
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}

/** A fresh id for a request or an operation. */
export function newRequestId(): string {
  return randomUUID();
}

/** Accept a client's request id if it is short and printable; otherwise make one. */
export function requestIdFrom(header: string | undefined): string {
  if (header !== undefined && header.length > 0 && header.length <= 128 && /^[\x21-\x7e]+$/.test(header)) {
    return header;
  }
  return newRequestId();
}

/** A child logger for one long operation (a split, a fit, a study), with its `op_id`. */
export function operationLogger(parent: Logger, op: string, fields: Record<string, unknown> = {}): Logger {
  return parent.child({ op, op_id: newRequestId(), ...fields });
}
