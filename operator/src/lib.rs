//! The loadgate operator: controllers for `ModelEndpoint` (Deployment + Service of model-server)
//! and `LoadTest` (one runner Job per profile, results merged into the status, a verdict and
//! conditions any GitOps gate can read), plus `loadgate crds`.
//!
//! Layout: [`resources`] builds the child objects (pure), [`status`] computes statuses and the
//! LoadTest state machine (pure), [`controllers`] does the I/O around them; [`metrics`],
//! [`http`] and [`telemetry`] serve the operator itself; [`reports`] keeps each run's merged
//! report in a ConfigMap that outlives the pods.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod context;
pub mod controllers;
pub mod crdgen;
pub mod http;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod policy;
pub mod reports;
pub mod resources;
pub mod signals;
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
/// When no cluster configuration is found, a CRD is missing or cannot be read with the
/// operator's RBAC, the HTTP address cannot be bound, or a controller stops on its own (a panic
/// in a reconcile, a stream that ended), or the Lease is lost (the controllers stop at once): then
/// `/health` answers 503 first and the process exits non-zero, so the kubelet restarts it instead
/// of leaving a live process that does nothing. On SIGTERM the reconciles in flight finish before
/// the Lease is released.
pub async fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes cluster to talk to (kubeconfig or in-cluster): {e}")
    })?;
    let namespace = args.namespace.clone().filter(|n| !n.is_empty());
    check_crds(&client, namespace.as_deref()).await?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("loadgate");
    let metrics = std::sync::Arc::new(metrics::Metrics::default().register(&mut registry));
    let ctx = context::Context::new(client, &args, metrics)
        .map_err(|e| anyhow::anyhow!("invalid operator policy: {e}"))?;
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
    // The controllers stop on shutdown or as soon as leadership is lost (`halt`); the HTTP server
    // only on `stop`, so that after a loss /health still answers 503 while nothing reconciles.
    let (halt_tx, halt_rx) = tokio::sync::watch::channel(false);
    let halted = move || {
        let mut rx = halt_rx.clone();
        async move {
            let _ = rx.wait_for(|halt| *halt).await;
        }
    };
    let stop = std::sync::Arc::new(stop_tx);
    let halt = std::sync::Arc::new(halt_tx);
    tokio::spawn({
        let stop = stop.clone();
        let halt = halt.clone();
        async move {
            crate::signals::interrupted().await;
            tracing::info!("shutting down: finishing reconciles in flight");
            let _ = halt.send(true);
            let _ = stop.send(true);
        }
    });
    let health = http::Health::default();
    // /health answers from the start: a standby replica waiting for the Lease is healthy.
    let server = tokio::spawn(http::serve(listener, registry, health.clone(), shutdown()));
    let elector = args.leader_election.then(|| {
        let lease_namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| ctx.client.default_namespace().to_owned());
        let me = std::env::var("POD_NAME").unwrap_or_else(|_| {
            format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "loadgate".into()),
                std::process::id()
            )
        });
        leader::Elector::new(ctx.client.clone(), &lease_namespace, &args.lease_name, &me)
    });
    if let Some(elector) = &elector
        && !elector.acquire(shutdown()).await
    {
        let _ = server.await;
        return Ok(());
    }
    let mut controllers =
        tokio::spawn(controllers::run(ctx, args.concurrency, namespace, halted()));
    let leadership = async {
        match &elector {
            Some(elector) => elector.hold(shutdown()).await,
            None => {
                shutdown().await;
                true
            }
        }
    };
    let mut controllers_ended = false;
    let fatal = tokio::select! {
        kept = leadership => (!kept).then(|| "lost the Lease: another replica may lead now".to_owned()),
        ended = &mut controllers => {
            controllers_ended = true;
            match ended {
                Err(e) if e.is_panic() => Some("a controller panicked".to_owned()),
                Err(e) => Some(format!("the controllers' task failed: {e}")),
                // Stopped because shutdown was asked for: not a failure.
                Ok(()) if *stop_rx.borrow() => None,
                Ok(()) => Some("the controllers stopped on their own".to_owned()),
            }
        }
    };
    if let Some(why) = fatal {
        // Stop reconciling first: after a loss another replica may already lead.
        let _ = halt.send(true);
        health.fail(&why);
        tracing::error!(reason = why, "exiting non-zero");
        // Let a probe see the 503 before the process goes.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let _ = stop.send(true);
        let _ = server.await;
        anyhow::bail!("{why}");
    }
    // Shutdown, as client-go's ReleaseOnCancel: the reconciles in flight finish, and only then is
    // the Lease released, so a standby takes over at once but never alongside them.
    let drained = controllers_ended
        || match &elector {
            Some(_) => tokio::time::timeout(DRAIN_LIMIT, &mut controllers)
                .await
                .is_ok(),
            None => {
                let _ = controllers.await;
                true
            }
        };
    if let Some(elector) = &elector {
        if drained {
            elector.release().await;
        } else {
            tracing::warn!(
                "the controllers still run after {DRAIN_LIMIT:?}: exiting without releasing the \
                 Lease (a standby takes it when it expires)"
            );
        }
    }
    let _ = server.await;
    Ok(())
}

/// How long shutdown waits for the reconciles in flight before it exits without releasing the
/// Lease; within the kubelet's default 30 s grace period, with room for the release.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Both CRDs are installed and readable with this identity; otherwise a message saying which
/// and what to do, instead of controllers that watch nothing and look healthy.
async fn check_crds(client: &kube::Client, namespace: Option<&str>) -> anyhow::Result<()> {
    use kube::api::ListParams;
    async fn probe<K>(client: &kube::Client, namespace: Option<&str>) -> anyhow::Result<()>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api = controllers::scoped::<K>(client, namespace);
        let crd = format!("{}.{}", K::plural(&()), K::group(&()));
        let scope = namespace.map_or("all namespaces".to_owned(), |n| format!("namespace {n}"));
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => anyhow::bail!(
                "the CRD {crd} is not installed: apply it first (`loadgate crds | kubectl apply \
                 --server-side -f -`, or install the Helm chart, which ships it)"
            ),
            Err(kube::Error::Api(e)) if e.code == 403 => anyhow::bail!(
                "the operator may not list {crd} in {scope}: its RBAC is missing or too narrow \
                 ({}); install the chart's ClusterRole/Role for this ServiceAccount",
                e.message
            ),
            Err(e) => anyhow::bail!("cannot read {crd}: {e}"),
        }
    }
    probe::<loadgate_api::load_test::LoadTest>(client, namespace).await?;
    probe::<loadgate_api::model_endpoint::ModelEndpoint>(client, namespace).await
}
