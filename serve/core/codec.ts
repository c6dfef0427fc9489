/**
 * Wire codecs: request bodies by `Content-Type`, responses by `Accept`. JSON and msgpack only.
 * msgpack maps decode to plain objects (string keys) so both formats reach validation in the same
 * shape; records/structures extensions are off so any msgpack client can talk to us.
 */
import { Packr, Unpackr } from "msgpackr";
import { clientError, withoutStacks } from "./client-error.ts";
import { PredictReply } from "./predictions.ts";

/** A wire format. */
export type Format = "json" | "msgpack";

/** The Content-Type we answer with, per format. */
export const CONTENT_TYPES: Readonly<Record<Format, string>> = {
  json: "application/json",
  msgpack: "application/msgpack",
};

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });
const packr = new Packr({ useRecords: false, variableMapSize: true });
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Format of a request body from its Content-Type, or null for any other media type. */
export function formatOf(contentType: string): Format | null {
  if (contentType === "application/json" || contentType === "") return "json";
  // Compare the media type only (ignore `; charset=…`), case-insensitively.
  const semi = contentType.indexOf(";");
  const media = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
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

/** Format of the response from an Accept header (msgpack only when asked for). */
export function responseFormat(accept: string, fallback: Format = "json"): Format {
  if (accept.length === 0) return fallback;
  if (accept.includes("msgpack")) return "msgpack";
  if (accept.includes("json")) return "json";
  return fallback;
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
 * Decode a JSON or msgpack body; MALFORMED_BODY when it is not one. A string is a body already
 * decoded from non-empty UTF-8 bytes by {@link utf8Text} (JSON only).
 */
export function decodeBody(body: Uint8Array | string, format: Format): unknown {
  if (typeof body === "string") {
    if (format === "msgpack") return decodeBody(new TextEncoder().encode(body), format);
    // As withoutStacks, without a closure per request.
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
    return withoutStacks(() => (format === "json" ? JSON.parse(decoder.decode(body)) : unpackr.unpack(body)));
  } catch (e) {
    throw malformed(e, format);
  }
}

function malformed(e: unknown, format: Format): Error {
  const why = e instanceof Error ? e.message.split("\n")[0].slice(0, 200) : String(e);
  return clientError("MALFORMED_BODY", `decode body: not valid ${format}: ${why}`, { cause: e });
}

/**
 * Encode a response value. A V1 predict reply's JSON comes back in a buffer the next reply
 * overwrites ({@link PredictReply.jsonBytes}): send the result at once, do not keep it.
 */
export function encodeBody(value: unknown, format: Format): Uint8Array | string {
  if (value instanceof PredictReply) return format === "json" ? value.jsonBytes() : packr.pack(value.value());
  if (format === "json") return JSON.stringify(value);
  return packr.pack(value);
}
