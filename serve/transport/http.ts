/**
 * HTTP over uWebSockets.js: copy what the core needs out of `req` synchronously, register
 * `onAborted` before anything asynchronous, stream the body with a byte limit, then answer inside
 * `cork` (one syscall per response). One catch-all route; the core does the routing, so the
 * behaviour is the same whether or not sockets are involved.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from "uWebSockets.js";
import { arborError } from "../../shared/errors.ts";
import { newRequestId, requestIdFrom } from "../../shared/logger.ts";
import { CONTENT_TYPES, encodeBody, type Format, formatOf, RawBody, responseFormat } from "../core/codec.ts";
import { decodePath } from "../core/path.ts";
import { type CoreReply, type CoreRequest, errorBody, type ServeCore } from "../core/service.ts";
import type { ReplyBacklog, ReplyHolder, RequestBytes } from "./budget.ts";

/** State the transports share: in-flight count for graceful shutdown, and the byte budgets. */
export interface TransportState {
  inFlight: number;
  shuttingDown: boolean;
  /** Called when inFlight drops to zero during shutdown. */
  onIdle: (() => void) | null;
  /** Request bytes held (bodies arriving, parked stream messages). */
  readonly requestBytes: RequestBytes;
  /** Reply bytes the clients have not read. */
  readonly replies: ReplyBacklog;
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
  426: "426 Upgrade Required",
  500: "500 Internal Server Error",
  501: "501 Not Implemented",
  503: "503 Service Unavailable",
};

const utf8Encoder = new TextEncoder();

/**
 * Ids for requests that bring no X-Request-ID: UUID-shaped (8-4-4-4-12 hex digits), a random prefix
 * per process and a 48-bit counter. Ids need to be unique, not unpredictable. Nothing on the
 * success path needs the id as a string: the reply header is written from bytes ({@link bytes}),
 * and the string is built only when something logs it ({@link text}) — a generated id used to be
 * ~200 of the ~4,600 bytes a single-row predict allocated (heap sampling profiler), and garbage
 * per request sets how often a young-generation GC stalls the requests in flight.
 */
class RequestIds {
  readonly #prefix = newRequestId().slice(0, 24);
  /** The prefix's bytes followed by room for the counter's 12 hex digits, rewritten per use. */
  readonly #bytes = new Uint8Array(36);
  /** The counter as two 24-bit halves: small integers, so no float modulo or radix conversion. */
  #hi = 0;
  #lo = 0;

  constructor() {
    utf8Encoder.encodeInto(this.#prefix, this.#bytes);
  }

  /** The counter value the next request takes: its high 24 bits. */
  get hi(): number {
    return this.#hi;
  }

  /** The counter value the next request takes: its low 24 bits. */
  get lo(): number {
    return this.#lo;
  }

  /** Move the counter on (after a request took {@link hi} and {@link lo}). */
  advance(): void {
    if (++this.#lo === 0x1000000) {
      this.#lo = 0;
      this.#hi = (this.#hi + 1) & 0xffffff;
    }
  }

  /** The id of counter value (hi, lo) as text. */
  text(hi: number, lo: number): string {
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

  /**
   * The id of counter value (hi, lo) as bytes, in a buffer shared by every call: use it at once
   * (uWS copies a header value into its send buffer inside writeHeader).
   */
  bytes(hi: number, lo: number): Uint8Array {
    const b = this.#bytes;
    putHex(b, 24, hi >>> 16);
    putHex(b, 26, (hi >>> 8) & 255);
    putHex(b, 28, hi & 255);
    putHex(b, 30, lo >>> 16);
    putHex(b, 32, (lo >>> 8) & 255);
    putHex(b, 34, lo & 255);
    return b;
  }
}

/** Write byte value `v` as two hex digits at `b[at]`. */
function putHex(b: Uint8Array, at: number, v: number): void {
  b[at] = HEX_CODES[v * 2];
  b[at + 1] = HEX_CODES[v * 2 + 1];
}

/** Two lowercase hex digits per byte value. */
const HEX: readonly string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));
/** The same digits as ASCII codes, two per byte value. */
const HEX_CODES = new TextEncoder().encode(HEX.join(""));

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
const CONTENT_ENCODING = bytes("content-encoding");

