/**
 * The server without sockets: route a request (method, path, headers, body bytes) to a reply
 * (status, value). The uWebSockets.js transport and the WebSocket handler both call into this, and
 * it can be exercised directly. Errors become `{error: {code, message}}` (V1) or
 * `{error, code}` (V2) with the status of their code in shared/errors.ts.
 */
import { type ArborError, toArborError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { NAME_PATTERN, type ServeConfig } from "../config.ts";
import { explainRows, importanceOf } from "../explain.ts";
import type { ServeMetrics } from "../metrics.ts";
import type { BatchTarget, BatchWaiter, RunOutputs } from "../model-cache/batcher.ts";
import type { ModelCache } from "../model-cache/cache.ts";
import type { ModelSlot } from "../model-cache/slot.ts";
import { clientError } from "./client-error.ts";
import { decodeBody, type Format, RawBody, requestFormat } from "./codec.ts";
import { describeModel, listModels } from "./describe.ts";
import { rowsScratch } from "./json-rows.ts";
import { formatPredictions, PredictReply } from "./predictions.ts";
import { checkExplainRows, fillRowsFromBody, rowsFromBody } from "./rows.ts";
import { v2Infer, v2ModelMetadata } from "./v2.ts";
import { readV2Rows, V2Reply, v2RowsId } from "./v2-json.ts";

/** A request as the transport hands it over (everything copied out of uWS already). */
export interface CoreRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  contentType: string;
  /**
   * The body bytes; a non-empty JSON body in bytes the transport lends ({@link RawBody}); its text
   * (callers that decoded it already); or null without a body.
   */
  body: Uint8Array | string | RawBody | null;
  requestId: string;
  /** `Inference-Header-Content-Length` (KServe V2 binary tensor extension), or null. */
  inferenceHeaderLength: number | null;
  /** Send the reply: {@link ServeCore.handle} calls it exactly once per request. */
  respond(reply: CoreReply): void;
  /** The client has left (a transport that can tell sets it). */
  readonly aborted?: boolean;
}

/** A reply: status, a value to encode (or raw text), and metric labels. */
export interface CoreReply {
  status: number;
  body: unknown;
  /** V2 binary tensor extension reply: JSON header then the output blobs. */
  binary?: { header: string; blobs: Uint8Array[] };
  /** Raw text body with its content type (e.g. /metrics), sent as is. */
  text?: { contentType: string; value: string };
  /** One more response header (`Allow` of a 405, `Upgrade` of a 426), lower-case name. */
  header?: { name: string; value: string };
  route: string;
  model: string;
  version: string;
}

/** Scoring routes {@link ServeCore} keeps parsed, at most. */
const MAX_SCORING_ROUTES = 1024;

/** A parsed scoring path. Shared by every request for that path: read only. */
interface ScoringRoute {
  readonly ref: Readonly<ModelRef>;
  /** V1 predict or explain, or V2 infer. */
  readonly verb: "predict" | "explain" | "infer";
}

/** Which model a request names. */
export interface ModelRef {
  name: string;
  version: number | null;
  label: string | null;
}

/** Where a V1 predict's or explain's outcome goes ({@link ServeCore.scoreTo}): exactly one call. */
export interface ScoreSink {
  /**
   * The reply body and the version that produced it: a predict reply stays a {@link PredictReply}
   * until the transport knows the wire format; explain's is the explanations object.
   */
  answer(value: PredictReply | V2Reply | Record<string, unknown>, version: number): void;
  failed(e: unknown): void;
  /**
   * The reply will come later: its rows wait in a micro-batch, then (an explain) its TreeSHAP runs
   * on another thread; replies of later requests could come first. A stream uses it to keep its
   * order. Called once or twice.
   */
  deferred?(): void;
  /** Whether the client has left: work not started for it can be dropped. */
  gone?(): boolean;
}

/** What an explain needs besides the scores: its own copy of the rows, and `top_k`. */
interface ExplainInput {
  data: Float32Array;
  rows: number;
  topK: number | null;
}

