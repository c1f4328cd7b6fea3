//! What comes after one step of a profile: the run ends in Error when the profile errored, ends
//! with its verdict once every profile finished, and otherwise goes on (straight back to start
//! the next profile when one just finished, a safety-net requeue while a Job runs).

use super::{RUNNING_POLL, profile_finished};
use crate::status::plan::{Plan, Step, Transition};
use crate::status::run_end::{finish, set_in_progress};
use loadgate_api::conditions::{Time, reasons};
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadTestStatus, ProfilePhase};
use loadgate_api::report::ProfileReport;
use std::time::Duration;

/// What the situation of the current profile came to.
#[derive(Debug)]
pub(super) struct Outcome {
    /// The action.
    pub step: Step,
    /// Events of the profile's transition.
    pub events: Vec<Transition>,
    /// A finished profile's merged report.
    pub report: Option<(usize, ProfileReport)>,
    /// Why the run ends in Error if the profile errored (a condition reason).
    pub error_reason: &'static str,
}

impl Outcome {
    /// Nothing happened: wait.
    pub fn wait() -> Self {
        Self {
            step: Step::Wait,
            events: Vec::new(),
            report: None,
            error_reason: reasons::RUNNER_FAILED,
        }
    }
}

/// The plan after profile `i`'s step.
pub(super) fn after(
    mut st: LoadTestStatus,
    test: &LoadTest,
    i: usize,
    outcome: Outcome,
    now: &Time,
) -> Plan {
    let Outcome {
        step,
        mut events,
        report,
        error_reason,
    } = outcome;
    if st.profiles[i].phase == ProfilePhase::Error {
        let message = format!(
            "profile {}: {}",
            st.profiles[i].name,
            st.profiles[i].message.clone().unwrap_or_default()
        );
        events.extend(finish(&mut st, test, Some((error_reason, message)), now));
        return plan(st, Step::Wait, None, events, None);
    }
    let Some(running) = super::current_profile(&st) else {
        events.extend(finish(&mut st, test, None, now));
        return plan(st, Step::Wait, None, events, report);
    };
    let message = format!(
        "running profile {} ({} of {})",
        st.profiles[running].name,
        running + 1,
        st.profiles.len()
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

/// Every profile had finished already: the run ends with its verdict.
pub(super) fn run_ended(mut st: LoadTestStatus, test: &LoadTest, now: &Time) -> Plan {
    let events = finish(&mut st, test, None, now);
    plan(st, Step::Wait, None, events, None)
}

fn plan(
    status: LoadTestStatus,
    step: Step,
    requeue: Option<Duration>,
    events: Vec<Transition>,
    report: Option<(usize, ProfileReport)>,
) -> Plan {
    Plan {
        status,
        step,
        requeue,
        events,
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, load_test};
    use crate::status::load_test::start_run;
    use loadgate_api::conditions::{find, types};
    use loadgate_api::load_test_status::LoadPhase;

    fn running(test: &LoadTest) -> LoadTestStatus {
        let mut st = start_run(test, None, None, "initial", &at(0)).status;
        st.phase = Some(LoadPhase::Running);
        st
    }

    #[test]
    fn an_errored_profile_ends_the_run_with_its_reason() {
        let test = load_test("gate");
        let mut st = running(&test);
        st.profiles[0].phase = ProfilePhase::Error;
        st.profiles[0].message = Some("runner failed: OOMKilled".into());
        let outcome = Outcome {
            error_reason: reasons::BAD_RESULTS,
            ..Outcome::wait()
        };
        let plan = after(st, &test, 0, outcome, &at(30));
        assert_eq!(plan.status.phase, Some(LoadPhase::Error));
        assert_eq!(plan.requeue, None);
        let stalled = find(&plan.status.conditions, types::STALLED).unwrap();
        assert_eq!(stalled.reason, reasons::BAD_RESULTS);
        assert!(stalled.message.contains("OOMKilled"), "{}", stalled.message);
    }

    #[test]
    fn a_finished_profile_comes_straight_back_for_the_next() {
        let test = load_test("gate");
        assert!(
            test.spec.profiles.len() > 1,
            "the fixture has several profiles"
        );
        let mut st = running(&test);
        st.profiles[0].phase = ProfilePhase::Passed;
        let plan = after(st, &test, 0, Outcome::wait(), &at(30));
        assert_eq!(plan.requeue, Some(Duration::ZERO));
        let reconciling = find(&plan.status.conditions, types::RECONCILING).unwrap();
        assert!(
            reconciling.message.starts_with(&format!(
                "running profile {} (2 of",
                test.spec.profiles[1].name
            )),
            "{}",
            reconciling.message
        );
    }

    #[test]
    fn a_running_job_is_looked_at_again_within_the_safety_net() {
        let test = load_test("gate");
        let mut st = running(&test);
        st.profiles[0].phase = ProfilePhase::Running;
        let plan = after(st, &test, 0, Outcome::wait(), &at(30));
        assert_eq!(plan.requeue, Some(RUNNING_POLL));
        assert_eq!(plan.step, Step::Wait);
    }

    #[test]
    fn the_last_profile_finishing_ends_the_run_with_its_verdict() {
        let test = load_test("gate");
        let mut st = running(&test);
        for p in &mut st.profiles {
            p.phase = ProfilePhase::Passed;
        }
        let plan = after(
            st,
            &test,
            test.spec.profiles.len() - 1,
            Outcome::wait(),
            &at(90),
        );
        assert_eq!(plan.status.phase, Some(LoadPhase::Passed));
        assert_eq!(plan.requeue, None);
    }
}
