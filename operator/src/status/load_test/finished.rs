//! The situation of a profile whose runner Job completed: its runners' results merged and judged
//! ([`crate::status::profile_results`]), the profile Passed or Failed with its figures,
//! capacity, efficiency and quality, an Event that says so, and, when the runners stopped on
//! their budgets (`abortOnFail`), the profiles after it skipped.

use super::mark_error;
use super::progress::Outcome;
use crate::status::plan::{EventReason, Transition};
use crate::status::profile_results::{ProfileResult, RunnerResults, profile_result};
use loadgate_api::capacity::Capacity;
use loadgate_api::conditions::{Time, reasons};
use loadgate_api::efficiency::Efficiency;
use loadgate_api::load::Thresholds;
use loadgate_api::load_test::{LoadTest, LoadTestSpec};
use loadgate_api::load_test_status::{AbortStatus, LoadTestStatus, ProfilePhase, ResultFigures};
use loadgate_api::summary::{Abort, QualityResult, Violation};

/// Profile `i`'s Job succeeded with `results`: the profile's verdict, or an error when the
/// results cannot be merged.
pub(super) fn record(
    st: &mut LoadTestStatus,
    test: &LoadTest,
    i: usize,
    results: &[RunnerResults],
    now: &Time,
) -> Outcome {
    let spec = &test.spec;
    let profile_spec = &spec.profiles[i];
    let thresholds = profile_spec.effective_thresholds(&spec.thresholds);
    let expected = usize::try_from(spec.parallelism.max(1)).unwrap_or(1);
    let merged = profile_result(
        results,
        expected,
        &thresholds,
        &spec.task_thresholds,
        profile_spec.search.is_some(),
        spec.quality.is_some(),
    );
    st.profiles[i].completion_time = Some(now.clone());
    let ProfileResult {
        figures,
        violations,
        curve,
        capacity,
        start_skew_ms,
        missing_frames,
        report: mut profile_report,
    } = match merged {
        Ok(result) => result,
        Err(message) => {
            mark_error(&mut st.profiles[i], &message, now);
            return Outcome {
                error_reason: reasons::BAD_RESULTS,
                ..Outcome::wait()
            };
        }
    };
    let efficiency = Efficiency::of(
        profile_report.summary.total.embeddings,
        profile_report
            .summary
            .total
            .llm
            .as_ref()
            .map_or(0, |l| l.output_tokens),
        profile_report.summary.duration_seconds,
        st.target_resources.as_ref(),
        spec.pricing.as_ref(),
    );
    profile_report.efficiency = efficiency;
    let aborted = profile_report.summary.aborted.clone();
    let profile = &mut st.profiles[i];
    profile.efficiency = efficiency;
    profile.quality = profile_report.summary.quality;
    // The percentiles, without the histograms they were merged from.
    profile.connections = profile_report.summary.connections.clone().map(|mut c| {
        c.connect_histogram = None;
        c.tls_histogram = None;
        c
    });
    let passed = violations.is_empty();
    profile.phase = if passed {
        ProfilePhase::Passed
    } else {
        ProfilePhase::Failed
    };
    let event = Transition {
        warning: !passed,
        reason: if passed {
            EventReason::ProfilePassed
        } else {
            EventReason::ProfileFailed
        },
        note: profile_note(
            &profile.name,
            &figures,
            &violations,
            capacity.as_ref(),
            efficiency.as_ref(),
            profile.quality.as_ref(),
            &thresholds,
        ),
    };
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
        skip_after_abort(st, spec, i, &abort, now);
    }
    Outcome {
        events: vec![event],
        report: Some((i, profile_report)),
        ..Outcome::wait()
    }
}

