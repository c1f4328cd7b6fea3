//! The two controllers, run side by side until shutdown: each watches its kind and the children
//! it owns, reconciles with bounded concurrency, and stops gracefully (reconciles in flight
//! finish).

pub mod load_test;
pub mod model_endpoint;

use crate::context::Context;
use crate::status::plan::EventReason;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Config};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use loadgate_api::load_test::LoadTest;
use loadgate_api::model_endpoint::ModelEndpoint;
use std::sync::Arc;
use std::time::Duration;

/// Label every child the operator creates carries; the owned-object watches select on it, so
/// the operator caches its own Deployments, Services and Jobs, not the cluster's.
const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=loadgate";

/// An `Api` over `namespace`, or over all namespaces.
pub fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers until `shutdown` resolves, over `namespace` or the whole cluster.
/// Returns when both have stopped: after `shutdown`, or early if one ends on its own (the
/// caller treats that as fatal).
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let config = Config::default().concurrency(concurrency);
    let owned = || watcher::Config::default().labels(MANAGED_SELECTOR);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let endpoints = Controller::new(
        scoped::<ModelEndpoint>(&client, ns),
        watcher::Config::default(),
    )
    .owns(scoped::<Deployment>(&client, ns), owned())
    .owns(scoped::<Service>(&client, ns), owned())
    .with_config(config.clone())
    .graceful_shutdown_on(stopped())
    .run(
        model_endpoint::reconcile,
        model_endpoint::error_policy,
        ctx.clone(),
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            // A reconcile's own failure is logged by its error policy; the rest (watch
            // errors: a missing CRD, RBAC, a lost connection) is logged here, at warn.
            if !matches!(e, kube::runtime::controller::Error::ReconcilerFailed(..)) {
                tracing::warn!(
                    controller = "modelendpoint",
                    error = &e as &dyn std::error::Error,
                    "controller"
                );
            }
        }
    });
    let tests = Controller::new(scoped::<LoadTest>(&client, ns), watcher::Config::default());
    // A ModelEndpoint's change (Ready, lost, deleted) wakes the LoadTests that target it.
    let store = tests.store();
    let tests = tests
        .owns(scoped::<Job>(&client, ns), owned())
        .watches(
            scoped::<ModelEndpoint>(&client, ns),
            watcher::Config::default(),
            move |endpoint: ModelEndpoint| targeting(&store.state(), &endpoint),
        )
        .with_config(config)
        .graceful_shutdown_on(stopped())
        .run(load_test::reconcile, load_test::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                // A reconcile's own failure is logged by its error policy; the rest (watch
                // errors: a missing CRD, RBAC, a lost connection) is logged here, at warn.
                if !matches!(e, kube::runtime::controller::Error::ReconcilerFailed(..)) {
                    tracing::warn!(
                        controller = "loadtest",
                        error = &e as &dyn std::error::Error,
                        "controller"
                    );
                }
            }
        });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tracing::info!(namespace = ns.unwrap_or("(all)"), "controllers started");
    futures::join!(endpoints, tests);
}

/// The LoadTests among `tests` whose `target.endpointRef` names `endpoint`.
pub fn targeting(tests: &[Arc<LoadTest>], endpoint: &ModelEndpoint) -> Vec<ObjectRef<LoadTest>> {
    let namespace = endpoint.namespace();
    let name = endpoint.name_any();
    tests
        .iter()
        .filter(|t| {
            t.namespace() == namespace
                && t.spec
                    .target
                    .endpoint_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
        })
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// Why the apiserver refused a request in a way only a change to the spec, the RBAC or the
/// cluster can fix (400 bad request, 403 forbidden, 422 invalid): its own message. `None` for
/// errors worth retrying (conflicts, timeouts, 5xx).
pub fn rejection(error: &kube::Error) -> Option<String> {
    match error {
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 422) => {
            Some(format!("{} ({})", status.message, status.code))
        }
        _ => None,
    }
}

/// Publishes a reconcile failure as a Warning Event on `obj`, with the error chain in the note.
pub async fn publish_failure<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    error: &crate::Error,
) {
    let mut note = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        note.push_str(": ");
        note.push_str(&cause.to_string());
        source = cause.source();
    }
    publish(ctx, obj, true, EventReason::ReconcileFailed.as_str(), note).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{endpoint, load_test};

    #[test]
    fn an_endpoint_change_maps_to_the_tests_that_target_it() {
        let mine = load_test("gate");
        let mut other_target = load_test("other");
        other_target.spec.target.endpoint_ref = Some(loadgate_api::load_test::EndpointRef {
            name: "elsewhere".into(),
        });
        let mut other_namespace = load_test("far");
        other_namespace.metadata.namespace = Some("team-b".into());
        let tests: Vec<Arc<LoadTest>> = [mine, other_target, other_namespace]
            .into_iter()
            .map(Arc::new)
            .collect();
        let woken = targeting(&tests, &endpoint("mini"));
        assert_eq!(
            woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["gate"]
        );
    }

    #[test]
    fn only_refusals_a_person_must_fix_are_rejections() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: format!("refused {code}"),
                ..kube::core::Status::default()
            }))
        };
        for code in [400, 403, 422] {
            assert!(rejection(&api(code)).unwrap().contains(&code.to_string()));
        }
        for code in [404, 409, 429, 500] {
            assert_eq!(rejection(&api(code)), None, "{code} is retried");
        }
    }
}
