/**
 * The one registry of error codes. Every error arbor throws carries a stable `code`; only a
 * transport (CLI, HTTP, WebSocket) maps the code to an exit status or HTTP status.
 *
 * Add a code in the section of the area that throws it; never rename or reuse a code: users
 * match on them in scripts and dashboards.
 */

/** Definition of one error code: its HTTP status and a one-line hint for the user. */
export interface ErrorDef {
  readonly status: number;
  readonly hint: string;
}

/** Every error code with its HTTP status and hint, by area. */
export const ERRORS = {
  // ── generic ──────────────────────────────────────────────────────────────────────────
  INTERNAL: { status: 500, hint: "an unexpected error; please report it with the log line" },
  INVALID_ARGUMENT: { status: 400, hint: "check the flag or field named in the message" },
  INVALID_CONFIG: { status: 400, hint: "fix the environment variable or option named in the message" },
  NOT_FOUND: { status: 404, hint: "check the name or id" },
  CONFLICT: { status: 409, hint: "someone else changed it first; retry" },
  UNKNOWN_COMMAND: { status: 400, hint: "run `arbor --help` for the list of commands" },

  // ── data (train/data) ────────────────────────────────────────────────────────────────
  DATA_NOT_FOUND: { status: 404, hint: "check the path or URI of the data file" },
  DATA_UNREADABLE: { status: 422, hint: "the file exists but could not be parsed in its format" },
  DATA_UNSUPPORTED_FORMAT: { status: 415, hint: "use a .csv, .parquet, .ndjson or .jsonl file" },
  DATA_EMPTY: { status: 422, hint: "the data has no rows" },
  DATA_UNKNOWN_COLUMN: { status: 422, hint: "check the column name against the file's header" },
  DATA_BAD_COLUMN_TYPE: { status: 422, hint: "the column has a type this operation cannot use" },
  SPLIT_BAD_RATIOS: { status: 400, hint: "give three ratios that sum to 1, each producing a non-empty part" },
  SPLIT_EMPTY_PART: { status: 422, hint: "use more rows or larger ratios so that every part gets rows" },
  SPLIT_STRATIFY_CONTINUOUS: {
    status: 422,
    hint: "stratify only classification targets; use --strategy random",
  },
  SPLIT_STRATIFY_SINGLE_CLASS: {
    status: 422,
    hint: "the target has one class; stratification needs at least two",
  },
  SPLIT_MISSING_COLUMN_OPTION: { status: 400, hint: "time needs --time-column, group needs --group-column" },
  SPLIT_TOO_FEW_GROUPS: { status: 422, hint: "the group column needs at least one group per part" },
  DATA_NULL_VALUES: { status: 422, hint: "the column has null or NaN values; fill or drop those rows first" },

  // ── artifact store (registry/store) ───────────────────────────────────────────────────
  STORE_BAD_URI: { status: 400, hint: "use file:///path, a local path or gs://bucket/prefix" },
  STORE_NOT_FOUND: { status: 404, hint: "the object does not exist in the artifact store" },
  STORE_PRECONDITION_FAILED: { status: 409, hint: "the object changed since it was read; retry" },
  STORE_ALREADY_EXISTS: { status: 409, hint: "the object exists already and is immutable" },
  STORE_UNAVAILABLE: { status: 503, hint: "the artifact store could not be reached; check ARBOR_STORE" },
  STORE_INTEGRITY: { status: 422, hint: "a file's sha256 differs from its manifest; the bundle is corrupt" },

  // ── registry (registry/) ──────────────────────────────────────────────────────────────
  DB_UNAVAILABLE: { status: 503, hint: "the database could not be reached; check DATABASE_URL" },
  DB_LOCKED: { status: 503, hint: "the embedded database is used by another process; set DATABASE_URL" },
  SPLIT_NOT_FOUND: { status: 404, hint: "run `arbor splits list` for the split ids" },
  MODEL_NOT_FOUND: { status: 404, hint: "run `arbor models list` for the model names" },
  VERSION_NOT_FOUND: { status: 404, hint: "run `arbor models show NAME` for its versions" },
  LABEL_NOT_FOUND: { status: 404, hint: "run `arbor models show NAME` for its labels" },
  VERSION_ARCHIVED: { status: 409, hint: "the version is archived; promote another version" },
  VERSION_IN_USE: { status: 409, hint: "a label points at this version; move the label first" },
  NO_PREVIOUS_VERSION: { status: 409, hint: "the label has no earlier version to roll back to" },
  BUNDLE_INVALID: {
    status: 422,
    hint: "the bundle folder needs model.onnx, signature.json and metrics.json",
  },
  BAD_NAME: { status: 400, hint: "names use letters, digits, '-', '_' and '.', 1 to 100 characters" },

  // ── engine and bundles (train/gbdt, train/export, shared) ────────────────────────────
  FIT_BAD_TARGET: {
    status: 422,
    hint: "the target does not fit the task (e.g. continuous target for binary)",
  },
  FIT_BAD_OPTION: { status: 400, hint: "check the training option named in the message" },
  ONNX_INVALID: { status: 422, hint: "the ONNX file could not be decoded as an arbor tree ensemble" },
  PREDICT_MISSING_FEATURE: { status: 422, hint: "the data lacks a feature the model needs" },
  PREDICT_BAD_FEATURE_TYPE: { status: 422, hint: "a feature has a type the model cannot take" },
  IMPORT_UNSUPPORTED: { status: 422, hint: "the model uses an objective or feature arbor cannot import" },

  // ── serving (serve/) ─────────────────────────────────────────────────────────────────
  BAD_REQUEST: { status: 400, hint: "the body is not valid for this route" },
  MALFORMED_BODY: { status: 400, hint: "the body could not be decoded as JSON or msgpack" },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, hint: "send application/json or application/msgpack" },
  PAYLOAD_TOO_LARGE: { status: 413, hint: "split the request into smaller batches" },
  TOO_MANY_ROWS: { status: 413, hint: "send fewer rows per request" },
  UNPROCESSABLE: { status: 422, hint: "the rows do not match the model's signature" },
  MODEL_NOT_READY: { status: 503, hint: "the model is loading or failed to load; see GET /v1/models/{name}" },
  ROUTE_NOT_FOUND: { status: 404, hint: "see the README for the routes" },
  METHOD_NOT_ALLOWED: { status: 405, hint: "see the README for the routes and their methods" },
  LISTEN_FAILED: { status: 503, hint: "the port is in use or the host is not an address of this machine" },
  UPGRADE_REQUIRED: { status: 426, hint: "open /v1/stream as a WebSocket (Upgrade: websocket)" },
  SHUTTING_DOWN: { status: 503, hint: "the server is shutting down; retry on another replica" },
  UNKNOWN_FEATURE: { status: 422, hint: "send only the features listed in the model's signature" },
  NON_FINITE_VALUE: { status: 422, hint: "send null for a missing value; NaN and Infinity are refused" },
  BAD_SHAPE: { status: 422, hint: "each row needs exactly one value per signature feature, in order" },
  TOO_MANY_CONNECTIONS: { status: 503, hint: "the server's connection limit is reached; retry later" },
  SERVER_BUSY: {
    status: 503,
    hint: "the server holds too many requests for its clients at once; retry shortly (see Retry-After)",
  },
  CLIENT_GONE: { status: 499, hint: "the client closed its connection before the reply" },
  TOO_MANY_IN_FLIGHT: { status: 503, hint: "wait for replies before sending more messages on this socket" },
  MODEL_LOAD_FAILED: { status: 503, hint: "the version could not be loaded; see GET /v1/models/{name}" },
  EXPLAIN_UNAVAILABLE: { status: 501, hint: "this server cannot explain this model" },

  // ── tuning, jobs and the control plane (train/tune, train/api) ──────────────────────
  STUDY_NOT_FOUND: { status: 404, hint: "run `arbor studies list` for the study names" },
  STUDY_MISMATCH: { status: 409, hint: "a study of that name exists with other settings" },
  JOB_NOT_FOUND: { status: 404, hint: "check the job id" },
  UNAUTHORIZED: { status: 401, hint: "send `Authorization: Bearer <token>` with a configured token" },
  PROMOTION_REFUSED: { status: 409, hint: "the challenger did not beat the champion or --min-metric" },
} as const satisfies Record<string, ErrorDef>;

