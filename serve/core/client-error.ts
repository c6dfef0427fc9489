/**
 * Errors caused by the client's input, built without a stack trace. Capturing a stack costs several
 * µs per Error here (measured 5-9 µs for `new Error` on these machines, 41 µs for a malformed-JSON
 * request end to end), which made a rejected request dearer than a served prediction; the stack of
 * a validation error says nothing the code and message do not. Internal errors keep their stacks.
 */
import { type ArborError, arborError, type ErrorCode } from "../../shared/errors.ts";

/** Run `fn` with stack capture off (for code that only throws client errors, e.g. JSON.parse). */
export function withoutStacks<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** `arborError` without a stack trace, for errors in the client's input. */
export function clientError(
  code: ErrorCode,
  message: string,
  options?: { cause?: unknown; details?: Record<string, unknown> },
): ArborError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return arborError(code, message, options);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
