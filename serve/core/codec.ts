/**
 * Wire codecs: request bodies by `Content-Type`, responses by `Accept`. JSON and msgpack only.
 * msgpack maps decode to plain objects (string keys) so both formats reach validation in the same
 * shape; records/structures extensions are off so any msgpack client can talk to us.
 */
import { Packr, Unpackr } from "msgpackr";
import { arborError, isArborError } from "../../shared/errors.ts";
import { clientError, withoutStacks } from "./client-error.ts";
import { PredictReply } from "./predictions.ts";
import { V2Reply } from "./v2-json.ts";

/** A wire format. */
export type Format = "json" | "msgpack";

/** The Content-Type we answer with, per format. */
export const CONTENT_TYPES: Readonly<Record<Format, string>> = {
  json: "application/json",
  msgpack: "application/msgpack",
};

// copyBuffers: a msgpack bin value is a copy, not a view into the body's bytes, which uWS lends
// only while its callback runs (RawBody): a V2 body is read after its version has loaded.
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: "number",
  copyBuffers: true,
});
const packr = new Packr({ useRecords: false, variableMapSize: true });
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Format of a request body from its Content-Type, or null for any other media type. */
export function formatOf(contentType: string): Format | null {
  if (contentType === "application/json" || contentType === "") return "json";
  if (contentType === "application/msgpack") return "msgpack";
  return formatOfMedia(mediaType(contentType));
}

/** A media type without its parameters (`; charset=…`, `; q=…`), trimmed and lower-cased. */
function mediaType(value: string): string {
  const semi = value.indexOf(";");
  return (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
}

function formatOfMedia(media: string): Format | null {
  if (media === "application/json" || media === "") return "json";
  if (
    media === "application/msgpack" ||
    media === "application/x-msgpack" ||
    media === "application/vnd.msgpack"
  )
    return "msgpack";
  return null;
}

/** Format of a request body from its Content-Type; UNSUPPORTED_MEDIA_TYPE otherwise. */
export function requestFormat(contentType: string): Format {
  const format = formatOf(contentType);
  if (format !== null) return format;
  throw clientError(
    "UNSUPPORTED_MEDIA_TYPE",
    `decode body: Content-Type '${contentType.slice(0, 100)}' is not application/json or application/msgpack`,
  );
}

/**
 * Format of the response from an Accept header: the format with the highest q-value among the
 * listed media ranges, where the wildcards (any type, any application type) count for a format
 * not named; `fallback` (the request's own format) on a tie, when the header is empty, or when it
 * accepts neither format. Media types are compared case-insensitively; `q=0` excludes one.
 */
export function responseFormat(accept: string, fallback: Format = "json"): Format {
  // The common headers, without parsing.
  if (accept === "" || accept === "*/*") return fallback;
  if (accept === "application/json") return "json";
  if (accept === "application/msgpack") return "msgpack";
  let json = -1;
  let msgpack = -1;
  let any = -1;
  // Split on commas outside quoted parameter values (`;foo="a,b"`).
  for (const range of accept.includes('"')
    ? accept.split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)
    : accept.split(",")) {
    const media = mediaType(range);
    const q = qValue(range);
    const format = formatOfMedia(media);
    if (format === "json" && media !== "") json = Math.max(json, q);
    else if (format === "msgpack") msgpack = Math.max(msgpack, q);
    else if (media === "*/*" || media === "application/*") any = Math.max(any, q);
  }
  // A format not named explicitly gets the q of a wildcard that covers it.
  if (json < 0) json = any;
  if (msgpack < 0) msgpack = any;
  if (json <= 0 && msgpack <= 0) return fallback;
  if (json === msgpack) return fallback === "msgpack" ? "msgpack" : "json";
  return json > msgpack ? "json" : "msgpack";
}

/** The `q` parameter of one Accept media range (1 when absent or unreadable). */
function qValue(range: string): number {
  const at = range.search(/;\s*q\s*=/i);
  if (at < 0) return 1;
  const q = Number.parseFloat(range.slice(range.indexOf("=", at) + 1));
  return Number.isFinite(q) && q >= 0 && q <= 1 ? q : 1;
}

/**
 * The UTF-8 text of a non-empty body, or null when it is not valid UTF-8. A transport uses this to
 * keep a JSON body as a string instead of copying its bytes out of a buffer it does not own.
 */
export function utf8Text(bytes: Uint8Array): string | null {
  try {
    return withoutStacks(() => decoder.decode(bytes));
  } catch {
    return null;
  }
}

