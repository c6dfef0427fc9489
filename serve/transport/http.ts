/**
 * HTTP over uWebSockets.js: copy what the core needs out of `req` synchronously, register
 * `onAborted` before anything asynchronous, stream the body with a byte limit, then answer inside
 * `cork` (one syscall per response). One catch-all route; the core does the routing, so the
 * behaviour is the same whether or not sockets are involved.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from "uWebSockets.js";
import { arborError } from "../../shared/errors.ts";
import { newRequestId, requestIdFrom } from "../../shared/logger.ts";
import { CONTENT_TYPES, encodeBody, type Format, formatOf, responseFormat, utf8Text } from "../core/codec.ts";
import { type CoreReply, errorBody, type ServeCore } from "../core/service.ts";

/** Lifecycle state the transports share (in-flight count for graceful shutdown). */
export interface TransportState {
  inFlight: number;
  shuttingDown: boolean;
  /** Called when inFlight drops to zero during shutdown. */
  onIdle: (() => void) | null;
}

const REASONS: Record<number, string> = {
  200: "200 OK",
  400: "400 Bad Request",
  401: "401 Unauthorized",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  409: "409 Conflict",
  413: "413 Payload Too Large",
  415: "415 Unsupported Media Type",
  422: "422 Unprocessable Entity",
  500: "500 Internal Server Error",
  501: "501 Not Implemented",
  503: "503 Service Unavailable",
};

const utf8Encoder = new TextEncoder();

/**
 * Ids for requests that bring no X-Request-ID: UUID-shaped (8-4-4-4-12 hex digits), a random prefix
 * per process and a 48-bit counter. Ids need to be unique, not unpredictable, and node's
 * randomUUID() builds each one from some twenty string pieces: ~580 of the ~7,100 bytes a
 * single-row predict allocated (sampling heap profiler), i.e. more young-generation GC.
 */
class RequestIds {
  readonly #prefix = newRequestId().slice(0, 24);
  /** The counter as two 24-bit halves: small integers, so no float modulo or radix conversion. */
  #hi = 0;
  #lo = 0;

  /** A fresh id. */
  id(): string {
    const hi = this.#hi;
    const lo = this.#lo;
    if (++this.#lo === 0x1000000) {
      this.#lo = 0;
      this.#hi = (hi + 1) & 0xffffff;
    }
    return (
      this.#prefix +
      HEX[hi >>> 16] +
      HEX[(hi >>> 8) & 255] +
      HEX[hi & 255] +
      HEX[lo >>> 16] +
      HEX[(lo >>> 8) & 255] +
      HEX[lo & 255]
    );
  }
}

/** Two lowercase hex digits per byte value. */
const HEX: readonly string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** A request or stream message is finished: count it out, and wake a shutdown waiting for idle. */
export function requestFinished(state: TransportState): void {
  state.inFlight--;
  if (state.inFlight === 0 && state.onIdle !== null) state.onIdle();
}

/**
 * Constant header names and values as bytes: uWS copies a JS string argument to UTF-8 on every call
 * (String::Utf8Length + WriteUtf8 in the profile) and reads a Uint8Array as is.
 */
const BYTES = new Map<string, Uint8Array>();
function bytes(s: string): Uint8Array {
  let b = BYTES.get(s);
  if (b === undefined) {
    b = new TextEncoder().encode(s);
    // Content types come from a small fixed set (our formats, prom-client's); keep the map bounded anyway.
    if (BYTES.size < 64) BYTES.set(s, b);
  }
  return b;
}
const CONTENT_TYPE = bytes("content-type");
const X_REQUEST_ID = bytes("x-request-id");
const ACCEPT = bytes("accept");
const CONTENT_LENGTH = bytes("content-length");
const INFERENCE_HEADER_LENGTH = bytes("inference-header-content-length");

function statusLine(status: number): Uint8Array | string {
  const reason = REASONS[status];
  return reason === undefined ? `${status} Status` : bytes(reason);
}

/** Per-request state; all fields set in the constructor (stable shape). */
class Exchange {
  aborted = false;
  done = false;
  readonly method: string;
  readonly path: string;
  readonly contentType: string;
  readonly format: Format;
  readonly requestId: string;
  readonly started: number;
  /** `Inference-Header-Content-Length` as sent ("" when absent). */
  readonly inferHeader: string;
  chunks: Uint8Array[] | null = null;
  total = 0;

  constructor(
    method: string,
    path: string,
    contentType: string,
    format: Format,
    requestId: string,
    inferHeader: string,
  ) {
    this.method = method;
    this.inferHeader = inferHeader;
    this.path = path;
    this.contentType = contentType;
    this.format = format;
    this.requestId = requestId;
    this.started = performance.now();
  }
}

