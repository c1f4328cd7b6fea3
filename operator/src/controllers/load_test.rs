//! LoadTest reconcile: observe (the target endpoint, the current profile's Job and its pods'
//! termination messages), let the pure state machine ([`crate::status::load_test`]) decide, then
//! act (create or delete a Job), write the status when it changed, and publish Events.
//!
//! Before each runner Job is created, the Secrets and ConfigMap its pods read (headers, the CA
//! bundle, the dataset) are checked for their keys: one missing ends the run `InvalidSpec`
//! naming it, rather than leaving pods that cannot start until the Job's deadline. Only key
//! names are looked at; a value is never copied, logged or written anywhere.
//!
//! The Job is created before the status that names it is written: if the operator dies in
//! between, the next reconcile finds the Job and carries on; the reverse order would lose it.

use crate::context::Context;
use crate::metrics::TestLabels;
use crate::resources::FIELD_MANAGER;
use crate::resources::load_test::{
    APP, JOB_NAME_LABEL, LOADTEST_LABEL, RefKind, RunnerJob, config_map_keys, foreign_job, job,
    job_name, missing_key, references, requested_run, secret_keys, start_at, superseded,
};
use crate::status::load_test::{
    advance, cleanup_in, deny_run, is_current_run, live, refuse, reject_spec, start_run,
};
use crate::status::plan::{EndpointState, EventReason, JobState, Plan, Step, Transition};
use crate::status::runner_results;
use crate::{Error, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use loadgate_api::conditions::{Time, find, is_true, reasons, types};
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadPhase, LoadTestStatus, ProfilePhase};
use loadgate_api::model_endpoint::ModelEndpoint;
use loadgate_api::validate::validate_load_test_name;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const CONTROLLER: &str = "loadtest";

/// Moves the test one step on; a failure is published as a Warning Event on the test before
/// it is retried.
///
/// # Errors
/// API errors (retried soon).
#[tracing::instrument(skip(test, ctx), fields(name = %test.name_any(), namespace = test.namespace()))]
pub async fn reconcile(test: Arc<LoadTest>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let result = reconcile_test(&test, &ctx).await;
    if let Err(e) = &result {
        super::publish_failure(&ctx, test.as_ref(), e).await;
    }
    result
}

