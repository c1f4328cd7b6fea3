//! ModelEndpoint reconcile: apply the Deployment and Service (server-side apply, owned by the
//! endpoint, so deleting it deletes them), then derive the status from the Deployment the
//! apiserver returned, and write it only when it changed.

use crate::context::Context;
use crate::resources::FIELD_MANAGER;
use crate::resources::model_endpoint::{deployment, selector_of, service};
use crate::resources::not_owned;
use crate::status::model_endpoint::{blocked_status, cold_start_seconds, endpoint_status};
use crate::status::plan::EventReason;
use crate::{Error, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use loadgate_api::conditions::{is_true, reasons, types};
use loadgate_api::model_endpoint::ModelEndpoint;
use loadgate_api::validate::validate_endpoint_name;
use std::sync::Arc;
use std::time::Duration;

const CONTROLLER: &str = "modelendpoint";

/// Brings the endpoint's children and status in line with its spec; a failure is published as
/// a Warning Event on the endpoint before it is retried.
///
/// # Errors
/// API errors (retried soon).
#[tracing::instrument(skip(endpoint, ctx), fields(name = %endpoint.name_any(), namespace = endpoint.namespace()))]
pub async fn reconcile(endpoint: Arc<ModelEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let result = reconcile_endpoint(&endpoint, &ctx).await;
    if let Err(e) = &result {
        super::publish_failure(&ctx, endpoint.as_ref(), e).await;
    }
    result
}

async fn reconcile_endpoint(endpoint: &ModelEndpoint, ctx: &Context) -> Result<Action> {
    let namespace = endpoint
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a ModelEndpoint must be namespaced".into()))?;
    let name = endpoint.name_any();
    if let Err(e) = validate_endpoint_name(&name).and_then(|()| endpoint.spec.validate()) {
        return block(ctx, endpoint, reasons::INVALID_SPEC, e.to_string()).await;
    }
    if let Some(why) = ctx
        .settings
        .policy
        .check_endpoint(endpoint, &ctx.settings.model_server_image)
    {
        return block(ctx, endpoint, reasons::POLICY_DENIED, why).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    // Never take over a Deployment or Service someone else made under the name we would use.
    let foreign = match not_owned(
        deployments.get_opt(&name).await?.as_ref(),
        "Deployment",
        endpoint,
    ) {
        Some(why) => Some(why),
        None => not_owned(services.get_opt(&name).await?.as_ref(), "Service", endpoint),
    };
    if let Some(why) = foreign {
        return block(ctx, endpoint, reasons::NOT_OWNED, why).await;
    }
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let desired = deployment(endpoint, &ctx.settings.model_server_image);
    let live = match deployments
        .patch(&name, &apply, &Patch::Apply(desired))
        .await
    {
        Ok(live) => live,
        Err(e) => return refused(ctx, endpoint, "Deployment", e).await,
    };
    if let Err(e) = services
        .patch(&name, &apply, &Patch::Apply(service(endpoint)))
        .await
    {
        return refused(ctx, endpoint, "Service", e).await;
    }
    let mut status = endpoint_status(endpoint, Some(&live), &ctx.clock.now());
    if is_true(&status.conditions, types::READY) {
        // Rolled out and serving: every pod left is the latest rollout's.
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = selector_of(endpoint);
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let recorded = endpoint
            .status
            .as_ref()
            .map(|s| s.cold_start_by_pod.clone())
            .unwrap_or_default();
        let (seconds, by_pod) = cold_start_seconds(&list.items, &recorded);
        if seconds.is_some() {
            status.cold_start_seconds = seconds;
            status.cold_start_by_pod = by_pod;
        }
    }
    if endpoint.status.as_ref() != Some(&status) {
        let was_ready = endpoint
            .status
            .as_ref()
            .is_some_and(|s| is_true(&s.conditions, types::READY));
        let ready = is_true(&status.conditions, types::READY);
        super::apply_status(ctx, endpoint, &status).await?;
        if ready != was_ready {
            let note = format!(
                "{}/{} replicas ready",
                status.ready_replicas, endpoint.spec.replicas
            );
            let reason = if ready {
                EventReason::EndpointReady
            } else {
                EventReason::EndpointNotReady
            };
            super::publish(ctx, endpoint, !ready && was_ready, reason.as_str(), note).await;
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// A child apply failed: a refusal the user must fix (422, 403) becomes the status; anything
/// else is retried.
async fn refused(
    ctx: &Context,
    endpoint: &ModelEndpoint,
    kind: &str,
    error: kube::Error,
) -> Result<Action> {
    match super::rejection(&error) {
        Some(why) => {
            let message = format!(
                "the apiserver refused {kind} {}: {why}",
                endpoint.name_any()
            );
            block(ctx, endpoint, reasons::REJECTED, message).await
        }
        None => Err(error.into()),
    }
}

/// Writes a Stalled status naming the cause (once) and waits for a change.
async fn block(
    ctx: &Context,
    endpoint: &ModelEndpoint,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    let status = blocked_status(endpoint, reason, &message, &ctx.clock.now());
    if endpoint.status.as_ref() != Some(&status) {
        tracing::warn!(reason, message, "endpoint blocked");
        super::apply_status(ctx, endpoint, &status).await?;
        super::publish(ctx, endpoint, true, reason, message).await;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Logs, counts and backs off.
pub fn error_policy(endpoint: Arc<ModelEndpoint>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %endpoint.name_any(), error = error as &dyn std::error::Error, "reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    super::backoff(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::apiserver::{client, condition, event_post, expect, not_found};
    use crate::fixtures::{at, context, deployment_with, endpoint, timeout_after_1s};
    use http::Method;

    const BASE: &str = "/apis/loadgate.dev/v1alpha1/namespaces/ml/modelendpoints/mini";

    /// The Deployment apply, answered with a Deployment whose one pod is ready.
    fn apply_deployment() -> crate::fixtures::apiserver::Expect {
        let ready = serde_json::to_value(deployment_with(1, 1, 1, 1)).unwrap();
        expect(
            Method::PATCH,
            "/apis/apps/v1/namespaces/ml/deployments/mini",
            ready,
        )
    }

    /// The status write, answered with `ep`.
    fn status_patch(ep: &ModelEndpoint) -> crate::fixtures::apiserver::Expect {
        expect(
            Method::PATCH,
            format!("{BASE}/status"),
            serde_json::to_value(ep).unwrap(),
        )
    }

    /// The endpoint's pods listed once it is Ready: `ready_after` seconds from creation to
    /// Ready for each.
    fn list_pods(ready_after: &[i64]) -> crate::fixtures::apiserver::Expect {
        let items: Vec<serde_json::Value> = ready_after
            .iter()
            .map(|s| {
                serde_json::json!({
                    "metadata": {"name": format!("mini-{s}"), "uid": format!("uid-{s}"),
                                 "creationTimestamp": at(100).0.to_string()},
                    "status": {"conditions": [{"type": "Ready", "status": "True",
                        "lastTransitionTime": at(100 + s).0.to_string()}]},
                })
            })
            .collect();
        expect(
            Method::GET,
            "/api/v1/namespaces/ml/pods",
            serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
        )
    }

    fn apply_service(ep: &ModelEndpoint) -> crate::fixtures::apiserver::Expect {
        let svc = serde_json::to_value(service(ep)).unwrap();
        expect(Method::PATCH, "/api/v1/namespaces/ml/services/mini", svc)
    }

    #[tokio::test]
    async fn applies_children_then_writes_ready_status_and_an_event() {
        let ep = endpoint("mini");
        let mut with_status = ep.clone();
        with_status.status = Some(endpoint_status(
            &ep,
            Some(&deployment_with(1, 1, 1, 1)),
            &at(5),
        ));
        let (client, verifier) = client(vec![
            not_found("/apis/apps/v1/namespaces/ml/deployments/mini"),
            not_found("/api/v1/namespaces/ml/services/mini"),
            apply_deployment(),
            apply_service(&ep),
            list_pods(&[2, 3]),
            expect(
                Method::PATCH,
                format!("{BASE}/status"),
                serde_json::to_value(&with_status).unwrap(),
            ),
            event_post(),
        ]);
        let action = timeout_after_1s(reconcile(Arc::new(ep), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(300)));
        let bodies = verifier.await.unwrap();
        assert_eq!(
            bodies[2]["spec"]["template"]["spec"]["containers"][0]["image"],
            "example/model-server:test"
        );
        let conditions = bodies[5]["status"]["conditions"].as_array().unwrap();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(bodies[5]["status"]["url"], "http://mini.ml.svc:8080");
        // The slowest pod's creation to Ready.
        assert_eq!(bodies[5]["status"]["coldStartSeconds"], 3.0);
        assert_eq!(bodies[5]["status"]["coldStartByPod"]["uid-3"], 3.0);
        assert_eq!(bodies[6]["reason"], "EndpointReady");
    }

    #[tokio::test]
    async fn unchanged_status_is_not_written() {
        let mut ep = endpoint("mini");
        // The status the previous reconcile wrote (same conditions, same transition times).
        ep.status = Some(endpoint_status(
            &ep,
            Some(&deployment_with(1, 1, 1, 1)),
            &at(5),
        ));
        let (client, verifier) = client(vec![
            get_own_deployment(),
            not_found("/api/v1/namespaces/ml/services/mini"),
            apply_deployment(),
            apply_service(&ep),
            list_pods(&[]),
        ]);
        timeout_after_1s(reconcile(Arc::new(ep), context(client)))
            .await
            .unwrap();
        assert_eq!(
            verifier.await.unwrap().len(),
            5,
            "the pods listed, then no status write, no event"
        );
    }

    /// GET of the endpoint's own Deployment (controlled by it).
    fn get_own_deployment() -> crate::fixtures::apiserver::Expect {
        let mut own = serde_json::to_value(deployment_with(1, 1, 1, 1)).unwrap();
        own["metadata"]["ownerReferences"] = serde_json::json!([{"apiVersion": "loadgate.dev/v1alpha1",
            "kind": "ModelEndpoint", "name": "mini", "uid": "uid-mini", "controller": true}]);
        expect(
            Method::GET,
            "/apis/apps/v1/namespaces/ml/deployments/mini",
            own,
        )
    }

    /// A Deployment of the same name made by someone else is never changed: no apply, and the
    /// status says whose name it is.
    #[tokio::test]
    async fn a_deployment_it_does_not_control_is_left_alone_and_reported() {
        let ep = endpoint("mini");
        let stranger = serde_json::to_value(deployment_with(1, 1, 1, 1)).unwrap();
        let (client, verifier) = client(vec![
            expect(
                Method::GET,
                "/apis/apps/v1/namespaces/ml/deployments/mini",
                stranger,
            ),
            status_patch(&ep),
            event_post(),
        ]);
        timeout_after_1s(reconcile(Arc::new(ep), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let stalled = condition(&bodies[1]["status"], "Stalled");
        assert_eq!(stalled["reason"], "NotOwned");
        assert!(
            stalled["message"]
                .as_str()
                .unwrap()
                .contains("Deployment mini already exists"),
            "{stalled}"
        );
        assert_eq!(
            (bodies[2]["type"].as_str(), bodies[2]["reason"].as_str()),
            (Some("Warning"), Some("NotOwned"))
        );
    }

    /// A 422 from the apiserver reaches the status, not only the log.
    #[tokio::test]
    async fn an_apiserver_rejection_reaches_the_status() {
        let ep = endpoint("mini");
        let (client, verifier) = client(vec![
            not_found("/apis/apps/v1/namespaces/ml/deployments/mini"),
            not_found("/api/v1/namespaces/ml/services/mini"),
            crate::fixtures::apiserver::Expect {
                method: Method::PATCH,
                path: "/apis/apps/v1/namespaces/ml/deployments/mini".into(),
                code: 422,
                answer: serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "Invalid", "code": 422,
                    "message": "Deployment.apps \"mini\" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit"}),
            },
            status_patch(&ep),
            event_post(),
        ]);
        timeout_after_1s(reconcile(Arc::new(ep), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let ready = condition(&bodies[3]["status"], "Ready");
        assert_eq!(ready["reason"], "Rejected");
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("must be less than or equal to cpu limit"),
            "{ready}"
        );
    }

    /// Before: a ModelEndpoint could run any image. Now one outside the allowed repositories
    /// is blocked before any child is written: Stalled, `PolicyDenied`, naming the image.
    #[tokio::test]
    async fn an_image_outside_the_policy_is_refused_before_anything_is_written() {
        let mut ep = endpoint("mini");
        ep.spec.image = Some("evil.example/miner:1".into());
        let (client, verifier) = client(vec![status_patch(&ep), event_post()]);
        timeout_after_1s(reconcile(Arc::new(ep), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let stalled = condition(&bodies[0]["status"], "Stalled");
        assert_eq!(
            (stalled["status"].as_str(), stalled["reason"].as_str()),
            (Some("True"), Some("PolicyDenied"))
        );
        assert!(
            stalled["message"].as_str().unwrap().starts_with(
                "spec.image evil.example/miner:1 is not an allowed model-server image"
            ),
            "{stalled}"
        );
    }
}
