//! The two controllers, run side by side until shutdown: each watches its kind and the children
//! it owns, reconciles with bounded concurrency, and stops gracefully (reconciles in flight
//! finish).

pub mod load_test;
pub mod model_endpoint;

use crate::context::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::controller::{Action, Config};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{Controller, watcher};
use loadgate_api::load_test::LoadTest;
use loadgate_api::model_endpoint::ModelEndpoint;
use std::sync::Arc;
use std::time::Duration;

/// Runs both controllers until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let config = Config::default().concurrency(concurrency);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let endpoints = Controller::new(
        Api::<ModelEndpoint>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(config.clone())
    .graceful_shutdown_on(stopped())
    .run(
        model_endpoint::reconcile,
        model_endpoint::error_policy,
        ctx.clone(),
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "modelendpoint controller");
        }
    });
    let tests = Controller::new(
        Api::<LoadTest>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default())
    .with_config(config)
    .graceful_shutdown_on(stopped())
    .run(load_test::reconcile, load_test::error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "loadtest controller");
        }
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tracing::info!("controllers started");
    futures::join!(endpoints, tests);
}

/// Requeue after a failed reconcile: soon for API errors, slowly for specs a user must fix.
pub fn backoff(error: &crate::Error) -> Action {
    match error {
        crate::Error::KubeApi(_) => Action::requeue(Duration::from_secs(10)),
        crate::Error::InvalidSpec(_) => Action::requeue(Duration::from_secs(300)),
    }
}

/// Writes `status` into `obj`'s status subresource by server-side apply: one field manager,
/// forced, apiVersion and kind in the body, so fields the new status drops are removed.
///
/// # Errors
/// API errors.
pub async fn apply_status<K>(
    ctx: &Context,
    obj: &K,
    status: &impl serde::Serialize,
) -> crate::Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    use kube::ResourceExt;
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let namespace = obj.namespace().unwrap_or_default();
    let params = kube::api::PatchParams::apply(crate::resources::FIELD_MANAGER).force();
    Api::<K>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(&obj.name_any(), &params, &kube::api::Patch::Apply(body))
        .await?;
    Ok(())
}

/// Publishes an Event about `obj`; failures are logged, never fatal.
pub async fn publish<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    // The API caps notes at 1 KiB.
    let mut note = note;
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push('…');
    }
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}
