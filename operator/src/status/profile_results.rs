//! What a profile's runners left, made into its results: their summaries merged into exact
//! percentiles and judged on the profile's budgets, a ramp's or search's steps added up into its
//! curve and capacity, their seconds into the report's history ([`profile_result`]); and over
//! the whole test, the binding capacity ([`test_capacity`]) and the totals
//! ([`overall_figures`]).

use loadgate_api::capacity::{Capacity, CurvePoint};
use loadgate_api::failures::{FailureReason, STATUS_FAILURE_REASONS, add_up, top};
use loadgate_api::load::Thresholds;
use loadgate_api::load_test::ProfileSpec;
use loadgate_api::load_test_status::{ProfileStatus, ResultFigures, TestCapacity};
use loadgate_api::report::ProfileReport;
use loadgate_api::results::{RunResults, StepResult, WindowResult};
use loadgate_api::stats::{LlmStats, TimingStats};
use loadgate_api::summary::{RunSummary, Violation};

/// What one runner pod left.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerResults {
    /// Its summary: from its results frame when that was read, else its termination message.
    pub summary: RunSummary,
    /// A ramp's steps on the shards' common clock, from its results frame; `None` when only the
    /// termination message was read (the pod's log gone, or a runner without `--results-log`).
    pub steps: Option<Vec<StepResult>>,
    /// Its once-a-second windows on the common clock, from its results frame (`None` as above).
    pub windows: Option<Vec<WindowResult>>,
    /// Its summary named a results frame that was not used, and why ("its log is gone", "the
    /// frame was refused: CRC mismatch"): the profile's status says so, since its curve,
    /// capacity and history then are not measured.
    pub missing_frame: Option<String>,
}

impl RunnerResults {
    /// What a termination message alone gives.
    pub fn summary_only(summary: RunSummary) -> Self {
        Self {
            summary,
            steps: None,
            windows: None,
            missing_frame: None,
        }
    }

    /// What a runner's full results give.
    pub fn full(results: RunResults) -> Self {
        Self {
            summary: results.summary,
            steps: Some(results.steps),
            windows: Some(results.windows),
            missing_frame: None,
        }
    }
}

/// What one profile measured, as its status row carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileResult {
    /// Merged figures.
    pub figures: ResultFigures,
    /// Budgets broken.
    pub violations: Vec<Violation>,
    /// A ramp's curve: the runners' steps added up, or a lone runner's own curve.
    pub curve: Vec<CurvePoint>,
    /// A ramp's capacity, judged here on `curve` against the profile's budgets.
    pub capacity: Option<Capacity>,
    /// Several runners: how far apart their loads began, ms.
    pub start_skew_ms: Option<i64>,
    /// Results frames named but not used, one line per pod: what the profile could not measure.
    pub missing_frames: Option<String>,
    /// The merged report: the summary judged as above, and the runners' seconds added up.
    pub report: ProfileReport,
}

