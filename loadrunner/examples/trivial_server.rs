//! A trivial HTTP endpoint for benchmarking load generators (bench/loadrunner.py): `GET /health`
//! answers "ok" at once, `GET /sleep/{ms}` after a known delay (the server-side truth for latency
//! accuracy). One async worker thread, TCP_NODELAY.
//!
//! Usage: trivial_server PORT

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use axum::serve::ListenerExt;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/sleep/{ms}",
                get(|Path(ms): Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slept"
                }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await?
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
