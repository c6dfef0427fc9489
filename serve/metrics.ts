/** The serve tier's Prometheus metrics, on one registry per process (shared/metrics.ts). */
import {
  BATCH_BUCKETS,
  Counter,
  counter,
  createMetricsRegistry,
  type Gauge,
  gauge,
  type Histogram,
  histogram,
  type Registry,
} from "../shared/metrics.ts";

type RequestLabels = "route" | "model" | "version" | "status";

interface StatsEntry {
  pending: number;
  count: { inc(n: number): void };
  latency: { observe(v: number): void };
}

/**
 * Per-request accounting with the labelled children cached: prom-client's `labels()` and a
 * counter's `inc()` hash the label set on every call (~0.6 µs each here). Counts accumulate in a
 * plain integer and reach the counter when /metrics is scraped (the counter's `collect` hook).
 */
export class RequestStats {
  readonly #map = new Map<string, StatsEntry>();
  #requests: Counter<RequestLabels> | null = null;
  readonly #latency: Histogram<RequestLabels>;

  constructor(latency: Histogram<RequestLabels>) {
    this.#latency = latency;
  }

  /** Connect the request counter (created after this object, since its collect hook calls flush). */
  bind(requests: Counter<RequestLabels>): void {
    this.#requests = requests;
  }

  /** Count one request and record its latency. */
  observe(route: string, model: string, version: string, status: number, seconds: number): void {
    const key = `${route}|${model}|${version}|${status}`;
    let e = this.#map.get(key);
    if (e === undefined) {
      if (this.#map.size > 10_000) {
        this.flush();
        this.#map.clear();
      }
      const labels = { route, model, version, status: String(status) };
      e = { pending: 0, count: this.#requests!.labels(labels), latency: this.#latency.labels(labels) };
      this.#map.set(key, e);
    }
    e.pending++;
    e.latency.observe(seconds);
  }

  /** Move pending counts into the counter. */
  flush(): void {
    for (const e of this.#map.values()) {
      if (e.pending > 0) {
        e.count.inc(e.pending);
        e.pending = 0;
      }
    }
  }
}

/** Every metric the server exports. */
export interface ServeMetrics {
  registry: Registry;
  /** Use `stats.observe` per request; `requests` is filled from it at scrape time. */
  stats: RequestStats;
  requests: Counter<"route" | "model" | "version" | "status">;
  latency: Histogram<"route" | "model" | "version" | "status">;
  batchRows: Histogram<never>;
  loads: Counter<"model" | "result">;
  evictions: Counter<"model">;
  cacheBytes: Gauge<never>;
  cacheEntries: Gauge<never>;
  wsConnections: Gauge<never>;
  wsParked: Gauge<never>;
  wsMessages: Counter<"op" | "status">;
}

/** Create the metrics on a fresh registry. */
export function createServeMetrics(labels: Record<string, string> = {}): ServeMetrics {
  const registry = createMetricsRegistry({ labels });
  const latency = histogram(
    registry,
    "arbor_serve_request_duration_seconds",
    "HTTP request latency (first body byte to response)",
    ["route", "model", "version", "status"],
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
  return {
    registry,
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
    evictions: counter(registry, "arbor_serve_model_evictions_total", "versions evicted from the LRU cache", [
      "model",
    ]),
    cacheBytes: gauge(registry, "arbor_serve_cache_bytes", "bytes of bundles held by the model cache"),
    cacheEntries: gauge(registry, "arbor_serve_cache_entries", "model versions held by the model cache"),
    wsConnections: gauge(registry, "arbor_serve_ws_connections", "open WebSocket connections"),
    wsParked: gauge(
      registry,
      "arbor_serve_ws_parked_messages",
      "WebSocket messages held back by send-buffer backpressure",
    ),
    wsMessages: counter(registry, "arbor_serve_ws_messages_total", "WebSocket messages by op and status", [
      "op",
      "status",
    ]),
  };
}
