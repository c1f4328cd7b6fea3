//! Where an endpoint falls over: the load curve of a ramp (one point per step of users) and the
//! capacity read from it (the highest load inside every latency and error budget, and the step
//! where a budget broke), as the runner reports them and `LoadTest.status` carries them. The
//! sentence a person reads ("holds p95 < 500 ms up to 23 req/s (12 users); breaks at 14 users:
//! p95 612 ms") is made here, so the runner, local mode and the operator say it alike.

use crate::load::Thresholds;
use serde::{Deserialize, Serialize};

/// One step of a ramp: the requests that finished while the user count was inside one band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CurvePoint {
    /// Users running at the end of the step (the most it reached).
    pub users: u32,
    /// Users running through the whole of the step's last second (the fewest a step that held
    /// held with, so a capacity read from it errs low).
    pub users_throughout: u32,
    /// Seconds the step lasted.
    pub seconds: f64,
    /// Requests finished in the step.
    pub requests: u64,
    /// Requests per second in the step.
    pub rps: f64,
    /// Median latency, ms (from the step's own histogram).
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// failures / requests in the step.
    pub error_rate: f64,
}

/// Where a budget broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BreakPoint {
    /// Users at the end of the first step over budget.
    pub users: u32,
    /// Its requests per second.
    pub rps: f64,
    /// The budget field broken: `p95Ms`, `p99Ms` or `maxErrorRate`.
    pub metric: String,
    /// What the step measured.
    pub measured: f64,
    /// The budget.
    pub budget: f64,
}

/// The highest load of a ramp inside every latency and error budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Users running through the whole last second of the highest step that stayed inside every
    /// budget (0 when the first step broke).
    pub max_users_within_budget: u32,
    /// Requests per second of that step.
    pub max_rps_within_budget: f64,
    /// The budget field that broke first (`p95Ms`, `p99Ms`, `maxErrorRate`); absent when none
    /// broke up to the profile's peak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    /// The first step of the break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broke_at: Option<BreakPoint>,
}

impl Capacity {
    /// "holds p95 < 500 ms and errors < 1% up to 23.0 req/s (12 users); breaks at 14 users:
    /// p95 612 ms", for the budgets a ramp is judged on.
    pub fn sentence(&self, thresholds: &Thresholds) -> String {
        let budgets = judged_budgets(thresholds);
        let holds = if budgets.is_empty() {
            "holds".to_owned()
        } else {
            format!("holds {}", budgets.join(" and "))
        };
        let held = format!(
            "{holds} up to {:.1} req/s ({} users)",
            self.max_rps_within_budget, self.max_users_within_budget
        );
        match &self.broke_at {
            None => format!("{held}, the profile's peak: no budget broke"),
            Some(at) if self.max_users_within_budget == 0 => format!(
                "breaks at the first step already ({} users: {})",
                at.users,
                measured(at)
            ),
            Some(at) => format!("{held}; breaks at {} users: {}", at.users, measured(at)),
        }
    }
}

/// The budgets a ramp's steps are judged on, as a person writes them.
fn judged_budgets(t: &Thresholds) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(b) = t.p95_ms {
        out.push(format!("p95 < {b} ms"));
    }
    if let Some(b) = t.p99_ms {
        out.push(format!("p99 < {b} ms"));
    }
    if let Some(b) = t.max_error_rate {
        out.push(format!("errors < {}%", b * 100.0));
    }
    out
}

fn measured(at: &BreakPoint) -> String {
    match at.metric.as_str() {
        "p95Ms" => format!("p95 {:.0} ms", at.measured),
        "p99Ms" => format!("p99 {:.0} ms", at.measured),
        "maxErrorRate" => format!("{:.1}% errors", at.measured * 100.0),
        other => format!("{other} {}", at.measured),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets() -> Thresholds {
        Thresholds {
            p95_ms: Some(500.0),
            max_error_rate: Some(0.01),
            ..Thresholds::default()
        }
    }

    #[test]
    fn the_sentence_names_the_budgets_the_ceiling_and_the_break() {
        let broke = Capacity {
            max_users_within_budget: 12,
            max_rps_within_budget: 23.04,
            limited_by: Some("p95Ms".into()),
            broke_at: Some(BreakPoint {
                users: 14,
                rps: 24.0,
                metric: "p95Ms".into(),
                measured: 612.4,
                budget: 500.0,
            }),
        };
        assert_eq!(
            broke.sentence(&budgets()),
            "holds p95 < 500 ms and errors < 1% up to 23.0 req/s (12 users); breaks at 14 users: p95 612 ms"
        );
        let held = Capacity {
            limited_by: None,
            broke_at: None,
            ..broke.clone()
        };
        assert!(
            held.sentence(&budgets())
                .ends_with("the profile's peak: no budget broke"),
            "{}",
            held.sentence(&budgets())
        );
        let at_once = Capacity {
            max_users_within_budget: 0,
            max_rps_within_budget: 0.0,
            ..broke
        };
        assert_eq!(
            at_once.sentence(&budgets()),
            "breaks at the first step already (14 users: p95 612 ms)"
        );
    }
}
