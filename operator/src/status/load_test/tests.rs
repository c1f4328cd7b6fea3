//! The state machine run through whole tests: every situation in sequence, as the controller
//! and local mode drive it.

use super::*;
use crate::fixtures::{at, load_test};
use crate::status::profile_results::RunnerResults;
use crate::status::profile_results::profile_result;
use loadgate_api::capacity::Capacity;
use loadgate_api::capacity::CurvePoint;
use loadgate_api::conditions::types;
use loadgate_api::conditions::{find, is_true};
use loadgate_api::load::Thresholds;
use loadgate_api::load_test_status::Verdict;
use loadgate_api::results::{StepResult, WindowResult};
use loadgate_api::stats::RequestStats;
use loadgate_api::summary::RunSummary;

fn ready() -> EndpointState {
    EndpointState::Ready {
        url: "http://mini.ml.svc:8080".into(),
        cold_start_seconds: Some(4.0),
        resources: Some(loadgate_api::efficiency::TargetResources {
            cpu_cores: 2.0,
            memory_gib: None,
        }),
        readiness_path: None,
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
        error_rate: loadgate_api::stats::error_rate(failures, requests),
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
        llm: None,
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
        failure_reasons: Vec::new(),
    }
}

/// A run that reached Running against a ready endpoint but never recorded its first Job
/// (the operator stopped between creating it and writing the status).
fn running_unrecorded(test: &LoadTest) -> LoadTestStatus {
    let mut st = start_run(test, None, None, "initial", &at(0)).status;
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
    let mut plan = start_run(test, None, None, "initial", &at(0));
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
        llm: None,
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
        output_tokens_per_second: None,
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
                    llm: None,
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
    let result = profile_result(&[runner(1_000, 0), gone], 2, &budget, &[], false, false).unwrap();
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
    aborted.aborted = Some(loadgate_api::summary::Abort {
        after_seconds: 5.0,
        saved_seconds: 15.0,
        message: "5 one-second windows in a row over budget (last: p95 900 ms > budget 500 ms)"
            .into(),
    });
    let start = start_run(&test, None, None, "initial", &at(0));
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
    assert_eq!(plan.events.last().unwrap().reason, EventReason::TestPassed);
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
    let start = start_run(&test, None, None, "initial", &at(0));
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
    assert!(is_true(&st.conditions, types::COMPLETE) && is_true(&st.conditions, types::STALLED));
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
    let mut plan = start_run(&test, None, None, "initial", &at(0));
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
    let mut plan = start_run(&test, None, None, "initial", &at(0));
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
    let mut plan = start_run(&test, None, None, "initial", &at(0));
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
    let second = start_run(&test, Some(&first), None, "abc123", &at(1000));
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
    let start = start_run(&test, None, None, "initial", &at(0));
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
    let running = start_run(&test, None, None, "initial", &at(0)).status;
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
    let start = start_run(&test, None, None, "initial", &at(0));
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
