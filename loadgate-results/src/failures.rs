//! Why requests failed, from a run's counts to the verdict: a runner's most frequent reasons
//! ([`from_counts`]), runners' reasons added up with their claims checked ([`merge`]; a summary
//! may be forged), and the error-rate violation naming the most frequent one
//! ([`name_top_reason`]: "error rate 100.00% > budget 1.00% in profile steady; most failures:
//! HTTPError 404 on GET /nope (wrong-path): 970").

use crate::checked::MergeError;
use loadgate_api::failures::{
    FailureReason, MAX_FAILURE_REASON_BYTES, MAX_RUNNER_FAILURE_REASONS, add_up, bounded, top,
};
use loadgate_api::summary::{RunSummary, Violation};
use std::collections::BTreeMap;

/// A run's failure counts by (method, task, reason), as [`crate::stats::Stats`] keeps them, as
/// its most frequent [`MAX_RUNNER_FAILURE_REASONS`] reasons, each cut to the bound.
pub fn from_counts(counts: &BTreeMap<(String, String, String), u64>) -> Vec<FailureReason> {
    let reasons = counts
        .iter()
        .map(|((method, task, reason), &count)| FailureReason {
            task: task.clone(),
            method: method.clone(),
            path: None,
            reason: bounded(reason),
            count,
        })
        .collect();
    top(reasons, MAX_RUNNER_FAILURE_REASONS)
}

/// Runners' reasons added up by (task, method, reason), most frequent first, at most
/// [`MAX_RUNNER_FAILURE_REASONS`].
///
/// # Errors
/// [`MergeError::BadFailureReasons`] when a summary carries more reasons than a runner writes, a
/// reason longer than the bound, a zero count, the same reason twice, or more failures by reason
/// than it counts in all.
pub fn merge(summaries: &[RunSummary]) -> Result<Vec<FailureReason>, MergeError> {
    for summary in summaries {
        let bad = |why: String| MergeError::BadFailureReasons {
            profile: summary.profile.clone(),
            why,
        };
        let reasons = &summary.failure_reasons;
        if reasons.len() > MAX_RUNNER_FAILURE_REASONS {
            return Err(bad(format!(
                "{} reasons (a runner writes at most {MAX_RUNNER_FAILURE_REASONS})",
                reasons.len()
            )));
        }
        let mut claimed = 0u64;
        let mut seen = std::collections::BTreeSet::new();
        for reason in reasons {
            let too_long = [&reason.reason, &reason.task, &reason.method]
                .into_iter()
                .chain(&reason.path)
                .any(|s| s.len() > MAX_FAILURE_REASON_BYTES);
            if too_long || reason.count == 0 || !seen.insert(reason.key()) {
                return Err(bad(format!(
                    "reason {:?} of task {:?}: over {MAX_FAILURE_REASON_BYTES} bytes, a zero count, or twice",
                    bounded(&reason.reason),
                    bounded(&reason.task)
                )));
            }
            claimed = claimed.saturating_add(reason.count);
        }
        if claimed > summary.total.failures {
            return Err(bad(format!(
                "{claimed} failures by reason, but {} in all",
                summary.total.failures
            )));
        }
    }
    Ok(add_up(
        summaries.iter().flat_map(|s| &s.failure_reasons),
        MAX_RUNNER_FAILURE_REASONS,
    ))
}

/// Gives a finished run's reasons their tasks' paths (`path_of(task)`) and names the most
/// frequent one in its error-rate violation ([`name_top_reason`]).
pub fn name_in_verdict<'a>(summary: &mut RunSummary, path_of: impl Fn(&str) -> Option<&'a str>) {
    for reason in &mut summary.failure_reasons {
        reason.path = path_of(&reason.task).map(bounded);
    }
    name_top_reason(&mut summary.violations, &summary.failure_reasons);
}