/// One profile's figures and broken budgets from its runners' results: histograms merged into
/// exact percentiles, then the profile's budgets and the per-task budgets checked; a ramp's
/// curve made here from the runners' steps (added up step by step on their common clock) or,
/// with only termination messages, from a lone runner's own curve, and its capacity judged here
/// (a runner's own reading is not trusted). A `search` is judged on that capacity instead
/// ([`loadgate_results::gate::evaluate_search`]): it exists to break its budgets at the top.
///
/// `quality_checked`: the runners were asked to check answers (`spec.quality`), so a profile
/// whose runners sent no quality result fails (a check that never ran does not pass).
///
/// # Errors
/// A message when not exactly `expected` results came (one per runner pod), or they do not
/// merge.
pub fn profile_result(
    runners: &[RunnerResults],
    expected: usize,
    thresholds: &Thresholds,
    task_thresholds: &[loadgate_api::load::TaskThresholds],
    search: bool,
    quality_checked: bool,
) -> Result<ProfileResult, String> {
    if runners.len() != expected {
        return Err(format!(
            "{} summaries for {expected} runner pods: exactly one per pod counts",
            runners.len()
        ));
    }
    let summaries: Vec<RunSummary> = runners.iter().map(|r| r.summary.clone()).collect();
    let merged =
        loadgate_results::merge::merge(&summaries, thresholds).map_err(|e| e.to_string())?;
    let mut violations = merged.violations.clone();
    // Unknown task names are an error for a search too, though its tasks are not judged.
    let task_violations =
        loadgate_results::gate::evaluate_tasks(&merged.tasks, task_thresholds, &merged.profile)
            .map_err(|e| e.to_string())?;
    violations.extend(task_violations);
    let t = &merged.total;
    let figures = ResultFigures {
        requests: i64::try_from(t.requests).unwrap_or(i64::MAX),
        failures: i64::try_from(t.failures).unwrap_or(i64::MAX),
        not_sent: i64::try_from(t.not_sent).unwrap_or(i64::MAX),
        error_rate: t.error_rate,
        rps: t.rps,
        p50_ms: t.p50_ms,
        p95_ms: t.p95_ms,
        p99_ms: t.p99_ms,
        max_ms: t.max_ms,
        llm: t.llm.as_ref().map(LlmStats::without_histograms),
        failure_reasons: top(merged.failure_reasons.clone(), STATUS_FAILURE_REASONS),
    };
    if merged.interrupted {
        return Err("a runner was interrupted before the profile ended".to_owned());
    }
    let steps: Option<Vec<&[StepResult]>> = runners.iter().map(|r| r.steps.as_deref()).collect();
    let mut curve = match steps {
        Some(steps) => {
            loadgate_results::capacity::merge_steps(&steps).map_err(|e| e.to_string())?
        }
        None => merged.curve.clone(),
    };
    curve.truncate(loadgate_results::capacity::MAX_CURVE_POINTS);
    let capacity = loadgate_results::capacity::knee(&curve, thresholds);
    if search {
        violations = loadgate_results::gate::evaluate_search(
            capacity.as_ref(),
            thresholds,
            &format!("profile {}", merged.profile),
        );
    }
    if quality_checked && merged.quality.is_none() {
        violations.push(Violation {
            metric: "quality".to_owned(),
            measured: 0.0,
            budget: 1.0,
            message: format!(
                "no runner sent a quality result in profile {}: the quality check did not run",
                merged.profile
            ),
        });
    }
    let windows: Option<Vec<&[WindowResult]>> =
        runners.iter().map(|r| r.windows.as_deref()).collect();
    let history = match windows {
        Some(windows) => {
            loadgate_results::history::merge_windows(&windows).map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    let mut summary = merged;
    summary.passed = violations.is_empty();
    summary.violations.clone_from(&violations);
    summary.curve.clone_from(&curve);
    summary.capacity.clone_from(&capacity);
    summary.results = None;
    let report = ProfileReport {
        summary,
        thresholds: *thresholds,
        history: loadgate_api::report::bucket_history(
            &history,
            loadgate_api::report::MAX_HISTORY_POINTS,
        ),
        efficiency: None,
    };
    Ok(ProfileResult {
        report,
        figures,
        violations,
        capacity,
        curve,
        start_skew_ms: start_skew_ms(&summaries),
        missing_frames: missing_frames(runners),
    })
}

/// "results frame missing (pod r-0: its log could not be read): no curve, capacity or
/// per-second history": what the status says when a runner's full results were not used.
fn missing_frames(runners: &[RunnerResults]) -> Option<String> {
    let missing: Vec<&str> = runners
        .iter()
        .filter_map(|r| r.missing_frame.as_deref())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "results frame missing ({}): no curve, capacity or per-second history measured",
            missing.join("; ")
        )
    })
}

/// How far apart several runners' loads began, ms (`None` for one runner, or when a summary does
/// not say when it began).
fn start_skew_ms(summaries: &[RunSummary]) -> Option<i64> {
    if summaries.len() < 2 {
        return None;
    }
    let starts: Option<Vec<u64>> = summaries.iter().map(|s| s.started_at_ms).collect();
    let starts = starts?;
    let (first, last) = (starts.iter().min()?, starts.iter().max()?);
    i64::try_from(last - first).ok()
}

