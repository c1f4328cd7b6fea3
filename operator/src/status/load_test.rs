//! The LoadTest state machine, pure: given the test, its status and what the operator observed
//! (the endpoint, the current profile's Job and its pods' summaries, the clock), the next status
//! and the one action to take ([`super::plan`] holds both vocabularies). The controller does the
//! I/O; `loadgate local` drives the same machine. A profile's result is read by
//! [`super::profile_results`], and a run's end (verdict, conditions) set by [`super::run_end`].
//!
//! A run goes Pending → WaitingForEndpoint → Running (one profile after another) → Passed,
//! Failed or Error. Everything needed to resume lives in the status and the Jobs, so an operator
//! restarted mid-test picks up where it was, and nothing measured is lost.

use crate::resources::load_test::job_name;
use k8s_openapi::jiff::SignedDuration;
use loadgate_api::capacity::Capacity;
use loadgate_api::conditions::{Time, reasons};
use loadgate_api::load::{Thresholds, Violation};
use loadgate_api::load_test::{
    AbortStatus, LoadPhase, LoadTest, LoadTestStatus, ProfilePhase, ProfileStatus, ResultFigures,
};
use std::time::Duration;

use super::gates;
use super::plan::{EndpointState, JobState, Plan, Step, Transition};
use super::profile_results::{ProfileResult, profile_result};
use super::run_end::{finish, set_in_progress};
use loadgate_api::efficiency::Efficiency;

/// Safety-net requeue while waiting for the endpoint: its changes wake the controller (a watch
/// maps each ModelEndpoint to the LoadTests that target it), so this only bounds a missed
/// event; the endpoint timeout is always checked on time.
const ENDPOINT_POLL: Duration = Duration::from_secs(60);
/// Safety-net requeue while Jobs run (their changes wake the controller anyway).
const RUNNING_POLL: Duration = Duration::from_secs(30);

/// True when `status` describes the run `test` asks for now: same run name, same generation.
pub fn is_current_run(test: &LoadTest, status: &LoadTestStatus, run: &str) -> bool {
    status.run.as_deref() == Some(run) && status.observed_generation == test.metadata.generation
}

/// A fresh status for run `run`, keeping the last finished run in `previous`.
pub fn start_run(test: &LoadTest, status: Option<&LoadTestStatus>, run: &str, now: &Time) -> Plan {
    let previous = status.and_then(|s| gates::record_of(s).or_else(|| s.previous.clone()));
    // Its own previous runs hold the baseline, unless `loadTestRef` names another LoadTest's
    // (the caller reads that one and sets it with `gates::pick_baseline`).
    let own_baseline = test
        .spec
        .baseline
        .as_ref()
        .is_some_and(|b| b.load_test_ref.is_none());
    let baseline = if own_baseline {
        gates::pick_baseline(test, status)
    } else {
        None
    };
    let mut status = LoadTestStatus {
        observed_generation: test.metadata.generation,
        run: Some(run.to_owned()),
        phase: Some(LoadPhase::Pending),
        start_time: Some(now.clone()),
        profiles: test
            .spec
            .profiles
            .iter()
            .map(|p| ProfileStatus {
                fingerprint: Some(gates::fingerprint(test, p)),
                ..ProfileStatus::pending(&p.name, p.users)
            })
            .collect(),
        previous,
        baseline,
        conditions: status.map(|s| s.conditions.clone()).unwrap_or_default(),
        ..LoadTestStatus::default()
    };
    set_in_progress(
        &mut status,
        test,
        reasons::IN_PROGRESS,
        format!("run {run} accepted"),
        now,
    );
    Plan {
        status,
        step: Step::Wait,
        requeue: Some(Duration::ZERO),
        events: vec![Transition {
            warning: false,
            reason: "RunStarted",
            note: format!("run {run} of {} profiles started", test.spec.profiles.len()),
        }],
        report: None,
    }
}

/// A run of a spec that breaks a rule: it starts and ends at once in Error, `Stalled=True` and
/// `Passed=False` with reason `InvalidSpec` and the field in the message; no Job is created.
pub fn reject_spec(
    test: &LoadTest,
    status: Option<&LoadTestStatus>,
    run: &str,
    message: String,
    now: &Time,
) -> Plan {
    deny_run(
        test,
        status,
        run,
        (reasons::INVALID_SPEC, format!("invalid spec: {message}")),
        now,
    )
}

