//! The HTTP surface: routes, shared state and the middleware every request passes (metrics,
//! request timeout, body limit). Handlers live in [`handlers`], the error table in [`error`],
//! the JSON body extractor in [`extract`], the accept loop (connection cap, header timeout,
//! graceful drain) in [`server`].

pub mod error;
pub mod extract;
pub mod handlers;
pub mod rerank;
pub mod server;

use crate::infer::{Infer, Limits};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::modules::{Pooling, Prompts, Task};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::ApiError;
use loadgate_api::embed::ErrorType;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The loaded model, set once when loading and warm-up have finished.
#[derive(Clone)]
pub struct ServedModel {
    /// The inference pipeline.
    pub infer: Infer,
    /// Precision of the dense layers, for `/info`.
    pub dtype: &'static str,
    /// What the model computes.
    pub card: ModelCard,
}

/// What the handlers and `/info` need to know of the model: its architecture, whether it embeds
/// or reranks (and how), and its prompts.
#[derive(Clone, Debug)]
pub struct ModelCard {
    /// `bert` or `xlm-roberta`.
    pub architecture: &'static str,
    /// Embed (pooling, Dense, Normalize) or rerank (labels, score activation).
    pub task: Task,
    /// Named prompts and the default one.
    pub prompts: Prompts,
}

impl ModelCard {
    /// A BERT embedder pooling `pooling`, normalising, with no prompts (tests and fakes).
    pub fn embedder(pooling: Pooling) -> Self {
        Self {
            architecture: "bert",
            task: Task::Embed {
                pooling,
                dense: Vec::new(),
                normalize: true,
            },
            prompts: Prompts::default(),
        }
    }
}

/// Settings the HTTP layer needs before the model is loaded.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Name reported in answers.
    pub model_name: String,
    /// Batching and admission limits (reported by `/info`).
    pub limits: Limits,
    /// Largest request body in bytes.
    pub payload_limit: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers (and to idle between requests).
    pub header_read_timeout: Duration,
    /// Longest a request body may take to arrive once its read starts.
    pub body_read_timeout: Duration,
    /// Most client connections open at once.
    pub max_connections: usize,
}

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    config: HttpConfig,
    metrics: Arc<Metrics>,
    model: OnceLock<ServedModel>,
    /// Request bodies read and parsed at once; see [`max_body_reads`].
    body_reads: Arc<tokio::sync::Semaphore>,
}

/// Most request bodies read and parsed at once: memory is bounded by bytes (this many bodies of
/// at most `payload_limit` bytes each, and their parsed texts), not only by request count. A
/// body that finds none free is answered 429 before it is read. 32 keeps both cores busy with
/// any mix of request sizes; at the 2 MB default limit it bounds body memory to ~128 MB.
pub fn max_body_reads(limits: &Limits) -> usize {
    limits.max_concurrent_requests.clamp(1, 32)
}

impl AppState {
    /// State of a server whose model is not loaded yet (`/health` answers 503).
    pub fn new(config: HttpConfig, metrics: Arc<Metrics>) -> Self {
        let body_reads = Arc::new(tokio::sync::Semaphore::new(max_body_reads(&config.limits)));
        Self {
            inner: Arc::new(StateInner {
                config,
                metrics,
                model: OnceLock::new(),
                body_reads,
            }),
        }
    }

    /// A permit to read one request body, or `None` when [`max_body_reads`] are being read.
    fn body_read(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.body_reads.clone().try_acquire_owned().ok()
    }

    /// Request bodies being read right now (at most [`max_body_reads`]).
    pub fn body_reads_in_progress(&self) -> usize {
        max_body_reads(&self.inner.config.limits) - self.inner.body_reads.available_permits()
    }

    /// Marks the model loaded and warmed up: `/health` turns 200 and requests are served.
    pub fn set_ready(&self, model: ServedModel) {
        if self.inner.model.set(model).is_err() {
            tracing::warn!("model set twice; keeping the first");
        }
    }

    /// The served model, once loaded and warmed up.
    pub fn model(&self) -> Option<&ServedModel> {
        self.inner.model.get()
    }

    /// The HTTP settings.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    fn payload_limit(&self) -> usize {
        self.inner.config.payload_limit
    }
}

/// The router with every route and layer.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", post(handlers::embed))
        .route("/embed", post(handlers::embed))
        .route("/v1/embeddings", post(handlers::openai_embeddings))
        .route("/rerank", post(rerank::tei))
        .route("/v1/rerank", post(rerank::cohere))
        .route("/v2/rerank", post(rerank::cohere))
        .route("/health", get(handlers::health))
        .route("/info", get(handlers::info))
        .route("/metrics", get(handlers::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.payload_limit()))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Route label for a path: the known routes, else `other` (bounded label values).
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/embed" => "/embed",
        "/v1/embeddings" => "/v1/embeddings",
        "/rerank" => "/rerank",
        "/v1/rerank" => "/v1/rerank",
        "/v2/rerank" => "/v2/rerank",
        "/health" => "/health",
        "/info" => "/info",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Times every request out after `request_timeout` (408, JSON) and records its count and latency.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let started = Instant::now();
    let timeout = state.config().request_timeout;
    // On timeout the handler future is dropped; a queued request then sees its caller gone and is
    // skipped before inference.
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            error_type: ErrorType::Timeout,
            message: format!(
                "request took longer than {} s (--request-timeout-secs)",
                timeout.as_secs_f64()
            ),
            retry_after: None,
        }
        .into_response(),
    };
    let metrics = state.metrics();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .request_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error_type: ErrorType::NotFound,
        message: "no such route; try POST /embed (or POST /, as TEI serves it), POST /v1/embeddings, POST /rerank, POST /v1/rerank, GET /health, GET /info, GET /metrics"
            .to_owned(),
        retry_after: None,
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error_type: ErrorType::NotFound,
        message:
            "method not allowed on this route: /embed, /v1/embeddings, /rerank and /v1/rerank take POST, the rest GET"
                .to_owned(),
        retry_after: None,
    }
}