/**
 * A JSON or msgpack body's bytes, from which predict rows are read without a general decoder
 * (json-rows.ts, msgpack-rows.ts). The transport may only lend them while its callback runs (uWS
 * neuters them when it returns): it then calls {@link release} when its callback returns, and code
 * that reads the body later calls {@link keep} before that, so that the body keeps its content.
 * Bytes never released stay readable.
 */
export class RawBody {
  readonly format: Format;
  #bytes: Uint8Array | null;
  #kept: string | Uint8Array | null = null;
  #wanted = false;

  constructor(bytes: Uint8Array, format: Format) {
    this.#bytes = bytes;
    this.format = format;
  }

  /** The bytes while the transport lends them, null after. */
  get bytes(): Uint8Array | null {
    return this.#bytes;
  }

  /** The body is read after the transport's callback returns: keep it then. */
  keep(): void {
    this.#wanted = true;
  }

  /** The transport's callback returns: let go of its bytes (keeping a copy, JSON as text, if wanted). */
  release(): void {
    const bytes = this.#bytes;
    if (bytes === null) return;
    this.#bytes = null;
    if (this.#wanted) this.#kept = (this.format === "json" ? utf8Text(bytes) : null) ?? bytes.slice();
  }

  /** The decoded value; MALFORMED_BODY when it is not JSON or msgpack (as its format says). */
  parse(): unknown {
    const body = this.#bytes ?? this.#kept;
    if (body === null) throw arborError("INTERNAL", "a request body was read after the transport let it go");
    return decodeBody(body, this.format);
  }
}

/**
 * Decode a JSON or msgpack body; MALFORMED_BODY when it is not one. A string is a body already
 * decoded from non-empty UTF-8 bytes by {@link utf8Text} (JSON only).
 */
export function decodeBody(body: Uint8Array | string | RawBody, format: Format): unknown {
  if (body instanceof RawBody) return body.parse();
  if (typeof body === "string") {
    if (format === "msgpack") return decodeBody(new TextEncoder().encode(body), format);
    // As withoutStacks, without a closure per request.
    checkJsonDepth(body);
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return JSON.parse(body);
    } catch (e) {
      throw malformed(e, format);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
  if (body.length === 0) throw clientError("MALFORMED_BODY", "decode body: the body is empty");
  try {
    // Parse errors are the client's: no stack capture (see client-error.ts).
    return withoutStacks(() => {
      if (format === "msgpack") return unpackr.unpack(body);
      const text = decoder.decode(body);
      checkJsonDepth(text);
      return JSON.parse(text);
    });
  } catch (e) {
    if (isArborError(e)) throw e;
    throw malformed(e, format);
  }
}

/** Nesting a JSON body may have: every body we take is a few levels deep. */
export const MAX_JSON_DEPTH = 64;
/** Bodies up to this many characters are parsed unchecked: deep nesting costs them < 1 ms. */
const DEPTH_CHECK_FROM = 4096;

/**
 * Refuse JSON nested deeper than {@link MAX_JSON_DEPTH} before parsing it: V8's JSON.parse spends
 * ~0.3-0.5 µs per level of nesting, so a 16 MB body of brackets held the event loop (and every
 * request on it) for ~5 s, where a flat 16 MB body parses in ~0.1 s. One pass over the text, ~20 %
 * of a parse; skipped for small bodies (the single-row hot path).
 */
function checkJsonDepth(text: string): void {
  const n = text.length;
  if (n <= DEPTH_CHECK_FROM) return;
  let depth = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: brackets inside it do not count.
      for (i++; i < n; i++) {
        const k = text.charCodeAt(i);
        if (k === 0x5c) i++;
        else if (k === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw clientError(
          "MALFORMED_BODY",
          `decode body: JSON nested deeper than ${MAX_JSON_DEPTH} levels (at character ${i})`,
        );
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

function malformed(e: unknown, format: Format): Error {
  const why = e instanceof Error ? e.message.split("\n")[0].slice(0, 200) : String(e);
  return clientError("MALFORMED_BODY", `decode body: not valid ${format}: ${why}`, { cause: e });
}

/**
 * Encode a response value. A V1 predict or V2 infer reply comes back in a buffer the next reply
 * overwrites ({@link PredictReply.jsonBytes}, {@link PredictReply.msgpackBytes},
 * {@link V2Reply.jsonBytes}): send the result at once, do not keep it.
 */
export function encodeBody(value: unknown, format: Format): Uint8Array | string {
  if (value instanceof PredictReply) return format === "json" ? value.jsonBytes() : value.msgpackBytes();
  if (value instanceof V2Reply) return format === "json" ? value.jsonBytes() : packr.pack(value.value());
  if (format === "json") return JSON.stringify(value);
  return packr.pack(value);
}
