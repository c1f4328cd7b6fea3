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
        super::apply_status(&ctx, test.as_ref(), &plan.status).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::apiserver::{client, event_answer, expect};
    use crate::fixtures::{at, context, deployment_with, endpoint, load_test, timeout_after_1s};
    use crate::status::load_test::{EndpointState, JobState};
    use crate::status::model_endpoint::endpoint_status;
    use http::Method;

    const BASE: &str = "/apis/loadgate.dev/v1alpha1/namespaces/ml/loadtests/gate";

    fn echo(test: &LoadTest) -> serde_json::Value {
        serde_json::to_value(test).unwrap()
    }

    #[tokio::test]
    async fn a_new_test_starts_its_run() {
        let test = load_test("gate");
        let (client, verifier) = client(vec![status_patch(&test), event()]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[0]["status"]["phase"], "Pending");
        assert_eq!(bodies[0]["status"]["run"], "initial");
        assert_eq!(bodies[0]["kind"], "LoadTest");
        assert_eq!(bodies[1]["reason"], "RunStarted");
    }

    #[tokio::test]
    async fn a_finished_run_makes_no_calls() {
        let mut test = load_test("gate");
        let mut status = start_run(&test, None, "initial", &at(0)).status;
        status.phase = Some(LoadPhase::Passed);
        test.status = Some(status);
        let (client, verifier) = client(vec![]);
        let action = timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::await_change());
        assert!(verifier.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_ready_endpoint_gets_the_first_runner_job() {
        let mut test = load_test("gate");
        test.status = Some(start_run(&test, None, "initial", &now()).status);
        let mut ep = endpoint("mini");
        ep.status = Some(endpoint_status(
            &ep,
            Some(&deployment_with(1, 1, 1, 1)),
            &at(5),
        ));
        let job_name = job_name(&test, "ramp-up", "initial");
        let (client, verifier) = client(vec![
            expect(
                Method::GET,
                "/apis/loadgate.dev/v1alpha1/namespaces/ml/modelendpoints/mini",
                serde_json::to_value(&ep).unwrap(),
            ),
            // The Job does not exist yet.
            crate::fixtures::apiserver::Expect {
                method: Method::GET,
                path: format!("/apis/batch/v1/namespaces/ml/jobs/{job_name}"),
                code: 404,
                answer: serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
            },
            expect(
                Method::PATCH,
                format!("/apis/batch/v1/namespaces/ml/jobs/{job_name}"),
                serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job_name}}),
            ),
            status_patch(&test),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let args = bodies[2]["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap();
        assert!(args.iter().any(|a| a == "http://mini.ml.svc:8080"));
        assert_eq!(bodies[3]["status"]["phase"], "Running");
        assert_eq!(bodies[3]["status"]["profiles"][0]["job"], job_name.as_str());
        assert_eq!(bodies[4]["reason"], "ProfileStarted");
    }

    #[tokio::test]
    async fn a_complete_job_has_its_pods_summaries_collected() {
        let mut test = load_test("gate");
        test.spec.target = loadgate_api::load_test::Target {
            endpoint_ref: None,
            url: Some("http://10.0.0.1:8080".into()),
        };
        let mut status = start_run(&test, None, "initial", &now()).status;
        status.phase = Some(LoadPhase::Running);
        let job_name = job_name(&test, "ramp-up", "initial");
        status.profiles[0].phase = ProfilePhase::Running;
        status.profiles[0].job = Some(job_name.clone());
        test.status = Some(status);
        let summary = runner_summary(10);
        let pods = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner-0", "namespace": "ml"},
                "status": {"phase": "Succeeded", "containerStatuses": [{
                    "name": "loadrunner", "image": "lr", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": summary.to_string()}}
                }]}
            }]
        });
        let complete_job = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job_name, "namespace": "ml"},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}
        });
        let (client, verifier) = client(vec![
            expect(
                Method::GET,
                format!("/apis/batch/v1/namespaces/ml/jobs/{job_name}"),
                complete_job,
            ),
            expect(Method::GET, "/api/v1/namespaces/ml/pods", pods),
            status_patch(&test),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let profile = &bodies[2]["status"]["profiles"][0];
        assert_eq!(profile["phase"], "Passed");
        assert_eq!(profile["results"]["requests"], 100);
        assert!((profile["results"]["p95Ms"].as_f64().unwrap() - 10.0).abs() < 0.1);
        assert_eq!(bodies[2]["status"]["profiles"][1]["phase"], "Pending");
        assert_eq!(bodies[3]["reason"], "ProfilePassed");
    }

    fn get_ready_endpoint() -> crate::fixtures::apiserver::Expect {
        expect(
            Method::GET,
            "/apis/loadgate.dev/v1alpha1/namespaces/ml/modelendpoints/mini",
            ready_endpoint(),
        )
    }

    fn event() -> crate::fixtures::apiserver::Expect {
        expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ml/events",
            event_answer(),
        )
    }

    fn status_patch(test: &LoadTest) -> crate::fixtures::apiserver::Expect {
        expect(Method::PATCH, format!("{BASE}/status"), echo(test))
    }

    fn ready_endpoint() -> serde_json::Value {
        let mut ep = endpoint("mini");
        ep.status = Some(endpoint_status(
            &ep,
            Some(&deployment_with(1, 1, 1, 1)),
            &at(5),
        ));
        serde_json::to_value(&ep).unwrap()
    }

    fn job_path(test: &LoadTest, profile: &str) -> String {
        format!(
            "/apis/batch/v1/namespaces/ml/jobs/{}",
            job_name(test, profile, "initial")
        )
    }

    fn job_answer(
        test: &LoadTest,
        profile: &str,
        conditions: serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(test, profile, "initial"), "namespace": "ml"},
            "status": {"conditions": conditions}
        })
    }

    /// GET of the profile's Job, answered with these Job conditions.
    fn get_job(
        test: &LoadTest,
        profile: &str,
        conditions: serde_json::Value,
    ) -> crate::fixtures::apiserver::Expect {
        expect(
            Method::GET,
            job_path(test, profile),
            job_answer(test, profile, conditions),
        )
    }

    fn not_found() -> crate::fixtures::apiserver::Expect {
        crate::fixtures::apiserver::Expect {
            method: Method::GET,
            path: String::new(),
            code: 404,
            answer: serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        }
    }

    /// The test as the previous reconcile left it: run started, first Job created.
    fn running(test: &LoadTest) -> LoadTest {
        let mut test = test.clone();
        let start = start_run(&test, None, "initial", &now()).status;
        let ready = EndpointState::Ready {
            url: "http://mini.ml.svc:8080".into(),
        };
        test.status = Some(advance(&test, &start, &ready, &JobState::Missing, &now()).status);
        test
    }

    #[tokio::test]
    async fn an_endpoint_not_ready_is_waited_for() {
        let mut test = load_test("gate");
        test.status = Some(start_run(&test, None, "initial", &now()).status);
        let not_ready = serde_json::to_value(endpoint("mini")).unwrap();
        let (client, verifier) = client(vec![
            expect(
                Method::GET,
                "/apis/loadgate.dev/v1alpha1/namespaces/ml/modelendpoints/mini",
                not_ready,
            ),
            crate::fixtures::apiserver::Expect {
                path: job_path(&test, "ramp-up"),
                ..not_found()
            },
            status_patch(&test),
        ]);
        let action = timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(5)));
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[2]["status"]["phase"], "WaitingForEndpoint");
        let reconciling = bodies[2]["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Reconciling")
            .unwrap()
            .clone();
        assert_eq!(reconciling["reason"], "WaitingForEndpoint");
        assert!(
            reconciling["message"]
                .as_str()
                .unwrap()
                .contains("no status yet")
        );
    }

    #[tokio::test]
    async fn a_running_job_writes_nothing() {
        let test = running(&load_test("gate"));
        let (client, verifier) = client(vec![
            get_ready_endpoint(),
            get_job(&test, "ramp-up", serde_json::json!([])),
        ]);
        let action = timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
        assert_eq!(
            verifier.await.unwrap().len(),
            2,
            "no status write, no event"
        );
    }

    #[tokio::test]
    async fn a_broken_budget_ends_the_test_failed() {
        let mut test = load_test("gate");
        test.spec.profiles.truncate(1);
        let test = running(&test);
        let slow = runner_summary(900);
        let (client, verifier) = client(vec![
            get_ready_endpoint(),
            get_job(
                &test,
                "ramp-up",
                serde_json::json!([{"type": "Complete", "status": "True"}]),
            ),
            expect(
                Method::GET,
                "/api/v1/namespaces/ml/pods",
                pod_list("Succeeded", None, &slow.to_string()),
            ),
            status_patch(&test),
            event(),
            event(),
        ]);
        let action = timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::await_change());
        let bodies = verifier.await.unwrap();
        let status = &bodies[3]["status"];
        assert_eq!(
            (status["phase"].as_str(), status["verdict"].as_str()),
            (Some("Failed"), Some("Fail"))
        );
        let passed = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Passed")
            .unwrap()
            .clone();
        assert_eq!(passed["status"], "False");
        assert!(
            passed["message"].as_str().unwrap().contains("budget 500"),
            "{passed}"
        );
        assert_eq!(
            (bodies[4]["reason"].as_str(), bodies[5]["reason"].as_str()),
            (Some("ProfileFailed"), Some("TestFailed"))
        );
    }

    #[tokio::test]
    async fn an_evicted_runner_ends_the_test_in_error() {
        let test = running(&load_test("gate"));
        let (client, verifier) = client(vec![
            get_ready_endpoint(),
            get_job(
                &test,
                "ramp-up",
                serde_json::json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
            ),
            expect(
                Method::GET,
                "/api/v1/namespaces/ml/pods",
                pod_list("Failed", Some("Evicted"), ""),
            ),
            status_patch(&test),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let status = &bodies[3]["status"];
        assert_eq!(status["phase"], "Error");
        let stalled = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Stalled")
            .unwrap()
            .clone();
        assert_eq!(
            (stalled["status"].as_str(), stalled["reason"].as_str()),
            (Some("True"), Some("RunnerFailed"))
        );
        assert!(
            stalled["message"].as_str().unwrap().contains("Evicted"),
            "{stalled}"
        );
        assert_eq!(bodies[4]["type"], "Warning");
    }

    #[tokio::test]
    async fn a_restarted_operator_adopts_the_job_it_had_created() {
        // The last reconcile created the Job but stopped before writing the status.
        let mut test = load_test("gate");
        let mut status = start_run(&test, None, "initial", &now()).status;
        status.phase = Some(LoadPhase::Running);
        status.target_url = Some("http://mini.ml.svc:8080".into());
        test.status = Some(status);
        let (client, verifier) = client(vec![
            get_ready_endpoint(),
            get_job(&test, "ramp-up", serde_json::json!([])),
            status_patch(&test),
        ]);
        timeout_after_1s(reconcile(Arc::new(test.clone()), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let profile = &bodies[2]["status"]["profiles"][0];
        assert_eq!(profile["phase"], "Running");
        assert_eq!(
            profile["job"],
            job_name(&test, "ramp-up", "initial").as_str()
        );
    }

    fn pod_list(phase: &str, reason: Option<&str>, message: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner-0", "namespace": "ml"},
                "status": {"phase": phase, "reason": reason, "message": reason.map(|_| "The node was low on resource: memory."),
                    "containerStatuses": [{
                    "name": "loadrunner", "image": "lr", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": message}}
                }]}
            }]
        })
    }

    /// A runner's summary of 100 requests of `ms` each, as its termination message carries it.
    fn runner_summary(ms: u64) -> serde_json::Value {
        let ms_f = ms as f64;
        serde_json::json!({
            "profile": "ramp-up", "durationSeconds": 20.0, "users": 10,
            "total": {"name": "Aggregated", "method": "", "requests": 100, "failures": 0, "errorRate": 0.0, "rps": 5.0,
                      "meanMs": ms_f, "p50Ms": ms_f, "p90Ms": ms_f, "p95Ms": ms_f, "p99Ms": ms_f, "maxMs": ms_f,
                      "histogram": one_value_histogram(ms * 1000, 100)},
            "tasks": [], "violations": [], "passed": true, "interrupted": false
        })
    }

    fn one_value_histogram(micros: u64, count: u64) -> String {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record_n(micros, count).unwrap();
        loadrunner::merge::encode(&h)
    }
}