/// Appends the most frequent reason to the error-rate violation's message, so the verdict says
/// why requests failed, not only how many.
pub fn name_top_reason(violations: &mut [Violation], reasons: &[FailureReason]) {
    let Some(first) = reasons.first() else {
        return;
    };
    for violation in violations.iter_mut().filter(|v| v.metric == "maxErrorRate") {
        violation.message = format!("{}; most failures: {}", violation.message, first.describe());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(failures: u64, reasons: Vec<FailureReason>) -> RunSummary {
        let mut summary: RunSummary = serde_json::from_value(serde_json::json!({
            "profile": "steady", "durationSeconds": 10.0, "users": 1,
            "total": {"name": "Aggregated", "method": "", "requests": 1000, "failures": failures,
                      "errorRate": 0.0, "rps": 100.0, "meanMs": 1.0, "p50Ms": 1.0, "p90Ms": 1.0,
                      "p95Ms": 1.0, "p99Ms": 1.0, "maxMs": 1.0},
            "tasks": [], "violations": [], "passed": true, "interrupted": false
        }))
        .unwrap();
        summary.failure_reasons = reasons;
        summary
    }

    fn reason(task: &str, reason: &str, count: u64) -> FailureReason {
        FailureReason {
            task: task.into(),
            method: "GET".into(),
            path: Some(format!("/{task}")),
            reason: reason.into(),
            count,
        }
    }

    #[test]
    fn runners_reasons_add_up_most_frequent_first() {
        let a = summary(
            600,
            vec![
                reason("nope", "HTTPError 404", 500),
                reason("slow", "timeout", 100),
            ],
        );
        let b = summary(
            400,
            vec![
                reason("nope", "HTTPError 404", 300),
                reason("slow", "timeout", 100),
            ],
        );
        let merged = merge(&[a, b]).unwrap();
        assert_eq!(
            merged
                .iter()
                .map(|r| (r.task.as_str(), r.count))
                .collect::<Vec<_>>(),
            [("nope", 800), ("slow", 200)]
        );
        let mut violations = vec![Violation {
            metric: "maxErrorRate".into(),
            measured: 0.5,
            budget: 0.01,
            message: "error rate 50.00% > budget 1.00% in profile steady".into(),
        }];
        name_top_reason(&mut violations, &merged);
        assert_eq!(
            violations[0].message,
            "error rate 50.00% > budget 1.00% in profile steady; most failures: HTTPError 404 on GET /nope (nope): 800"
        );
    }

    #[test]
    fn forged_reasons_are_refused_naming_the_profile() {
        let refused = |s: RunSummary| merge(&[s]).unwrap_err().to_string();
        let more_than_counted = refused(summary(10, vec![reason("nope", "HTTPError 404", 11)]));
        assert!(
            more_than_counted.contains("11 failures by reason, but 10"),
            "{more_than_counted}"
        );
        let twice = refused(summary(
            10,
            vec![reason("nope", "x", 1), reason("nope", "x", 1)],
        ));
        assert!(twice.contains("steady"), "{twice}");
        let long = refused(summary(10, vec![reason("nope", &"x".repeat(300), 1)]));
        assert!(long.contains("256 bytes"), "{long}");
        let many = (0..21).map(|i| reason("t", &format!("r{i}"), 1)).collect();
        assert!(refused(summary(100, many)).contains("21 reasons"));
    }

    #[test]
    fn counts_become_the_most_frequent_reasons_within_bounds() {
        let mut counts = BTreeMap::new();
        for i in 0..30u64 {
            counts.insert(("GET".into(), "t".into(), format!("reason {i}")), i + 1);
        }
        counts.insert(("POST".into(), "u".into(), "é".repeat(400)), 1000);
        let reasons = from_counts(&counts);
        assert_eq!(reasons.len(), MAX_RUNNER_FAILURE_REASONS);
        assert_eq!((reasons[0].task.as_str(), reasons[0].count), ("u", 1000));
        assert!(reasons[0].reason.len() <= MAX_FAILURE_REASON_BYTES);
        assert_eq!(reasons[1].count, 30);
    }
}
