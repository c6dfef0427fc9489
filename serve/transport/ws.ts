/**
 * `WS /v1/stream`: pipelined predict/explain messages `{id, model, version?|label?, op, instances}`
 * as JSON text or msgpack binary frames; each reply carries the id and uses the frame type of its
 * request. Many messages may be in flight per connection (up to RUNNING_PER_CONNECTION scored at
 * once, so concurrent requests share micro-batches). Replies keep their messages' order: behind a
 * message whose batch has not run yet or whose explain is still on the explain thread, later
 * replies are held, encoded, in the connection's queue (a message waiting for its version to load
 * takes its place in that order when the load ends).
 * Backpressure: uWS cannot stop reading a WebSocket in this build (no ws.pause), so once the unread
 * replies (send buffer and queue) pass `wsMaxBackpressureBytes` new messages are parked unprocessed
 * and resumed on `drain`, at most PARKED_PAYLOADS_PER_CONNECTION payloads' worth per connection and
 * ARBOR_SERVE_BODY_BUDGET_BYTES per process; unread replies count in ARBOR_SERVE_REPLY_BUDGET_BYTES
 * (serve/transport/budget.ts). Past `wsMaxInFlight` parked plus running messages, or past those
 * byte bounds, each further message is refused with its own 503 (TOO_MANY_IN_FLIGHT, SERVER_BUSY)
 * reply carrying its id, and the connection stays open. Only a client that neither reads nor stops
 * sending, so that even those small refusals pile up past REFUSE_CLOSE_FACTOR times the bound, is
 * closed (1008). uWS's own hard limit (which would drop or close) is set far above that and is only
 * a last resort. Errors are per message, never per connection.
 */
import type { TemplatedApp, WebSocket } from "uWebSockets.js";
import { type ArborError, arborError, toArborError } from "../../shared/errors.ts";
import { requestIdFrom } from "../../shared/logger.ts";
import { clientError } from "../core/client-error.ts";
import { decodeBody, encodeBody, utf8Text } from "../core/codec.ts";
import { PredictReply } from "../core/predictions.ts";
import { checkName, type ModelRef, parseVersion, type ScoreSink, type ServeCore } from "../core/service.ts";
import type { ReplyHolder } from "./budget.ts";
import { requestFinished, type TransportState } from "./http.ts";

interface Parked {
  data: Uint8Array | string;
  binary: boolean;
  /** Bytes of the frame, counted in the process's request bytes and the connection's parked bytes. */
  size: number;
}

/** Per-connection state (uWS user data: its own fields are copied into the socket, not its prototype). */
interface Conn {
  /** The connection's request id (on its log lines). */
  requestId: string;
  open: boolean;
  running: number;
  parked: Parked[];
  /** Bytes of the parked messages. */
  parkedBytes: number;
  /** A {@link attachStream} pump is scheduled for this connection. */
  pumpScheduled: boolean;
  /** Its unread replies (send buffer and queue) as last noted in the reply budget. */
  noted: number;
  /** The connection in the process's reply budget (set once it is open). */
  holder: ReplyHolder | null;
  /**
   * Messages whose replies are still to come (in a micro-batch, or an explain on the explain
   * thread) and the replies held behind them, in message order: replies keep the order their
   * messages came in.
   */
  queue: Ordered[];
  /** Bytes of the encoded replies held in `queue`. */
  queuedBytes: number;
}

/** A message in its connection's {@link Conn.queue}. */
interface Ordered {
  /** Its reply is still to come (its batch has not run, or its explain is on the explain thread). */
  readonly waiting: boolean;
  /** Send the reply it holds, and count the message out. */
  sendHeld(): void;
}

/** Messages scored at once per connection; more are parked until one finishes. */
const RUNNING_PER_CONNECTION = 32;
/**
 * A connection parks at most this many times `wsMaxPayloadBytes` of messages (and all connections
 * together at most ARBOR_SERVE_BODY_BUDGET_BYTES): uWS reads on whether or not we answer, so a
 * client that sends without reading would otherwise have the process keep every message.
 */
const PARKED_PAYLOADS_PER_CONNECTION = 4;
/** uWS's hard send-buffer limit (closes the socket when exceeded): a last resort only. */
const HARD_BACKPRESSURE_BYTES = 256 * 1024 * 1024;
/**
 * Past the in-flight limit, messages are refused one by one; once the unread send buffer reaches
 * this many times `wsMaxBackpressureBytes` as well, the client is not reading at all: close (1008).
 */