/// The capacity that binds over the test: the ramp with the lowest rate inside its budgets.
pub fn test_capacity(
    profiles: &[ProfileStatus],
    spec_thresholds: &Thresholds,
    specs: &[ProfileSpec],
) -> Option<TestCapacity> {
    profiles
        .iter()
        .filter_map(|p| p.capacity.as_ref().map(|c| (p, c)))
        .min_by(|(_, a), (_, b)| a.max_rps_within_budget.total_cmp(&b.max_rps_within_budget))
        .map(|(p, c)| {
            let thresholds = specs
                .iter()
                .find(|s| s.name == p.name)
                .map_or(*spec_thresholds, |s| {
                    s.effective_thresholds(spec_thresholds)
                });
            TestCapacity {
                max_rps_within_budget: c.max_rps_within_budget,
                max_users_within_budget: c.max_users_within_budget,
                limited_by: c.limited_by.clone(),
                profile: p.name.clone(),
                message: format!("{}: {}", p.name, c.sentence(&thresholds)),
            }
        })
}

/// Totals over the profiles that have results; latency figures are the worst profile's.
pub fn overall_figures(profiles: &[ProfileStatus]) -> Option<ResultFigures> {
    let with: Vec<&ResultFigures> = profiles.iter().filter_map(|p| p.results.as_ref()).collect();
    if with.is_empty() {
        return None;
    }
    // Saturating: a status must never panic the operator, whatever a summary claimed.
    let sum = |f: fn(&ResultFigures) -> i64| with.iter().fold(0i64, |a, x| a.saturating_add(f(x)));
    let (requests, failures, not_sent) = (
        sum(|f| f.requests),
        sum(|f| f.failures),
        sum(|f| f.not_sent),
    );
    let worst = |f: fn(&ResultFigures) -> f64| with.iter().map(|x| f(x)).fold(0.0, f64::max);
    Some(ResultFigures {
        requests,
        failures,
        not_sent,
        error_rate: if requests == 0 {
            0.0
        } else {
            failures as f64 / requests as f64
        },
        rps: worst(|f| f.rps),
        p50_ms: worst(|f| f.p50_ms),
        p95_ms: worst(|f| f.p95_ms),
        p99_ms: worst(|f| f.p99_ms),
        max_ms: worst(|f| f.max_ms),
        llm: worst_llm(with.iter().filter_map(|f| f.llm.as_ref()).collect()),
        failure_reasons: test_failure_reasons(&with),
    })
}

/// The test's most frequent failure reasons: each profile's added up by task, method and reason.
fn test_failure_reasons(profiles: &[&ResultFigures]) -> Vec<FailureReason> {
    add_up(
        profiles.iter().flat_map(|f| &f.failure_reasons),
        STATUS_FAILURE_REASONS,
    )
}

/// The test's LLM figures from its profiles': counts add up, each timing is the worst
/// profile's (as the test's latency is), output tokens per second the highest profile's (as
/// its rps is), goodput over every request.
fn worst_llm(parts: Vec<&LlmStats>) -> Option<LlmStats> {
    let first = *parts.first()?;
    let sum = |f: fn(&LlmStats) -> u64| parts.iter().fold(0u64, |a, p| a.saturating_add(f(p)));
    let worst_of = |f: fn(&LlmStats) -> &TimingStats| TimingStats {
        count: parts.iter().fold(0u64, |a, p| a.saturating_add(f(p).count)),
        p50_ms: parts.iter().map(|p| f(p).p50_ms).fold(0.0, f64::max),
        p95_ms: parts.iter().map(|p| f(p).p95_ms).fold(0.0, f64::max),
        p99_ms: parts.iter().map(|p| f(p).p99_ms).fold(0.0, f64::max),
        histogram: None,
    };
    let (requests, good) = (sum(|p| p.requests), sum(|p| p.good));
    Some(LlmStats {
        requests,
        answered: sum(|p| p.answered),
        streamed: sum(|p| p.streamed),
        ttft: worst_of(|p| &p.ttft),
        itl: worst_of(|p| &p.itl),
        tpot: worst_of(|p| &p.tpot),
        e2e: worst_of(|p| &p.e2e),
        input_tokens: sum(|p| p.input_tokens),
        output_tokens: sum(|p| p.output_tokens),
        tokens_from_usage: sum(|p| p.tokens_from_usage),
        output_tokens_per_second: parts
            .iter()
            .map(|p| p.output_tokens_per_second)
            .fold(first.output_tokens_per_second, f64::max),
        good,
        goodput: loadgate_api::stats::error_rate(good, requests),
    })
}