/// Profile `i` was stopped on its budgets (`abortOnFail`): the profiles after it are skipped,
/// and the status says why and what it saved (the rest of that profile and their run time).
fn skip_after_abort(
    st: &mut LoadTestStatus,
    spec: &LoadTestSpec,
    i: usize,
    abort: &Abort,
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

/// The Event's note of a finished profile: its figures, then what else it measured, then each
/// broken budget.
fn profile_note(
    name: &str,
    f: &ResultFigures,
    violations: &[Violation],
    capacity: Option<&Capacity>,
    efficiency: Option<&Efficiency>,
    quality: Option<&QualityResult>,
    thresholds: &Thresholds,
) -> String {
    let mut note = format!(
        "profile {name}: {} requests, {:.2}% errors, {:.1} rps, p95 {:.0} ms",
        f.requests,
        f.error_rate * 100.0,
        f.rps,
        f.p95_ms
    );
    if let Some(l) = &f.llm {
        note.push_str(&format!(
            ", TTFT p95 {:.0} ms, TPOT p95 {:.1} ms, goodput {:.1}%",
            l.ttft.p95_ms,
            l.tpot.p95_ms,
            l.goodput * 100.0
        ));
    }
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
    use crate::status::load_test::start_run;

    #[test]
    fn results_that_cannot_be_merged_error_the_profile_as_bad_results() {
        let test = load_test("gate");
        let mut st = start_run(&test, None, None, "initial", &at(0)).status;
        // No runner results at all where the spec expects one per pod.
        let outcome = record(&mut st, &test, 0, &[], &at(40));
        assert_eq!(outcome.error_reason, reasons::BAD_RESULTS);
        assert_eq!(st.profiles[0].phase, ProfilePhase::Error);
        assert_eq!(st.profiles[0].completion_time, Some(at(40)));
        assert!(outcome.report.is_none());
    }

    #[test]
    fn an_abort_skips_only_the_pending_profiles_after_it_and_adds_up_what_it_saved() {
        let mut test = load_test("gate");
        let mut third = test.spec.profiles[0].clone();
        third.name = "third".into();
        test.spec.profiles.push(third);
        let mut st = start_run(&test, None, None, "initial", &at(0)).status;
        st.profiles[0].phase = ProfilePhase::Failed;
        st.profiles[2].phase = ProfilePhase::Passed;
        let abort = Abort {
            after_seconds: 12.0,
            saved_seconds: 8.0,
            message: "p95 900 ms > 500 ms".into(),
        };
        skip_after_abort(&mut st, &test.spec, 0, &abort, &at(50));
        assert_eq!(st.profiles[1].phase, ProfilePhase::Skipped);
        assert_eq!(
            st.profiles[2].phase,
            ProfilePhase::Passed,
            "a finished profile stays"
        );
        let aborted = st.aborted.unwrap();
        assert_eq!(aborted.skipped, vec![st.profiles[1].name.clone()]);
        let second = test.spec.profiles[1]
            .load_profile()
            .run_time()
            .as_secs_f64();
        assert_eq!(aborted.saved_seconds, 8.0 + second);
        assert!(
            aborted.message.contains("1 profile skipped"),
            "{}",
            aborted.message
        );
    }

    #[test]
    fn the_note_says_what_was_measured_then_each_broken_budget() {
        let figures = ResultFigures {
            requests: 1000,
            error_rate: 0.015,
            rps: 50.0,
            p95_ms: 420.0,
            not_sent: 3,
            ..ResultFigures::default()
        };
        let broken = Violation {
            metric: "errorRate".into(),
            measured: 0.015,
            budget: 0.01,
            message: "error rate 1.50% > 1.00%".into(),
        };
        let note = profile_note(
            "steady",
            &figures,
            &[broken],
            None,
            None,
            None,
            &Thresholds::default(),
        );
        assert!(
            note.starts_with("profile steady: 1000 requests, 1.50% errors, 50.0 rps, p95 420 ms"),
            "{note}"
        );
        assert!(note.contains("3 of the requests were never sent"), "{note}");
        assert!(note.ends_with("; error rate 1.50% > 1.00%"), "{note}");
    }
}
