//! The pass/fail gate: thresholds checked against measured stats, each violation naming the
//! measured value and the budget; also over a Locust-format `_stats.csv` (ours or Locust's);
//! and a capacity search's verdict, read from the capacity its steps found (`loadrunner gate`
//! reads the CSV).

use loadgate_api::capacity::Capacity;
use loadgate_api::load::{TaskThresholds, Thresholds};
use loadgate_api::stats::RequestStats;
use loadgate_api::summary::Violation;
use std::path::Path;

/// Checks `stats` against `thresholds`; `scope` names the profile in messages.
pub fn evaluate(stats: &RequestStats, thresholds: &Thresholds, scope: &str) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut over = |metric: &str,
                    label: &str,
                    unit: &str,
                    measured: f64,
                    budget: Option<f64>,
                    higher_is_bad: bool| {
        let Some(budget) = budget else { return };
        let broken = if higher_is_bad {
            measured > budget
        } else {
            measured < budget
        };
        if broken {
            let cmp = if higher_is_bad { ">" } else { "<" };
            violations.push(Violation {
                metric: metric.to_owned(),
                measured,
                budget,
                message: format!(
                    "{label} {} {cmp} budget {} in {scope}",
                    fmt_value(measured, unit),
                    fmt_value(budget, unit)
                ),
            });
        }
    };
    // Nothing measured is not a pass: p95, p99 and the error rate of no request read as 0, which
    // would meet any budget. One violation says so instead of a figure that was never measured.
    let judged = [
        thresholds.p95_ms,
        thresholds.p99_ms,
        thresholds.max_error_rate,
        thresholds.min_rps,
    ];
    if stats.requests == 0 && judged.iter().any(Option::is_some) {
        return vec![Violation {
            metric: "requests".to_owned(),
            measured: 0.0,
            budget: 1.0,
            message: format!(
                "no request was measured in {scope}: its budgets cannot pass on nothing"
            ),
        }];
    }
    over("p95Ms", "p95", " ms", stats.p95_ms, thresholds.p95_ms, true);
    over("p99Ms", "p99", " ms", stats.p99_ms, thresholds.p99_ms, true);
    over(
        "maxErrorRate",
        "error rate",
        "",
        stats.error_rate,
        thresholds.max_error_rate,
        true,
    );
    over(
        "minRps",
        "throughput",
        " req/s",
        stats.rps,
        thresholds.min_rps,
        false,
    );
    violations.extend(evaluate_llm(stats, thresholds, scope));
    violations
}

/// The LLM budgets (`ttftP95Ms`, `ttftP99Ms`, `itlP95Ms`, `tpotP95Ms`,
/// `minOutputTokensPerSecond`, `minGoodput`) against `stats.llm`: "TTFT p95 812 ms > budget
/// 500 ms in profile sustained". A budget set over stats with no LLM answer is one violation
/// saying nothing was measured, never a pass.
fn evaluate_llm(stats: &RequestStats, t: &Thresholds, scope: &str) -> Vec<Violation> {
    if !t.has_llm_budget() {
        return Vec::new();
    }
    let Some(llm) = stats.llm.as_ref().filter(|l| l.answered > 0) else {
        return vec![Violation {
            metric: "llm".to_owned(),
            measured: 0.0,
            budget: 1.0,
            message: format!(
                "no LLM answer was measured in {scope}: its LLM budgets cannot pass on nothing"
            ),
        }];
    };
    let ms = |v: f64| {
        if v >= 100.0 || v.fract() == 0.0 {
            format!("{v:.0} ms")
        } else {
            format!("{v:.1} ms")
        }
    };
    /// (field, label, measured, budget, higher is bad, how a value reads).
    type Check<'a> = (
        &'a str,
        &'a str,
        f64,
        Option<f64>,
        bool,
        &'a dyn Fn(f64) -> String,
    );
    let checks: [Check; 6] = [
        (
            "ttftP95Ms",
            "TTFT p95",
            llm.ttft.p95_ms,
            t.ttft_p95_ms,
            true,
            &ms,
        ),
        (
            "ttftP99Ms",
            "TTFT p99",
            llm.ttft.p99_ms,
            t.ttft_p99_ms,
            true,
            &ms,
        ),
        (
            "itlP95Ms",
            "ITL p95",
            llm.itl.p95_ms,
            t.itl_p95_ms,
            true,
            &ms,
        ),
        (
            "tpotP95Ms",
            "TPOT p95",
            llm.tpot.p95_ms,
            t.tpot_p95_ms,
            true,
            &ms,
        ),
        (
            "minOutputTokensPerSecond",
            "output tokens/s",
            llm.output_tokens_per_second,
            t.min_output_tokens_per_second,
            false,
            &|v| format!("{v:.1}"),
        ),
        (
            "minGoodput",
            "goodput",
            llm.goodput,
            t.min_goodput,
            false,
            &|v| format!("{:.1}%", v * 100.0),
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(metric, label, measured, budget, higher_is_bad, show)| {
            let budget = budget?;
            let broken = if higher_is_bad {
                measured > budget
            } else {
                measured < budget
            };
            broken.then(|| Violation {
                metric: metric.to_owned(),
                measured,
                budget,
                message: format!(
                    "{label} {} {} budget {} in {scope}",
                    show(measured),
                    if higher_is_bad { ">" } else { "<" },
                    show(budget)
                ),
            })
        })
        .collect()
}

