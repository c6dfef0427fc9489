/** The serve tier's Prometheus metrics, on one registry per process (shared/metrics.ts). */
import { AggregatorRegistry, Gauge as PromGauge } from "prom-client";
import {
  BATCH_BUCKETS,
  Counter,
  counter,
  createMetricsRegistry,
  type Gauge,
  gauge,
  type Histogram,
  histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "../shared/metrics.ts";

type RequestLabels = "route" | "model" | "version" | "status";

/** One label set of a {@link LatencyHistogram}: plain counters, no hashing per observation. */
class LatencySeries {
  readonly labels: Readonly<Record<string, string>>;
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly #bounds: readonly number[];

  constructor(labels: Record<string, string>, bounds: readonly number[]) {
    this.labels = labels;
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

/**
 * The request latency histogram, exported in Prometheus' histogram format through the registry's
 * custom-metric interface (`name`, `get()`). prom-client's labelled child re-validates and re-hashes
 * the label set on every `observe` (~0.5 µs); here a request adds to a cached series directly.
 */
export class LatencyHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, LatencySeries>();

  constructor(name: string, help: string, bounds: readonly number[] = LATENCY_BUCKETS) {
    this.name = name;
    this.help = help;
    this.#bounds = [...bounds];
  }

  /** The series of one label set, created on first use (the caller caches it). */
  series(key: string, labels: Record<string, string>): LatencySeries {
    let s = this.#series.get(key);
    if (s === undefined) {
      s = new LatencySeries(labels, this.#bounds);
      this.#series.set(key, s);
    }
    return s;
  }

  /** prom-client's metric interface: cumulative buckets, sum and count per series. */
  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i <= this.#bounds.length; i++) {
        acc += s.counts[i];
        const le = i < this.#bounds.length ? this.#bounds[i] : "+Inf";
        values.push({ labels: { ...s.labels, le }, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Stop exporting a series. */
  remove(key: string): void {
    this.#series.delete(key);
  }

  /** prom-client calls this on `registry.resetMetrics()`. */
  reset(): void {
    for (const s of this.#series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

interface StatsEntry {
  labels: Record<RequestLabels, string>;
  pending: number;
  /** The scrape count when its version was unloaded (it goes after the next scrape), or -1. */
  retired: number;
  count: { inc(n: number): void };
  latency: LatencySeries;
}

/**
 * Per-request accounting with the labelled children cached: prom-client's `labels()` and a
 * counter's `inc()` hash the label set on every call (~0.6 µs each here). Counts accumulate in a
 * plain integer and reach the counter when /metrics is scraped (the counter's `collect` hook).
 */
export class RequestStats {
  readonly #map = new Map<string, StatsEntry>();
  /** Scrapes so far (flush calls). */
  #scrapes = 0;
  #requests: Counter<RequestLabels> | null = null;
  readonly #latency: LatencyHistogram;
  /** The label set of the previous observation and its entry. */
  #last: StatsEntry | null = null;
  #lastRoute = "";
  #lastModel = "";
  #lastVersion = "";
  #lastStatus = 0;

  constructor(latency: LatencyHistogram) {
    this.#latency = latency;
  }

  /** Connect the request counter (created after this object, since its collect hook calls flush). */
  bind(requests: Counter<RequestLabels>): void {
    this.#requests = requests;
  }

  /** Count one request and record its latency. */
  observe(route: string, model: string, version: string, status: number, seconds: number): void {
    // Under load most requests repeat the previous label set: comparing four short strings costs
    // less than building and hashing the key string.
    const last = this.#last;
    if (
      last !== null &&
      status === this.#lastStatus &&
      route === this.#lastRoute &&
      model === this.#lastModel &&
      version === this.#lastVersion
    ) {
      last.pending++;
      last.latency.observe(seconds);
      return;
    }
    const key = `${route}|${model}|${version}|${status}`;
    let e = this.#map.get(key);
    if (e !== undefined)
      e.retired = -1; // its version is back
    else {
      // The label values are bounded where they are set: routes are a fixed set, unknown paths
      // share "unknown", a served request names a loaded version (whose series go when it is
      // released: see forget), and a failed one keeps its model name only for a followed model
      // (service.ts handle()).
      const labels = { route, model, version, status: String(status) };
      e = {
        labels,
        pending: 0,
        retired: -1,
        count: this.#requests!.labels(labels),
        latency: this.#latency.series(key, labels),
      };
      this.#map.set(key, e);
    }
    this.#last = e;
    this.#lastRoute = route;
    this.#lastModel = model;
    this.#lastVersion = version;
    this.#lastStatus = status;
    e.pending++;
    e.latency.observe(seconds);
  }

  /**
   * A version is no longer loaded: its series are exported by the next scrape (so that its last
   * requests are counted) and then removed, or a server that promotes new versions for months
   * would grow its /metrics without end. One observed again before then keeps its series.
   */
  forget(model: string, version: string): void {
    for (const e of this.#map.values())
      if (e.labels.model === model && e.labels.version === version) e.retired = this.#scrapes;
    this.#last = null; // the next observation goes through the map, which un-retires
  }

  /** Move pending counts into the counter (at every scrape); drop series retired a scrape ago. */
  flush(): void {
    for (const [key, e] of this.#map) {
      if (e.retired >= 0 && e.retired < this.#scrapes) {
        // Exported by the scrape after its retirement, with nothing observed since: it goes.
        this.#map.delete(key);
        this.#requests!.remove(e.labels);
        this.#latency.remove(key);
        continue;
      }
      if (e.pending > 0) {
        e.count.inc(e.pending);
        e.pending = 0;
      }
    }
    this.#scrapes++;
  }
}

/** Every metric the server exports. */
export interface ServeMetrics {
  registry: Registry;
  /**
   * The text GET /metrics answers: this process's registry, or, in a cluster worker, every
   * worker's metrics gathered by the primary (see {@link clusterExposition}).
   */
  exposition: () => Promise<string>;
  /** Use `stats.observe` per request; `requests` is filled from it at scrape time. */
  stats: RequestStats;
  requests: Counter<"route" | "model" | "version" | "status">;
  latency: LatencyHistogram;
  batchRows: Histogram<never>;
  loads: Counter<"model" | "result">;
  /** Rounds of label pointer checks, by whether the store answered every one. */
  labelRefreshes: Counter<"result">;
  /** Unix time (s) of the last round of label pointer checks the store answered in full. */
  labelRefreshLastOk: Gauge<never>;
  evictions: Counter<"model">;
  cacheBytes: Gauge<never>;
  cacheEntries: Gauge<never>;
  bodyBytesHeld: Gauge<never>;
  replyBytesUnsent: Gauge<never>;
  slowReadersClosed: Counter<never>;
  wsConnections: Gauge<never>;
  wsParked: Gauge<never>;
  /** Read at scrape time: the stream route sets `count` (messages taken in and not answered yet). */
  wsInFlight: { count: () => number };
  wsMessages: Counter<"op" | "status">;
}

/** Create the metrics on a fresh registry. */
export function createServeMetrics(labels: Record<string, string> = {}): ServeMetrics {
  const registry = createMetricsRegistry({ labels });
  const latency = new LatencyHistogram(
    "arbor_serve_request_duration_seconds",
    "HTTP request latency (first body byte to response)",
  );
  const stats = new RequestStats(latency);
  const requests = new Counter<RequestLabels>({
    name: "arbor_serve_requests_total",
    help: "HTTP requests by route, model, version and status",
    labelNames: ["route", "model", "version", "status"],
    registers: [registry],
    collect: () => stats.flush(),
  });
  stats.bind(requests);
  // After the counter: a scrape runs its collect hook (which retires old series) first.
  registry.registerMetric(latency as never);
  const wsInFlight = { count: () => 0 };
  new PromGauge({
    name: "arbor_serve_ws_in_flight_messages",
    help: "WebSocket messages taken in and not answered yet (scored, on the explain thread, or their replies held in order); parked ones not included",
    registers: [registry],
    collect() {
      this.set(wsInFlight.count());
    },
  });
  return {
    registry,
    exposition: () => registry.metrics(),
    stats,
    requests,
    latency,
    batchRows: histogram(
      registry,
      "arbor_serve_batch_rows",
      "rows per ORT run (micro-batches included)",
      [],
      BATCH_BUCKETS,
    ),
    loads: counter(registry, "arbor_serve_model_loads_total", "model version loads by result (ok, failed)", [
      "model",
      "result",
    ]),
    labelRefreshes: counter(
      registry,
      "arbor_serve_label_refreshes_total",
      "rounds of label pointer checks (one per poll, or file event) by result: ok, or failed when the store could not be read for some",
      ["result"],
    ),
    labelRefreshLastOk: gauge(
      registry,
      "arbor_serve_label_refresh_last_ok_timestamp_seconds",
      "Unix time of the last round of label pointer checks in which the store answered every one (0: none yet); labels may be stale while it falls behind",
    ),
    evictions: counter(registry, "arbor_serve_model_evictions_total", "versions evicted from the LRU cache", [
      "model",
    ]),
    cacheBytes: gauge(registry, "arbor_serve_cache_bytes", "bytes of bundles held by the model cache"),
    cacheEntries: gauge(registry, "arbor_serve_cache_entries", "model versions held by the model cache"),
    bodyBytesHeld: gauge(
      registry,
      "arbor_serve_request_body_bytes_held",
      "bytes of requests held: HTTP bodies while they arrive, stream messages parked by backpressure (bounded by ARBOR_SERVE_BODY_BUDGET_BYTES)",
    ),
    replyBytesUnsent: gauge(
      registry,
      "arbor_serve_reply_bytes_unsent",
      "bytes of replies the clients have not read yet, beyond what the kernel took (bounded by ARBOR_SERVE_REPLY_BUDGET_BYTES)",
    ),
    slowReadersClosed: counter(
      registry,
      "arbor_serve_slow_readers_closed_total",
      "connections closed because the replies waiting for them passed ARBOR_SERVE_REPLY_BUDGET_BYTES",
      [],
    ),
    wsConnections: gauge(registry, "arbor_serve_ws_connections", "open WebSocket connections"),
    wsParked: gauge(
      registry,
      "arbor_serve_ws_parked_messages",
      "WebSocket messages held back by send-buffer backpressure",
    ),
    wsInFlight,
    wsMessages: counter(registry, "arbor_serve_ws_messages_total", "WebSocket messages by op and status", [
      "op",
      "status",
    ]),
  };
}

/** IPC messages between a cluster worker and the primary for GET /metrics. */
export interface MetricsRequest {
  arborMetricsReq: number;
}
/** The primary's answer to a {@link MetricsRequest}. */
export interface MetricsReply {
  arborMetricsRes: number;
  text?: string;
  error?: string;
}
/** The primary asks a worker for its registry, as prom-client's JSON. */
interface CollectRequest {
  arborMetricsCollect: number;
}
/** A worker's answer to a {@link CollectRequest}. */
interface CollectReply {
  arborMetricsJson: number;
  metrics: Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;
}

/**
 * Questions sent over IPC and their answers, matched by id; a question not answered within its
 * timeout gets null. Used by both ends of the cluster's /metrics gathering.
 */
class Asked<T> {
  readonly #waiting = new Map<number, (answer: T | null) => void>();
  #next = 1;

  /** Send a question with `send(id)`; its answer, or null after `timeoutMs`. */
  ask(send: (id: number) => void, timeoutMs: number): Promise<T | null> {
    const id = this.#next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        resolve(null);
      }, timeoutMs);
      this.#waiting.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      send(id);
    });
  }

  /** The answer to question `id` arrived (a late or unknown one is dropped). */
  answered(id: number, answer: T | null): void {
    const done = this.#waiting.get(id);
    this.#waiting.delete(id);
    done?.(answer);
  }
}

/**
 * In a cluster worker: GET /metrics asks the primary, which gathers every listening worker's
 * registry and merges them (prom-client's AggregatorRegistry.aggregate; each series keeps its
 * `worker` label). Without this a scrape sees whichever worker the kernel picked, i.e. a fraction
 * of the requests. Falls back to this worker's own metrics if the primary does not answer within
 * `timeoutMs`. Also answers the primary's requests for this worker's registry.
 */
export function clusterExposition(registry: Registry, timeoutMs = 3000): () => Promise<string> {
  const asked = new Asked<string>();
  process.on("message", (m: Partial<MetricsReply & CollectRequest>) => {
    if (typeof m?.arborMetricsCollect === "number") {
      const id = m.arborMetricsCollect;
      registry.getMetricsAsJSON().then(
        (metrics) => process.send?.({ arborMetricsJson: id, metrics } satisfies CollectReply),
        () => process.send?.({ arborMetricsJson: id, metrics: [] } satisfies CollectReply),
      );
    } else if (typeof m?.arborMetricsRes === "number") {
      asked.answered(m.arborMetricsRes, typeof m.text === "string" ? m.text : null);
    }
  });
  return async () => {
    const text = await asked.ask(
      (id) => process.send?.({ arborMetricsReq: id } satisfies MetricsRequest),
      timeoutMs,
    );
    return text ?? (await registry.metrics());
  };
}

/** A cluster worker as the primary sees it (node:cluster's Worker). */
interface MetricsPeer {
  on(event: "message", fn: (m: unknown) => void): unknown;
  send(m: MetricsReply | CollectRequest): unknown;
}

/** How long the primary waits for one worker's registry: a worker that is slower is left out. */
const COLLECT_TIMEOUT_MS = 1000;
const collecting = new Asked<CollectReply["metrics"]>();

/**
 * In the cluster primary: answer `worker`'s {@link MetricsRequest}s with the merged metrics of
 * the workers `listening()` returns — only those that have started: a replacement worker still
 * loading would hold every scrape until a timeout.
 */
export function serveClusterMetrics(worker: MetricsPeer, listening: () => Iterable<MetricsPeer>): void {
  worker.on("message", (m) => {
    const msg = m as Partial<MetricsRequest & CollectReply> | null;
    if (typeof msg?.arborMetricsJson === "number") {
      collecting.answered(msg.arborMetricsJson, Array.isArray(msg.metrics) ? msg.metrics : null);
      return;
    }
    const id = msg?.arborMetricsReq;
    if (typeof id !== "number") return;
    const collectFrom = (peer: MetricsPeer) =>
      collecting.ask((cid) => peer.send({ arborMetricsCollect: cid }), COLLECT_TIMEOUT_MS);
    Promise.all([...listening()].map(collectFrom))
      .then((all) => AggregatorRegistry.aggregate(all.filter((x) => x !== null)).metrics())
      .then(
        (text) => worker.send({ arborMetricsRes: id, text }),
        (e: unknown) => worker.send({ arborMetricsRes: id, error: (e as Error).message }),
      );
  });
}
