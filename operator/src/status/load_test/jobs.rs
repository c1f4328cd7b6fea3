//! The situations of a profile's runner Job that are not its results: none yet (create it), one
//! the status never recorded (adopt it: the operator stopped in between), and one that is gone,
//! foreign, failed or returned results that cannot be trusted (the profile errors, naming why).

use super::mark_error;
use super::progress::Outcome;
use crate::resources::load_test::job_name;
use crate::status::plan::{EventReason, JobState, Step, Transition};
use loadgate_api::conditions::{Time, reasons};
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadTestStatus, ProfilePhase};

/// A Job exists for a profile the status still calls Pending (the operator created it and
/// stopped before writing the status): the profile is Running under that Job from now on.
pub(super) fn adopt_unrecorded(
    st: &mut LoadTestStatus,
    test: &LoadTest,
    i: usize,
    job: &JobState,
    now: &Time,
) {
    let exists = !matches!(job, JobState::Missing | JobState::Foreign(_));
    if exists && st.profiles[i].phase == ProfilePhase::Pending {
        mark_running(st, test, i, now);
    }
}

/// Profile `i` has no Job yet: it starts, and its Job is to be created.
pub(super) fn start_profile(
    st: &mut LoadTestStatus,
    test: &LoadTest,
    i: usize,
    now: &Time,
) -> Outcome {
    mark_running(st, test, i, now);
    let name = &st.profiles[i].name;
    Outcome {
        step: Step::CreateJob {
            index: i,
            target_url: st.target_url.clone().unwrap_or_default(),
        },
        events: vec![Transition {
            warning: false,
            reason: EventReason::ProfileStarted,
            note: format!(
                "profile {name} ({} of {}) started",
                i + 1,
                st.profiles.len()
            ),
        }],
        ..Outcome::wait()
    }
}

/// Profile `i`'s Job is gone before it finished, not this run's, failed, or finished with
/// results that cannot be trusted: the profile errors, and the run ends for that reason.
pub(super) fn failed(st: &mut LoadTestStatus, i: usize, job: &JobState, now: &Time) -> Outcome {
    let (error_reason, message) = match job {
        JobState::Foreign(message) => (
            reasons::NOT_OWNED,
            format!("{message}; it was left as it is"),
        ),
        JobState::BadResults(message) => {
            (reasons::BAD_RESULTS, format!("results refused: {message}"))
        }
        JobState::Failed(message) => (reasons::RUNNER_FAILED, format!("runner failed: {message}")),
        JobState::Missing | JobState::Running | JobState::Succeeded(_) => (
            reasons::RUNNER_FAILED,
            "its runner Job was deleted before it finished".to_owned(),
        ),
    };
    mark_error(&mut st.profiles[i], &message, now);
    Outcome {
        error_reason,
        ..Outcome::wait()
    }
}

fn mark_running(st: &mut LoadTestStatus, test: &LoadTest, i: usize, now: &Time) {
    let run = st.run.clone().unwrap_or_default();
    let profile = &mut st.profiles[i];
    profile.phase = ProfilePhase::Running;
    profile.job = Some(job_name(test, &profile.name, &run));
    profile.start_time = Some(now.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, load_test};
    use crate::status::load_test::start_run;

    fn status(test: &LoadTest) -> LoadTestStatus {
        let mut st = start_run(test, None, None, "initial", &at(0)).status;
        st.target_url = Some("http://mini.ml.svc:8080".into());
        st
    }

    #[test]
    fn a_profile_without_a_job_starts_and_asks_for_one() {
        let test = load_test("gate");
        let mut st = status(&test);
        let outcome = start_profile(&mut st, &test, 0, &at(10));
        assert_eq!(
            outcome.step,
            Step::CreateJob {
                index: 0,
                target_url: "http://mini.ml.svc:8080".into()
            }
        );
        assert_eq!(outcome.events[0].reason, EventReason::ProfileStarted);
        let profile = &st.profiles[0];
        assert_eq!(profile.phase, ProfilePhase::Running);
        assert_eq!(
            profile.job.as_deref(),
            Some(job_name(&test, &profile.name, "initial").as_str())
        );
        assert_eq!(profile.start_time, Some(at(10)));
    }

    #[test]
    fn a_job_the_status_never_recorded_is_adopted_a_foreign_one_never() {
        let test = load_test("gate");
        let mut st = status(&test);
        adopt_unrecorded(
            &mut st,
            &test,
            0,
            &JobState::Foreign("another run's".into()),
            &at(5),
        );
        assert_eq!(st.profiles[0].phase, ProfilePhase::Pending);
        adopt_unrecorded(&mut st, &test, 0, &JobState::Running, &at(5));
        assert_eq!(st.profiles[0].phase, ProfilePhase::Running);
        assert!(st.profiles[0].job.is_some());
    }

    #[test]
    fn each_failure_names_its_reason() {
        let test = load_test("gate");
        for (job, reason, says) in [
            (
                JobState::Foreign("owned by x".into()),
                reasons::NOT_OWNED,
                "owned by x; it was left as it is",
            ),
            (
                JobState::BadResults("pod p: garbled".into()),
                reasons::BAD_RESULTS,
                "results refused: pod p: garbled",
            ),
            (
                JobState::Failed("Evicted".into()),
                reasons::RUNNER_FAILED,
                "runner failed: Evicted",
            ),
            (
                JobState::Missing,
                reasons::RUNNER_FAILED,
                "its runner Job was deleted before it finished",
            ),
        ] {
            let mut st = status(&test);
            let outcome = failed(&mut st, 0, &job, &at(20));
            assert_eq!(outcome.error_reason, reason, "{job:?}");
            assert_eq!(st.profiles[0].phase, ProfilePhase::Error);
            assert_eq!(st.profiles[0].message.as_deref(), Some(says));
            assert_eq!(outcome.step, Step::Wait);
        }
    }
}