const REFUSE_CLOSE_FACTOR = 16;

/** The `id` of a message we will not process, for its refusal (null when it has none or is unreadable). */
function idOf(data: Uint8Array | string, binary: boolean): string | number | null {
  try {
    const m = decodeBody(data, binary ? "msgpack" : "json") as Record<string, unknown> | null;
    const id = m !== null && typeof m === "object" ? m["id"] : null;
    return typeof id === "string" || typeof id === "number" ? id : null;
  } catch {
    return null;
  }
}

/** The model a message names; names and versions are checked as the HTTP routes check them. */
function refOf(msg: Record<string, unknown>): ModelRef {
  const model = msg["model"];
  if (typeof model !== "string") throw clientError("BAD_REQUEST", "stream: 'model' must be a model name");
  const name = checkName(model, "model");
  const version = msg["version"];
  const label = msg["label"];
  if (version !== undefined && label !== undefined)
    throw clientError("BAD_REQUEST", "stream: give 'version' or 'label', not both");
  if (version !== undefined) {
    if (typeof version !== "string" && typeof version !== "number")
      throw clientError("BAD_REQUEST", "stream: 'version' must be a positive integer or a string like 'v3'");
    return { name, version: parseVersion(String(version)), label: null };
  }
  if (label === undefined) return { name, version: null, label: null };
  if (typeof label !== "string") throw clientError("BAD_REQUEST", "stream: 'label' must be a label name");
  return { name, version: null, label: checkName(label, "label") };
}

/** What the server's shutdown needs from the stream route. */
export interface StreamHandle {
  /** Shutdown: run every parked message now (they were accepted before it began), whatever the backpressure. */
  runParked(): void;
  /** Close every connection (1001). */
  closeAll(): void;
  count(): number;
}