/// A run refused before it starts (an invalid spec, the operator's policy: reason and
/// message): it starts and ends at once in Error, `Stalled=True` and `Passed=False` with that
/// reason and message; no Job is created.
pub fn deny_run(
    test: &LoadTest,
    status: Option<&LoadTestStatus>,
    run: &str,
    why: (&'static str, String),
    now: &Time,
) -> Plan {
    let mut plan = start_run(test, status, run, now);
    plan.events = finish(&mut plan.status, test, Some(why), now);
    plan.requeue = None;
    plan
}

/// The apiserver refused what `plan` meant to do (e.g. a 422 on the runner Job): the profile
/// it started errors, and the run ends in Error with `reason` and the apiserver's message.
pub fn refuse(
    test: &LoadTest,
    plan: Plan,
    reason: &'static str,
    message: String,
    now: &Time,
) -> Plan {
    let current = plan
        .status
        .profiles
        .iter()
        .position(|p| !profile_finished(p.phase));
    let mut refused = abort_run(plan.status, test, current, None, (reason, message), now);
    refused.step = Step::Wait;
    refused
}

/// For a finished run with `ttlSecondsAfterFinished`: how long until its Jobs (and their pods)
/// are to be deleted, counted from the test's end (zero: now). `None` when they are kept.
/// Results are in the status by then, so a short TTL can never lose a profile's numbers.
pub fn cleanup_in(test: &LoadTest, status: &LoadTestStatus, now: &Time) -> Option<Duration> {
    let ttl = u64::try_from(test.spec.ttl_seconds_after_finished?).ok()?;
    if !status.phase.is_some_and(LoadPhase::is_finished) {
        return None;
    }
    let done = elapsed_since(status.completion_time.as_ref(), now);
    Some(Duration::from_secs(ttl).saturating_sub(done))
}

fn elapsed_since(start: Option<&Time>, now: &Time) -> Duration {
    start
        .map(|s| now.0.duration_since(s.0))
        .filter(|d| *d > SignedDuration::ZERO)
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
}

/// One step of a run in progress.
pub fn advance(
    test: &LoadTest,
    status: &LoadTestStatus,
    endpoint: &EndpointState,
    job: &JobState,
    now: &Time,
) -> Plan {
    let mut st = status.clone();
    let spec = &test.spec;
    let run = st.run.clone().unwrap_or_default();
    let elapsed = elapsed_since(st.start_time.as_ref(), now);
    let current = st.profiles.iter().position(|p| !profile_finished(p.phase));
    let current_job = current.and_then(|i| st.profiles[i].job.clone());
    let mut report = None;
    let plan = |st: LoadTestStatus, step, requeue, events, report| Plan {
        status: st,
        step,
        requeue,
        events,
        report,
    };

    if elapsed > spec.timeout.get() {
        let message = format!("the test ran past its timeout of {}", spec.timeout);
        return abort_run(
            st,
            test,
            current,
            current_job,
            (reasons::TIMEOUT, message),
            now,
        );
    }

    let phase = st.phase.unwrap_or(LoadPhase::Pending);
    if matches!(phase, LoadPhase::Pending | LoadPhase::WaitingForEndpoint) {
        match endpoint {
            EndpointState::Ready {
                url,
                cold_start_seconds,
                resources,
            } => {
                st.target_url = Some(url.clone());
                st.cold_start_seconds = *cold_start_seconds;
                st.target_resources = *resources;
                st.phase = Some(LoadPhase::Running);
            }
            EndpointState::NotReady { message } => {
                let name = spec
                    .target
                    .endpoint_ref
                    .as_ref()
                    .map(|r| r.name.as_str())
                    .unwrap_or("target");
                if elapsed > spec.endpoint_timeout.get() {
                    let message = format!(
                        "ModelEndpoint {name} was not Ready after {}: {message}",
                        spec.endpoint_timeout
                    );
                    let events = finish(
                        &mut st,
                        test,
                        Some((reasons::ENDPOINT_TIMEOUT, message)),
                        now,
                    );
                    return plan(st, Step::Wait, None, events, None);
                }
                st.phase = Some(LoadPhase::WaitingForEndpoint);
                let waiting = format!("waiting for ModelEndpoint {name} to be Ready: {message}");
                set_in_progress(&mut st, test, reasons::WAITING_FOR_ENDPOINT, waiting, now);
                let until_timeout =
                    spec.endpoint_timeout.get().saturating_sub(elapsed) + Duration::from_secs(1);
                let requeue = ENDPOINT_POLL.min(until_timeout);
                return plan(st, Step::Wait, Some(requeue), Vec::new(), None);
            }
        }
    } else if let EndpointState::NotReady { message } = endpoint {
        // The endpoint went away mid-test: what the runners measure now is not the endpoint.
        let message = format!("the target stopped serving mid-test: {message}");
        return abort_run(
            st,
            test,
            current,
            current_job,
            (reasons::ENDPOINT_LOST, message),
            now,
        );
    }

    let Some(i) = current else {
        let events = finish(&mut st, test, None, now);
        return plan(st, Step::Wait, None, events, None);
    };
    let total = st.profiles.len();
    let name = st.profiles[i].name.clone();
    let mut events = Vec::new();
    // Why the profile errored, when it does (the reason of the conditions that end the run).
    let mut error_reason = reasons::RUNNER_FAILED;
    if !matches!(job, JobState::Missing | JobState::Foreign(_))
        && st.profiles[i].phase == ProfilePhase::Pending
    {
        // The Job exists but the status never said so (the operator stopped in between): adopt it.
        let profile = &mut st.profiles[i];
        profile.phase = ProfilePhase::Running;
        profile.job = Some(job_name(test, &name, &run));
        profile.start_time = Some(now.clone());
    }
    let step = match job {
        JobState::Missing if st.profiles[i].phase == ProfilePhase::Pending => {
            let profile = &mut st.profiles[i];
            profile.phase = ProfilePhase::Running;
            profile.job = Some(job_name(test, &name, &run));
            profile.start_time = Some(now.clone());
            events.push(Transition {
                warning: false,
                reason: "ProfileStarted",
                note: format!("profile {name} ({} of {total}) started", i + 1),
            });
            Step::CreateJob {
                index: i,
                target_url: st.target_url.clone().unwrap_or_default(),
            }
        }
        JobState::Missing => {
            mark_error(
                &mut st.profiles[i],
                "its runner Job was deleted before it finished",
                now,
            );
            Step::Wait
        }
        JobState::Running => Step::Wait,
        JobState::Foreign(message) => {
            error_reason = reasons::NOT_OWNED;
            mark_error(
                &mut st.profiles[i],
                &format!("{message}; it was left as it is"),
                now,
            );
            Step::Wait
        }
        JobState::BadResults(message) => {
            error_reason = reasons::BAD_RESULTS;
            mark_error(
                &mut st.profiles[i],
                &format!("results refused: {message}"),
                now,
            );
            Step::Wait
        }
        JobState::Failed(message) => {
            mark_error(
                &mut st.profiles[i],
                &format!("runner failed: {message}"),
                now,
            );
            Step::Wait
        }
        JobState::Succeeded(summaries) => {
            let profile_spec = &spec.profiles[i];
            let thresholds = profile_spec.effective_thresholds(&spec.thresholds);
            let expected = usize::try_from(spec.parallelism.max(1)).unwrap_or(1);
            let outcome = profile_result(
                summaries,
                expected,
                &thresholds,
                &spec.task_thresholds,
                profile_spec.search.is_some(),
                spec.quality.is_some(),
            );
            let profile = &mut st.profiles[i];
            profile.completion_time = Some(now.clone());
            match outcome {
                Ok(ProfileResult {
                    figures,
                    violations,
                    curve,
                    capacity,
                    start_skew_ms,
                    missing_frames,
                    report: mut profile_report,
                }) => {
                    let efficiency = Efficiency::of(
                        profile_report.summary.total.embeddings,
                        profile_report.summary.duration_seconds,
                        st.target_resources.as_ref(),
                        spec.pricing.as_ref(),
                    );
                    profile_report.efficiency = efficiency;
                    let profile = &mut st.profiles[i];
                    profile.efficiency = efficiency;
                    profile.quality = profile_report.summary.quality;
                    // The percentiles, without the histograms they were merged from.
                    profile.connections =
                        profile_report.summary.connections.clone().map(|mut c| {
                            c.connect_histogram = None;
                            c.tls_histogram = None;
                            c
                        });
                    report = Some((i, profile_report));
                    profile.phase = if violations.is_empty() {
                        ProfilePhase::Passed
                    } else {
                        ProfilePhase::Failed
                    };
                    events.push(Transition {
                        warning: !violations.is_empty(),
                        reason: if violations.is_empty() {
                            "ProfilePassed"
                        } else {
                            "ProfileFailed"
                        },
                        note: profile_note(
                            &name,
                            &figures,
                            &violations,
                            capacity.as_ref(),
                            efficiency.as_ref(),
                            profile.quality.as_ref(),
                            &thresholds,
                        ),
                    });
                    let aborted = report.as_ref().and_then(|(_, r)| r.summary.aborted.clone());
                    profile.results = Some(figures);
                    profile.violations = violations;
                    profile.curve = curve;
                    profile.capacity = capacity;
                    profile.start_skew_ms = start_skew_ms;
                    profile.message = missing_frames;
                    if let Some(abort) = aborted {
                        let mut message = format!("aborted on budget: {}", abort.message);
                        if let Some(missing) = &profile.message {
                            message.push_str("; ");
                            message.push_str(missing);
                        }
                        profile.message = Some(message);
                        skip_after_abort(&mut st, spec, i, &abort, now);
                    }
                }
                Err(message) => {
                    error_reason = reasons::BAD_RESULTS;
                    mark_error(profile, &message, now);
                }
            }
            Step::Wait
        }
    };

    if st.profiles[i].phase == ProfilePhase::Error {
        let message = format!(
            "profile {name}: {}",
            st.profiles[i].message.clone().unwrap_or_default()
        );
        events.extend(finish(&mut st, test, Some((error_reason, message)), now));
        return plan(st, Step::Wait, None, events, None);
    }
    if st.profiles.iter().all(|p| profile_finished(p.phase)) {
        events.extend(finish(&mut st, test, None, now));
        return plan(st, Step::Wait, None, events, report);
    }
    let running = st
        .profiles
        .iter()
        .position(|p| !profile_finished(p.phase))
        .unwrap_or(i);
    let message = format!(
        "running profile {} ({} of {total})",
        st.profiles[running].name,
        running + 1
    );
    set_in_progress(&mut st, test, reasons::RUNNING, message, now);
    // A profile just finished: come straight back to start the next one.
    let requeue = if profile_finished(st.profiles[i].phase) {
        Duration::ZERO
    } else {
        RUNNING_POLL
    };
    plan(st, step, Some(requeue), events, report)
}

/// Ends the run in Error while a profile may be running: that profile errors too, and its Job
/// is deleted so the load stops.
fn abort_run(
    mut st: LoadTestStatus,
    test: &LoadTest,
    current: Option<usize>,
    current_job: Option<String>,
    (reason, message): (&'static str, String),
    now: &Time,
) -> Plan {
    if let Some(i) = current {
        mark_error(&mut st.profiles[i], &message, now);
    }
    let events = finish(&mut st, test, Some((reason, message)), now);
    Plan {
        status: st,
        step: current_job.map_or(Step::Wait, Step::DeleteJob),
        requeue: None,
        events,
        report: None,
    }
}

fn profile_finished(phase: ProfilePhase) -> bool {
    matches!(
        phase,
        ProfilePhase::Passed | ProfilePhase::Failed | ProfilePhase::Error | ProfilePhase::Skipped
    )
}

/// Profile `i` was stopped on its budgets (`abortOnFail`): the profiles after it are skipped,
/// and the status says why and what it saved (the rest of that profile and their run time).
fn skip_after_abort(
    st: &mut LoadTestStatus,
    spec: &loadgate_api::load_test::LoadTestSpec,
    i: usize,
    abort: &loadgate_api::load::Abort,
    now: &Time,
) {
    let name = st.profiles[i].name.clone();
    let mut skipped = Vec::new();
    let mut saved = abort.saved_seconds;
    for (profile, profile_spec) in st.profiles.iter_mut().zip(&spec.profiles).skip(i + 1) {
        if profile.phase != ProfilePhase::Pending {
            continue;
        }
        profile.phase = ProfilePhase::Skipped;
        profile.message = Some(format!(
            "skipped: profile {name} was aborted on its budgets"
        ));
        profile.completion_time = Some(now.clone());
        saved += profile_spec.load_profile().run_time().as_secs_f64();
        skipped.push(profile.name.clone());
    }
    let message = format!(
        "profile {name} stopped after {:.0} s: {}; {} skipped, {saved:.0} s of load saved",
        abort.after_seconds,
        abort.message,
        match skipped.len() {
            0 => "no profile".to_owned(),
            1 => "1 profile".to_owned(),
            n => format!("{n} profiles"),
        }
    );
    st.aborted = Some(AbortStatus {
        profile: name,
        skipped,
        saved_seconds: saved,
        message,
    });
}

fn mark_error(profile: &mut ProfileStatus, message: &str, now: &Time) {
    profile.phase = ProfilePhase::Error;
    profile.message = Some(message.to_owned());
    profile.completion_time = Some(now.clone());
}

fn profile_note(
    name: &str,
    f: &ResultFigures,
    violations: &[Violation],
    capacity: Option<&Capacity>,
    efficiency: Option<&Efficiency>,
    quality: Option<&loadgate_api::load::QualityResult>,
    thresholds: &Thresholds,
) -> String {
    let mut note = format!(
        "profile {name}: {} requests, {:.2}% errors, {:.1} rps, p95 {:.0} ms",
        f.requests,
        f.error_rate * 100.0,
        f.rps,
        f.p95_ms
    );
    if let Some(efficiency) = efficiency {
        note.push_str("; ");
        note.push_str(&efficiency.sentence());
    }
    if let Some(q) = quality.filter(|q| q.bad == 0 && q.sampled > 0) {
        note.push_str(&format!(
            "; {} sampled answers matched their reference vectors (worst cosine {:.5})",
            q.sampled,
            q.worst_cosine.unwrap_or(1.0)
        ));
    }
    if let Some(capacity) = capacity {
        note.push_str("; ");
        note.push_str(&capacity.sentence(thresholds));
    }
    if f.not_sent > 0 {
        note.push_str(&format!(
            " ({} of the requests were never sent: the target fell behind the arrival rate)",
            f.not_sent
        ));
    }
    for v in violations {
        note.push_str("; ");
        note.push_str(&v.message);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, load_test};
    use crate::status::profile_results::RunnerResults;
    use loadgate_api::capacity::CurvePoint;
    use loadgate_api::conditions::types;
    use loadgate_api::conditions::{find, is_true};
    use loadgate_api::load::{RequestStats, RunSummary};
    use loadgate_api::load_test::Verdict;
    use loadgate_api::results::{StepResult, WindowResult};

    fn ready() -> EndpointState {
        EndpointState::Ready {
            url: "http://mini.ml.svc:8080".into(),
            cold_start_seconds: Some(4.0),
            resources: Some(loadgate_api::efficiency::TargetResources {
                cpu_cores: 2.0,
                memory_gib: None,
            }),
        }
    }

    fn stats(requests: u64, failures: u64, latency_ms: u64) -> RequestStats {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record_n(latency_ms * 1000, requests).unwrap();
        RequestStats {
            name: "Aggregated".into(),
            method: String::new(),
            requests,
            failures,
            error_rate: loadgate_api::load::error_rate(failures, requests),
            rps: requests as f64 / 20.0,
            mean_ms: latency_ms as f64,
            p50_ms: latency_ms as f64,
            p90_ms: latency_ms as f64,
            p95_ms: latency_ms as f64,
            p99_ms: latency_ms as f64,
            max_ms: latency_ms as f64,
            histogram: Some(loadgate_results::codec::encode(&h)),
            not_sent: 0,
            embeddings: 0,
        }
    }

    fn summary(profile: &str, latency_ms: u64, failures: u64) -> RunSummary {
        RunSummary {
            profile: profile.into(),
            duration_seconds: 20.0,
            users: 10,
            total: stats(1000, failures, latency_ms),
            tasks: Vec::new(),
            violations: Vec::new(),
            passed: true,
            interrupted: false,
            start_delay: None,
            started_at_ms: None,
            results: None,
            curve: Vec::new(),
            capacity: None,
            warmup_seconds: None,
            aborted: None,
            quality: None,
            connections: None,
            dataset: None,
        }
    }

    /// A run that reached Running against a ready endpoint but never recorded its first Job
    /// (the operator stopped between creating it and writing the status).
    fn running_unrecorded(test: &LoadTest) -> LoadTestStatus {
        let mut st = start_run(test, None, "initial", &at(0)).status;
        st.phase = Some(LoadPhase::Running);
        st.target_url = Some("http://mini.ml.svc:8080".into());
        st
    }

    /// Runs a whole test: start, endpoint ready, each profile's Job created then complete.
    fn run_through(test: &LoadTest, latencies: &[u64]) -> Plan {
        let summaries = latencies
            .iter()
            .zip(&test.spec.profiles)
            .map(|(latency, p)| summary(&p.name, *latency, 0))
            .collect();
        run_with(test, summaries)
    }

    /// [`run_through`] with each profile's runner summary given.
    fn run_with(test: &LoadTest, summaries: Vec<RunSummary>) -> Plan {
        let mut plan = start_run(test, None, "initial", &at(0));
        assert_eq!(plan.status.phase, Some(LoadPhase::Pending));
        for (i, runner_summary) in summaries.into_iter().enumerate() {
            let t = 10 + 100 * i as i64;
            plan = advance(test, &plan.status, &ready(), &JobState::Missing, &at(t));
            assert!(
                matches!(plan.step, Step::CreateJob { index, .. } if index == i),
                "{:?}",
                plan.step
            );
            assert_eq!(plan.status.phase, Some(LoadPhase::Running));
            let running = advance(test, &plan.status, &ready(), &JobState::Running, &at(t + 5));
            assert_eq!(running.step, Step::Wait);
            assert_eq!(
                running.status, plan.status,
                "nothing changed, nothing to write"
            );
            plan = advance(
                test,
                &plan.status,
                &ready(),
                &JobState::Succeeded(vec![RunnerResults::summary_only(runner_summary)]),
                &at(t + 30),
            );
        }
        plan
    }

    fn step(users: u32, p95_ms: f64) -> CurvePoint {
        CurvePoint {
            users,
            users_throughout: users,
            offered_rps: None,
            seconds: 2.0,
            requests: 100,
            rps: f64::from(users) * 2.0,
            p50_ms: p95_ms / 2.0,
            p95_ms,
            p99_ms: p95_ms,
            error_rate: 0.0,
        }
    }

    #[test]
    fn a_ramps_capacity_is_judged_here_and_leads_the_verdict() {
        let test = load_test("knee");
        let mut ramp = summary("ramp-up", 400, 0);
        ramp.curve = vec![
            step(4, 100.0),
            step(8, 450.0),
            step(12, 700.0),
            step(16, 900.0),
        ];
        // A runner's own reading is not trusted: the operator judges the curve itself.
        ramp.capacity = Some(Capacity {
            max_users_within_budget: 1000,
            max_rps_within_budget: 1e9,
            offered_rps: None,
            limited_by: None,
            broke_at: None,
        });
        let plan = run_with(&test, vec![ramp, summary("spike", 120, 0)]);
        let st = &plan.status;
        assert_eq!(st.phase, Some(LoadPhase::Passed));
        let ramp = &st.profiles[0];
        assert_eq!(ramp.curve.len(), 4);
        let capacity = ramp.capacity.as_ref().unwrap();
        assert_eq!(
            (
                capacity.max_users_within_budget,
                capacity.max_rps_within_budget
            ),
            (8, 16.0)
        );
        assert_eq!(capacity.broke_at.as_ref().unwrap().users, 12);
        assert!(st.profiles[1].capacity.is_none(), "no curve, no capacity");
        let top = st.capacity.as_ref().unwrap();
        assert_eq!(
            (top.profile.as_str(), top.max_users_within_budget),
            ("ramp-up", 8)
        );
        assert_eq!(top.limited_by.as_deref(), Some("p95Ms"));
        let expected = "ramp-up: holds p95 < 500 ms and errors < 1% up to 16.0 req/s (8 users); \
                        breaks at 12 users: p95 700 ms";
        assert_eq!(top.message, expected);
        let passed = find(&st.conditions, types::PASSED).unwrap();
        assert!(passed.message.starts_with(expected), "{}", passed.message);
        assert!(
            plan.events
                .iter()
                .any(|e| e.note.contains("ramp-up") && e.note.contains("breaks at 12 users")),
            "{:?}",
            plan.events
        );
    }

    #[test]
    fn sharded_runners_steps_add_up_into_the_curve_and_their_start_skew_is_kept() {
        let step = |first: u32, users: u32, ms: u64| StepResult {
            first_window: first,
            windows: 2,
            users,
            users_throughout: users - 1,
            offered_rps: None,
            seconds: 2.0,
            stats: stats(50, 0, ms),
        };
        let runner = |started: u64, slow: u64| RunnerResults {
            summary: RunSummary {
                started_at_ms: Some(started),
                ..summary("ramp-up", 100, 0)
            },
            steps: Some(vec![
                step(0, 2, 100),
                step(2, 4, 200 + slow),
                step(4, 6, 900),
            ]),
            windows: Some(
                (0..6)
                    .map(|window| WindowResult {
                        window,
                        seconds: None,
                        users: window + 1,
                        requests: 0,
                        failures: 0,
                        warmup: false,
                        histogram: None,
                    })
                    .collect(),
            ),
            missing_frame: None,
        };
        let budget = Thresholds {
            p95_ms: Some(500.0),
            ..Thresholds::default()
        };
        let result = profile_result(
            &[runner(1_000, 0), runner(1_250, 50)],
            2,
            &budget,
            &[],
            false,
            false,
        )
        .unwrap();
        let users: Vec<(u32, u64)> = result.curve.iter().map(|p| (p.users, p.requests)).collect();
        assert_eq!(users, [(4, 100), (8, 100), (12, 100)]);
        // Half of the second step at 200 ms, half at 250: the merged p95 is the slower half's.
        assert!(
            (result.curve[1].p95_ms - 250.0).abs() < 0.5,
            "{:?}",
            result.curve
        );
        let capacity = result.capacity.clone().unwrap();
        assert_eq!(capacity.max_users_within_budget, 6);
        assert_eq!(capacity.broke_at.unwrap().users, 12);
        assert_eq!(result.start_skew_ms, Some(250));
        // The report: the merged summary judged as the status is, and the seconds added up.
        let report = &result.report;
        assert_eq!(report.summary.capacity, result.capacity);
        assert_eq!(report.summary.passed, result.violations.is_empty());
        assert_eq!(
            report.history.iter().map(|p| p.users).collect::<Vec<_>>(),
            [2, 4, 6, 8, 10, 12]
        );
        // A runner whose frame was not read: nothing is added up, and nothing is claimed.
        let mut gone = runner(1_250, 0);
        gone.steps = None;
        gone.windows = None;
        gone.missing_frame = Some("pod r-1: its log could not be read".into());
        let result =
            profile_result(&[runner(1_000, 0), gone], 2, &budget, &[], false, false).unwrap();
        assert!(result.curve.is_empty() && result.capacity.is_none());
        assert!(result.report.history.is_empty());
        assert_eq!(
            result.missing_frames.as_deref(),
            Some(
                "results frame missing (pod r-1: its log could not be read): no curve, \
                 capacity or per-second history measured"
            )
        );
    }

    #[test]
    fn a_profile_aborted_on_budget_skips_the_rest_and_says_what_it_saved() {
        let test = load_test("abort");
        let mut aborted = summary("ramp-up", 900, 0);
        aborted.aborted = Some(loadgate_api::load::Abort {
            after_seconds: 5.0,
            saved_seconds: 15.0,
            message: "5 one-second windows in a row over budget (last: p95 900 ms > budget 500 ms)"
                .into(),
        });
        let start = start_run(&test, None, "initial", &at(0));
        let plan = advance(&test, &start.status, &ready(), &JobState::Missing, &at(1));
        assert!(matches!(plan.step, Step::CreateJob { index: 0, .. }));
        let done = advance(
            &test,
            &plan.status,
            &ready(),
            &JobState::Succeeded(vec![RunnerResults::summary_only(aborted)]),
            &at(10),
        );
        let st = &done.status;
        assert_eq!(done.step, Step::Wait, "no Job for the skipped profile");
        assert_eq!(
            (st.phase, st.profiles[0].phase, st.profiles[1].phase),
            (
                Some(LoadPhase::Failed),
                ProfilePhase::Failed,
                ProfilePhase::Skipped
            )
        );
        let abort = st.aborted.as_ref().unwrap();
        // The 15 s the aborted profile did not run, and the 20 s skipped one.
        assert_eq!(
            (abort.saved_seconds, abort.skipped.clone()),
            (35.0, vec!["spike".to_owned()])
        );
        assert_eq!(
            abort.message,
            "profile ramp-up stopped after 5 s: 5 one-second windows in a row over budget \
             (last: p95 900 ms > budget 500 ms); 1 profile skipped, 35 s of load saved"
        );
        let passed = find(&st.conditions, types::PASSED).unwrap();
        assert_eq!(
            (passed.status.as_str(), passed.reason.as_str()),
            ("False", "AbortedOnBudget")
        );
        assert!(is_true(&st.conditions, types::COMPLETE));
        assert!(
            passed.message.contains("35 s of load saved"),
            "{}",
            passed.message
        );
        // The target's cold start, as the endpoint reported it when the run began.
        assert_eq!(st.cold_start_seconds, Some(4.0));
    }

    /// Before: with `spec.quality` set, runners that sent no quality result (an old runner
    /// image, or a check that never ran) left the quality gate passed.
    #[test]
    fn a_quality_check_that_sent_nothing_fails_the_profile() {
        let mut test = load_test("quality");
        test.spec.quality = Some(loadgate_api::load::Quality {
            sample_rate: 0.1,
            min_cosine: 0.9999,
        });
        let plan = run_through(&test, &[120, 180]);
        let st = &plan.status;
        assert_eq!(st.phase, Some(LoadPhase::Failed));
        let quality = &st.profiles[0].violations;
        assert!(
            quality.iter().any(|v| v.metric == "quality"
                && v.message
                    .contains("no runner sent a quality result in profile ramp-up")),
            "{quality:?}"
        );
    }

    #[test]
    fn a_run_inside_its_budgets_passes_with_every_gate_condition() {
        let test = load_test("gate");
        let plan = run_through(&test, &[120, 180]);
        let st = &plan.status;
        assert_eq!(
            (st.phase, st.verdict),
            (Some(LoadPhase::Passed), Some(Verdict::Pass))
        );
        for t in [types::COMPLETE, types::PASSED, types::READY] {
            assert!(is_true(&st.conditions, t), "{t}");
        }
        for t in [types::RECONCILING, types::STALLED] {
            assert!(!is_true(&st.conditions, t), "{t}");
        }
        let summary = st.summary.as_ref().unwrap();
        assert_eq!(summary.requests, 2000);
        assert!(
            (summary.p95_ms - 180.0).abs() < 1.0,
            "worst profile's p95: {}",
            summary.p95_ms
        );
        assert!(
            st.profiles
                .iter()
                .all(|p| p.phase == ProfilePhase::Passed && p.results.is_some())
        );
        assert!(
            st.conditions
                .iter()
                .all(|c| c.observed_generation == Some(1))
        );
        assert_eq!(plan.events.last().unwrap().reason, "TestPassed");
    }

    #[test]
    fn a_broken_budget_completes_failed_and_stalled_naming_value_and_budget() {
        let test = load_test("gate");
        let plan = run_through(&test, &[120, 612]);
        let st = &plan.status;
        assert_eq!(
            (st.phase, st.verdict),
            (Some(LoadPhase::Failed), Some(Verdict::Fail))
        );
        assert!(is_true(&st.conditions, types::COMPLETE));
        assert!(is_true(&st.conditions, types::STALLED));
        let passed = find(&st.conditions, types::PASSED).unwrap();
        assert_eq!(
            (passed.status.as_str(), passed.reason.as_str()),
            ("False", reasons::THRESHOLDS_EXCEEDED)
        );
        assert!(
            passed.message.contains("612")
                && passed.message.contains("500")
                && passed.message.contains("spike"),
            "{}",
            passed.message
        );
        assert_eq!(st.profiles[1].phase, ProfilePhase::Failed);
        assert!(plan.events.last().unwrap().warning);
    }

    #[test]
    fn an_endpoint_that_never_becomes_ready_times_out_clearly() {
        let test = load_test("gate");
        let start = start_run(&test, None, "initial", &at(0));
        let not_ready = EndpointState::NotReady {
            message: "rolling out: 0/1 replicas ready".into(),
        };
        let waiting = advance(
            &test,
            &start.status,
            &not_ready,
            &JobState::Missing,
            &at(30),
        );
        assert_eq!(waiting.status.phase, Some(LoadPhase::WaitingForEndpoint));
        assert_eq!(
            waiting.requeue,
            Some(Duration::from_secs(31)),
            "back just after the endpoint timeout, if no endpoint change comes first"
        );
        assert_eq!(
            find(&waiting.status.conditions, types::RECONCILING)
                .unwrap()
                .reason,
            reasons::WAITING_FOR_ENDPOINT
        );
        let timed_out = advance(
            &test,
            &waiting.status,
            &not_ready,
            &JobState::Missing,
            &at(61),
        );
        let st = &timed_out.status;
        assert_eq!(st.phase, Some(LoadPhase::Error));
        assert!(
            is_true(&st.conditions, types::COMPLETE) && is_true(&st.conditions, types::STALLED)
        );
        let complete = find(&st.conditions, types::COMPLETE).unwrap();
        assert_eq!(complete.reason, reasons::ENDPOINT_TIMEOUT);
        assert!(
            complete.message.contains("mini")
                && complete.message.contains("1m")
                && complete.message.contains("0/1"),
            "{}",
            complete.message
        );
    }

    #[test]
    fn a_failed_runner_ends_the_test_in_error_with_its_reason() {
        let test = load_test("gate");
        let mut plan = start_run(&test, None, "initial", &at(0));
        plan = advance(&test, &plan.status, &ready(), &JobState::Missing, &at(1));
        plan = advance(
            &test,
            &plan.status,
            &ready(),
            &JobState::Failed("BackoffLimitExceeded: pod evicted".into()),
            &at(9),
        );
        assert_eq!(plan.status.phase, Some(LoadPhase::Error));
        assert_eq!(plan.status.profiles[0].phase, ProfilePhase::Error);
        assert_eq!(
            plan.status.profiles[1].phase,
            ProfilePhase::Pending,
            "later profiles never start"
        );
        let stalled = find(&plan.status.conditions, types::STALLED).unwrap();
        assert!(stalled.message.contains("evicted"), "{}", stalled.message);
    }

    #[test]
    fn missing_runner_summaries_are_an_error_not_a_pass() {
        let mut test = load_test("gate");
        test.spec.parallelism = 2;
        let mut plan = start_run(&test, None, "initial", &at(0));
        plan = advance(&test, &plan.status, &ready(), &JobState::Missing, &at(1));
        plan = advance(
            &test,
            &plan.status,
            &ready(),
            &JobState::Succeeded(vec![RunnerResults::summary_only(summary(
                "ramp-up", 100, 0,
            ))]),
            &at(9),
        );
        assert_eq!(plan.status.phase, Some(LoadPhase::Error));
        assert!(
            plan.status.profiles[0]
                .message
                .as_deref()
                .unwrap()
                .contains("1 summaries for 2 runner pods")
        );
    }

    #[test]
    fn a_timeout_stops_the_running_job() {
        let test = load_test("gate");
        let mut plan = start_run(&test, None, "initial", &at(0));
        plan = advance(&test, &plan.status, &ready(), &JobState::Missing, &at(1));
        let job = plan.status.profiles[0].job.clone().unwrap();
        let late = advance(&test, &plan.status, &ready(), &JobState::Running, &at(601));
        assert_eq!(late.step, Step::DeleteJob(job));
        assert_eq!(
            find(&late.status.conditions, types::COMPLETE)
                .unwrap()
                .reason,
            reasons::TIMEOUT
        );
    }

    #[test]
    fn a_restarted_operator_adopts_a_job_it_created_but_did_not_record() {
        let test = load_test("gate");
        // Endpoint ready, Job exists (created just before a crash), status still says Pending.
        let st = running_unrecorded(&test);
        let plan = advance(
            &test,
            &st,
            &ready(),
            &JobState::Succeeded(vec![RunnerResults::summary_only(summary(
                "ramp-up", 100, 0,
            ))]),
            &at(40),
        );
        assert_eq!(plan.status.profiles[0].phase, ProfilePhase::Passed);
        assert_eq!(
            plan.requeue,
            Some(Duration::ZERO),
            "straight on to the next profile"
        );
    }

    #[test]
    fn a_rerun_keeps_the_previous_results_readable() {
        let test = load_test("gate");
        let first = run_through(&test, &[120, 180]).status;
        assert!(!is_current_run(&test, &first, "abc123"));
        let second = start_run(&test, Some(&first), "abc123", &at(1000));
        let previous = second.status.previous.as_ref().unwrap();
        assert_eq!(
            (previous.run.as_str(), previous.verdict),
            ("initial", Some(Verdict::Pass))
        );
        assert_eq!(previous.summary, first.summary);
        assert_eq!(second.status.phase, Some(LoadPhase::Pending));
        assert!(second.status.verdict.is_none() && second.status.summary.is_none());
        let complete = find(&second.status.conditions, types::COMPLETE).unwrap();
        assert_eq!(
            (
                complete.status.as_str(),
                complete.last_transition_time.clone()
            ),
            ("False", at(1000))
        );
        assert_eq!(
            find(&second.status.conditions, types::PASSED)
                .unwrap()
                .status,
            "Unknown"
        );
    }

    #[test]
    fn an_invalid_spec_ends_at_once_naming_the_field() {
        let test = load_test("gate");
        let plan = reject_spec(
            &test,
            None,
            "initial",
            "spec.profiles[0].users: must be between 1 and 100000".into(),
            &at(0),
        );
        let st = &plan.status;
        assert_eq!(st.phase, Some(LoadPhase::Error));
        assert_eq!(plan.step, Step::Wait);
        for t in [types::STALLED, types::COMPLETE] {
            let c = find(&st.conditions, t).unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("True", "InvalidSpec")
            );
            assert!(
                c.message.contains("spec.profiles[0].users"),
                "{}",
                c.message
            );
        }
        assert_eq!(find(&st.conditions, types::PASSED).unwrap().status, "False");
    }

    #[test]
    fn a_refused_job_ends_the_run_with_the_apiservers_message() {
        let test = load_test("gate");
        let start = start_run(&test, None, "initial", &at(0));
        let creating = advance(&test, &start.status, &ready(), &JobState::Missing, &at(1));
        assert!(matches!(creating.step, Step::CreateJob { .. }));
        let plan = refuse(
            &test,
            creating,
            reasons::REJECTED,
            "the apiserver refused Job x: forbidden (403)".into(),
            &at(1),
        );
        assert_eq!(plan.step, Step::Wait);
        assert_eq!(plan.status.phase, Some(LoadPhase::Error));
        assert_eq!(plan.status.profiles[0].phase, ProfilePhase::Error);
        let stalled = find(&plan.status.conditions, types::STALLED).unwrap();
        assert_eq!(stalled.reason, "Rejected");
        assert!(stalled.message.contains("forbidden (403)"));
    }

    #[test]
    fn jobs_are_cleaned_up_counting_from_the_tests_end() {
        let mut test = load_test("gate");
        let done = run_through(&test, &[120, 180]).status;
        assert_eq!(cleanup_in(&test, &done, &at(500)), None, "no TTL: kept");
        test.spec.ttl_seconds_after_finished = Some(60);
        // The run finished at 140 s (the second profile's results); its Jobs go at 200 s.
        let end = done.completion_time.clone().unwrap();
        assert_eq!(end, at(140));
        assert_eq!(
            cleanup_in(&test, &done, &at(150)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(cleanup_in(&test, &done, &at(400)), Some(Duration::ZERO));
        let running = start_run(&test, None, "initial", &at(0)).status;
        assert_eq!(cleanup_in(&test, &running, &at(400)), None, "never mid-run");
    }

    #[test]
    fn a_foreign_job_is_never_adopted() {
        let test = load_test("gate");
        let st = running_unrecorded(&test);
        let plan = advance(
            &test,
            &st,
            &ready(),
            &JobState::Foreign("Job gate-ramp-up-x belongs to generation 1, not 2".into()),
            &at(5),
        );
        assert_eq!(plan.status.phase, Some(LoadPhase::Error));
        assert_eq!(plan.step, Step::Wait, "someone else's Job is never deleted");
        assert_eq!(
            find(&plan.status.conditions, types::STALLED)
                .unwrap()
                .reason,
            "NotOwned"
        );
        assert!(plan.status.profiles[0].results.is_none());
    }

    #[test]
    fn bad_results_end_the_profile_in_error_naming_the_pod() {
        let test = load_test("gate");
        let start = start_run(&test, None, "initial", &at(0));
        let running = advance(&test, &start.status, &ready(), &JobState::Missing, &at(1));
        let plan = advance(
            &test,
            &running.status,
            &ready(),
            &JobState::BadResults("pods a and b both claim completion index 0".into()),
            &at(30),
        );
        assert_eq!(plan.status.phase, Some(LoadPhase::Error));
        let stalled = find(&plan.status.conditions, types::STALLED).unwrap();
        assert_eq!(stalled.reason, "BadResults");
        assert!(
            stalled.message.contains("pods a and b"),
            "{}",
            stalled.message
        );
    }

    #[test]
    fn a_spec_change_is_a_new_run() {
        let mut test = load_test("gate");
        let done = run_through(&test, &[120, 180]).status;
        assert!(is_current_run(&test, &done, "initial"));
        test.metadata.generation = Some(2);
        assert!(!is_current_run(&test, &done, "initial"));
    }

    #[test]
    fn url_targets_need_no_endpoint_and_per_profile_budgets_override() {
        let mut test = load_test("gate");
        test.spec.profiles[1].thresholds = Some(loadgate_api::load::Thresholds {
            p95_ms: Some(1000.0),
            ..Default::default()
        });
        let plan = run_through(&test, &[120, 612]);
        assert_eq!(
            plan.status.verdict,
            Some(Verdict::Pass),
            "spike's own 1000 ms budget applies"
        );
    }
}
