//! The operator's own HTTP endpoints: `/health` (liveness and readiness: 200 while the
//! controllers run, 503 once one has stopped) and `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

/// Whether the controllers still run; shared by the HTTP server and `main`.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<Option<String>>>);

impl Health {
    /// Marks the process unhealthy, with why.
    pub fn fail(&self, why: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
    }

    /// Why the process is unhealthy, if it is.
    pub fn failure(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Health,
}

/// The router.
pub fn app(registry: Registry, health: Health) -> Router {
    Router::new()
        .route("/health", get(health_check))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            registry: Arc::new(registry),
            health,
        })
}

async fn health_check(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.failure() {
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        ),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "failed", "reason": why})),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let registry = &state.registry;
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, app(registry, health))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn health_code(health: &Health) -> u16 {
        use tower::ServiceExt;
        let response = app(Registry::default(), health.clone())
            .oneshot(
                axum::http::Request::get("/health")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        response.status().as_u16()
    }

    #[tokio::test]
    async fn health_turns_503_when_the_controllers_stop() {
        let health = Health::default();
        assert_eq!(health_code(&health).await, 200);
        health.fail("a controller panicked");
        assert_eq!(health_code(&health).await, 503);
    }
}