/**
 * A V1 predict or explain from its batch's run to its sink: callbacks, not promises (see
 * {@link BatchWaiter}); one object per request where a promise chain was five promises, their
 * reactions and closures. Sinks are answered in the batch's commit order, so a stream's replies
 * keep the order its messages came in, predict and explain alike.
 */
class ScoreJob implements BatchWaiter {
  readonly #slot: ModelSlot;
  readonly #sink: ScoreSink;
  readonly #explain: ExplainInput | null;
  readonly #log: Logger;
  /** A V2 infer's: the request's id (null: none); undefined for a V1 predict or explain. */
  readonly #v2Id: string | null | undefined;
  #settled = false;

  constructor(
    slot: ModelSlot,
    sink: ScoreSink,
    explain: ExplainInput | null,
    log: Logger,
    v2Id?: string | null,
  ) {
    this.#slot = slot;
    this.#sink = sink;
    this.#explain = explain;
    this.#log = log;
    this.#v2Id = v2Id;
  }

  scored(outputs: RunOutputs, offset: number, rows: number): void {
    const slot = this.#slot;
    const slice = { outputs, offset, rows, batchRows: outputs.rows };
    const x = this.#explain;
    if (x === null) {
      const id = this.#v2Id;
      const value =
        id === undefined
          ? new PredictReply(slot.predictWriter, slice)
          : new V2Reply(slot.v2Writer, slice, slot.v2Outputs, id, slot.name, slot.version);
      this.#settle();
      this.#sink.answer(value, slot.version);
      return;
    }
    // TreeSHAP runs on the explain thread: the predictions are read now (the slice is in the
    // batch's buffers, which the next run reuses), the reply comes when the thread answers, and
    // the slot stays held until then.
    const predictions = formatPredictions(slot.signature, slice);
    const sink = this.#sink;
    sink.deferred?.();
    const gone = sink.gone === undefined ? undefined : () => sink.gone!();
    explainRows(slot, x.data, x.rows, x.topK, predictions, gone).then(
      (explanations) => {
        this.#settle();
        try {
          this.#sink.answer({ explanations, model: slot.name, version: slot.version }, slot.version);
        } catch (e) {
          this.failed(e);
        }
      },
      (e: unknown) => this.failed(e),
    );
  }

  failed(e: unknown): void {
    if (this.#settled) {
      // The sink had its reply (and threw while sending it): nothing left to tell it.
      this.#log.error({ err: (e as Error)?.stack ?? String(e) }, "sending a reply failed");
      return;
    }
    this.#settle();
    this.#sink.failed(e);
  }

  #settle(): void {
    this.#settled = true;
    this.#slot.release();
  }
}

/**
 * The reply to one HTTP request while it is being built; it sends itself (`req.respond`) once
 * complete, also as the sink of a V1 predict or explain (no separate object per request for that).
 */
class PendingReply implements CoreReply, ScoreSink {
  status = 200;
  body: unknown = null;
  binary: CoreReply["binary"] = undefined;
  text: CoreReply["text"] = undefined;
  header: CoreReply["header"] = undefined;
  route = "unknown";
  model = "";
  version = "";
  readonly #core: ServeCore;
  readonly #req: CoreRequest;

  constructor(core: ServeCore, req: CoreRequest) {
    this.#core = core;
    this.#req = req;
  }

  send(): void {
    this.#req.respond(this);
  }

  answer(value: PredictReply | V2Reply | Record<string, unknown>, version: number): void {
    this.version = String(version);
    this.body = value;
    this.send();
  }

  failed(e: unknown): void {
    this.#core.failReply(this.#req, this, e);
    this.send();
  }

  gone(): boolean {
    return this.#req.aborted === true;
  }
}

/** {@link ServeCore}'s route result for a request whose reply a job will send. */
const DEFERRED = Symbol("deferred");

/** Build facts for GET /version and GET /v2. */
export interface BuildInfo {
  name: string;
  version: string;
  node: string;
  onnxruntime: string;
  pid: number;
}

/** A version as a path or message names it (`3` or `v3`); VERSION_NOT_FOUND for anything else. */
export function parseVersion(raw: string): number {
  const v = /^v?([0-9]{1,9})$/.exec(raw);
  if (v === null || Number(v[1]) < 1)
    throw clientError("VERSION_NOT_FOUND", `resolve model: bad version '${raw.slice(0, 40)}'`);
  return Number(v[1]);
}