/** A stable error code. */
export type ErrorCode = keyof typeof ERRORS;

/** The one error class: a code from the registry, a message naming the argument, and the cause. */
export class ArborError extends Error {
  override readonly name = "ArborError";
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options?.details;
  }

  /** The registry's hint for this code. */
  get hint(): string {
    return ERRORS[this.code].hint;
  }

  /** JSON body for APIs: `{error: {code, message, details?}}`. */
  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return {
      error:
        this.details === undefined
          ? { code: this.code, message: this.message }
          : { code: this.code, message: this.message, details: this.details },
    };
  }
}

/** Factory: `arborError("DATA_NOT_FOUND", "…")`. */
export function arborError(
  code: ErrorCode,
  message: string,
  options?: { cause?: unknown; details?: Record<string, unknown> },
): ArborError {
  return new ArborError(code, message, options);
}

/** True when `e` is an ArborError (optionally with the given code). */
export function isArborError(e: unknown, code?: ErrorCode): e is ArborError {
  return e instanceof ArborError && (code === undefined || e.code === code);
}

/** Wrap anything thrown into an ArborError, keeping ArborErrors as they are. */
export function toArborError(e: unknown, fallback: ErrorCode = "INTERNAL"): ArborError {
  if (e instanceof ArborError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ArborError(fallback, message, { cause: e });
}