async fn reconcile_test(test: &LoadTest, ctx: &Context) -> Result<Action> {
    let namespace = test
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a LoadTest must be namespaced".into()))?;
    let run = requested_run(test);
    let now = ctx.clock.now();
    // The endpoint's own readiness path (a team's server image), for the runners' wait.
    let mut endpoint_readiness = None;
    let plan = match test.status.as_ref() {
        Some(status) if is_current_run(test, status, &run) => {
            if status.phase.is_some_and(LoadPhase::is_finished) {
                record_result(ctx, test, status);
                return clean_up(ctx, test, status, &namespace, &now).await;
            }
            let running = status.phase == Some(LoadPhase::Running);
            let endpoint = observe_endpoint(ctx, test, &namespace, running).await?;
            endpoint_readiness = endpoint.readiness_path().map(str::to_owned);
            let job = observe_job(ctx, test, status, &namespace, &run).await?;
            // While the profile's Job runs: its pods' progress lines, every 10 s at most.
            let reading = if matches!(job, JobState::Running) && live::due(status, &now) {
                observe_progress(ctx, status, &namespace).await?
            } else {
                None
            };
            let mut plan = if matches!(job, JobState::Succeeded(_)) {
                // Merging histograms, steps and windows is CPU work: on the blocking pool.
                let (test, status, now) = (test.clone(), status.clone(), now.clone());
                tokio::task::spawn_blocking(move || advance(&test, &status, &endpoint, &job, &now))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            } else {
                advance(test, status, &endpoint, &job, &now)
            };
            live::show(&mut plan.status, reading, &now);
            ctx.metrics.show_progress(test, &plan.status);
            plan
        }
        // A new run (first, re-run by annotation, or a spec edit: a new generation) starts
        // only from a spec that keeps every rule of the CRD.
        status => {
            let valid =
                validate_load_test_name(&test.name_any()).and_then(|()| test.spec.validate());
            let denied = ctx
                .settings
                .policy
                .check_load_test(test, &ctx.settings.loadrunner_image);
            match (valid, denied) {
                (Err(e), _) => reject_spec(test, status, &run, e.to_string(), &now),
                (Ok(()), Some(why)) => {
                    deny_run(test, status, &run, (reasons::POLICY_DENIED, why), &now)
                }
                (Ok(()), None) => {
                    // The runs before this one stop first: their load would be measured as
                    // this run's (a re-run, or a spec edit mid-profile).
                    let stopped = stop_superseded_jobs(ctx, test, &namespace, &run).await?;
                    // Another LoadTest's latest passed run as the baseline: read once, as the
                    // run starts, and kept in the status with the figures it compares.
                    let referenced = match test
                        .spec
                        .baseline
                        .as_ref()
                        .and_then(|b| b.load_test_ref.as_deref())
                    {
                        Some(other) => {
                            let tests: Api<LoadTest> =
                                Api::namespaced(ctx.client.clone(), &namespace);
                            tests.get_opt(other).await?.and_then(|t| t.status)
                        }
                        None => None,
                    };
                    let mut plan = start_run(test, status, referenced.as_ref(), &run, &now);
                    if !stopped.is_empty() {
                        plan.events.push(Transition {
                            warning: false,
                            reason: EventReason::SupersededRun,
                            note: format!(
                                "run {run} stopped the runner Jobs of earlier runs: {}",
                                stopped.join(", ")
                            ),
                        });
                    }
                    plan
                }
            }
        }
    };
    // Checked right before each Job rather than once as the run starts: the pods read them
    // when they start, and a run may wait minutes for its endpoint, or a profile, while a
    // Secret is deleted or rotated without a key. It is also the one path that creates Jobs.
    let plan = match &plan.step {
        Step::CreateJob { .. } => match missing_reference(ctx, test, &namespace).await? {
            Some(why) => refuse(test, plan, reasons::INVALID_SPEC, why, &now),
            None => plan,
        },
        _ => plan,
    };
    let mut plan = match act(
        ctx,
        test,
        &namespace,
        &run,
        &plan,
        endpoint_readiness.as_deref(),
    )
    .await
    {
        Ok(()) => plan,
        // A refusal only a person can fix (422 invalid, 403 forbidden) ends the run with the
        // apiserver's own words in the conditions; other errors are retried.
        Err(Error::KubeApi(e)) => match super::rejection(&e) {
            Some(why) => refuse(
                test,
                plan,
                reasons::REJECTED,
                format!("the apiserver refused the runner Job: {why}"),
                &now,
            ),
            None => return Err(Error::KubeApi(e)),
        },
        Err(e) => return Err(e),
    };
    // The report first: a status that names a profile's result has its report stored.
    if let Some((index, report)) = &plan.report {
        let generation = crate::resources::load_test::generation(test);
        let stored = crate::reports::StoredProfile {
            run: run.clone(),
            generation,
            index: *index,
            finished_at_ms: unix_ms(ctx.clock.system_time()),
            report: report.clone(),
            cold_start_seconds: plan.status.cold_start_seconds,
        };
        let hash = crate::resources::load_test::run_hash(&run, generation);
        let why = match crate::reports::store(&ctx.client, test, &hash, &stored).await? {
            crate::reports::Stored::Written => None,
            crate::reports::Stored::NotOwned(why) => Some((EventReason::ReportNotOwned, why)),
            crate::reports::Stored::Refused(why) => Some((EventReason::ReportNotStored, why)),
        };
        // The run goes on: its figures are in the status; only the report's copy is missing.
        if let Some((reason, note)) = why {
            tracing::warn!(reason = reason.as_str(), "{note}");
            plan.events.push(Transition {
                warning: true,
                reason,
                note,
            });
        }
    }
    if test.status.as_ref() != Some(&plan.status) {
        super::apply_status(ctx, test, &plan.status).await?;
    }
    for event in &plan.events {
        super::publish(
            ctx,
            test,
            event.warning,
            event.reason.as_str(),
            event.note.clone(),
        )
        .await;
    }
    if plan.status.phase.is_some_and(LoadPhase::is_finished) {
        record_result(ctx, test, &plan.status);
        return clean_up(ctx, test, &plan.status, &namespace, &now).await;
    }
    Ok(match plan.requeue {
        Some(after) if after.is_zero() => Action::requeue(std::time::Duration::from_millis(200)),
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

fn unix_ms(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A finished test: its Jobs are deleted `ttlSecondsAfterFinished` after its end (their
/// results are in the status), then nothing more happens until the spec or run changes.
async fn clean_up(
    ctx: &Context,
    test: &LoadTest,
    status: &LoadTestStatus,
    namespace: &str,
    now: &Time,
) -> Result<Action> {
    match cleanup_in(test, status, now) {
        None => Ok(Action::await_change()),
        Some(wait) if !wait.is_zero() => Ok(Action::requeue(wait)),
        Some(_) => {
            let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
            let selector = format!("{LOADTEST_LABEL}={}", test.name_any());
            let list = jobs
                .list_metadata(&ListParams::default().labels(&selector))
                .await?;
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            for job in list
                .items
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
            {
                // Only Jobs this test controls: a label is not proof of ownership.
                if !crate::resources::controlled_by(job, test.metadata.uid.as_deref()) {
                    continue;
                }
                let name = job.name_any();
                match jobs.delete(&name, &params).await {
                    Ok(_) => tracing::info!(
                        job = name,
                        "runner Job deleted after ttlSecondsAfterFinished"
                    ),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(Action::await_change())
        }
    }
}

/// Deletes (propagation Background: the pods go too, so their load stops) this test's runner
/// Jobs of other runs or generations that are still running, before run `run` creates its
/// first Job; returns their names. Finished Jobs are left for `ttlSecondsAfterFinished`.
async fn stop_superseded_jobs(
    ctx: &Context,
    test: &LoadTest,
    namespace: &str,
    run: &str,
) -> Result<Vec<String>> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{LOADTEST_LABEL}={}", test.name_any());
    let list = jobs.list(&ListParams::default().labels(&selector)).await?;
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let mut stopped = Vec::new();
    for job in list.items.iter().filter(|j| superseded(test, run, j)) {
        let name = job.name_any();
        match jobs.delete(&name, &params).await {
            Ok(_) => tracing::info!(job = name, run, "runner Job of an earlier run stopped"),
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        stopped.push(name);
    }
    Ok(stopped)
}

/// The first Secret or ConfigMap key the test's runner pods read that is not there (its object
/// or the key), as the sentence the run ends with; `None` when all are. Each object is read
/// once; only its key names are kept.
///
/// # Errors
/// Any API error but a 404 (transient: retried).
async fn missing_reference(
    ctx: &Context,
    test: &LoadTest,
    namespace: &str,
) -> Result<Option<String>> {
    let mut seen: BTreeMap<(RefKind, &str), Option<BTreeSet<String>>> = BTreeMap::new();
    for reference in references(test) {
        let object = (reference.kind, reference.name);
        if let Entry::Vacant(slot) = seen.entry(object) {
            slot.insert(object_keys(ctx, namespace, object).await?);
        }
        let keys = seen[&object].as_ref().map(|k| k.iter().map(String::as_str));
        if let Some(why) = missing_key(&reference, keys) {
            return Ok(Some(why));
        }
    }
    Ok(None)
}

/// The key names of Secret or ConfigMap `name` (`None`: not found); its values are dropped.
async fn object_keys(
    ctx: &Context,
    namespace: &str,
    (kind, name): (RefKind, &str),
) -> Result<Option<BTreeSet<String>>> {
    Ok(match kind {
        RefKind::Secret => Api::<Secret>::namespaced(ctx.client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(secret_keys),
        RefKind::ConfigMap => Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(config_map_keys),
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
            cold_start_seconds: None,
            resources: None,
            readiness_path: None,
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
        EndpointState::Ready {
            url,
            cold_start_seconds: status.cold_start_seconds,
            resources: crate::resources::model_endpoint::target_resources(&endpoint.spec),
            readiness_path: (endpoint.spec.runtime.as_ref()).map(|r| r.readiness_path.clone()),
        }
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
            ProfilePhase::Passed
                | ProfilePhase::Failed
                | ProfilePhase::Error
                | ProfilePhase::Skipped
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
    if let Some(why) = foreign_job(test, &profile.name, run, &job) {
        return Ok(JobState::Foreign(why));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let job_pods = || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={name}")))
            .await?;
        // Only the Job's own pods: a pod anyone labels like the Job's must not count.
        Ok::<_, Error>(
            list.items
                .into_iter()
                .filter(|p| runner_results::owned_by(p, &job))
                .collect::<Vec<_>>(),
        )
    };
    if let Some(failed) = condition("Failed") {
        let mut message = format!(
            "{}: {}",
            failed.reason.clone().unwrap_or_default(),
            failed.message.clone().unwrap_or_default()
        );
        if let Some(why) = job_pods().await?.iter().find_map(pod_failure) {
            message.push_str("; ");
            message.push_str(&why);
        }
        return Ok(JobState::Failed(message));
    }
    if condition("Complete").is_none() {
        return Ok(JobState::Running);
    }
    let parallelism = usize::try_from(test.spec.parallelism.max(1)).unwrap_or(1);
    let collected = match runner_results::collect(&job, &job_pods().await?, parallelism, APP) {
        Ok(collected) => collected,
        Err(why) => return Ok(JobState::BadResults(why)),
    };
    // One pod at a time, within the profile's decode budget: a frame past what is left is
    // refused before its log is read or before it is inflated further, and each is decoded on
    // the blocking pool, off the async workers that serve every other reconcile.
    let mut budget = runner_results::DecodeBudget::profile();
    let mut runners = Vec::with_capacity(collected.len());
    for (pod, summary) in collected {
        if let Err(why) = budget.admit(&pod, &summary) {
            return Ok(JobState::BadResults(why));
        }
        let log = match summary.results {
            Some(reference) => read_frame_lines(&pods, &pod, &reference).await?,
            None => None,
        };
        let decoded = tokio::task::spawn_blocking(move || {
            let runner =
                runner_results::with_frame_within(&pod, summary, log.as_deref(), &mut budget);
            (runner, budget)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        budget = decoded.1;
        match decoded.0 {
            Ok(runner) => runners.push(runner),
            Err(why) => return Ok(JobState::BadResults(why)),
        }
    }
    Ok(JobState::Succeeded(runners))
}

/// The running profile's pods' progress lines, merged: each running pod's newest one, from the
/// last [`progress::TAIL_LINES`] lines of its log (at most [`progress::TAIL_BYTES`]). A pod
/// whose log cannot be read, or holds no good line yet, is left out (`pods` says how many
/// count); `None` when none has one.
///
/// # Errors
/// Listing the pods failed (retried). A log read that fails only leaves its pod out: progress
/// is for watching, and the run must not stall on it.
async fn observe_progress(
    ctx: &Context,
    status: &LoadTestStatus,
    namespace: &str,
) -> Result<Option<live::Reading>> {
    use loadgate_results::progress;
    let Some(job) = status
        .profiles
        .iter()
        .find(|p| p.phase == ProfilePhase::Running)
        .and_then(|p| p.job.as_deref())
    else {
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job}")))
        .await?;
    let params = LogParams {
        container: Some(APP.to_owned()),
        tail_lines: Some(progress::TAIL_LINES),
        limit_bytes: Some(progress::TAIL_BYTES),
        ..LogParams::default()
    };
    let mut lines = Vec::new();
    for pod in list.items.iter().filter(|p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && p.owner_references()
                .iter()
                .any(|o| o.kind == "Job" && o.name == job && o.controller == Some(true))
    }) {
        match pods.logs(&pod.name_any(), &params).await {
            Ok(log) => lines.extend(progress::last_in(&log)),
            Err(e) => tracing::debug!(pod = pod.name_any(), error = %e, "no progress read"),
        }
    }
    Ok(
        loadgate_api::progress::Progress::merge(&lines).map(|merged| live::Reading {
            progress: merged,
            pods: u32::try_from(lines.len()).unwrap_or(u32::MAX),
        }),
    )
}

/// The end of a runner pod's log where its results frame is: just the frame's lines and bytes
/// (named by its summary), with a little room for output after it. `None` when the log is not
/// there to read (404: the pod's log is gone; 400: its container has no log; 403: `pods/log`
/// is not allowed); the termination message is then all there is, and the profile's status
/// says its frame was missing.
///
/// # Errors
/// Any other failure (a 5xx, a 429, a time-out, a dropped connection) is transient: the
/// reconcile is retried, since the Job and its pods are still there, rather than the profile
/// being written final without its curve, capacity and windows.
async fn read_frame_lines(
    pods: &Api<Pod>,
    pod: &str,
    reference: &loadgate_api::summary::ResultsRef,
) -> Result<Option<String>> {
    use loadgate_results::results_frame::{MAX_FRAME_BYTES, lines, text_len};
    if reference.bytes > MAX_FRAME_BYTES {
        // Refused by the frame check with its reason; nothing to ask the apiserver for.
        return Ok(Some(String::new()));
    }
    let params = LogParams {
        container: Some(APP.to_owned()),
        tail_lines: Some(i64::try_from(lines(reference) + 16).unwrap_or(i64::MAX)),
        limit_bytes: Some(i64::try_from(text_len(reference) + (64 << 10)).unwrap_or(i64::MAX)),
        ..LogParams::default()
    };
    match pods.logs(pod, &params).await {
        Ok(log) => Ok(Some(log)),
        Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 404) => {
            tracing::warn!(pod, code = e.code, error = %e.message, "the runner's log is not there to read; using its termination message");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(pod, error = %e, "reading the runner's log failed; retrying");
            Err(e.into())
        }
    }
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
    let t = runner_results::terminated(pod, APP)?;
    let mut words = t.message.clone().unwrap_or_default();
    if words.len() > runner_results::MAX_TERMINATION_MESSAGE {
        let mut cut = runner_results::MAX_TERMINATION_MESSAGE;
        while !words.is_char_boundary(cut) {
            cut -= 1;
        }
        words.truncate(cut);
    }
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
    endpoint_readiness: Option<&str>,
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
                    endpoint_readiness,
                    default_image: &ctx.settings.loadrunner_image,
                    metrics_linger_seconds: ctx.settings.runner_metrics_linger_seconds,
                    start_at_ms: start_at(test.spec.parallelism, ctx.clock.system_time()),
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
    use crate::fixtures::apiserver::{client, condition, event_post, expect, not_found};
    use crate::fixtures::{
        NOW, at, context, deployment_with, endpoint, load_test, timeout_after_1s,
    };
    use crate::status::model_endpoint::endpoint_status;
    use crate::status::plan::{EndpointState, JobState};
    use http::Method;

    const BASE: &str = "/apis/loadgate.dev/v1alpha1/namespaces/ml/loadtests/gate";

    fn echo(test: &LoadTest) -> serde_json::Value {
        serde_json::to_value(test).unwrap()
    }

    /// The test's Jobs, as a list answer.
    fn job_list(jobs: Vec<serde_json::Value>) -> crate::fixtures::apiserver::Expect {
        expect(
            Method::GET,
            "/apis/batch/v1/namespaces/ml/jobs",
            serde_json::json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {},
                               "items": jobs}),
        )
    }

    #[tokio::test]
    async fn a_new_test_starts_its_run() {
        let test = load_test("gate");
        let (client, verifier) = client(vec![job_list(vec![]), status_patch(&test), event()]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[1]["status"]["phase"], "Pending");
        assert_eq!(bodies[1]["status"]["run"], "initial");
        assert_eq!(bodies[1]["kind"], "LoadTest");
        assert_eq!(bodies[2]["reason"], "RunStarted");
    }

    /// Before: anyone who may create a LoadTest could aim it at the cloud metadata address.
    /// Now the run ends at once, Stalled `PolicyDenied`, naming the rule; no Job is created.
    #[tokio::test]
    async fn a_target_the_policy_denies_ends_the_run_naming_the_rule() {
        let mut test = load_test("gate");
        test.spec.target.endpoint_ref = None;
        test.spec.target.url = Some("http://169.254.169.254".into());
        let (client, verifier) = client(vec![status_patch(&test), event()]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let status = &bodies[0]["status"];
        assert_eq!(status["phase"], "Error");
        let stalled = condition(status, "Stalled");
        assert_eq!(stalled["reason"], "PolicyDenied");
        assert!(
            stalled["message"]
                .as_str()
                .unwrap()
                .contains("spec.target.url http://169.254.169.254 is denied"),
            "{stalled}"
        );
    }

    /// A test whose header `Authorization` comes from Secret `embed-api-key` (key `token`) and
    /// whose texts come from ConfigMap `texts` (key `lines.txt`), its run started.
    fn started_with_references() -> LoadTest {
        use loadgate_api::target::{ConfigMapKeyRef, Dataset, Header, HeaderSource, SecretKeyRef};
        let mut test = load_test("gate");
        test.spec.target.headers = vec![Header {
            name: "Authorization".into(),
            value: None,
            value_from: Some(HeaderSource {
                secret_key_ref: SecretKeyRef {
                    name: "embed-api-key".into(),
                    key: "token".into(),
                },
            }),
        }];
        test.spec.dataset = Some(Dataset {
            config_map_ref: Some(ConfigMapKeyRef {
                name: "texts".into(),
                key: "lines.txt".into(),
            }),
            inline: Vec::new(),
        });
        test.status = Some(start_run(&test, None, None, "initial", &at(NOW)).status);
        test
    }

    const API_KEY: &str = "/api/v1/namespaces/ml/secrets/embed-api-key";
    const TEXTS: &str = "/api/v1/namespaces/ml/configmaps/texts";
    /// The Secret's value, base64 ("Bearer s3cr3t"): it must never leave the Secret.
    const API_KEY_VALUE: &str = "QmVhcmVyIHMzY3IzdA==";

    fn api_key_secret(key: &str) -> crate::fixtures::apiserver::Expect {
        expect(
            Method::GET,
            API_KEY,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "embed-api-key", "namespace": "ml"},
                "type": "Opaque", "data": {key: API_KEY_VALUE}}),
        )
    }

    /// The run's end as the reconcile wrote it: phase Error, Stalled `InvalidSpec`, and the
    /// message; no value of a Secret anywhere in what was sent.
    fn invalid_spec_message(bodies: &[serde_json::Value], status: usize) -> String {
        let status = &bodies[status]["status"];
        assert_eq!(status["phase"], "Error");
        let stalled = condition(status, "Stalled");
        assert_eq!(stalled["reason"], "InvalidSpec");
        for body in bodies {
            assert!(!body.to_string().contains("s3cr3t"), "{body}");
            assert!(!body.to_string().contains(API_KEY_VALUE), "{body}");
        }
        stalled["message"].as_str().unwrap().to_owned()
    }

    /// Reconciles the started test once, its reference reads answered by `reads`, and returns
    /// the `InvalidSpec` message it ends with (and that no Job was created: a POST would be an
    /// unexpected request).
    async fn refused_after(reads: Vec<crate::fixtures::apiserver::Expect>) -> String {
        let test = started_with_references();
        let status_at = 2 + reads.len();
        let mut expected = vec![get_ready_endpoint(), not_found(job_path(&test, "ramp-up"))];
        expected.extend(reads);
        expected.extend([status_patch(&test), event()]);
        let (client, verifier) = client(expected);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        invalid_spec_message(&verifier.await.unwrap(), status_at)
    }

    /// Before: a header from a Secret that does not exist left the runner pods in
    /// CreateContainerConfigError until the Job's deadline. Now the run ends at once, Stalled
    /// `InvalidSpec` naming the object, the key and the field; no Job is created.
    #[tokio::test]
    async fn a_missing_secret_key_or_configmap_ends_the_run_naming_it_and_creates_no_job() {
        let cases = [
            (
                vec![not_found(API_KEY)],
                "Secret embed-api-key not found (spec.target.headers[0].valueFrom.secretKeyRef)",
            ),
            (
                vec![api_key_secret("api-key")],
                "Secret embed-api-key has no key \"token\" \
                 (spec.target.headers[0].valueFrom.secretKeyRef)",
            ),
            (
                vec![api_key_secret("token"), not_found(TEXTS)],
                "ConfigMap texts not found (spec.dataset.configMapRef)",
            ),
        ];
        for (reads, want) in cases {
            let message = refused_after(reads).await;
            assert!(message.contains(want), "{message}");
        }
    }

    /// A busy apiserver is no verdict on the spec: the reconcile is retried, nothing written.
    #[tokio::test]
    async fn a_transient_error_reading_a_secret_is_retried() {
        let test = started_with_references();
        let busy = crate::fixtures::apiserver::Expect {
            method: Method::GET,
            path: API_KEY.into(),
            code: 500,
            answer: serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "InternalError", "code": 500, "message": "etcd leader changed"}),
        };
        let (client, verifier) = client(vec![
            get_ready_endpoint(),
            not_found(job_path(&test, "ramp-up")),
            busy,
            event(),
        ]);
        let result = timeout_after_1s(reconcile(Arc::new(test), context(client))).await;
        assert!(result.is_err(), "retried");
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[3]["type"], "Warning", "only the failure's Event");
    }

    /// With the Secret and the ConfigMap in place the run goes on: the Job's runner takes the
    /// header from the Secret by an environment variable, and the Secret's value appears in
    /// nothing the operator sends.
    #[tokio::test]
    async fn present_references_let_the_run_create_its_job_with_the_secret_by_reference() {
        let test = started_with_references();
        let name = job_name(&test, "ramp-up", "initial");
        let texts = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "texts", "namespace": "ml"}, "data": {"lines.txt": "a\nb\n"}});
        let (client, verifier) = client(vec![
            get_ready_endpoint(),
            not_found(job_path(&test, "ramp-up")),
            api_key_secret("token"),
            expect(Method::GET, TEXTS, texts),
            expect(
                Method::PATCH,
                job_path(&test, "ramp-up"),
                serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}}),
            ),
            status_patch(&test),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let pod = &bodies[4]["spec"]["template"]["spec"];
        let env = pod["containers"][0]["env"].as_array().unwrap();
        let header = env
            .iter()
            .find(|e| e["name"] == "LOADGATE_HEADER_0")
            .unwrap();
        assert_eq!(
            header["valueFrom"]["secretKeyRef"],
            serde_json::json!({"name": "embed-api-key", "key": "token", "optional": false})
        );
        assert_eq!(pod["volumes"][0]["configMap"]["name"], "texts");
        assert_eq!(bodies[5]["status"]["phase"], "Running");
        for body in &bodies {
            assert!(!body.to_string().contains(API_KEY_VALUE), "{body}");
        }
    }

    /// Before: a new run (a new `loadgate.dev/run`, or a spec edit mid-profile) started while
    /// the old run's Job kept loading the endpoint until its deadline, so the new run was
    /// measured under double load. Now the old run's running Job is deleted first; a finished
    /// one, and the new run's own, are left alone.
    #[tokio::test]
    async fn a_new_run_stops_the_jobs_of_earlier_runs_first() {
        let mut test = load_test("gate");
        test.metadata.generation = Some(2);
        let old = |name: &str, generation: &str, conditions: serde_json::Value| {
            let mut job = job_answer(&test, "ramp-up", conditions);
            job["metadata"]["name"] = name.into();
            job["metadata"]["labels"]["loadgate.dev/generation"] = generation.into();
            job
        };
        let running_old = old("gate-ramp-up-old", "1", serde_json::json!([]));
        let finished_old = old(
            "gate-ramp-up-done",
            "1",
            serde_json::json!([{"type": "Complete", "status": "True"}]),
        );
        let mut foreign = old("gate-ramp-up-foreign", "1", serde_json::json!([]));
        foreign["metadata"]["ownerReferences"] = serde_json::json!([]);
        let (client, verifier) = client(vec![
            job_list(vec![running_old, finished_old, foreign]),
            expect(
                Method::DELETE,
                "/apis/batch/v1/namespaces/ml/jobs/gate-ramp-up-old",
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            status_patch(&test),
            event(),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[1]["propagationPolicy"], "Background");
        assert_eq!(bodies[2]["status"]["phase"], "Pending");
        assert_eq!(bodies[4]["reason"], "SupersededRun");
        assert!(
            bodies[4]["note"]
                .as_str()
                .unwrap()
                .ends_with("earlier runs: gate-ramp-up-old"),
            "{}",
            bodies[4]
        );
    }

    #[tokio::test]
    async fn a_finished_run_makes_no_calls() {
        let mut test = load_test("gate");
        let mut status = start_run(&test, None, None, "initial", &at(0)).status;
        status.phase = Some(LoadPhase::Passed);
        test.status = Some(status);
        let (client, verifier) = client(vec![]);
        let action = timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::await_change());
        assert!(verifier.await.unwrap().is_empty());
    }

    /// Reconciles a started run whose endpoint `ep` is Ready: the first runner Job is created.
    /// Returns the bodies sent and the run spec the Job hands its runners.
    async fn first_runner_job(
        mut ep: ModelEndpoint,
    ) -> (Vec<serde_json::Value>, loadgate_api::run_spec::RunSpec) {
        let mut test = load_test("gate");
        test.status = Some(start_run(&test, None, None, "initial", &at(NOW)).status);
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
            not_found(format!("/apis/batch/v1/namespaces/ml/jobs/{job_name}")),
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
        let spec = args.iter().position(|a| a == "--spec").unwrap() + 1;
        let spec =
            loadgate_api::run_spec::RunSpec::from_json(args[spec].as_str().unwrap()).unwrap();
        assert_eq!(bodies[3]["status"]["profiles"][0]["job"], job_name.as_str());
        (bodies, spec)
    }

    #[tokio::test]
    async fn a_ready_endpoint_gets_the_first_runner_job() {
        let (bodies, spec) = first_runner_job(endpoint("mini")).await;
        // The runners load the endpoint's Service, as the one run spec they are handed says.
        assert_eq!(spec.target, "http://mini.ml.svc:8080");
        assert_eq!(spec.readiness.path, "/health");
        assert_eq!(bodies[3]["status"]["phase"], "Running");
        assert_eq!(bodies[4]["reason"], "ProfileStarted");
    }

    /// A team's server image answers readiness where its `runtime.readinessPath` says, maybe
    /// not on `/health`: the runners wait there.
    #[tokio::test]
    async fn the_runners_wait_on_a_team_servers_readiness_path() {
        let mut ep = endpoint("mini");
        ep.spec.runtime = Some(loadgate_api::model_endpoint::Runtime {
            image: "example/team-server:1".into(),
            args: Vec::new(),
            env: Vec::new(),
            port: None,
            readiness_path: "/v1/models".into(),
            model_mount_path: "/models".into(),
        });
        let (_, spec) = first_runner_job(ep).await;
        assert_eq!(spec.readiness.path, "/v1/models");
    }

    #[tokio::test]
    async fn a_complete_job_has_its_pods_summaries_collected() {
        let mut test = load_test("gate");
        test.spec.target = loadgate_api::load_test::Target {
            endpoint_ref: None,
            url: Some("http://10.0.0.1:8080".into()),
            tls: None,
            headers: Vec::new(),
            readiness_path: None,
        };
        let mut status = start_run(&test, None, None, "initial", &at(NOW)).status;
        status.phase = Some(LoadPhase::Running);
        let job_name = job_name(&test, "ramp-up", "initial");
        status.profiles[0].phase = ProfilePhase::Running;
        status.profiles[0].job = Some(job_name.clone());
        test.status = Some(status);
        let summary = runner_summary(10);
        let pods = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{
                "apiVersion": "v1", "kind": "Pod", "metadata": runner_pod_metadata(),
                "status": {"phase": "Succeeded", "containerStatuses": [{
                    "name": "loadrunner", "image": "lr", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": summary.to_string()}}
                }]}
            }]
        });
        let complete_job = job_answer(
            &test,
            "ramp-up",
            serde_json::json!([{"type": "Complete", "status": "True"}]),
        );
        let (client, verifier) = client(vec![
            expect(
                Method::GET,
                format!("/apis/batch/v1/namespaces/ml/jobs/{job_name}"),
                complete_job,
            ),
            expect(Method::GET, "/api/v1/namespaces/ml/pods", pods),
            // The first report of this test: its ConfigMap is created, owned by the test.
            not_found(REPORT),
            expect(
                Method::POST,
                "/api/v1/namespaces/ml/configmaps",
                report_stored()[0].answer.clone(),
            ),
            expect(
                Method::PATCH,
                REPORT,
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "gate-report", "namespace": "ml"}}),
            ),
            status_patch(&test),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        assert_eq!(
            bodies[3]["metadata"]["ownerReferences"][0]["kind"],
            "LoadTest"
        );
        let data = bodies[4]["data"].as_object().unwrap();
        let (key, stored) = data.iter().next().unwrap();
        assert!(key.ends_with(".00.ramp-up.json"), "{key}");
        let stored: crate::reports::StoredProfile =
            serde_json::from_str(stored.as_str().unwrap()).unwrap();
        assert_eq!(
            (stored.run.as_str(), stored.report.summary.total.requests),
            ("initial", 100)
        );
        let profile = &bodies[5]["status"]["profiles"][0];
        assert_eq!(profile["phase"], "Passed");
        assert_eq!(profile["results"]["requests"], 100);
        assert!((profile["results"]["p95Ms"].as_f64().unwrap() - 10.0).abs() < 0.1);
        assert_eq!(bodies[5]["status"]["profiles"][1]["phase"], "Pending");
        assert_eq!(bodies[6]["reason"], "ProfilePassed");
    }

    /// Reproduced on a real control plane before the fix: a foreign pod carrying the Job's
    /// label and a copied summary doubled the requests reported. Now only the Job's own pod
    /// counts.
    #[tokio::test]
    async fn a_forged_pod_with_the_jobs_label_does_not_count() {
        let mut test = load_test("gate");
        test.spec.profiles.truncate(1);
        let test = running(&test);
        let own = pod_list("Succeeded", None, &runner_summary(10).to_string());
        let mut forged = own["items"][0].clone();
        forged["metadata"] = serde_json::json!({"name": "forger", "namespace": "ml",
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"}});
        let mut pods = own.clone();
        pods["items"].as_array_mut().unwrap().push(forged);
        let [endpoint, job, _] = a_profile_completed(&test, &runner_summary(10));
        let (client, verifier) = client(vec![
            endpoint,
            job,
            expect(Method::GET, "/api/v1/namespaces/ml/pods", pods),
            report_stored()[0].clone(),
            report_stored()[1].clone(),
            status_patch(&test),
            event(),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let status = &bodies[5]["status"];
        assert_eq!(status["profiles"][0]["results"]["requests"], 100);
        assert_eq!(status["phase"], "Passed");
    }

    /// Before: any error reading a runner's log (a 500 from a busy apiserver) dropped its
    /// results frame silently, and the profile was written final without its curve, capacity
    /// or windows. Now a transient error retries the reconcile (nothing written), and a log
    /// that is gone is said in the profile's status.
    #[tokio::test]
    async fn a_transient_log_error_is_retried_and_a_missing_frame_is_said() {
        let mut test = load_test("gate");
        test.spec.profiles.truncate(1);
        let test = running(&test);
        let mut summary = runner_summary(10);
        summary["results"] = serde_json::json!({"bytes": 100, "crc32": 7});
        let pods = pod_list("Succeeded", None, &summary.to_string());
        let complete = serde_json::json!([{"type": "Complete", "status": "True"}]);
        let log = "/api/v1/namespaces/ml/pods/runner-0/log";
        let busy = crate::fixtures::apiserver::Expect {
            method: Method::GET,
            path: log.into(),
            code: 500,
            answer: serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "InternalError", "code": 500, "message": "etcd leader changed"}),
        };
        let (api, verifier) = client(vec![
            get_ready_endpoint(),
            get_job(&test, "ramp-up", complete.clone()),
            expect(Method::GET, "/api/v1/namespaces/ml/pods", pods.clone()),
            busy,
            event(),
        ]);
        let result = timeout_after_1s(reconcile(Arc::new(test.clone()), context(api))).await;
        assert!(result.is_err(), "a transient error is retried");
        assert_eq!(verifier.await.unwrap().len(), 5, "no status written");
        // The log is gone: the termination message counts, and the status says what is missing.
        let (client, verifier) = client(vec![
            get_ready_endpoint(),
            get_job(&test, "ramp-up", complete),
            expect(Method::GET, "/api/v1/namespaces/ml/pods", pods),
            not_found(log),
            report_stored()[0].clone(),
            report_stored()[1].clone(),
            status_patch(&test),
            event(),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        let profile = &bodies[6]["status"]["profiles"][0];
        assert_eq!(profile["results"]["requests"], 100);
        assert!(
            profile["message"]
                .as_str()
                .unwrap()
                .starts_with("results frame missing (pod runner-0: its log could not be read)"),
            "{profile}"
        );
    }

    /// Before: an existing `gate-report` ConfigMap the test does not control was merge-patched
    /// and its keys pruned as "old runs". Now it is left alone: no patch, a `NotOwned` Warning,
    /// and the run goes on with its figures in the status.
    #[tokio::test]
    async fn a_report_configmap_the_test_does_not_control_is_left_alone() {
        let mut test = load_test("gate");
        test.spec.profiles.truncate(1);
        let test = running(&test);
        let theirs = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "gate-report", "namespace": "ml"},
            "data": {"team-settings": "keep me"}});
        let [endpoint, job, pods] = a_profile_completed(&test, &runner_summary(10));
        let (client, verifier) = client(vec![
            endpoint,
            job,
            pods,
            expect(Method::GET, REPORT, theirs),
            status_patch(&test),
            event(),
            event(),
            event(),
        ]);
        timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[4]["status"]["phase"], "Passed");
        let not_owned = bodies
            .iter()
            .find(|b| b["reason"] == "NotOwned")
            .expect("a NotOwned Warning");
        assert_eq!(not_owned["type"], "Warning");
        assert!(
            not_owned["note"]
                .as_str()
                .unwrap()
                .contains("ConfigMap gate-report exists but is not controlled by this LoadTest"),
            "{not_owned}"
        );
    }

    /// What a reconcile reads when the test's first profile has just completed: the Ready
    /// endpoint, the Complete Job, and its one pod with `summary` as its termination message.
    fn a_profile_completed(
        test: &LoadTest,
        summary: &serde_json::Value,
    ) -> [crate::fixtures::apiserver::Expect; 3] {
        [
            get_ready_endpoint(),
            get_job(
                test,
                "ramp-up",
                serde_json::json!([{"type": "Complete", "status": "True"}]),
            ),
            expect(
                Method::GET,
                "/api/v1/namespaces/ml/pods",
                pod_list("Succeeded", None, &summary.to_string()),
            ),
        ]
    }

    fn get_ready_endpoint() -> crate::fixtures::apiserver::Expect {
        expect(
            Method::GET,
            "/apis/loadgate.dev/v1alpha1/namespaces/ml/modelendpoints/mini",
            ready_endpoint(),
        )
    }

    fn event() -> crate::fixtures::apiserver::Expect {
        event_post()
    }

    /// A finished profile's report stored: the ConfigMap read (there already), then patched.
    fn report_stored() -> [crate::fixtures::apiserver::Expect; 2] {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "gate-report", "namespace": "ml",
                "ownerReferences": [{"apiVersion": "loadgate.dev/v1alpha1", "kind": "LoadTest",
                                     "name": "gate", "uid": "uid-gate", "controller": true}]}});
        [
            expect(Method::GET, REPORT, cm.clone()),
            expect(Method::PATCH, REPORT, cm),
        ]
    }

    const REPORT: &str = "/api/v1/namespaces/ml/configmaps/gate-report";

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
            "metadata": {
                "name": job_name(test, profile, "initial"), "namespace": "ml", "uid": "job-uid",
                "labels": {"loadgate.dev/generation": "1", "loadgate.dev/profile": profile},
                "annotations": {"loadgate.dev/run": "initial"},
                "ownerReferences": [{"apiVersion": "loadgate.dev/v1alpha1", "kind": "LoadTest",
                                     "name": "gate", "uid": "uid-gate", "controller": true}]
            },
            "status": {"conditions": conditions}
        })
    }

    /// Metadata of the Job's own runner pod of index 0.
    fn runner_pod_metadata() -> serde_json::Value {
        serde_json::json!({
            "name": "runner-0", "namespace": "ml",
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                                 "uid": "job-uid", "controller": true}]
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

    /// The test as the previous reconcile left it: run started, first Job created.
    fn running(test: &LoadTest) -> LoadTest {
        let mut test = test.clone();
        let start = start_run(&test, None, None, "initial", &at(NOW)).status;
        let ready = EndpointState::Ready {
            url: "http://mini.ml.svc:8080".into(),
            cold_start_seconds: None,
            resources: None,
            readiness_path: None,
        };
        test.status = Some(advance(&test, &start, &ready, &JobState::Missing, &at(NOW)).status);
        test
    }

    #[tokio::test]
    async fn an_endpoint_not_ready_is_waited_for() {
        let mut test = load_test("gate");
        test.status = Some(start_run(&test, None, None, "initial", &at(NOW)).status);
        let not_ready = serde_json::to_value(endpoint("mini")).unwrap();
        let (client, verifier) = client(vec![
            expect(
                Method::GET,
                "/apis/loadgate.dev/v1alpha1/namespaces/ml/modelendpoints/mini",
                not_ready,
            ),
            not_found(job_path(&test, "ramp-up")),
            status_patch(&test),
        ]);
        let action = timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        // A safety net only: the endpoint's own changes wake the test (watch + mapper).
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(60)));
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[2]["status"]["phase"], "WaitingForEndpoint");
        let reconciling = condition(&bodies[2]["status"], "Reconciling");
        assert_eq!(reconciling["reason"], "WaitingForEndpoint");
        assert!(
            reconciling["message"]
                .as_str()
                .unwrap()
                .contains("no status yet")
        );
    }

    /// A running profile's pods, as listed by the Job's label: one running runner pod.
    fn running_pod(test: &LoadTest) -> serde_json::Value {
        let job = job_name(test, "ramp-up", "initial");
        serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "runner-0", "namespace": "ml",
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job,
                                         "uid": "job-uid", "controller": true}]},
                "status": {"phase": "Running"}
            }]
        })
    }

    /// A runner's log after `elapsed` seconds of load: tracing lines around its progress line.
    fn runner_log(elapsed: u64, requests: u64) -> serde_json::Value {
        let progress = loadgate_api::progress::Progress {
            elapsed_seconds: elapsed,
            planned_seconds: 60,
            users: 10,
            requests,
            failures: 1,
            error_rate: 1.0 / requests as f64,
            rps: 10.0,
            p50_ms: 12.0,
            p95_ms: 30.0,
            ttft_p95_ms: None,
            output_tokens_per_second: None,
        };
        serde_json::Value::String(format!(
            "INFO starting load\n{}\nINFO progress: ramp-up {elapsed}/60s\n",
            loadgate_results::progress::line(&progress)
        ))
    }

    /// One reconcile of running `test` at `now`, against `script`; the bodies sent and the
    /// action.
    async fn reconcile_at(
        test: &LoadTest,
        now: i64,
        script: Vec<crate::fixtures::apiserver::Expect>,
    ) -> (Vec<serde_json::Value>, Action) {
        let (client, verifier) = client(script);
        let mut ctx = context(client);
        Arc::get_mut(&mut ctx).unwrap().clock = crate::status::Clock::fixed(&at(now));
        let action = timeout_after_1s(reconcile(Arc::new(test.clone()), ctx))
            .await
            .unwrap();
        (verifier.await.unwrap(), action)
    }

    /// The progress of a running profile is read from its pods' logs and written every 10 s at
    /// most, and only when its figures changed; the requeue is 10 s.
    #[tokio::test]
    async fn a_running_profiles_progress_is_written_every_10_s_and_only_when_it_changed() {
        let mut test = running(&load_test("gate"));
        let listed = running_pod(&test);
        let job_answer = get_job(&test, "ramp-up", serde_json::json!([]));
        // The reads of one reconcile: the endpoint and the Job; when progress is due, the
        // Job's pods and the runner's log, which holds `elapsed` and `requests`.
        let reads = |progress: Option<(u64, u64)>| {
            let mut script = vec![get_ready_endpoint(), job_answer.clone()];
            if let Some((elapsed, requests)) = progress {
                script.push(expect(
                    Method::GET,
                    "/api/v1/namespaces/ml/pods",
                    listed.clone(),
                ));
                script.push(expect(
                    Method::GET,
                    "/api/v1/namespaces/ml/pods/runner-0/log",
                    runner_log(elapsed, requests),
                ));
            }
            script
        };
        let mut script = reads(Some((20, 200)));
        script.push(status_patch(&test));
        let (bodies, action) = reconcile_at(&test, NOW, script).await;
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(10)));
        let status = &bodies[4]["status"];
        assert_eq!(status["progress"], "ramp-up 20/60s");
        let progress = &status["profiles"][0]["progress"];
        assert_eq!(progress["elapsedSeconds"], 20);
        assert_eq!(progress["requests"], 200);
        assert_eq!(progress["pods"], 1);
        assert_eq!(progress["p95Ms"], 30.0);
        test.status = Some(serde_json::from_value(status.clone()).unwrap());

        // 5 s later: not due; no log read, no write.
        let (bodies, _) = reconcile_at(&test, NOW + 5, reads(None)).await;
        assert_eq!(bodies.len(), 2, "nothing read, nothing written");

        // 12 s later, the runner has printed nothing new: read, but nothing written.
        let (bodies, _) = reconcile_at(&test, NOW + 12, reads(Some((20, 200)))).await;
        assert_eq!(bodies.len(), 4, "the same figures write nothing");

        // A new line: written, with the time it was read.
        let mut script = reads(Some((30, 310)));
        script.push(status_patch(&test));
        let (bodies, _) = reconcile_at(&test, NOW + 12, script).await;
        let status = &bodies[4]["status"];
        assert_eq!(status["progress"], "ramp-up 30/60s");
        assert_eq!(status["profiles"][0]["progress"]["requests"], 310);
        assert_eq!(
            status["profiles"][0]["progress"]["observedTime"],
            serde_json::to_value(at(NOW + 12)).unwrap()
        );
    }

    /// A log that cannot be read leaves the pod out and the run goes on.
    #[tokio::test]
    async fn an_unreadable_runner_log_shows_the_profile_starting() {
        let test = running(&load_test("gate"));
        let (bodies, action) = reconcile_at(
            &test,
            NOW,
            vec![
                get_ready_endpoint(),
                get_job(&test, "ramp-up", serde_json::json!([])),
                expect(
                    Method::GET,
                    "/api/v1/namespaces/ml/pods",
                    running_pod(&test),
                ),
                not_found("/api/v1/namespaces/ml/pods/runner-0/log"),
                status_patch(&test),
            ],
        )
        .await;
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(10)));
        assert_eq!(bodies[4]["status"]["progress"], "ramp-up starting");
        assert!(bodies[4]["status"]["profiles"][0].get("progress").is_none());
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
            report_stored()[0].clone(),
            report_stored()[1].clone(),
            status_patch(&test),
            event(),
            event(),
        ]);
        let action = timeout_after_1s(reconcile(Arc::new(test), context(client)))
            .await
            .unwrap();
        assert_eq!(action, Action::await_change());
        let bodies = verifier.await.unwrap();
        let status = &bodies[5]["status"];
        assert_eq!(
            (status["phase"].as_str(), status["verdict"].as_str()),
            (Some("Failed"), Some("Fail"))
        );
        let passed = condition(status, "Passed");
        assert_eq!(passed["status"], "False");
        assert!(
            passed["message"].as_str().unwrap().contains("budget 500"),
            "{passed}"
        );
        assert_eq!(
            (bodies[6]["reason"].as_str(), bodies[7]["reason"].as_str()),
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
        let stalled = condition(status, "Stalled");
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
        let mut status = start_run(&test, None, None, "initial", &at(NOW)).status;
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
                "apiVersion": "v1", "kind": "Pod", "metadata": runner_pod_metadata(),
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
        loadgate_results::codec::encode(&h)
    }
}