/** A model or label name; MODEL_NOT_FOUND / LABEL_NOT_FOUND when it cannot be one. */
export function checkName(raw: string, what: "model" | "label"): string {
  if (!NAME_PATTERN.test(raw)) {
    throw clientError(
      what === "model" ? "MODEL_NOT_FOUND" : "LABEL_NOT_FOUND",
      `resolve model: bad ${what} name '${raw.slice(0, 40)}'`,
    );
  }
  return raw;
}

/** Parse `{name}[/versions/{v}|/labels/{label}]` segments. */
function parseModelRef(segs: readonly string[]): ModelRef | null {
  if (segs.length === 1) return { name: checkName(segs[0], "model"), version: null, label: null };
  if (segs.length === 3 && segs[1] === "versions") {
    return { name: checkName(segs[0], "model"), version: parseVersion(segs[2]), label: null };
  }
  if (segs.length === 3 && segs[1] === "labels") {
    return { name: checkName(segs[0], "model"), version: null, label: checkName(segs[2], "label") };
  }
  return null;
}

/** The request handling core. */
export class ServeCore {
  readonly cache: ModelCache;
  readonly config: ServeConfig;
  readonly metrics: ServeMetrics;
  readonly logger: Logger;
  readonly build: BuildInfo;
  readonly defaultLabel: string;
  /**
   * Parsed `/v1/models/{ref}:predict|explain` paths by path: clients repeat the same few URLs, and
   * parsing one (split, slices, the model ref) is ~250 bytes of garbage per request, which sets
   * how often a young-generation GC stalls the requests in flight. Valid routes only; cleared
   * when full, so random names cannot grow it.
   */
  readonly #scoringRoutes = new Map<string, ScoringRoute>();

  constructor(
    cache: ModelCache,
    config: ServeConfig,
    metrics: ServeMetrics,
    logger: Logger,
    build: BuildInfo,
  ) {
    this.cache = cache;
    this.config = config;
    this.metrics = metrics;
    this.logger = logger;
    this.build = build;
    this.defaultLabel = config.labels[0] ?? "production";
  }

  /** Acquire the slot a reference names (label default: the first followed label). */
  acquire(ref: ModelRef): ModelSlot | Promise<ModelSlot> {
    // Explicit versions load on demand, also of models no label points at.
    if (ref.version !== null) return this.cache.acquireVersion(ref.name, ref.version);
    return this.cache.acquireLabel(ref.name, ref.label ?? this.defaultLabel);
  }

  /** Decode a body by content type. */
  decode(req: CoreRequest): unknown {
    const format: Format = requestFormat(req.contentType);
    if (req.body === null) throw clientError("MALFORMED_BODY", "decode body: the body is empty");
    return decodeBody(req.body, format);
  }

  /**
   * Predict or explain: validate the rows into the micro-batch of the slot `ref` names, score, and
   * tell `sink` (every failure too: this never throws). A followed label's slot is at hand, so the
   * rows join the batch before this returns: stream messages reach it in the order they came.
   */
  scoreTo(verb: "predict" | "explain", ref: ModelRef, body: unknown, sink: ScoreSink): void {
    let got: ModelSlot | Promise<ModelSlot>;
    try {
      got = this.acquire(ref);
    } catch (e) {
      sink.failed(malformedFirst(body, e));
      return;
    }
    if (got instanceof Promise) {
      if (body instanceof RawBody) body.keep();
      got.then(
        (slot) => this.#scoreOn(verb, slot, body, sink),
        (e: unknown) => sink.failed(malformedFirst(body, e)),
      );
    } else this.#scoreOn(verb, got, body, sink);
  }

