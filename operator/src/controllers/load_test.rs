//! LoadTest reconcile: observe (the target endpoint, the current profile's Job and its pods'
//! termination messages), let the pure state machine ([`crate::status::load_test`]) decide, then
//! act (create or delete a Job), write the status when it changed, and publish Events.
//!
//! The Job is created before the status that names it is written: if the operator dies in
//! between, the next reconcile finds the Job and carries on; the reverse order would lose it.

use crate::context::Context;
use crate::metrics::TestLabels;
use crate::resources::FIELD_MANAGER;
use crate::resources::load_test::{JOB_NAME_LABEL, RunnerJob, job, job_name, requested_run};
use crate::status::load_test::{
    EndpointState, JobState, Plan, Step, advance, is_current_run, now, start_run,
};
use crate::{Error, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use loadgate_api::conditions::{find, is_true, types};
use loadgate_api::load::RunSummary;
use loadgate_api::load_test::{LoadPhase, LoadTest, LoadTestStatus, ProfilePhase};
use loadgate_api::model_endpoint::ModelEndpoint;
use std::sync::Arc;

const CONTROLLER: &str = "loadtest";

/// Moves the test one step on.
///
/// # Errors
/// API errors (retried soon).
#[tracing::instrument(skip(test, ctx), fields(name = %test.name_any(), namespace = test.namespace()))]
pub async fn reconcile(test: Arc<LoadTest>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let namespace = test
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a LoadTest must be namespaced".into()))?;
    let run = requested_run(&test);
    let now = now();
    let plan = match test.status.as_ref() {
        Some(status) if is_current_run(&test, status, &run) => {
            if status.phase.is_some_and(LoadPhase::is_finished) {
                record_result(&ctx, &test, status);
                return Ok(Action::await_change());
            }
            let running = status.phase == Some(LoadPhase::Running);
            let endpoint = observe_endpoint(&ctx, &test, &namespace, running).await?;
            let job = observe_job(&ctx, &test, status, &namespace, &run).await?;
            advance(&test, status, &endpoint, &job, &now)
        }
        status => start_run(&test, status, &run, &now),
    };
    act(&ctx, &test, &namespace, &run, &plan).await?;
    if test.status.as_ref() != Some(&plan.status) {
        write_status(&ctx, &test, &namespace, &plan.status).await?;
    }
    for event in &plan.events {
        super::publish(
            &ctx,
            test.as_ref(),
            event.warning,
            event.reason,
            event.note.clone(),
        )
        .await;
    }
    if plan.status.phase.is_some_and(LoadPhase::is_finished) {
        record_result(&ctx, &test, &plan.status);
    }
    Ok(match plan.requeue {
        Some(after) if after.is_zero() => Action::requeue(std::time::Duration::from_millis(200)),
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

async fn observe_endpoint(
    ctx: &Context,
    test: &LoadTest,
    namespace: &str,
    running: bool,
) -> Result<EndpointState> {
    let target = &test.spec.target;
    if let Some(url) = &target.url {
        return Ok(EndpointState::Ready {
            url: url.trim_end_matches('/').to_owned(),
        });
    }
    let Some(reference) = &target.endpoint_ref else {
        return Err(Error::InvalidSpec("target needs endpointRef or url".into()));
    };
    let endpoints: Api<ModelEndpoint> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(endpoint) = endpoints.get_opt(&reference.name).await? else {
        return Ok(EndpointState::NotReady {
            message: format!(
                "ModelEndpoint {} not found in namespace {namespace}",
                reference.name
            ),
        });
    };
    let status = endpoint.status.unwrap_or_default();
    let url = status.url.clone().unwrap_or_default();
    // Mid-test, a replica restarting is part of what is measured; only no replica at all stops it.
    let serving =
        is_true(&status.conditions, types::READY) || (running && status.ready_replicas > 0);
    Ok(if serving && !url.is_empty() {
        EndpointState::Ready { url }
    } else {
        EndpointState::NotReady {
            message: find(&status.conditions, types::READY)
                .map(|c| c.message.clone())
                .unwrap_or_else(|| "no status yet".to_owned()),
        }
    })
}

async fn observe_job(
    ctx: &Context,
    test: &LoadTest,
    status: &LoadTestStatus,
    namespace: &str,
    run: &str,
) -> Result<JobState> {
    let Some(profile) = status.profiles.iter().find(|p| {
        !matches!(
            p.phase,
            ProfilePhase::Passed | ProfilePhase::Failed | ProfilePhase::Error
        )
    }) else {
        return Ok(JobState::Missing);
    };
    let name = profile
        .job
        .clone()
        .unwrap_or_else(|| job_name(test, &profile.name, run));
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(job) = jobs.get_opt(&name).await? else {
        return Ok(JobState::Missing);
    };
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let condition = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    if let Some(failed) = condition("Failed") {
        let mut message = format!(
            "{}: {}",
            failed.reason.clone().unwrap_or_default(),
            failed.message.clone().unwrap_or_default()
        );
        let list = pods
            .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={name}")))
            .await?;
        if let Some(why) = list.items.iter().find_map(pod_failure) {
            message.push_str("; ");
            message.push_str(&why);
        }
        return Ok(JobState::Failed(message));
    }
    if condition("Complete").is_none() {
        return Ok(JobState::Running);
    }
    let list = pods
        .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={name}")))
        .await?;
    let summaries = list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .map(pod_summary)
        .collect();
    Ok(JobState::Succeeded(summaries))
}

fn terminated(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == crate::resources::load_test::APP)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

/// The run summary a runner pod left in its termination message.
pub fn pod_summary(pod: &Pod) -> Result<RunSummary, String> {
    let pod_name = pod.name_any();
    let message = terminated(pod)
        .and_then(|t| t.message.clone())
        .ok_or_else(|| format!("pod {pod_name} has no termination message"))?;
    serde_json::from_str(&message)
        .map_err(|e| format!("pod {pod_name}: termination message is not a run summary: {e}"))
}

/// Why a runner pod failed: eviction, or the runner's exit code and last words.
fn pod_failure(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    if let Some(reason) = &status.reason {
        return Some(format!(
            "pod {} {reason}: {}",
            pod.name_any(),
            status.message.clone().unwrap_or_default()
        ));
    }
    let t = terminated(pod)?;
    let words = t.message.clone().unwrap_or_default();
    Some(format!(
        "pod {} exited {}: {}",
        pod.name_any(),
        t.exit_code,
        words.trim()
    ))
}

async fn act(
    ctx: &Context,
    test: &LoadTest,
    namespace: &str,
    run: &str,
    plan: &Plan,
) -> Result<()> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match &plan.step {
        Step::Wait => {}
        Step::CreateJob { index, target_url } => {
            let profile = test
                .spec
                .profiles
                .get(*index)
                .ok_or_else(|| Error::InvalidSpec(format!("no profile {index}")))?;
            let desired = job(
                test,
                &RunnerJob {
                    profile,
                    run,
                    target_url,
                    default_image: &ctx.settings.loadrunner_image,
                },
            );
            let name = desired.name_any();
            jobs.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(desired),
            )
            .await?;
            tracing::info!(job = name, profile = profile.name, "runner Job created");
        }
        Step::DeleteJob(name) => {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match jobs.delete(name, &params).await {
                Ok(_) => tracing::info!(job = name, "runner Job deleted"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn write_status(
    ctx: &Context,
    test: &LoadTest,
    namespace: &str,
    status: &LoadTestStatus,
) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "loadgate.dev/v1alpha1",
        "kind": "LoadTest",
        "status": status,
    });
    Api::<LoadTest>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            &test.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(())
}

fn record_result(ctx: &Context, test: &LoadTest, status: &LoadTestStatus) {
    let labels = TestLabels {
        namespace: test.namespace().unwrap_or_default(),
        name: test.name_any(),
    };
    if let Some(summary) = &status.summary {
        ctx.metrics
            .last_p95_ms
            .get_or_create(&labels)
            .set(summary.p95_ms);
        ctx.metrics
            .last_error_rate
            .get_or_create(&labels)
            .set(summary.error_rate);
    }
    ctx.metrics
        .last_passed
        .get_or_create(&labels)
        .set(i64::from(status.phase == Some(LoadPhase::Passed)));
}

/// Logs, counts and backs off.
pub fn error_policy(test: Arc<LoadTest>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %test.name_any(), error = error as &dyn std::error::Error, "reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    super::backoff(error)
}
