//! The accept loop: each connection is served by hyper's HTTP/1 server directly (not
//! `axum::serve`, which cannot set a header-read timeout), so slow and surplus clients are bounded:
//!
//! - `--header-read-timeout-secs`: a connection must send each request's headers within this,
//!   counted from when the server starts waiting for them (from accept, or on a kept-alive
//!   connection from the previous answer, so it also closes idle connections). One cut off
//!   mid-head is answered 408; one that sent nothing is just closed.
//! - `--max-connections`: past it, a new connection is answered 503 `overloaded` with
//!   `Retry-After` and closed, with one exception: `GET /health` is still answered. The kubelet
//!   probes liveness on a fresh connection each time, and a pod whose connections are all taken
//!   by slow clients is alive: failing its probe would restart it (and reload the model) without
//!   helping. At most [`OVER_LIMIT_ANSWERS`] such answers are in progress at once; past that a
//!   connection is closed unanswered, the cheapest refusal there is, never a hang.
//!
//! The body-read timeout lives in [`super::extract`], where the body is read. On shutdown the
//! loop stops accepting, lets every connection finish the request it is on, and returns once all
//! are closed.

use super::error::ApiError;
use super::{AppState, handlers, observe};
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use loadgate_api::embed::{ErrorResponse, ErrorType};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Connections past `--max-connections` being answered at once. Each takes one request (or
/// [`OVER_LIMIT_HEADER_TIMEOUT`]) and a few KB, so this bounds the cost of answering a flood.
pub const OVER_LIMIT_ANSWERS: usize = 64;

/// Header-read timeout of a connection past the cap (at most `--header-read-timeout-secs`): any
/// client sends its request line and headers right after connecting, so one second is generous,
/// and a slow client cannot hold an answering slot for long.
const OVER_LIMIT_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a closing connection may take to flush its last bytes (an answer, the FIN) to a
/// client that does not read them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `state`'s routes on `listener` until `stop` turns true (or its sender is dropped), then
/// drains: no new connections, each open one finishes its request in flight, and this returns
/// once all are closed.
pub async fn serve(mut listener: TcpListener, state: AppState, mut stop: watch::Receiver<bool>) {
    let config = state.config();
    let served = Settings {
        header_read_timeout: config.header_read_timeout,
        keep_alive: true,
    };
    let over_limit = Settings {
        header_read_timeout: config.header_read_timeout.min(OVER_LIMIT_HEADER_TIMEOUT),
        keep_alive: false,
    };
    let open = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let answering = Arc::new(Semaphore::new(OVER_LIMIT_ANSWERS));
    let app = super::app(state.clone());
    let over_limit_app = over_limit_app(state.clone());
    let metrics = state.metrics().clone();
    drop(state);
    // Every connection task holds a clone of `alive`; `closed()` resolves when the last is gone.
    let (all_closed, alive) = watch::channel(());
    loop {
        let tcp = tokio::select! {
            // axum's accept retries (and logs) errors such as EMFILE itself.
            (tcp, _) = axum::serve::Listener::accept(&mut listener) => tcp,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        // Without TCP_NODELAY, an answer split over two writes waits ~40 ms on delayed ACKs.
        let _ = tcp.set_nodelay(true);
        let task = Task {
            stop: stop.clone(),
            metrics: metrics.clone(),
            _alive: alive.clone(),
        };
        if let Ok(permit) = open.clone().try_acquire_owned() {
            let open = OpenConnection::new(permit, &metrics);
            let app = app.clone();
            tokio::spawn(async move {
                task.serve(tcp, app, served).await;
                drop(open);
            });
            continue;
        }
        metrics.connections_over_limit.inc();
        if let Ok(permit) = answering.clone().try_acquire_owned() {
            let app = over_limit_app.clone();
            tokio::spawn(async move {
                task.serve(tcp, app, over_limit).await;
                drop(permit);
            });
        }
        // Otherwise `tcp` is dropped here: closed unanswered.
    }
    drop(listener);
    drop(alive);
    all_closed.closed().await;
}

/// How one connection is served.
#[derive(Debug, Clone, Copy)]
struct Settings {
    header_read_timeout: Duration,
    keep_alive: bool,
}

/// A place under `--max-connections`, counted in `open_connections` while held.
struct OpenConnection {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl OpenConnection {
    fn new(permit: OwnedSemaphorePermit, metrics: &Arc<Metrics>) -> Self {
        metrics.open_connections.inc();
        Self {
            _permit: permit,
            metrics: metrics.clone(),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.open_connections.dec();
    }
}

/// What a connection task holds besides its socket.
struct Task {
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// Dropped when the task ends; the accept loop waits for all of them on shutdown.
    _alive: watch::Receiver<()>,
}

impl Task {
    async fn serve(mut self, tcp: TcpStream, app: Router, settings: Settings) {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .keep_alive(settings.keep_alive);
        let mut conn = builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
        let mut draining = false;
        // Polled without hyper's own shutdown, so the socket is still ours afterwards: a request
        // head cut off by the timeout can still be answered 408.
        let result = loop {
            tokio::select! {
                result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
                _ = self.stop.wait_for(|stop| *stop), if !draining => {
                    // Finish the request in flight, if any, then close.
                    draining = true;
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
            }
        };
        let parts = conn.into_parts();
        let mut tcp = parts.io.into_inner();
        match result {
            Ok(()) => {}
            // With nothing of a request read, the connection was idle (new or kept alive): it is
            // closed as any server closes idle connections. Part of a head earns a 408.
            Err(error) if error.is_timeout() => {
                if !parts.read_buf.is_empty() {
                    self.metrics.header_read_timeouts.inc();
                    let answer = header_timeout_answer(settings.header_read_timeout);
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, tcp.write_all(&answer)).await;
                }
            }
            Err(error) => {
                tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "connection ended with an error"
                );
            }
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, tcp.shutdown()).await;
    }
}

/// The raw 408 for a request head not received in time (hyper has given the socket back, so
/// this is written by hand), in the JSON error shape of every other answer.
fn header_timeout_answer(timeout: Duration) -> Vec<u8> {
    let body = serde_json::to_string(&ErrorResponse {
        error: format!(
            "the request headers did not arrive within {} s (--header-read-timeout-secs)",
            timeout.as_secs_f64()
        ),
        error_type: ErrorType::Timeout,
    })
    .expect("an ErrorResponse always serialises; this is a bug");
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The routes of a connection past `--max-connections`: `GET /health` as usual, anything else
/// 503 before its body is read. Requests are counted and timed like any other.
fn over_limit_app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .fallback(over_limit)
        .method_not_allowed_fallback(over_limit)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn over_limit(State(state): State<AppState>) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error_type: ErrorType::Overloaded,
        message: format!(
            "{} connections are open already (--max-connections); retry later",
            state.config().max_connections
        ),
        retry_after: Some(1),
    }
}