  #scoreOn(verb: "predict" | "explain", slot: ModelSlot, body: unknown, sink: ScoreSink): void {
    let target: BatchTarget;
    let rows: number;
    let explain: ExplainInput | null = null;
    try {
      if (verb === "predict") {
        // The rows go straight into the micro-batch's input matrix.
        const m = fillRowsFromBody(slot.plan, body, this.config.maxRows, slot);
        target = m.target;
        rows = m.rows;
      } else {
        // Explain keeps its own copy of the rows: TreeSHAP reads them after the run.
        if (body instanceof RawBody) body = body.parse();
        const m = rowsFromBody(slot.plan, body, this.config.maxRows);
        checkExplainRows(m.rows, this.config.maxExplainRows, "explain");
        const topK = (body as Record<string, unknown>)["top_k"];
        if (topK !== undefined && (typeof topK !== "number" || !Number.isInteger(topK) || topK < 1)) {
          throw clientError("BAD_REQUEST", "explain: 'top_k' must be a positive integer");
        }
        explain = { data: m.data, rows: m.rows, topK: topK ?? null };
        rows = m.rows;
        target = slot.reserve(rows);
        target.data.set(m.data.subarray(0, rows * slot.plan.width), target.at * slot.plan.width);
      }
    } catch (e) {
      slot.release();
      sink.failed(e);
      return;
    }
    sink.deferred?.();
    slot.commitTo(target, rows, new ScoreJob(slot, sink, explain, this.logger));
  }

  /**
   * Route one HTTP request and send its reply with `req.respond`, once, now or later. Errors
   * become replies.
   */
  handle(req: CoreRequest): void {
    const reply = new PendingReply(this, req);
    let pending: Promise<void> | typeof DEFERRED | undefined;
    try {
      // #route is a plain function: only the branches that wait return a promise (a big async
      // function allocates a generator with room for all of its registers on every call).
      pending = this.#route(req, reply);
    } catch (e) {
      this.failReply(req, reply, e);
    }
    if (pending === DEFERRED) return;
    if (pending === undefined) reply.send();
    else
      pending.then(
        () => reply.send(),
        (e: unknown) => reply.failed(e),
      );
  }

  /**
   * Turn a routing or handling error into the reply (status, body, metric labels) and log it.
   * Public for {@link PendingReply}, which fails itself when a scored request fails.
   */
  failReply(req: CoreRequest, reply: CoreReply, e: unknown): void {
    const err = toArborError(e);
    reply.status = err.status;
    // The model label of a failed request comes from the URL: keep it only for a model this
    // server follows, so that requests for random names cannot create unbounded metric series.
    if (reply.model !== "" && !this.cache.hasModel(reply.model)) reply.model = "";
    reply.body = errorBody(req.path, err);
    if (err.code === "METHOD_NOT_ALLOWED" && typeof err.details?.["allow"] === "string")
      reply.header = { name: "allow", value: err.details["allow"] };
    else if (err.code === "UPGRADE_REQUIRED") reply.header = { name: "upgrade", value: "websocket" };
    if (err.code === "INTERNAL") {
      this.logger.error(
        {
          request_id: req.requestId,
          code: err.code,
          err: err.message,
          stack: (err.cause as Error | undefined)?.stack,
        },
        "request failed",
      );
    } else if (err.status >= 500) {
      this.logger.warn({ request_id: req.requestId, code: err.code, err: err.message }, "request failed");
    } else
      this.logger.debug({ request_id: req.requestId, code: err.code, err: err.message }, "request refused");
  }

  #route(req: CoreRequest, reply: PendingReply): Promise<void> | typeof DEFERRED | undefined {
    const path = req.path;
    const scoring = this.#scoringRoute(path);
    if (scoring !== null) {
      return scoring.verb === "infer"
        ? this.#infer(req, reply, scoring.ref)
        : this.#score(req, reply, scoring.ref, scoring.verb);
    }
    const get = req.method === "get" || req.method === "head";
    const segs = path.split("/");
    // segs[0] is "" (leading slash).
    if (segs[1] === "v1" && segs[2] === "models") {
      if (segs.length === 3 || (segs.length === 4 && segs[3] === "")) {
        reply.route = "/v1/models";
        if (!get) throw methodNotAllowed(req, GET);
        reply.body = listModels(this);
        return;
      }
      const rest = segs.slice(3);
      const last = rest[rest.length - 1];
      const colon = last.indexOf(":");
      if (colon >= 0) {
        const verb = last.slice(colon + 1);
        rest[rest.length - 1] = last.slice(0, colon);
        // Valid scoring routes were taken above; this reports what is wrong with the others.
        const ref = parseModelRef(rest);
        if (ref === null || (verb !== "predict" && verb !== "explain")) throw routeNotFound(req);
        return this.#score(req, reply, ref, verb);
      }
      if (last === "importance") {
        const ref = parseModelRef(rest.slice(0, -1));
        if (ref === null) throw routeNotFound(req);
        reply.route = "/v1/models/:name/importance";
        reply.model = ref.name;
        if (!get) throw methodNotAllowed(req, GET);
        return this.#importance(ref, reply);
      }
      if (rest.length === 1) {
        const ref = parseModelRef(rest);
        if (ref === null) throw routeNotFound(req);
        reply.route = "/v1/models/:name";
        reply.model = ref.name;
        if (!get) throw methodNotAllowed(req, GET);
        reply.body = describeModel(this, ref.name);
        return;
      }
      throw routeNotFound(req);
    }
    if (segs[1] === "v2") return this.#routeV2(req, segs, reply);
    if (segs.length === 2) {
      const p = segs[1];
      if (p === "healthz" || p === "readyz" || p === "version" || p === "metrics") {
        reply.route = path;
        if (!get) throw methodNotAllowed(req, GET);
        if (p === "healthz") reply.body = { status: "ok" };
        else if (p === "readyz") {
          const ready = this.cache.ready();
          reply.status = ready ? 200 : 503;
          reply.body = { ready };
        } else if (p === "version") reply.body = this.build;
        else {
          return this.metrics.exposition().then((value) => {
            // prom-client prints NaN as "Nan" (event-loop lag with no samples since the last
            // scrape); the text format spells it NaN, and strict parsers refuse anything else.
            reply.text = {
              contentType: this.metrics.registry.contentType,
              value: value.replace(/ Nan$/gm, " NaN"),
            };
          });
        }
        return;
      }
    }
    if (path === "/v1/stream") {
      reply.route = path;
      throw clientError("UPGRADE_REQUIRED", "route: /v1/stream is a WebSocket: send a WebSocket upgrade");
    }
    throw routeNotFound(req);
  }

  /** A valid `/v1/models/{ref}:predict|explain` path, parsed (memoized), or null for any other. */
  #scoringRoute(path: string): ScoringRoute | null {
    const known = this.#scoringRoutes.get(path);
    if (known !== undefined) return known;
    let ref: ModelRef | null;
    let verb: ScoringRoute["verb"];
    try {
      if (path.startsWith("/v2/models/") && path.endsWith("/infer")) {
        verb = "infer";
        ref = parseModelRef(path.slice("/v2/models/".length, -"/infer".length).split("/"));
        if (ref?.label !== null) return null; // V2 has no labels: #routeV2 reports it
      } else {
        if (!path.startsWith("/v1/models/")) return null;
        const colon = path.lastIndexOf(":");
        if (colon < 0) return null;
        const v = path.slice(colon + 1);
        if (v !== "predict" && v !== "explain") return null;
        verb = v;
        ref = parseModelRef(path.slice("/v1/models/".length, colon).split("/"));
      }
    } catch {
      return null; // a bad name or version: #route reports it
    }
    if (ref === null) return null;
    const route: ScoringRoute = { ref, verb };
    if (this.#scoringRoutes.size >= MAX_SCORING_ROUTES) this.#scoringRoutes.clear();
    this.#scoringRoutes.set(path, route);
    return route;
  }

  /** POST …:predict / …:explain for a parsed model reference. */
  #score(req: CoreRequest, reply: PendingReply, ref: ModelRef, verb: "predict" | "explain"): typeof DEFERRED {
    reply.route = verb === "predict" ? "/v1/models/:name:predict" : "/v1/models/:name:explain";
    reply.model = ref.name;
    if (req.method !== "post") throw methodNotAllowed(req, POST);
    // A JSON or msgpack body's rows are read once the model is known, from its bytes (json-rows.ts).
    const body = req.body instanceof RawBody ? req.body : this.decode(req);
    this.scoreTo(verb, ref, body, reply); // the reply sends itself
    return DEFERRED;
  }

  async #importance(ref: ModelRef, reply: CoreReply): Promise<void> {
    const slot = await this.acquire(ref);
    try {
      reply.version = String(slot.version);
      reply.body = { importance: importanceOf(slot), model: slot.name, version: slot.version };
    } finally {
      slot.release();
    }
  }

  /**
   * POST `/v2/models/{name}[/versions/{v}]/infer`. A JSON body's rows are read straight from its
   * bytes (v2-json.ts) into the micro-batch when its version is at hand and the body is the common
   * one, and the reply is written when the batch has run, as a V1 predict's; anything else is
   * decoded and validated by v2.ts. A malformed body is refused as such whatever the model, as when
   * every body was decoded first.
   */
  #infer(req: CoreRequest, reply: PendingReply, ref: ModelRef): Promise<void> | typeof DEFERRED {
    reply.route = "/v2/models/:name/infer";
    reply.model = ref.name;
    if (req.method !== "post") throw methodNotAllowed(req, POST);
    const raw = req.body;
    // A version that must load first goes the general way too, which decodes the body first: a
    // malformed body is refused before it loads anything (or evicts another version for it).
    if (
      req.inferenceHeaderLength !== null ||
      !(raw instanceof RawBody) ||
      raw.format !== "json" ||
      (ref.version !== null && !this.cache.isLoaded(ref.name, ref.version))
    )
      return this.#inferDecoded(req, reply, ref);
    let got: ModelSlot | Promise<ModelSlot>;
    try {
      got = this.acquire(ref);
    } catch (e) {
      throw malformedFirst(raw, e);
    }
    if (got instanceof Promise) {
      // Not expected (a loaded version is acquired at once, a label's too); handled all the same.
      raw.keep();
      return got.then(
        (slot) => this.#inferParsed(req, reply, slot, raw),
        (e: unknown) => {
          throw malformedFirst(raw, e);
        },
      );
    }
    const slot = got;
    const bytes = raw.bytes;
    const rows = bytes === null ? -1 : readV2Rows(slot.plan, bytes, this.config.maxRows);
    if (rows < 0) return this.#inferParsed(req, reply, slot, raw);
    try {
      reply.version = String(slot.version);
      const target = slot.reserveAll(rows);
      target.data.set(rowsScratch().subarray(0, rows * slot.plan.width), target.at * slot.plan.width);
      slot.commitAllTo(target, rows, new ScoreJob(slot, reply, null, this.logger, v2RowsId()));
    } catch (e) {
      slot.release();
      throw e;
    }
    return DEFERRED;
  }

  /**
   * A V2 infer on a slot at hand, the general way (v2.ts): `body` decoded, or a JSON body still to
   * decode (a malformed one releases the slot too). Sets the reply.
   */
  async #inferParsed(
    req: CoreRequest,
    reply: CoreReply,
    slot: ModelSlot,
    body: RawBody | unknown,
    binary: Uint8Array | null = null,
  ): Promise<void> {
    try {
      const value = body instanceof RawBody ? body.parse() : body;
      reply.version = String(slot.version);
      setInferReply(reply, await v2Infer(this, slot, value, binary, () => req.aborted === true));
    } finally {
      slot.release();
    }
  }

  /** A V2 infer with a msgpack body or the binary tensor extension (decoded before the model is looked up). */
  async #inferDecoded(req: CoreRequest, reply: CoreReply, ref: ModelRef): Promise<void> {
    let body: unknown;
    let binary: Uint8Array | null = null;
    const hl = req.inferenceHeaderLength;
    if (hl !== null) {
      // Binary tensor extension: the JSON header, then the input blobs (any Content-Type). The
      // transport hands over NaN for a header that is not decimal digits; here: a safe integer
      // within the body.
      if (!(req.body instanceof Uint8Array) || !Number.isSafeInteger(hl) || hl < 1 || hl > req.body.length) {
        throw clientError("BAD_REQUEST", "infer: Inference-Header-Content-Length does not fit the body");
      }
      body = decodeBody(req.body.subarray(0, hl), "json");
      binary = req.body.subarray(hl);
    } else body = this.decode(req);
    return this.#inferParsed(req, reply, await this.acquire(ref), body, binary);
  }

  async #routeV2(req: CoreRequest, segs: string[], reply: CoreReply): Promise<void> {
    const get = req.method === "get" || req.method === "head";
    if (segs.length === 2 || (segs.length === 3 && segs[2] === "")) {
      reply.route = "/v2";
      if (!get) throw methodNotAllowed(req, GET);
      reply.body = {
        name: this.build.name,
        version: this.build.version,
        extensions: ["binary_tensor_data", "treeshap_output"],
      };
      return;
    }
    if (segs[2] === "health" && segs.length === 4 && (segs[3] === "live" || segs[3] === "ready")) {
      reply.route = `/v2/health/${segs[3]}`;
      if (!get) throw methodNotAllowed(req, GET);
      if (segs[3] === "live") reply.body = { live: true };
      else {
        const ready = this.cache.ready();
        reply.status = ready ? 200 : 503;
        reply.body = { ready };
      }
      return;
    }
    if (segs[2] !== "models" || segs.length < 4) throw routeNotFound(req);
    const rest = segs.slice(3);
    // `/v2/models/` and `/v2/models/{name}/…/`: no such route (not a model named '').
    if (rest[rest.length - 1] === "") throw routeNotFound(req);
    let action: "metadata" | "ready" | "infer" = "metadata";
    if (rest[rest.length - 1] === "ready" || rest[rest.length - 1] === "infer") {
      action = rest.pop() as "ready" | "infer";
    }
    const ref = parseModelRef(rest);
    if (ref === null || ref.label !== null) throw routeNotFound(req);
    reply.route = `/v2/models/:name${action === "metadata" ? "" : `/${action}`}`;
    reply.model = ref.name;
    if (action === "infer") {
      // #route sends every infer path it can parse to #infer; here only as a fallback.
      if (req.method !== "post") throw methodNotAllowed(req, POST);
      return this.#inferDecoded(req, reply, ref);
    }
    if (!get) throw methodNotAllowed(req, GET);
    const slot = await this.acquire(ref);
    try {
      reply.version = String(slot.version);
      reply.body = action === "ready" ? { name: ref.name, ready: true } : await v2ModelMetadata(this, slot);
    } finally {
      slot.release();
    }
  }
}

