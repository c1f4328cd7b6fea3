//! ModelEndpoint reconcile: apply the Deployment and Service (server-side apply, owned by the
//! endpoint, so deleting it deletes them), then derive the status from the Deployment the
//! apiserver returned, and write it only when it changed.

use crate::context::Context;
use crate::resources::FIELD_MANAGER;
use crate::resources::model_endpoint::{deployment, service};
use crate::status::load_test::now;
use crate::status::model_endpoint::endpoint_status;
use crate::{Error, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use loadgate_api::conditions::{is_true, types};
use loadgate_api::model_endpoint::ModelEndpoint;
use std::sync::Arc;
use std::time::Duration;

const CONTROLLER: &str = "modelendpoint";

/// Brings the endpoint's children and status in line with its spec.
///
/// # Errors
/// API errors (retried soon).
#[tracing::instrument(skip(endpoint, ctx), fields(name = %endpoint.name_any(), namespace = endpoint.namespace()))]
pub async fn reconcile(endpoint: Arc<ModelEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let namespace = endpoint
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a ModelEndpoint must be namespaced".into()))?;
    let name = endpoint.name_any();
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = deployments
        .patch(
            &name,
            &apply,
            &Patch::Apply(deployment(&endpoint, &ctx.settings.model_server_image)),
        )
        .await?;
    Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &apply, &Patch::Apply(service(&endpoint)))
        .await?;
    let status = endpoint_status(&endpoint, Some(&live), &now());
    if endpoint.status.as_ref() != Some(&status) {
        let was_ready = endpoint
            .status
            .as_ref()
            .is_some_and(|s| is_true(&s.conditions, types::READY));
        let ready = is_true(&status.conditions, types::READY);
        super::apply_status(&ctx, endpoint.as_ref(), &status).await?;
        if ready != was_ready {
            let note = format!(
                "{}/{} replicas ready",
                status.ready_replicas, endpoint.spec.replicas
            );
            let reason = if ready {
                "EndpointReady"
            } else {
                "EndpointNotReady"
            };
            super::publish(&ctx, endpoint.as_ref(), !ready && was_ready, reason, note).await;
        }
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
    use crate::fixtures::apiserver::{client, event_answer, expect};
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
            apply_deployment(),
            apply_service(&ep),
            expect(
                Method::PATCH,
                format!("{BASE}/status"),
                serde_json::to_value(&with_status).unwrap(),
            ),
            expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/ml/events",
                event_answer(),
            ),
        ]);
        let action = timeout_after_1s(reconcile(Arc::new(ep), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(300)));
        let bodies = verifier.await.unwrap();
        assert_eq!(
            bodies[0]["spec"]["template"]["spec"]["containers"][0]["image"],
            "example/model-server:test"
        );
        let conditions = bodies[2]["status"]["conditions"].as_array().unwrap();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(bodies[2]["status"]["url"], "http://mini.ml.svc:8080");
        assert_eq!(bodies[3]["reason"], "EndpointReady");
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
        let (client, verifier) = client(vec![apply_deployment(), apply_service(&ep)]);
        timeout_after_1s(reconcile(Arc::new(ep), context(client)))
            .await
            .unwrap();
        assert_eq!(
            verifier.await.unwrap().len(),
            2,
            "no status write, no event"
        );
    }
}