/** Bodies over the limit are read through (and dropped) up to at least this many bytes. */
const MIN_DISCARD_BYTES = 1024 * 1024;
/** A 503 SERVER_BUSY says when to come back. */
const RETRY_AFTER = { name: "retry-after", value: "1" };

function statusLine(status: number): Uint8Array | string {
  const reason = REASONS[status];
  return reason === undefined ? `${status} Status` : bytes(reason);
}

/** Sends a reply (the transport's, shared by every request). */
type Finish = (res: HttpResponse, ex: Exchange, reply: CoreReply) => void;

/**
 * Per-request state, and the request the core handles (no separate object per request); all
 * fields set in the constructor (stable shape).
 */
class Exchange implements CoreRequest {
  aborted = false;
  done = false;
  /** The part of the reply the client's socket did not take at once, until it has all gone out. */
  pending: PendingReply | null = null;
  /** Close the connection after the reply (a body refused before it was all read). */
  closeAfter = false;
  /**
   * The body is refused — over the limit (413), or over the process's budget of bodies being read
   * (503): read on to its end without keeping it, then answer.
   */
  refused: "PAYLOAD_TOO_LARGE" | "SERVER_BUSY" | "UNSUPPORTED_MEDIA_TYPE" | null = null;
  readonly method: string;
  readonly path: string;
  readonly contentType: string;
  readonly format: Format;
  readonly started: number;
  readonly inferenceHeaderLength: number | null;
  /** The body, once read (null without one). */
  body: Uint8Array | RawBody | null = null;
  /** A body arriving in several reads: its reads so far. */
  chunks: Uint8Array[] | null = null;
  /** Bytes of the body read so far. */
  total = 0;
  /** Bytes of `chunks`, counted in the process's body budget. */
  held = 0;
  readonly #ids: RequestIds;
  readonly #idHi: number;
  readonly #idLo: number;
  /** The client's X-Request-ID, or ours once something needed it as text ("" until then). */
  #requestId: string;
  readonly #res: HttpResponse;
  readonly #finish: Finish;