/** An infer's reply: JSON (or msgpack), or a JSON header and the binary extension's blobs. */
function setInferReply(reply: CoreReply, out: Awaited<ReturnType<typeof v2Infer>>): void {
  if (out.blobs.length > 0) reply.binary = { header: JSON.stringify(out.value), blobs: out.blobs };
  else reply.body = out.value;
}

/**
 * The error of a request that names a model it cannot have: a JSON or msgpack body not parsed yet (its rows
 * are read with the model's features, json-rows.ts, msgpack-rows.ts) is checked first, so that a malformed body is
 * refused as such whatever the model, as when every body was parsed before the model was looked up.
 */
function malformedFirst(body: unknown, e: unknown): unknown {
  if (!(body instanceof RawBody)) return e;
  try {
    body.parse();
    return e;
  } catch (bad) {
    return bad;
  }
}

/** An error reply body: `{error, code}` under /v2 (KServe V2), `{error: {code, message}}` elsewhere. */
export function errorBody(path: string, err: ArborError): unknown {
  return path.startsWith("/v2") ? { error: err.message, code: err.code } : err.toJSON();
}

function routeNotFound(req: CoreRequest): ArborError {
  return clientError(
    "ROUTE_NOT_FOUND",
    `route: no route ${req.method.toUpperCase()} ${req.path.slice(0, 200)}`,
  );
}

/** The `Allow` header values of our routes. */
const GET = "GET, HEAD";
const POST = "POST";

function methodNotAllowed(req: CoreRequest, allow: typeof GET | typeof POST): ArborError {
  return clientError(
    "METHOD_NOT_ALLOWED",
    `route: ${req.method.toUpperCase()} is not allowed on ${req.path.slice(0, 200)} (only ${allow})`,
    { details: { allow } },
  );
}