/** Attach the HTTP handler to `app`. */
export function attachHttp(app: TemplatedApp, core: ServeCore, state: TransportState): void {
  const maxBody = core.config.maxBodyBytes;
  const stats = core.metrics.stats;
  const logger = core.logger;
  const ids = new RequestIds();

  const finish = (res: HttpResponse, ex: Exchange, reply: CoreReply): void => {
    if (ex.done) return;
    ex.done = true;
    const seconds = (performance.now() - ex.started) / 1000;
    // Unknown routes share one label value so that random paths cannot blow up the series count.
    stats.observe(reply.route, reply.model, reply.version, reply.status, seconds);
    if (!ex.aborted) {
      let body: string | Uint8Array;
      let ctype: string;
      let headerLength = "";
      if (reply.binary !== undefined) {
        const head = utf8Encoder.encode(reply.binary.header);
        let total = head.length;
        for (const b of reply.binary.blobs) total += b.length;
        const all = new Uint8Array(total);
        all.set(head, 0);
        let at = head.length;
        for (const b of reply.binary.blobs) {
          all.set(b, at);
          at += b.length;
        }
        body = all;
        ctype = "application/octet-stream";
        headerLength = String(head.length);
      } else if (reply.text !== undefined) {
        body = reply.text.value;
        ctype = reply.text.contentType;
      } else {
        body = encodeBody(reply.body, ex.format);
        ctype = CONTENT_TYPES[ex.format];
      }
      const close = state.shuttingDown;
      res.cork(() => {
        res
          .writeStatus(statusLine(reply.status))
          .writeHeader(CONTENT_TYPE, bytes(ctype))
          .writeHeader(X_REQUEST_ID, ex.requestId);
        if (headerLength !== "") res.writeHeader(INFERENCE_HEADER_LENGTH, headerLength);
        if (ex.method === "head")
          res.endWithoutBody(typeof body === "string" ? Buffer.byteLength(body) : body.length, close);
        else res.end(body, close);
      });
    }
    if (logger.isLevelEnabled("debug")) {
      logger.debug(
        {
          request_id: ex.requestId,
          method: ex.method,
          path: ex.path,
          status: reply.status,
          ms: seconds * 1000,
        },
        "request",
      );
    }
    requestFinished(state);
  };

  const fail = (
    res: HttpResponse,
    ex: Exchange,
    code: "PAYLOAD_TOO_LARGE" | "SHUTTING_DOWN",
    message: string,
  ): void => {
    const err = arborError(code, message);
    finish(res, ex, {
      status: err.status,
      body: errorBody(ex.path, err),
      route: "unknown",
      model: "",
      version: "",
    });
  };

  const dispatch = (res: HttpResponse, ex: Exchange, body: Uint8Array | string | null): void => {
    core
      .handle({
        method: ex.method,
        path: ex.path,
        contentType: ex.contentType,
        body,
        requestId: ex.requestId,
        inferenceHeaderLength: ex.inferHeader === "" ? null : Number(ex.inferHeader),
      })
      .then(
        (reply) => finish(res, ex, reply),
        (e: unknown) => {
          logger.error({ request_id: ex.requestId, err: (e as Error).message }, "unhandled request failure");
          finish(res, ex, {
            status: 500,
            body: errorBody(ex.path, arborError("INTERNAL", "internal error")),
            route: "unknown",
            model: "",
            version: "",
          });
        },
      );
  };

  app.any("/*", (res: HttpResponse, req: HttpRequest) => {
    // Everything from req is read here, synchronously: req is stack-allocated by uWS.
    const method = req.getMethod();
    const path = req.getUrl();
    // Header names as bytes, as for writeHeader: no UTF-8 conversion of the name per call.
    const contentType = req.getHeader(CONTENT_TYPE);
    const accept = req.getHeader(ACCEPT);
    const lengthHeader = req.getHeader(CONTENT_LENGTH);
    const inferHeader = req.getHeader(INFERENCE_HEADER_LENGTH);
    const sent = req.getHeader(X_REQUEST_ID);
    const rid = sent === "" ? ids.id() : requestIdFrom(sent);
    const reqFormat: Format = contentType.includes("msgpack") ? "msgpack" : "json";
    const ex = new Exchange(
      method,
      path,
      contentType,
      responseFormat(accept === "*/*" ? "" : accept, reqFormat),
      rid,
      inferHeader,
    );
    state.inFlight++;
    res.onAborted(() => {
      ex.aborted = true;
      if (!ex.done) {
        ex.done = true;
        requestFinished(state);
      }
    });
    if (state.shuttingDown) {
      fail(res, ex, "SHUTTING_DOWN", "the server is shutting down");
      return;
    }
    const hasBody = method === "post" || method === "put" || method === "patch";
    if (!hasBody) {
      dispatch(res, ex, null);
      return;
    }
    if (lengthHeader !== "" && Number(lengthHeader) > maxBody) {
      fail(
        res,
        ex,
        "PAYLOAD_TOO_LARGE",
        `read body: Content-Length ${lengthHeader} exceeds the limit of ${maxBody} bytes`,
      );
      return;
    }
    res.onData((ab: ArrayBuffer, isLast: boolean) => {
      if (ex.done) return;
      const chunk = new Uint8Array(ab);
      ex.total += chunk.length;
      if (ex.total > maxBody) {
        fail(res, ex, "PAYLOAD_TOO_LARGE", `read body: the body exceeds the limit of ${maxBody} bytes`);
        return;
      }
      // The ArrayBuffer is neutered when this callback returns: copy before keeping it.
      if (!isLast) {
        if (ex.chunks === null) ex.chunks = [];
        ex.chunks.push(chunk.slice());
        return;
      }
      let body: Uint8Array;
      if (ex.chunks === null) {
        // A JSON body in one chunk (the common case) is kept as its text: the string is what
        // JSON.parse needs anyway, and it spares copying the bytes into an off-heap buffer of our
        // own. Invalid UTF-8 goes the byte way so that the core reports it as before. Not for the
        // binary tensor extension, whose tensors are bytes after the JSON header.
        if (chunk.length > 0 && ex.inferHeader === "" && formatOf(ex.contentType) === "json") {
          const text = utf8Text(chunk);
          if (text !== null) {
            dispatch(res, ex, text);
            return;
          }
        }
        body = chunk.slice();
      } else {
        body = new Uint8Array(ex.total);
        let at = 0;
        for (const c of ex.chunks) {
          body.set(c, at);
          at += c.length;
        }
        body.set(chunk, at);
        ex.chunks = null;
      }
      dispatch(res, ex, body);
    });
  });
}
