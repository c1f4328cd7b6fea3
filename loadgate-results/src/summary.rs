//! A finished run's [`RunSummary`]: its totals, per-task rows, a ramp's or search's curve and
//! capacity, and the verdict of its budgets (a search is judged on what its steps found).

use crate::stats::RunOutcome;
use crate::{capacity, failures, gate};
use loadgate_api::load::{LoadProfile, TaskThresholds, Thresholds};
use loadgate_api::stats::{RequestStats, StartDelay};
use loadgate_api::summary::{Abort, RunSummary};

/// Builds the summary and verdict of a finished run.
pub fn summarize(
    profile: &LoadProfile,
    outcome: &RunOutcome,
    thresholds: &Thresholds,
    task_budgets: &[TaskThresholds],
) -> RunSummary {
    let elapsed = outcome.measured().as_secs_f64();
    let total = outcome.stats.total.summary(elapsed);
    let tasks: Vec<RequestStats> = outcome
        .stats
        .tasks
        .iter()
        .map(|t| t.summary(elapsed))
        .collect();
    let curve: Vec<_> = outcome
        .stats
        .steps
        .iter()
        .flat_map(capacity::Steps::curve)
        .collect();
    let capacity = capacity::knee(&curve, thresholds);
    let scope = format!("profile {}", profile.name);
    let mut violations = if profile.search.is_some() {
        // A search is judged on what its steps found, not on the whole run (task budgets too
        // would break by design at the top of the climb).
        gate::evaluate_search(capacity.as_ref(), thresholds, &scope)
    } else {
        let mut violations = gate::evaluate(&total, thresholds, &scope);
        // Task names were checked before the run; an unknown one here cannot happen.
        violations
            .extend(gate::evaluate_tasks(&tasks, task_budgets, &profile.name).unwrap_or_default());
        violations
    };
    let aborted = outcome.stats.aborted.as_ref().map(|(why, at)| {
        let planned = profile.run_time().as_secs_f64();
        Abort {
            after_seconds: at.as_secs_f64(),
            saved_seconds: (planned - outcome.elapsed.as_secs_f64()).max(0.0),
            message: why.clone(),
        }
    });
    if let Some(abort) = &aborted {
        violations.push(abort.violation(&scope, thresholds));
    }
    // Named in the verdict by [`failures::name_in_verdict`] once the tasks' paths are known.
    let failure_reasons = failures::from_counts(&outcome.stats.failures);
    let start_delay = outcome.stats.start_delay.as_ref().map(|h| StartDelay {
        p95_ms: h.value_at_quantile(0.95) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
        dropped: outcome.dropped,
    });
    RunSummary {
        profile: profile.name.clone(),
        duration_seconds: elapsed,
        users: profile.users,
        tasks,
        passed: violations.is_empty() && !outcome.interrupted,
        violations,
        total,
        interrupted: outcome.interrupted,
        start_delay,
        started_at_ms: None,
        results: None,
        capacity,
        curve,
        warmup_seconds: outcome.stats.warmup_spent.map(|spent| spent.as_secs_f64()),
        aborted,
        quality: None,
        connections: outcome.stats.dials.summary(),
        dataset: None,
        failure_reasons,
    }
}

/// Adds what the quality check found (`quality` set): the result, and its violation when a
/// sampled answer failed or none was sampled.
pub fn add_quality(
    summary: &mut RunSummary,
    tally: &crate::sample::Tally,
    quality: &loadgate_api::load::Quality,
) {
    let result = loadgate_api::summary::QualityResult {
        sampled: tally.sampled,
        bad: tally.bad,
        worst_cosine: tally.worst_cosine,
        min_cosine: quality.min_cosine,
    };
    if let Some(violation) = result.violation(&format!("profile {}", summary.profile)) {
        summary.violations.push(violation);
        summary.passed = false;
    }
    summary.quality = Some(result);
}