/// One second of load against the budgets `abortOnFail` watches (p95, p99, error rate, and
/// TTFT, ITL and TPOT p95 of its LLM answers): the first broken, in words ("p95 812 ms > budget 500 ms"), or `None` when it held.
pub fn window_breaks(window: &crate::entry::Entry, budgets: &Thresholds) -> Option<String> {
    let checks = [
        ("p95", " ms", window.percentile_ms(0.95), budgets.p95_ms),
        ("p99", " ms", window.percentile_ms(0.99), budgets.p99_ms),
        (
            "error rate",
            "",
            window.error_rate(),
            budgets.max_error_rate,
        ),
    ];
    let llm = window.llm.as_deref().filter(|l| l.answered > 0);
    let p95 = |h: &hdrhistogram::Histogram<u64>| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(0.95) as f64 / 1000.0
        }
    };
    let llm_checks = llm.map(|l| {
        [
            ("TTFT p95", " ms", p95(&l.ttft), budgets.ttft_p95_ms),
            ("ITL p95", " ms", p95(&l.itl), budgets.itl_p95_ms),
            ("TPOT p95", " ms", p95(&l.tpot), budgets.tpot_p95_ms),
        ]
    });
    checks
        .into_iter()
        .chain(llm_checks.into_iter().flatten())
        .find_map(|(label, unit, measured, budget)| {
            let budget = budget?;
            (measured > budget).then(|| {
                format!(
                    "{label} {} > budget {}",
                    fmt_value(measured, unit),
                    fmt_value(budget, unit)
                )
            })
        })
}

/// A capacity search's verdict: it exists to find where the budgets break, so its run as a
/// whole is not held to them. It fails when its first step broke already (nothing held), when
/// no step had enough requests to judge, or when the highest rate that held is under `minRps`.
pub fn evaluate_search(
    capacity: Option<&Capacity>,
    thresholds: &Thresholds,
    scope: &str,
) -> Vec<Violation> {
    let Some(capacity) = capacity else {
        return vec![Violation {
            metric: "search".to_owned(),
            measured: 0.0,
            budget: crate::capacity::MIN_STEP_REQUESTS as f64,
            message: format!(
                "no step of the search in {scope} finished the {} requests it takes to be judged",
                crate::capacity::MIN_STEP_REQUESTS
            ),
        }];
    };
    if capacity.offered_rps.is_none()
        && let Some(at) = &capacity.broke_at
    {
        let (label, unit, measured, budget) = match at.metric.as_str() {
            "p95Ms" => ("p95", " ms", at.measured, at.budget),
            "p99Ms" => ("p99", " ms", at.measured, at.budget),
            _ => ("error rate", "", at.measured, at.budget),
        };
        return vec![Violation {
            metric: at.metric.clone(),
            measured,
            budget,
            message: format!(
                "{label} {} > budget {} at the search's first step ({} req/s offered) in {scope}",
                fmt_value(measured, unit),
                fmt_value(budget, unit),
                at.offered_rps.unwrap_or(at.rps)
            ),
        }];
    }
    match thresholds.min_rps {
        Some(min) if capacity.max_rps_within_budget < min => vec![Violation {
            metric: "minRps".to_owned(),
            measured: capacity.max_rps_within_budget,
            budget: min,
            message: format!(
                "holds its budgets up to {} only, under budget {} in {scope}",
                fmt_value(capacity.max_rps_within_budget, " req/s"),
                fmt_value(min, " req/s")
            ),
        }],
        _ => Vec::new(),
    }
}

/// A task budget names no task of the run.
#[derive(Debug, thiserror::Error)]
#[error("budget for task {task:?}: no such task (tasks: {})", known.join(", "))]
pub struct UnknownTask {
    /// The name the budget gives.
    pub task: String,
    /// The run's tasks.
    pub known: Vec<String>,
}

