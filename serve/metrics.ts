/** The serve tier's Prometheus metrics, on one registry per process (shared/metrics.ts). */
import {
  BATCH_BUCKETS,
  type Counter,
  counter,
  createMetricsRegistry,
  type Gauge,
  gauge,
  type Histogram,
  histogram,
  type Registry,
} from "../shared/metrics.ts";

/** Every metric the server exports. */
export interface ServeMetrics {
  registry: Registry;
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
  return {
    registry,
    requests: counter(
      registry,
      "arbor_serve_requests_total",
      "HTTP requests by route, model, version and status",
      ["route", "model", "version", "status"],
    ),
    latency: histogram(
      registry,
      "arbor_serve_request_duration_seconds",
      "HTTP request latency (first body byte to response)",
      ["route", "model", "version", "status"],
    ),
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
