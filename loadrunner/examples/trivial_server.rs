//! A trivial HTTP endpoint for benchmarking load generators (bench/loadrunner.py): `GET /health`
//! answers "ok" at once, `GET /sleep/{ms}` after a known delay. The server times each `/sleep`
//! itself (handler start to answer) into an HDR histogram: `GET /truth` returns its p50/p95/p99
//! in ms (the server-side truth a client's percentiles are checked against), `POST /truth/reset`
//! clears it. One async worker thread, TCP_NODELAY.
//!
//! Usage: trivial_server PORT

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Truth = Arc<Mutex<Histogram<u64>>>;

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8400);
    let truth: Truth = Arc::new(Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/sleep/{ms}",
                get(
                    |State(truth): State<Truth>, Path(ms): Path<u64>| async move {
                        let started = Instant::now();
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let micros =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        truth
                            .lock()
                            .expect("truth lock")
                            .saturating_record(micros.max(1));
                        "slept"
                    },
                ),
            )
            .route(
                "/truth",
                get(|State(truth): State<Truth>| async move {
                    let h = truth.lock().expect("truth lock");
                    let at = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                    format!(
                        r#"{{"count":{},"p50_ms":{},"p95_ms":{},"p99_ms":{}}}"#,
                        h.len(),
                        at(0.5),
                        at(0.95),
                        at(0.99)
                    )
                }),
            )
            .route(
                "/truth/reset",
                post(|State(truth): State<Truth>| async move {
                    truth.lock().expect("truth lock").reset();
                    "reset"
                }),
            )
            .with_state(truth);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await?
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