/// Checks each task's own stats against its budgets. Budgets naming no task of the run are an
/// error, so a typo cannot silently pass.
///
/// # Errors
/// The unknown task name.
pub fn evaluate_tasks(
    tasks: &[RequestStats],
    budgets: &[TaskThresholds],
    profile: &str,
) -> Result<Vec<Violation>, UnknownTask> {
    let mut violations = Vec::new();
    for budget in budgets {
        let stats = tasks
            .iter()
            .find(|t| t.name == budget.task)
            .ok_or_else(|| UnknownTask {
                task: budget.task.clone(),
                known: tasks.iter().map(|t| t.name.clone()).collect(),
            })?;
        violations.extend(evaluate(
            stats,
            &budget.thresholds,
            &format!("task {} of profile {profile}", budget.task),
        ));
    }
    Ok(violations)
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "" => format!("{:.2}%", v * 100.0),
        " ms" => format!("{v:.0}{unit}"),
        _ => format!("{v:.1}{unit}"),
    }
}

/// Reading a stats CSV failed.
#[derive(Debug, thiserror::Error)]
pub enum CsvGateError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a Locust stats CSV.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The `Aggregated` row of a Locust-format `_stats.csv` as [`RequestStats`].
///
/// # Errors
/// [`CsvGateError`] when the file is unreadable or lacks the columns or the row.
pub fn read_stats_csv(path: &Path) -> Result<RequestStats, CsvGateError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CsvGateError::Read {
        path: shown.clone(),
        source,
    })?;
    let bad = |reason: String| CsvGateError::Format {
        path: shown.clone(),
        reason,
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad(format!("no {name:?} column: not a Locust _stats.csv")))
    };
    let (name_col, req_col, fail_col, rps_col) = (
        column("Name")?,
        column("Request Count")?,
        column("Failure Count")?,
        column("Requests/s")?,
    );
    let (avg_col, p50_col, p90_col, p95_col, p99_col, max_col) = (
        column("Average Response Time")?,
        column("50%")?,
        column("90%")?,
        column("95%")?,
        column("99%")?,
        column("100%")?,
    );
    let row: Vec<&str> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|cells| cells.get(name_col) == Some(&"Aggregated"))
        .ok_or_else(|| bad("no Aggregated row".into()))?;
    let num = |col: usize| -> Result<f64, CsvGateError> {
        let cell = row.get(col).copied().unwrap_or("");
        if cell == "N/A" {
            return Ok(0.0);
        }
        cell.parse().map_err(|_| {
            bad(format!(
                "Aggregated row: {:?} is not a number in column {:?}",
                cell, header[col]
            ))
        })
    };
    let (requests, failures) = (num(req_col)? as u64, num(fail_col)? as u64);
    Ok(RequestStats {
        name: "Aggregated".into(),
        method: String::new(),
        requests,
        failures,
        // A Locust CSV does not say which failures were never sent, nor how many texts.
        not_sent: 0,
        embeddings: 0,
        error_rate: loadgate_api::stats::error_rate(failures, requests),
        rps: num(rps_col)?,
        mean_ms: num(avg_col)?,
        p50_ms: num(p50_col)?,
        p90_ms: num(p90_col)?,
        p95_ms: num(p95_col)?,
        p99_ms: num(p99_col)?,
        max_ms: num(max_col)?,
        histogram: None,
        llm: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(p95: f64, errors: u64, rps: f64) -> RequestStats {
        RequestStats {
            name: "Aggregated".into(),
            method: String::new(),
            requests: 100,
            failures: errors,
            not_sent: 0,
            error_rate: errors as f64 / 100.0,
            rps,
            mean_ms: 1.0,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p95_ms: p95,
            p99_ms: p95,
            max_ms: p95,
            histogram: None,
            embeddings: 0,
            llm: None,
        }
    }

    /// Before: no request measured read as p95 0 ms and 0% errors, and passed every budget.
    #[test]
    fn a_profile_that_measured_no_request_fails_its_budgets() {
        let mut none = stats(0.0, 0, 0.0);
        none.requests = 0;
        none.error_rate = 0.0;
        let budgets = Thresholds {
            p95_ms: Some(500.0),
            max_error_rate: Some(0.01),
            ..Thresholds::default()
        };
        let found = evaluate(&none, &budgets, "profile steady");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].metric, "requests");
        assert!(
            found[0]
                .message
                .contains("no request was measured in profile steady"),
            "{}",
            found[0].message
        );
        // With no budget there is nothing to judge, and nothing breaks.
        assert!(evaluate(&none, &Thresholds::default(), "profile steady").is_empty());
        // A measured profile is judged as before.
        assert!(evaluate(&stats(10.0, 0, 5.0), &budgets, "profile steady").is_empty());
    }

    #[test]
    fn a_search_fails_on_its_first_step_or_under_min_rps_and_not_for_finding_its_break() {
        use loadgate_api::capacity::BreakPoint;
        let t = Thresholds {
            p95_ms: Some(500.0),
            min_rps: Some(30.0),
            ..Thresholds::default()
        };
        let broke = BreakPoint {
            users: 9,
            offered_rps: Some(50.0),
            rps: 41.0,
            metric: "p95Ms".into(),
            measured: 612.0,
            budget: 500.0,
        };
        let found = Capacity {
            max_users_within_budget: 4,
            max_rps_within_budget: 39.5,
            offered_rps: Some(40.0),
            limited_by: Some("p95Ms".into()),
            broke_at: Some(broke.clone()),
            output_tokens_per_second: None,
        };
        assert!(evaluate_search(Some(&found), &t, "profile find").is_empty());
        let low = Capacity {
            max_rps_within_budget: 20.0,
            ..found.clone()
        };
        let v = evaluate_search(Some(&low), &t, "profile find");
        assert_eq!(
            v[0].message,
            "holds its budgets up to 20.0 req/s only, under budget 30.0 req/s in profile find"
        );
        let first = Capacity {
            max_users_within_budget: 0,
            max_rps_within_budget: 0.0,
            offered_rps: None,
            ..found
        };
        let v = evaluate_search(Some(&first), &t, "profile find");
        assert_eq!(
            (v[0].metric.as_str(), v[0].message.as_str()),
            (
                "p95Ms",
                "p95 612 ms > budget 500 ms at the search's first step (50 req/s offered) in profile find"
            )
        );
        assert_eq!(
            evaluate_search(None, &t, "profile find")[0].metric,
            "search"
        );
    }

    #[test]
    fn llm_budgets_name_their_figure_and_fail_on_nothing_measured() {
        let budgets = Thresholds {
            ttft_p95_ms: Some(500.0),
            tpot_p95_ms: Some(50.0),
            min_output_tokens_per_second: Some(400.0),
            min_goodput: Some(0.95),
            ..Thresholds::default()
        };
        let mut s = stats(100.0, 0, 10.0);
        let none = evaluate(&s, &budgets, "profile sustained");
        assert_eq!(none[0].metric, "llm", "{none:?}");
        let mut llm = loadgate_api::stats::LlmStats {
            requests: 100,
            answered: 100,
            output_tokens_per_second: 310.0,
            good: 82,
            goodput: 0.82,
            ..Default::default()
        };
        llm.ttft.p95_ms = 812.0;
        llm.tpot.p95_ms = 42.5;
        s.llm = Some(llm);
        let messages: Vec<String> = evaluate(&s, &budgets, "profile sustained")
            .into_iter()
            .map(|v| v.message)
            .collect();
        assert_eq!(
            messages,
            [
                "TTFT p95 812 ms > budget 500 ms in profile sustained",
                "output tokens/s 310.0 < budget 400.0 in profile sustained",
                "goodput 82.0% < budget 95.0% in profile sustained",
            ]
        );
    }

    #[test]
    fn each_broken_budget_is_named_with_value_and_budget() {
        let thresholds = Thresholds {
            p95_ms: Some(500.0),
            p99_ms: None,
            max_error_rate: Some(0.01),
            min_rps: Some(50.0),
            abort_after: None,
            abort_on_fail: None,
            max_cold_start_seconds: None,
            ..Thresholds::default()
        };
        assert!(evaluate(&stats(400.0, 1, 60.0), &thresholds, "profile ramp").is_empty());
        let v = evaluate(&stats(612.0, 5, 20.0), &thresholds, "profile spike");
        let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "p95 612 ms > budget 500 ms in profile spike",
                "error rate 5.00% > budget 1.00% in profile spike",
                "throughput 20.0 req/s < budget 50.0 req/s in profile spike",
            ]
        );
    }

    #[test]
    fn reads_a_locust_stats_csv() {
        let dir = std::env::temp_dir().join(format!("lr-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run_stats.csv");
        std::fs::write(&path, "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n\
POST,/embed,10,1,120,130.5,80,400,1000,5.2,0.5,120,130,140,150,200,300,350,390,400,400,400\n\
,Aggregated,20,2,100,110.0,10,400,600,10.4,1.0,100,110,120,130,180,290,340,380,400,400,400\n").unwrap();
        let s = read_stats_csv(&path).unwrap();
        assert_eq!(
            (s.requests, s.failures, s.p95_ms, s.rps),
            (20, 2, 290.0, 10.4)
        );
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        assert!(
            read_stats_csv(&path)
                .unwrap_err()
                .to_string()
                .contains("not a Locust _stats.csv")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
