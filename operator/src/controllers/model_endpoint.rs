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
        write_status(&ctx, &endpoint, &namespace, &status).await?;
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

async fn write_status(
    ctx: &Context,
    endpoint: &ModelEndpoint,
    namespace: &str,
    status: &loadgate_api::model_endpoint::ModelEndpointStatus,
) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "loadgate.dev/v1alpha1",
        "kind": "ModelEndpoint",
        "status": status,
    });
    Api::<ModelEndpoint>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            &endpoint.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(())
}

/// Logs, counts and backs off.
pub fn error_policy(endpoint: Arc<ModelEndpoint>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %endpoint.name_any(), error = error as &dyn std::error::Error, "reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    super::backoff(error)
}