  constructor(
    res: HttpResponse,
    finish: Finish,
    method: string,
    path: string,
    contentType: string,
    format: Format,
    sentId: string,
    inferHeader: string,
    ids: RequestIds,
  ) {
    this.#res = res;
    this.#finish = finish;
    this.method = method;
    this.path = path;
    this.contentType = contentType;
    this.format = format;
    // Decimal digits only (Number() would also take "0x10", "1e1", " 16"); NaN → 400 in the core.
    this.inferenceHeaderLength =
      inferHeader === "" ? null : /^[0-9]{1,15}$/.test(inferHeader) ? Number(inferHeader) : Number.NaN;
    this.#ids = ids;
    this.#idHi = ids.hi;
    this.#idLo = ids.lo;
    this.#requestId = sent(sentId);
    if (this.#requestId === "") ids.advance();
    this.started = performance.now();
  }

  get requestId(): string {
    if (this.#requestId === "") this.#requestId = this.#ids.text(this.#idHi, this.#idLo);
    return this.#requestId;
  }

  respond(reply: CoreReply): void {
    this.#finish(this.#res, this, reply);
  }

  /** The X-Request-ID reply header value: the text if there is one already, else our id's bytes. */
  idHeader(): string | Uint8Array {
    return this.#requestId !== "" ? this.#requestId : this.#ids.bytes(this.#idHi, this.#idLo);
  }
}

/**
 * A reply the client's socket did not take at once: the rest of its bytes, copied (the body may sit
 * in a buffer the next reply reuses), written as the socket drains, and counted in the process's
 * reply budget meanwhile. uWS closes a connection that makes no progress for 10 s, and the budget
 * closes the longest-waiting ones when the replies held for all clients pass it.
 */
class PendingReply implements ReplyHolder {
  readonly #res: HttpResponse;
  readonly #ex: Exchange;
  readonly #replies: ReplyBacklog;
  /** The body from byte `#at` on. */
  readonly #rest: Uint8Array;
  readonly #at: number;
  readonly #size: number;
  #unsent: number;

  constructor(
    res: HttpResponse,
    ex: Exchange,
    replies: ReplyBacklog,
    body: string | Uint8Array,
    size: number,
  ) {
    this.#res = res;
    this.#ex = ex;
    this.#replies = replies;
    this.#at = res.getWriteOffset();
    this.#rest = (typeof body === "string" ? utf8Encoder.encode(body) : body).slice(this.#at);
    this.#size = size;
    this.#unsent = size - this.#at;
    res.onWritable((offset) => this.#write(offset));
    replies.note(this, this.#unsent);
  }

  get requestId(): string {
    return this.#ex.requestId;
  }

  unsent(): number {
    return this.#unsent;
  }

  drop(): void {
    if (this.#ex.pending === this) this.#res.close();
  }

  /** The connection closed: nothing is left to send. */
  aborted(): void {
    this.#unsent = 0;
    this.#replies.note(this, 0);
  }

  #write(offset: number): boolean {
    if (this.#ex.pending !== this) return true;
    const [ok, done] = this.#res.tryEnd(this.#rest.subarray(offset - this.#at), this.#size);
    if (done) this.#ex.pending = null;
    this.#unsent = done ? 0 : this.#size - this.#res.getWriteOffset();
    this.#replies.note(this, this.#unsent);
    return ok;
  }
}

/** A client's X-Request-ID if it is one we accept, else "" (we make one). */
function sent(header: string): string {
  return header === "" ? "" : requestIdFrom(header);
}

/** Attach the HTTP handler to `app`. */
export function attachHttp(app: TemplatedApp, core: ServeCore, state: TransportState): void {
  const maxBody = core.config.maxBodyBytes;
  /** A body over the limit is read (and dropped) up to this many bytes before its 413. */
  const maxDiscard = Math.max(2 * maxBody, MIN_DISCARD_BYTES);
  const tooLarge = (what: string): string =>
    `read body: ${what} the limit of ${maxBody} bytes (ARBOR_SERVE_MAX_BODY_BYTES); send fewer rows per request`;
  const stats = core.metrics.stats;
  const logger = core.logger;
  const ids = new RequestIds();

  /**
   * The reply being written, for {@link writeOut}: one cork callback for every reply instead of a
   * closure per reply (garbage per request sets how often a young-generation GC stalls the
   * requests in flight). cork runs its callback at once, so one set of fields is enough.
   */
  const out: {
    res: HttpResponse | null;
    ex: Exchange | null;
    status: number;
    ctype: string;
    headerLength: string;
    header: CoreReply["header"];
    body: string | Uint8Array;
  } = { res: null, ex: null, status: 0, ctype: "", headerLength: "", header: undefined, body: "" };
  const writeOut = (): void => {
    const res = out.res!;
    const ex = out.ex!;
    const body = out.body;
    // A body refused past maxDiscard: the connection goes, and the rest of the body is never read.
    // (Not on a shutdown: a reply uWS buffered there would be cut when the process exits, so it goes
    // the tryEnd way, which the shutdown waits for; the process's exit closes the connection.)
    const close = ex.closeAfter;
    res
      .writeStatus(statusLine(out.status))
      .writeHeader(CONTENT_TYPE, bytes(out.ctype))
      .writeHeader(X_REQUEST_ID, ex.idHeader());
    if (out.headerLength !== "") res.writeHeader(INFERENCE_HEADER_LENGTH, out.headerLength);
    if (out.header !== undefined) res.writeHeader(out.header.name, out.header.value);
    if (ex.method === "head") {
      // The length the GET reply would have, written by hand: endWithoutBody(length) leaves the
      // response open in this uWS build (it is aborted, and the connection dropped, at the next
      // request on it), while endWithoutBody() without arguments keeps the connection usable. It
      // cannot ask to close, which only a shutdown wants, and the process exits then anyway.
      res.writeHeader(
        CONTENT_LENGTH,
        String(typeof body === "string" ? Buffer.byteLength(body) : body.length),
      );
      res.endWithoutBody();
    } else if (close) res.end(body, true);
    else {
      // tryEnd, not end: end keeps whatever the socket does not take in uWS's own buffer and lets
      // the connection's next request in, so a client pipelining requests without reading the
      // replies could make the process hold any number of them. Here what is left waits in a
      // PendingReply, counted in the reply budget, and the connection takes no new request meanwhile.
      const size = typeof body === "string" ? Buffer.byteLength(body) : body.length;
      if (!res.tryEnd(body, size)[1]) ex.pending = new PendingReply(res, ex, state.replies, body, size);
    }
  };

  /** The bytes of a reply: its binary tensors, its text, or its body in the client's format. */
  const encodeReply = (ex: Exchange, reply: CoreReply): void => {
    out.status = reply.status;
    out.header = reply.header;
    out.headerLength = "";
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
      out.body = all;
      out.ctype = "application/octet-stream";
      out.headerLength = String(head.length);
    } else if (reply.text !== undefined) {
      out.body = reply.text.value;
      out.ctype = reply.text.contentType;
    } else {
      out.body = encodeBody(reply.body, ex.format);
      out.ctype = CONTENT_TYPES[ex.format];
    }
  };

  const finish: Finish = (res, ex, reply) => {
    if (ex.done) return;
    ex.done = true;
    const seconds = (performance.now() - ex.started) / 1000;
    let status = reply.status;
    try {
      if (ex.aborted) return;
      try {
        encodeReply(ex, reply);
      } catch (e) {
        // Only a bug gets here: answer 500 rather than leave the client waiting.
        logger.error({ request_id: ex.requestId, err: (e as Error).message }, "reply could not be encoded");
        status = 500;
        encodeReply(ex, {
          status,
          body: errorBody(ex.path, arborError("INTERNAL", "internal error")),
          route: reply.route,
          model: reply.model,
          version: reply.version,
        });
      }
      out.res = res;
      out.ex = ex;
      res.cork(writeOut);
    } finally {
      out.res = null;
      out.ex = null;
      out.header = undefined;
      out.body = "";
      // Unknown routes share one label value so that random paths cannot blow up the series count.
      stats.observe(reply.route, reply.model, reply.version, status, seconds);
      if (logger.isLevelEnabled("debug")) {
        logger.debug(
          {
            request_id: ex.requestId,
            method: ex.method,
            path: ex.path.slice(0, 200),
            status,
            ms: seconds * 1000,
          },
          "request",
        );
      }
      requestFinished(state);
    }
  };

  const fail = (
    res: HttpResponse,
    ex: Exchange,
    code: "PAYLOAD_TOO_LARGE" | "SERVER_BUSY" | "UNSUPPORTED_MEDIA_TYPE" | "SHUTTING_DOWN",
    message: string,
  ): void => {
    const err = arborError(code, message);
    finish(res, ex, {
      status: err.status,
      body: errorBody(ex.path, err),
      header: code === "SERVER_BUSY" ? RETRY_AFTER : undefined,
      route: "unknown",
      model: "",
      version: "",
    });
  };

  /**
   * Room for `size` more bytes of a body that arrives in several reads, in the process's budget of
   * request bytes (ARBOR_SERVE_BODY_BUDGET_BYTES), or slow senders of big bodies could fill the
   * memory. Counted as they arrive, not by the declared Content-Length: reserving what a client
   * only announces would let a few connections that send headers and a byte now and then hold the
   * whole budget.
   */
  const requestBytes = state.requestBytes;
  const reserve = (ex: Exchange, size: number): boolean => {
    if (!requestBytes.take(size)) return false;
    ex.held += size;
    return true;
  };
  const dropChunks = (ex: Exchange): void => {
    requestBytes.give(ex.held);
    ex.held = 0;
    ex.chunks = null;
  };

  const dispatch = (res: HttpResponse, ex: Exchange, body: Uint8Array | RawBody | null): void => {
    ex.body = body;
    try {
      core.handle(ex); // answers through ex.respond, now or later
    } catch (e) {
      // Only a bug gets here (handle turns errors into replies); finish ignores a second reply.
      logger.error({ request_id: ex.requestId, err: (e as Error).message }, "unhandled request failure");
      finish(res, ex, {
        status: 500,
        body: errorBody(ex.path, arborError("INTERNAL", "internal error")),
        route: "unknown",
        model: "",
        version: "",
      });
    }
  };

  app.any("/*", (res: HttpResponse, req: HttpRequest) => {
    // Everything from req is read here, synchronously: req is stack-allocated by uWS.
    const method = req.getMethod();
    const path = decodePath(req.getUrl());
    // Header names as bytes, as for writeHeader: no UTF-8 conversion of the name per call.
    const contentType = req.getHeader(CONTENT_TYPE);
    const accept = req.getHeader(ACCEPT);
    const lengthHeader = req.getHeader(CONTENT_LENGTH);
    const inferHeader = req.getHeader(INFERENCE_HEADER_LENGTH);
    const sentId = req.getHeader(X_REQUEST_ID);
    const reqFormat: Format = formatOf(contentType) ?? "json";
    const ex = new Exchange(
      res,
      finish,
      method,
      path,
      contentType,
      responseFormat(accept, reqFormat),
      sentId,
      inferHeader,
      ids,
    );
    state.inFlight++;
    res.onAborted(() => {
      ex.aborted = true;
      dropChunks(ex);
      if (ex.pending !== null) {
        ex.pending.aborted();
        ex.pending = null;
      }
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
    // A compressed body (e.g. tritonclient's request_compression_algorithm) would fail as
    // malformed JSON or msgpack: say what is wrong instead, once it is read.
    const encoding = req.getHeader(CONTENT_ENCODING);
    if (encoding !== "" && encoding.toLowerCase() !== "identity") ex.refused = "UNSUPPORTED_MEDIA_TYPE";
    if (lengthHeader !== "" && Number(lengthHeader) > maxBody) {
      // Refuse at once when the client would send more than we read through; otherwise read the
      // body to its end first (see onData).
      if (Number(lengthHeader) > maxDiscard) {
        ex.closeAfter = true;
        fail(res, ex, "PAYLOAD_TOO_LARGE", tooLarge(`Content-Length ${lengthHeader} exceeds`));
        return;
      }
      ex.refused = "PAYLOAD_TOO_LARGE";
    }
    res.onData((ab: ArrayBuffer, isLast: boolean) => {
      if (ex.done) return;
      const size = ab.byteLength;
      ex.total += size;
      if (ex.total > maxBody) ex.refused = "PAYLOAD_TOO_LARGE";
      else if (ex.refused === null && !isLast && !reserve(ex, size)) ex.refused = "SERVER_BUSY";
      if (ex.refused !== null) {
        // uWS cannot close a connection once its reply is sent, nor answer before the body is
        // read without the client's next writes getting a reset (which can cost it the reply):
        // read the rest without keeping it and answer at its end, or give up past maxDiscard
        // and close (the client is sending far too much to be a mistake worth a clean reply).
        dropChunks(ex);
        if (ex.total > maxDiscard) ex.closeAfter = true;
        if (isLast || ex.closeAfter) {
          if (ex.refused === "PAYLOAD_TOO_LARGE") fail(res, ex, ex.refused, tooLarge("the body exceeds"));
          else if (ex.refused === "UNSUPPORTED_MEDIA_TYPE")
            fail(
              res,
              ex,
              ex.refused,
              "read body: compressed bodies (Content-Encoding) are not supported; send it uncompressed",
            );
          else
            fail(
              res,
              ex,
              ex.refused,
              `read body: the server holds ${requestBytes.limit} bytes of requests being read (ARBOR_SERVE_BODY_BUDGET_BYTES); retry shortly`,
            );
        }
        return;
      }
      const chunk = new Uint8Array(ab);
      // The ArrayBuffer is neutered when this callback returns: copy before keeping it.
      if (!isLast) {
        if (ex.chunks === null) ex.chunks = [];
        ex.chunks.push(chunk.slice());
        return;
      }
      // A JSON or msgpack body goes as a RawBody: predict rows are read from its bytes without a
      // general decoder (json-rows.ts, msgpack-rows.ts). Not with the binary tensor extension,
      // whose tensors follow the JSON header.
      const format = ex.inferenceHeaderLength === null ? formatOf(ex.contentType) : null;
      let body: Uint8Array;
      if (ex.chunks === null) {
        if (format !== null && chunk.length > 0) {
          // One chunk (the common case): in the bytes uWS lends, copied only if the body is read
          // after this callback (codec.ts).
          const lent = new RawBody(chunk, format);
          dispatch(res, ex, lent);
          lent.release();
          return;
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
        dropChunks(ex);
      }
      // Bytes of our own: a RawBody that is never released.
      dispatch(res, ex, format !== null ? new RawBody(body, format) : body);
    });
  });
}