/** Attach the WebSocket route. */
export function attachStream(app: TemplatedApp, core: ServeCore, state: TransportState): StreamHandle {
  const cfg = core.config;
  const sockets = new Set<WebSocket<Conn>>();
  let parked = 0;
  const logger = core.logger;
  const gauge = core.metrics.wsConnections;
  const counter = core.metrics.wsMessages;
  const requestBytes = state.requestBytes;
  const replies = state.replies;
  const maxParkedBytes = PARKED_PAYLOADS_PER_CONNECTION * cfg.wsMaxPayloadBytes;
  core.metrics.wsInFlight.count = () => {
    let n = 0;
    for (const ws of sockets) n += ws.getUserData().running;
    return n;
  };

  /** Replies a connection's client has not read: its send buffer, and the replies held in its queue. */
  const unread = (ws: WebSocket<Conn>, conn: Conn): number => ws.getBufferedAmount() + conn.queuedBytes;

  /** Note a connection's unread replies in the reply budget when they changed. */
  const noteBuffered = (ws: WebSocket<Conn>, conn: Conn): void => {
    // A closed uWS socket must not be touched (its close callback noted 0).
    if (!conn.open) return;
    const bytes = unread(ws, conn);
    if (bytes !== conn.noted) {
      conn.noted = bytes;
      if (conn.holder !== null) replies.note(conn.holder, bytes);
    }
  };

  /**
   * Send the replies at the front of a connection's queue that no longer wait for their own, while
   * its send buffer is under the backpressure bound; `drain` goes on from there (via the pump).
   */
  const flushQueue = (ws: WebSocket<Conn>, conn: Conn): void => {
    const queue = conn.queue;
    while (
      queue.length > 0 &&
      !queue[0].waiting &&
      (!conn.open || ws.getBufferedAmount() < cfg.wsMaxBackpressureBytes)
    )
      queue.shift()!.sendHeld();
  };

  /** Parked messages leave the connection: give their bytes back. */
  const unpark = (conn: Conn, taken: readonly Parked[]): void => {
    let bytes = 0;
    for (const p of taken) bytes += p.size;
    conn.parkedBytes -= bytes;
    requestBytes.give(bytes);
    parked -= taken.length;
  };

  /** Replies counted per message without prom-client hashing a label set each time. */
  const answered = {
    predict: counter.labels({ op: "predict", status: "200" }),
    explain: counter.labels({ op: "explain", status: "200" }),
  };

  /**
   * The reply being sent, for {@link sendOut}: one cork callback for every reply instead of a
   * closure per reply (garbage per message). cork runs its callback at once.
   */
  const out: { ws: WebSocket<Conn> | null; payload: string | Uint8Array; binary: boolean } = {
    ws: null,
    payload: "",
    binary: false,
  };
  const sendOut = (): void => {
    out.ws!.send(out.payload, out.binary);
  };

  const send = (ws: WebSocket<Conn>, value: unknown, binary: boolean): void => {
    if (!ws.getUserData().open) return;
    sendPayload(ws, encodeBody(value, binary ? "msgpack" : "json"), binary);
  };

  const sendPayload = (ws: WebSocket<Conn>, payload: string | Uint8Array, binary: boolean): void => {
    const conn = ws.getUserData();
    if (!conn.open) return;
    out.ws = ws;
    out.payload = payload;
    out.binary = binary;
    try {
      ws.cork(sendOut);
    } finally {
      out.ws = null;
      out.payload = "";
    }
    noteBuffered(ws, conn);
  };

  /** One message being answered, and the sink of its scores: one object per message. */
  class Message implements ScoreSink, Ordered {
    readonly ws: WebSocket<Conn>;
    readonly conn: Conn;
    readonly binary: boolean;
    id: string | number | null = null;
    op: "predict" | "explain" | "invalid" = "invalid";
    waiting = false;
    /** The encoded reply, until it is sent (while it waits in the connection's queue, if it does). */
    #held: string | Uint8Array | null = null;
    #heldBytes = 0;
    #heldStatus = 0;

    constructor(ws: WebSocket<Conn>, binary: boolean) {
      this.ws = ws;
      this.conn = ws.getUserData();
      this.binary = binary;
    }

    /** Send `value` and count the message out (or hold it behind a reply still to come). */
    done(value: Record<string, unknown> | PredictReply, status: number): void {
      const queue = this.conn.queue;
      if (queue.length === 0 || queue[0] === this) {
        // Nothing before it: out now, then the replies behind it that were waiting for it.
        if (queue.length > 0) queue.shift();
        this.waiting = false;
        // A client that left gets nothing (its closed uWS socket must not be touched): count it out.
        if (this.conn.open) {
          this.#hold(value, status, false);
          this.sendHeld();
        } else this.#out(status);
        if (queue.length > 0) {
          flushQueue(this.ws, this.conn);
          noteBuffered(this.ws, this.conn);
        }
        return;
      }
      this.#hold(value, status, true);
      if (this.waiting) this.waiting = false;
      else queue.push(this);
      noteBuffered(this.ws, this.conn);
    }

    deferred(): void {
      if (this.waiting) return; // already in line (its batch's, then its explain's wait)
      this.waiting = true;
      this.conn.queue.push(this);
    }

    gone(): boolean {
      return !this.conn.open;
    }

    sendHeld(): void {
      const payload = this.#held!;
      this.#held = null;
      this.conn.queuedBytes -= this.#heldBytes;
      try {
        sendPayload(this.ws, payload, this.binary);
      } finally {
        this.#out(this.#heldStatus);
      }
    }

    /** Count the message out. */
    #out(status: number): void {
      if (status === 200 && this.op !== "invalid") answered[this.op].inc();
      else counter.inc({ op: this.op, status: String(status) });
      this.conn.running--;
      requestFinished(state);
      schedulePump(this.ws, this.conn);
    }

    /**
     * Encode the reply, and the status the client will get. A reply `queued` to be sent later keeps
     * a copy of its bytes (a predict reply's may sit in a buffer the next reply reuses, and its
     * scores in the batch's), counted in the connection's queued bytes.
     */
    #hold(value: Record<string, unknown> | PredictReply, status: number, queued: boolean): void {
      const format = this.binary ? "msgpack" : "json";
      try {
        const payload = encodeBody(value, format);
        this.#held = queued && typeof payload !== "string" ? payload.slice() : payload;
        this.#heldStatus = status;
      } catch (e) {
        // Only a bug gets here: a reply that cannot be encoded still answers its id.
        logger.error(
          { request_id: this.conn.requestId, id: this.id, err: (e as Error).message },
          "reply could not be encoded",
        );
        const err = arborError("INTERNAL", "internal error");
        this.#held = encodeBody({ id: this.id, ...err.toJSON(), status: err.status }, format);
        this.#heldStatus = err.status;
      }
      if (!queued) return;
      const held = this.#held;
      this.#heldBytes = typeof held === "string" ? Buffer.byteLength(held) : held.length;
      this.conn.queuedBytes += this.#heldBytes;
    }

    answer(value: PredictReply | Record<string, unknown>): void {
      this.done(value instanceof PredictReply ? value.withId(this.id) : { id: this.id, ...value }, 200);
    }

    failed(e: unknown): void {
      const err = toArborError(e);
      if (err.status >= 500)
        logger.warn(
          { request_id: this.conn.requestId, id: this.id, code: err.code, err: err.message },
          "stream message failed",
        );
      this.done({ id: this.id, ...err.toJSON(), status: err.status }, err.status);
    }
  }

  /**
   * Run parked messages from the next check phase, outside uWS's callbacks: a message can now be
   * answered synchronously (a batch run at once), and answering parked messages from inside the
   * `drain` callback, reply after reply, left a reply's tail in uWS's buffer with no writable
   * event to come (the stream then stalled with messages parked; seen 1 in 3 full test runs).
   */
  const schedulePump = (ws: WebSocket<Conn>, conn: Conn): void => {
    if (conn.pumpScheduled) return;
    conn.pumpScheduled = true;
    setImmediate(() => {
      conn.pumpScheduled = false;
      if (conn.open) pump(ws);
    });
  };

  const pump = (ws: WebSocket<Conn>): void => {
    const conn = ws.getUserData();
    if (conn.queue.length > 0) {
      flushQueue(ws, conn);
      noteBuffered(ws, conn);
    }
    while (
      conn.open &&
      conn.parked.length > 0 &&
      conn.running < RUNNING_PER_CONNECTION &&
      unread(ws, conn) < cfg.wsMaxBackpressureBytes
    ) {
      const p = conn.parked.shift()!;
      unpark(conn, [p]);
      core.metrics.wsParked.set(parked);
      run(ws, p.data, p.binary, true);
    }
  };

  /** `accepted`: a parked message, taken in before a shutdown began (served, not refused). */
  const run = (ws: WebSocket<Conn>, data: Uint8Array | string, binary: boolean, accepted: boolean): void => {
    const msg = new Message(ws, binary);
    msg.conn.running++;
    state.inFlight++;
    try {
      const decoded = decodeBody(data, binary ? "msgpack" : "json");
      if (decoded === null || typeof decoded !== "object" || Array.isArray(decoded))
        throw clientError("BAD_REQUEST", "stream: a message must be an object");
      const m = decoded as Record<string, unknown>;
      const id = m["id"];
      if (id !== undefined && id !== null && typeof id !== "string" && typeof id !== "number")
        throw clientError("BAD_REQUEST", "stream: 'id' must be a string or a number");
      msg.id = id ?? null;
      const op = m["op"];
      if (op !== "predict" && op !== "explain")
        throw clientError("BAD_REQUEST", "stream: 'op' must be 'predict' or 'explain'");
      msg.op = op;
      if (state.shuttingDown && !accepted) throw arborError("SHUTTING_DOWN", "the server is shutting down");
      const ref = refOf(m);
      core.scoreTo(op, ref, m, msg);
    } catch (e) {
      msg.failed(e);
    }
  };

  app.ws<Conn>("/v1/stream", {
    // Messages over the configured limit get a per-message 413; only 4x the limit closes the socket
    // (uWS must buffer a whole message before we see it, so some hard cap has to exist).
    maxPayloadLength: cfg.wsMaxPayloadBytes * 4,
    maxBackpressure: Math.max(HARD_BACKPRESSURE_BYTES, cfg.wsMaxBackpressureBytes * 4),
    closeOnBackpressureLimit: 1,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const key = req.getHeader("sec-websocket-key");
      const protocol = req.getHeader("sec-websocket-protocol");
      const extensions = req.getHeader("sec-websocket-extensions");
      // The connection's request id (on its log lines): the client's X-Request-ID, or ours. The 101
      // reply cannot echo it: uWS writes that reply's status and headers itself.
      const requestId = requestIdFrom(req.getHeader("x-request-id"));
      if (state.shuttingDown || sockets.size >= cfg.wsMaxConnections) {
        const err = arborError(
          state.shuttingDown ? "SHUTTING_DOWN" : "TOO_MANY_CONNECTIONS",
          "stream: connection refused",
        );
        res.cork(() => {
          res
            .writeStatus("503 Service Unavailable")
            .writeHeader("content-type", "application/json")
            .end(JSON.stringify(err.toJSON()), true);
        });
        return;
      }
      const conn: Conn = {
        requestId,
        open: true,
        running: 0,
        parked: [],
        parkedBytes: 0,
        pumpScheduled: false,
        noted: 0,
        holder: null,
        queue: [],
        queuedBytes: 0,
      };
      res.upgrade(conn, key, protocol, extensions, context);
    },
    open: (ws) => {
      const conn = ws.getUserData();
      conn.holder = {
        requestId: conn.requestId,
        unsent: () => (conn.open ? unread(ws, conn) : 0),
        drop: () => {
          if (conn.open) ws.close();
        },
      };
      sockets.add(ws);
      gauge.set(sockets.size);
    },
    message: (ws, message, isBinary) => {
      const conn = ws.getUserData();
      if (message.byteLength > cfg.wsMaxPayloadBytes) {
        counter.inc({ op: "invalid", status: "413" });
        const err = clientError(
          "PAYLOAD_TOO_LARGE",
          `stream: the message has ${message.byteLength} bytes, the limit is ${cfg.wsMaxPayloadBytes}`,
        );
        send(ws, { id: null, ...err.toJSON(), status: err.status }, isBinary);
        return;
      }
      // Copy now: uWS neuters the ArrayBuffer when this callback returns. A text frame (JSON) is
      // kept as its text instead (what JSON.parse needs; no off-heap copy).
      const data =
        (isBinary || message.byteLength === 0 ? null : utf8Text(new Uint8Array(message))) ??
        new Uint8Array(message.slice(0));
      // During a shutdown nothing new is parked: run() answers SHUTTING_DOWN at once.
      const park =
        !state.shuttingDown &&
        (conn.parked.length > 0 ||
          conn.running >= RUNNING_PER_CONNECTION ||
          unread(ws, conn) >= cfg.wsMaxBackpressureBytes);
      const size = message.byteLength;
      let refusal: ArborError | null = null;
      if (conn.running + conn.parked.length >= cfg.wsMaxInFlight)
        refusal = clientError(
          "TOO_MANY_IN_FLIGHT",
          `stream: ${conn.running + conn.parked.length} messages in flight on this connection, the limit is ${cfg.wsMaxInFlight}; wait for replies`,
        );
      else if (park && conn.parkedBytes + size > maxParkedBytes)
        refusal = clientError(
          "TOO_MANY_IN_FLIGHT",
          `stream: ${conn.parkedBytes} bytes of messages wait on this connection for their turn, the limit is ${maxParkedBytes} (4 x ARBOR_SERVE_WS_MAX_PAYLOAD_BYTES); wait for replies`,
        );
      else if (park && !requestBytes.take(size))
        refusal = clientError(
          "SERVER_BUSY",
          `stream: the server holds ${requestBytes.limit} bytes of requests (ARBOR_SERVE_BODY_BUDGET_BYTES); retry shortly`,
        );
      if (refusal !== null) {
        // The send buffer only: replies held behind an explain are not the client's to read yet.
        if (ws.getBufferedAmount() >= cfg.wsMaxBackpressureBytes * REFUSE_CLOSE_FACTOR) {
          logger.warn(
            { request_id: conn.requestId, code: refusal.code, buffered: ws.getBufferedAmount() },
            "stream: messages refused and replies unread; closing",
          );
          ws.end(1008, "too many messages in flight");
          return;
        }
        counter.inc({ op: "invalid", status: "503" });
        send(ws, { id: idOf(data, isBinary), ...refusal.toJSON(), status: refusal.status }, isBinary);
        return;
      }
      if (park) {
        conn.parked.push({ data, binary: isBinary, size });
        conn.parkedBytes += size;
        parked++;
        core.metrics.wsParked.set(parked);
        return;
      }
      run(ws, data, isBinary, false);
    },
    drain: (ws) => {
      const conn = ws.getUserData();
      noteBuffered(ws, conn);
      schedulePump(ws, conn);
    },
    close: (ws) => {
      const conn = ws.getUserData();
      conn.open = false;
      unpark(conn, conn.parked);
      core.metrics.wsParked.set(parked);
      conn.parked.length = 0;
      // Replies held for a client that left: counted out now (those still waiting, when they come).
      flushQueue(ws, conn);
      conn.noted = 0;
      if (conn.holder !== null) replies.note(conn.holder, 0);
      sockets.delete(ws);
      gauge.set(sockets.size);
    },
  });

  return {
    runParked: () => {
      for (const ws of sockets) {
        const conn = ws.getUserData();
        const held = conn.parked.splice(0);
        unpark(conn, held);
        for (const p of held) run(ws, p.data, p.binary, true);
      }
      core.metrics.wsParked.set(parked);
    },
    closeAll: () => {
      for (const ws of [...sockets]) ws.end(1001, "server shutting down");
    },
    count: () => sockets.size,
  };
}
