//! The model server's Prometheus metrics (prometheus-client), all prefixed `model_server_`.
//!
//! Durations are histograms in seconds with explicit buckets; labels come from static strings only
//! (route templates, status codes), so cardinality is fixed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of the per-request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template (`/embed`, `/v1/embeddings`, ...; `other` for unknown paths).
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of the per-route latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template.
    pub route: &'static str,
}

/// Every metric the server exports.
pub struct Metrics {
    /// Requests answered, by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency, by route.
    pub request_duration: Family<RouteLabels, Histogram>,
    /// Time a request waited in the batch queue before its forward pass started.
    pub queue_duration: Histogram,
    /// Duration of one forward pass (one sub-batch).
    pub inference_duration: Histogram,
    /// Texts per forward pass.
    pub batch_size: Histogram,
    /// Padded tokens per forward pass.
    pub batch_tokens: Histogram,
    /// Requests admitted and waiting for a worker.
    pub queue_depth: Gauge,
    /// Tokens embedded (special tokens included, padding excluded).
    pub tokens: Counter,
    /// Vectors returned.
    pub embeddings: Counter,
    /// Requests dropped before inference because their client had gone.
    pub cancelled: Counter,
    /// Forward passes of a lone job that shared their matrix products with the helper thread.
    pub helped_passes: Counter,
    /// Seconds from start to the model being loaded and warmed up.
    pub model_load_seconds: Gauge<f64, AtomicU64>,
    /// Client connections open, as counted against `--max-connections`.
    pub open_connections: Gauge,
    /// Connections accepted past `--max-connections` (answered 503, or closed unanswered when too
    /// many were being answered already).
    pub connections_over_limit: Counter,
    /// Connections cut off mid-request-head after `--header-read-timeout-secs` (answered 408);
    /// idle connections, new or kept alive, closed on time are not counted.
    pub header_read_timeouts: Counter,
    /// Requests answered 408 because their body did not arrive within `--body-read-timeout-secs`.
    pub body_read_timeouts: Counter,
    registry: Registry,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("model_server");
        let requests = Family::<RequestLabels, Counter>::default();
        // `Family`'s default constructor type is `fn() -> M`, so a non-capturing closure fits.
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        let queue_duration = Histogram::new(latency_buckets());
        let inference_duration = Histogram::new(latency_buckets());
        let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
        let batch_tokens = Histogram::new([
            16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0,
        ]);
        let queue_depth = Gauge::default();
        let tokens = Counter::default();
        let embeddings = Counter::default();
        let cancelled = Counter::default();
        let helped_passes = Counter::default();
        let model_load_seconds = Gauge::<f64, AtomicU64>::default();
        let open_connections = Gauge::default();
        let connections_over_limit = Counter::default();
        let header_read_timeouts = Counter::default();
        let body_read_timeouts = Counter::default();

        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "HTTP request latency, by route",
            request_duration.clone(),
        );
        registry.register(
            "queue_duration_seconds",
            "Time a request waited for an inference worker",
            queue_duration.clone(),
        );
        registry.register(
            "inference_duration_seconds",
            "Duration of one forward pass",
            inference_duration.clone(),
        );
        registry.register("batch_size", "Texts per forward pass", batch_size.clone());
        registry.register(
            "batch_tokens",
            "Padded tokens per forward pass",
            batch_tokens.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for an inference worker",
            queue_depth.clone(),
        );
        registry.register(
            "tokens",
            "Tokens embedded, padding excluded",
            tokens.clone(),
        );
        registry.register("embeddings", "Vectors returned", embeddings.clone());
        registry.register(
            "cancelled_requests",
            "Requests dropped before inference because the client had gone",
            cancelled.clone(),
        );
        registry.register(
            "helped_passes",
            "Forward passes of a lone request that split their matrix products over two cores",
            helped_passes.clone(),
        );
        registry.register(
            "model_load_seconds",
            "Seconds from start until the model was loaded and warmed up",
            model_load_seconds.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open, counted against --max-connections",
            open_connections.clone(),
        );
        registry.register(
            "connections_over_limit",
            "Connections past --max-connections, answered 503 (GET /health still answered) or closed",
            connections_over_limit.clone(),
        );
        registry.register(
            "header_read_timeouts",
            "Connections cut off mid-request-head after --header-read-timeout-secs (answered 408)",
            header_read_timeouts.clone(),
        );
        registry.register(
            "body_read_timeouts",
            "Requests answered 408 for a body not received within --body-read-timeout-secs",
            body_read_timeouts.clone(),
        );
        Self {
            requests,
            request_duration,
            queue_duration,
            inference_duration,
            batch_size,
            batch_tokens,
            queue_depth,
            tokens,
            embeddings,
            cancelled,
            helped_passes,
            model_load_seconds,
            open_connections,
            connections_over_limit,
            header_read_timeouts,
            body_read_timeouts,
            registry,
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing metrics into a String cannot fail; this is a bug");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
