//! The LoadTest state machine, pure: given the test, its status and what the operator observed
//! (the endpoint, the current profile's Job and its pods' summaries, the clock), the next status
//! and the one action to take ([`super::plan`] holds both vocabularies). The controller does the
//! I/O; `loadgate local` drives the same machine. A profile's result is read by
//! [`super::profile_results`], and a run's end (verdict, conditions) set by [`super::run_end`].
//!
//! A run goes Pending → WaitingForEndpoint → Running (one profile after another) → Passed,
//! Failed or Error. Everything needed to resume lives in the status and the Jobs, so an operator
//! restarted mid-test picks up where it was, and nothing measured is lost.
//!
//! [`advance`] reads as a table of situations, each a small function in its own module with its
//! own tests: waiting for the endpoint (`endpoint.rs`), a Job to create or one that failed
//! (`jobs.rs`), a Job that finished with results (`finished.rs`), and what comes after the step:
//! the next profile or the run's end (`progress.rs`). `tests.rs` runs whole tests through it.

use k8s_openapi::jiff::SignedDuration;
use loadgate_api::conditions::{Time, reasons};
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadPhase, LoadTestStatus, ProfilePhase, ProfileStatus};
use std::time::Duration;

use super::gates;
use super::plan::{EndpointState, EventReason, JobState, Plan, Step, Transition};
use super::run_end::{finish, set_in_progress};
use std::ops::ControlFlow;

mod endpoint;
mod finished;
mod jobs;
pub mod live;
mod progress;

/// Safety-net requeue while waiting for the endpoint: its changes wake the controller (a watch
/// maps each ModelEndpoint to the LoadTests that target it), so this only bounds a missed
/// event; the endpoint timeout is always checked on time.
const ENDPOINT_POLL: Duration = Duration::from_secs(60);
/// Requeue while Jobs run: their changes wake the controller anyway; this is when the
/// profile's progress is read again ([`live`], every 10 s).
const RUNNING_POLL: Duration = Duration::from_secs(loadgate_api::progress::PROGRESS_EVERY_SECONDS);

/// True when `status` describes the run `test` asks for now: same run name, same generation.
pub fn is_current_run(test: &LoadTest, status: &LoadTestStatus, run: &str) -> bool {
    status.run.as_deref() == Some(run) && status.observed_generation == test.metadata.generation
}

/// A fresh status for run `run`, keeping the last finished run in `previous`. The baseline
/// comes from the test's own runs (`status`), or, when `baseline.loadTestRef` names another
/// LoadTest, from `referenced`: that test's status, which the caller read (`None` when it does
/// not exist).
pub fn start_run(
    test: &LoadTest,
    status: Option<&LoadTestStatus>,
    referenced: Option<&LoadTestStatus>,
    run: &str,
    now: &Time,
) -> Plan {
    let previous = status.and_then(|s| gates::record_of(s).or_else(|| s.previous.clone()));
    let baseline = match &test.spec.baseline {
        None => None,
        Some(b) if b.load_test_ref.is_some() => gates::pick_baseline(test, referenced),
        Some(_) => gates::pick_baseline(test, status),
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
            reason: EventReason::RunStarted,
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
    let mut plan = start_run(test, status, None, run, now);
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
    let current = current_profile(&plan.status);
    let mut refused = abort_run(plan.status, test, current, (reason, message), now);
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

/// One step of a run in progress: the situation it is in, then what comes after.
pub fn advance(
    test: &LoadTest,
    status: &LoadTestStatus,
    endpoint: &EndpointState,
    job: &JobState,
    now: &Time,
) -> Plan {
    let mut st = status.clone();
    let elapsed = elapsed_since(st.start_time.as_ref(), now);
    let current = current_profile(&st);

    if elapsed > test.spec.timeout.get() {
        let message = format!("the test ran past its timeout of {}", test.spec.timeout);
        return abort_run(st, test, current, (reasons::TIMEOUT, message), now);
    }
    if let ControlFlow::Break(plan) =
        endpoint::observe(&mut st, test, endpoint, elapsed, current, now)
    {
        return plan;
    }
    let Some(i) = current else {
        return progress::run_ended(st, test, now);
    };
    jobs::adopt_unrecorded(&mut st, test, i, job, now);
    let outcome = match job {
        JobState::Missing if st.profiles[i].phase == ProfilePhase::Pending => {
            jobs::start_profile(&mut st, test, i, now)
        }
        JobState::Running => progress::Outcome::wait(),
        JobState::Succeeded(results) => finished::record(&mut st, test, i, results, now),
        JobState::Missing
        | JobState::Foreign(_)
        | JobState::BadResults(_)
        | JobState::Failed(_) => jobs::failed(&mut st, i, job, now),
    };
    progress::after(st, test, i, outcome, now)
}

/// The profile under way: the first one not finished.
fn current_profile(st: &LoadTestStatus) -> Option<usize> {
    st.profiles.iter().position(|p| !profile_finished(p.phase))
}

/// Ends the run in Error while a profile may be running: that profile errors too, and its Job
/// (if it has one) is deleted so the load stops.
fn abort_run(
    mut st: LoadTestStatus,
    test: &LoadTest,
    current: Option<usize>,
    (reason, message): (&'static str, String),
    now: &Time,
) -> Plan {
    let current_job = current.and_then(|i| st.profiles[i].job.clone());
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

fn mark_error(profile: &mut ProfileStatus, message: &str, now: &Time) {
    profile.phase = ProfilePhase::Error;
    profile.message = Some(message.to_owned());
    profile.completion_time = Some(now.clone());
}

#[cfg(test)]
mod tests;
