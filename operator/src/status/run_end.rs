//! The end of a LoadTest's run as gates read it: [`finish`] sets the phase, the verdict, the
//! summary and capacity on top, and the conditions `kubectl wait`, Argo CD, Flux and Argo
//! Rollouts gate on (Complete, Passed, Ready, Reconciling, Stalled), with one sentence that
//! leads with the capacity; [`set_in_progress`] sets them while a run is under way.

use super::plan::{EventReason, Transition};
use super::profile_results::{overall_figures, test_capacity};
use kube::ResourceExt;
use loadgate_api::conditions::{ConditionUpdate, Time, reasons, set_condition, types};
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadPhase, LoadTestStatus, Verdict};

/// Ends the run: phase, verdict, summary, completion time and the final conditions. `error`
/// (reason, message) ends it in Error; otherwise the profiles' verdicts decide.
pub fn finish(
    st: &mut LoadTestStatus,
    test: &LoadTest,
    error: Option<(&'static str, String)>,
    now: &Time,
) -> Vec<Transition> {
    let generation = test.metadata.generation;
    st.summary = overall_figures(&st.profiles);
    st.capacity = test_capacity(&st.profiles, &test.spec.thresholds, &test.spec.profiles);
    st.completion_time = Some(now.clone());
    st.verdict = Some(Verdict::Fail);
    // The whole run's gates (cold start, baseline) are judged on a run that has numbers.
    st.violations = if error.is_none() {
        super::gates::judge(test, st)
    } else {
        Vec::new()
    };
    let (phase, reason, message) = match error {
        Some((reason, message)) => (LoadPhase::Error, reason, message),
        None => {
            let broken: Vec<&str> = st
                .violations
                .iter()
                .chain(st.profiles.iter().flat_map(|p| &p.violations))
                .map(|v| v.message.as_str())
                .collect();
            // The answer on top: where the endpoint falls over, when a ramp measured it.
            let capacity = st
                .capacity
                .as_ref()
                .map_or(String::new(), |c| format!("{}; ", c.message));
            let baseline = st
                .baseline
                .as_ref()
                .map_or(String::new(), |b| format!("; baseline: {}", b.message));
            if broken.is_empty() {
                st.verdict = Some(Verdict::Pass);
                let p95 = st.summary.as_ref().map_or(0.0, |s| s.p95_ms);
                let message = format!(
                    "{capacity}all {} profiles stayed inside their budgets (worst p95 {p95:.0} ms){baseline}",
                    st.profiles.len()
                );
                (LoadPhase::Passed, reasons::THRESHOLDS_MET, message)
            } else if let Some(aborted) = &st.aborted {
                // The abort's own violation says what `aborted.message` says, more briefly.
                let others: Vec<&str> = st
                    .violations
                    .iter()
                    .chain(st.profiles.iter().flat_map(|p| &p.violations))
                    .filter(|v| v.metric != "abortOnFail")
                    .map(|v| v.message.as_str())
                    .collect();
                let mut message = format!("{capacity}{}", aborted.message);
                for other in others {
                    message.push_str("; ");
                    message.push_str(other);
                }
                (LoadPhase::Failed, reasons::ABORTED_ON_BUDGET, message)
            } else {
                (
                    LoadPhase::Failed,
                    reasons::THRESHOLDS_EXCEEDED,
                    format!("{capacity}{}", broken.join("; ")),
                )
            }
        }
    };
    st.phase = Some(phase);
    let passed = phase == LoadPhase::Passed;
    let done_reason = if passed { reasons::FINISHED } else { reason };
    for update in [
        ConditionUpdate::new(
            types::COMPLETE,
            Some(true),
            done_reason,
            format!(
                "run {} finished: {message}",
                st.run.as_deref().unwrap_or("")
            ),
        ),
        ConditionUpdate::new(types::PASSED, Some(passed), reason, message.clone()),
        ConditionUpdate::new(types::READY, Some(passed), reason, message.clone()),
        ConditionUpdate::new(types::RECONCILING, Some(false), reasons::FINISHED, ""),
        ConditionUpdate::new(
            types::STALLED,
            Some(!passed),
            reason,
            if passed {
                String::new()
            } else {
                message.clone()
            },
        ),
    ] {
        set_condition(&mut st.conditions, update, generation, now);
    }
    let name = test.name_any();
    vec![Transition {
        warning: !passed,
        reason: match phase {
            LoadPhase::Passed => EventReason::TestPassed,
            LoadPhase::Failed => EventReason::TestFailed,
            _ => EventReason::TestError,
        },
        note: format!("{name}: {message}"),
    }]
}

/// The conditions of a run under way: not Complete, no verdict (Passed Unknown), not Ready,
/// Reconciling for `reason`, not Stalled.
pub fn set_in_progress(
    st: &mut LoadTestStatus,
    test: &LoadTest,
    reason: &'static str,
    message: String,
    now: &Time,
) {
    let generation = test.metadata.generation;
    for update in [
        ConditionUpdate::new(
            types::COMPLETE,
            Some(false),
            reasons::IN_PROGRESS,
            message.clone(),
        ),
        ConditionUpdate::new(types::PASSED, None, reasons::IN_PROGRESS, "no verdict yet"),
        ConditionUpdate::new(
            types::READY,
            Some(false),
            reasons::IN_PROGRESS,
            message.clone(),
        ),
        ConditionUpdate::new(types::RECONCILING, Some(true), reason, message),
        ConditionUpdate::new(types::STALLED, Some(false), reasons::IN_PROGRESS, ""),
    ] {
        set_condition(&mut st.conditions, update, generation, now);
    }
}
