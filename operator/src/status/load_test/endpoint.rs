//! The situation before the load: waiting for the endpoint to be Ready (a Pending or
//! WaitingForEndpoint run), giving up after `endpointTimeout`, and, once running, ending the run
//! when the endpoint stops serving (what the runners measure then is not the endpoint).

use super::{ENDPOINT_POLL, abort_run};
use crate::status::plan::{EndpointState, Plan, Step};
use crate::status::run_end::{finish, set_in_progress};
use loadgate_api::conditions::{Time, reasons};
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadPhase, LoadTestStatus};
use std::ops::ControlFlow;
use std::time::Duration;

/// Takes in what the operator saw of the endpoint: `Continue` once the run may load it (the
/// target's URL, cold start and resources recorded), `Break` with the plan when the run waits
/// for it or ends because of it.
pub(super) fn observe(
    st: &mut LoadTestStatus,
    test: &LoadTest,
    endpoint: &EndpointState,
    elapsed: Duration,
    current: Option<usize>,
    now: &Time,
) -> ControlFlow<Plan> {
    let spec = &test.spec;
    let waiting = matches!(
        st.phase.unwrap_or(LoadPhase::Pending),
        LoadPhase::Pending | LoadPhase::WaitingForEndpoint
    );
    match endpoint {
        EndpointState::Ready {
            url,
            cold_start_seconds,
            resources,
            ..
        } if waiting => {
            st.target_url = Some(url.clone());
            st.cold_start_seconds = *cold_start_seconds;
            st.target_resources = *resources;
            st.phase = Some(LoadPhase::Running);
            ControlFlow::Continue(())
        }
        EndpointState::Ready { .. } => ControlFlow::Continue(()),
        EndpointState::NotReady { message } if waiting => {
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
                let events = finish(st, test, Some((reasons::ENDPOINT_TIMEOUT, message)), now);
                return ControlFlow::Break(Plan {
                    status: st.clone(),
                    step: Step::Wait,
                    requeue: None,
                    events,
                    report: None,
                });
            }
            st.phase = Some(LoadPhase::WaitingForEndpoint);
            let waiting = format!("waiting for ModelEndpoint {name} to be Ready: {message}");
            set_in_progress(st, test, reasons::WAITING_FOR_ENDPOINT, waiting, now);
            // Checked on time: the timeout comes even if no change of the endpoint wakes us.
            let until_timeout =
                spec.endpoint_timeout.get().saturating_sub(elapsed) + Duration::from_secs(1);
            ControlFlow::Break(Plan {
                status: st.clone(),
                step: Step::Wait,
                requeue: Some(ENDPOINT_POLL.min(until_timeout)),
                events: Vec::new(),
                report: None,
            })
        }
        EndpointState::NotReady { message } => {
            let message = format!("the target stopped serving mid-test: {message}");
            ControlFlow::Break(abort_run(
                st.clone(),
                test,
                current,
                (reasons::ENDPOINT_LOST, message),
                now,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, load_test};
    use crate::status::load_test::start_run;
    use loadgate_api::conditions::{find, types};
    use loadgate_api::load_test_status::ProfilePhase;

    fn not_ready() -> EndpointState {
        EndpointState::NotReady {
            message: "0/1 replicas ready".into(),
        }
    }

    fn ready() -> EndpointState {
        EndpointState::Ready {
            url: "http://mini.ml.svc:8080".into(),
            cold_start_seconds: Some(3.0),
            resources: None,
            readiness_path: None,
        }
    }

    #[test]
    fn a_ready_endpoint_starts_the_load_and_records_where() {
        let test = load_test("gate");
        let mut st = start_run(&test, None, None, "initial", &at(0)).status;
        let flow = observe(
            &mut st,
            &test,
            &ready(),
            Duration::from_secs(5),
            Some(0),
            &at(5),
        );
        assert!(flow.is_continue());
        assert_eq!(st.phase, Some(LoadPhase::Running));
        assert_eq!(st.target_url.as_deref(), Some("http://mini.ml.svc:8080"));
        assert_eq!(st.cold_start_seconds, Some(3.0));
    }

    #[test]
    fn a_run_waits_and_comes_back_before_its_endpoint_timeout() {
        let test = load_test("gate");
        let mut st = start_run(&test, None, None, "initial", &at(0)).status;
        let left = test.spec.endpoint_timeout.get() - Duration::from_secs(10);
        let elapsed = test.spec.endpoint_timeout.get() - left;
        let ControlFlow::Break(plan) =
            observe(&mut st, &test, &not_ready(), elapsed, Some(0), &at(1))
        else {
            panic!("a run without its endpoint must wait");
        };
        assert_eq!(plan.status.phase, Some(LoadPhase::WaitingForEndpoint));
        assert_eq!(plan.step, Step::Wait);
        assert!(plan.requeue.unwrap() <= ENDPOINT_POLL.min(left + Duration::from_secs(1)));
        let reconciling = find(&plan.status.conditions, types::RECONCILING).unwrap();
        assert_eq!(reconciling.reason, reasons::WAITING_FOR_ENDPOINT);
        assert!(
            reconciling.message.contains("0/1 replicas ready"),
            "{}",
            reconciling.message
        );
    }

    #[test]
    fn past_the_endpoint_timeout_the_run_ends_naming_the_endpoint() {
        let test = load_test("gate");
        let mut st = start_run(&test, None, None, "initial", &at(0)).status;
        let elapsed = test.spec.endpoint_timeout.get() + Duration::from_secs(1);
        let ControlFlow::Break(plan) =
            observe(&mut st, &test, &not_ready(), elapsed, Some(0), &at(1))
        else {
            panic!("past its timeout the run must end");
        };
        assert_eq!(plan.status.phase, Some(LoadPhase::Error));
        assert_eq!(plan.requeue, None);
        let stalled = find(&plan.status.conditions, types::STALLED).unwrap();
        assert_eq!(stalled.reason, reasons::ENDPOINT_TIMEOUT);
    }

    #[test]
    fn an_endpoint_lost_mid_run_stops_the_running_job() {
        let test = load_test("gate");
        let mut st = start_run(&test, None, None, "initial", &at(0)).status;
        st.phase = Some(LoadPhase::Running);
        st.profiles[0].phase = ProfilePhase::Running;
        st.profiles[0].job = Some("gate-initial-warmup".into());
        let ControlFlow::Break(plan) = observe(
            &mut st,
            &test,
            &not_ready(),
            Duration::from_secs(60),
            Some(0),
            &at(60),
        ) else {
            panic!("a lost endpoint must end the run");
        };
        assert_eq!(plan.step, Step::DeleteJob("gate-initial-warmup".into()));
        assert_eq!(plan.status.profiles[0].phase, ProfilePhase::Error);
        let stalled = find(&plan.status.conditions, types::STALLED).unwrap();
        assert_eq!(stalled.reason, reasons::ENDPOINT_LOST);
    }
}
