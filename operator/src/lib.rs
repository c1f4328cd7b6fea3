//! The loadgate operator: controllers for `ModelEndpoint` (Deployment + Service of model-server)
//! and `LoadTest` (one runner Job per profile, results merged into the status, a verdict and
//! conditions any GitOps gate can read), plus `loadgate crds`.
//!
//! Layout: [`resources`] builds the child objects (pure), [`status`] computes statuses and the
//! LoadTest state machine (pure), [`controllers`] does the I/O around them; [`metrics`],
//! [`http`] and [`telemetry`] serve the operator itself.
#![deny(missing_docs)]

pub mod config;
pub mod context;
pub mod controllers;
pub mod crdgen;
pub mod http;
pub mod local;
pub mod metrics;
pub mod resources;
pub mod status;
pub mod telemetry;

#[cfg(test)]
pub mod fixtures;

use config::OperatorArgs;

/// A reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused or failed a request (transient: retried soon).
    #[error("Kubernetes API: {0}")]
    KubeApi(#[source] Box<kube::Error>),
    /// The object cannot be processed as written (user-fixable: retried slowly).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::KubeApi(Box::new(e))
    }
}

impl Error {
    /// A static label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::KubeApi(_) => "kube_api",
            Error::InvalidSpec(_) => "invalid_spec",
        }
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `loadgate operator`: both controllers and the HTTP server, until SIGTERM/SIGINT.
///
/// # Errors
/// When no cluster configuration is found or the HTTP address cannot be bound.
pub async fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes cluster to talk to (kubeconfig or in-cluster): {e}")
    })?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("loadgate");
    let metrics = std::sync::Arc::new(metrics::Metrics::default().register(&mut registry));
    let ctx = context::Context::new(client, &args, metrics);
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.http_addr))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        }
    };
    let server = tokio::spawn(http::serve(listener, registry, shutdown()));
    let controllers = tokio::spawn(controllers::run(ctx, args.concurrency, shutdown()));
    loadrunner::interrupted().await;
    tracing::info!("shutting down: finishing reconciles in flight");
    let _ = stop_tx.send(true);
    let _ = controllers.await;
    let _ = server.await;
    Ok(())
}
