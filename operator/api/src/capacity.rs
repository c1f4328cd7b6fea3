//! Where an endpoint falls over: the load curve of a ramp (one point per step of users) and the
//! capacity read from it (the highest load inside every latency and error budget, and the step
//! where a budget broke), as the runner reports them and `LoadTest.status` carries them. The
//! sentence a person reads ("holds p95 < 500 ms up to 23 req/s (12 users); breaks at 14 users:
//! p95 612 ms") is made here, so the runner, local mode and the operator say it alike.

use crate::load::Thresholds;
use serde::{Deserialize, Serialize};

/// One step of a ramp (the requests that finished while the user count was inside one band) or
/// of a search (those that finished while one arrival rate was offered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CurvePoint {
    /// Users running at the end of the step (the most it reached); in a search, the requests in
    /// flight then.
    pub users: u32,
    /// Users running through the whole of the step's last second (the fewest a step that held
    /// held with, so a capacity read from it errs low); in a search, the requests in flight at
    /// the start of that second.
    pub users_throughout: u32,
    /// A search: the arrival rate the step offered, requests per second (`rps` is what
    /// finished; it falls behind once the endpoint cannot keep up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
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
    /// LLM tasks: the step's time to first token, inter-token latency and time per output
    /// token (p95), and its output tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<StepLlm>,
}

/// What one step's LLM answers measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StepLlm {
    /// Time to first token p95, ms.
    pub ttft_p95_ms: f64,
    /// Inter-token latency p95, ms (0 with no streamed answer).
    pub itl_p95_ms: f64,
    /// Time per output token p95, ms (0 with no streamed answer of two tokens).
    pub tpot_p95_ms: f64,
    /// Output tokens per second.
    pub output_tokens_per_second: f64,
}

/// Where a budget broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BreakPoint {
    /// Users at the end of the first step over budget (in a search, requests in flight).
    pub users: u32,
    /// A search: the rate that step offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    /// Its requests per second.
    pub rps: f64,
    /// The budget field broken: `p95Ms`, `p99Ms`, `maxErrorRate`, or an LLM one (`ttftP95Ms`,
    /// `itlP95Ms`, `tpotP95Ms`).
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
    /// A search: the rate that step offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    /// The budget field that broke first (`p95Ms`, `p99Ms`, `maxErrorRate`); absent when none
    /// broke up to the profile's peak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    /// The first step of the break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broke_at: Option<BreakPoint>,
    /// LLM tasks: output tokens per second of the highest step inside every budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_second: Option<f64>,
}

impl Capacity {
    /// "holds p95 < 500 ms and errors < 1% up to 23.0 req/s (12 users); breaks at 14 users:
    /// p95 612 ms", for the budgets a ramp is judged on; a search's names the offered rates:
    /// "holds p95 < 500 ms up to 38.2 req/s (40 req/s offered); breaks at 50 req/s offered:
    /// p95 612 ms".
    pub fn sentence(&self, thresholds: &Thresholds) -> String {
        let budgets = judged_budgets(thresholds);
        let holds = if budgets.is_empty() {
            "holds".to_owned()
        } else {
            format!("holds {}", budgets.join(" and "))
        };
        if let Some(offered) = self
            .offered_rps
            .or(self.broke_at.as_ref().and_then(|b| b.offered_rps))
        {
            return self.search_sentence(&holds, offered);
        }
        let held = format!(
            "{holds} up to {:.1} req/s ({} users{})",
            self.max_rps_within_budget,
            self.max_users_within_budget,
            self.tokens()
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

impl Capacity {
    /// "; 410 output tokens/s" when the held step streamed LLM answers.
    fn tokens(&self) -> String {
        self.output_tokens_per_second
            .filter(|t| *t > 0.0)
            .map_or(String::new(), |t| format!("; {t:.0} output tokens/s"))
    }

    fn search_sentence(&self, holds: &str, offered: f64) -> String {
        let held = format!(
            "{holds} up to {:.1} req/s ({} req/s offered{})",
            self.max_rps_within_budget,
            rate(offered),
            self.tokens()
        );
        match &self.broke_at {
            None => format!("{held}, the search's maximum: no budget broke"),
            Some(at) if self.offered_rps.is_none() => format!(
                "breaks at the first step already ({} req/s offered: {})",
                rate(at.offered_rps.unwrap_or(at.rps)),
                measured(at)
            ),
            Some(at) => format!(
                "{held}; breaks at {} req/s offered: {}",
                rate(at.offered_rps.unwrap_or(at.rps)),
                measured(at)
            ),
        }
    }
}

/// A rate as a person writes it: whole when it is, else to a tenth.
fn rate(rps: f64) -> String {
    if (rps - rps.round()).abs() < 1e-9 {
        format!("{rps:.0}")
    } else {
        format!("{rps:.1}")
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
    for (label, budget) in [
        ("TTFT p95", t.ttft_p95_ms),
        ("ITL p95", t.itl_p95_ms),
        ("TPOT p95", t.tpot_p95_ms),
    ] {
        if let Some(b) = budget {
            out.push(format!("{label} < {b} ms"));
        }
    }
    out
}

fn measured(at: &BreakPoint) -> String {
    match at.metric.as_str() {
        "p95Ms" => format!("p95 {:.0} ms", at.measured),
        "p99Ms" => format!("p99 {:.0} ms", at.measured),
        "maxErrorRate" => format!("{:.1}% errors", at.measured * 100.0),
        "ttftP95Ms" => format!("TTFT p95 {:.0} ms", at.measured),
        "itlP95Ms" => format!("ITL p95 {:.1} ms", at.measured),
        "tpotP95Ms" => format!("TPOT p95 {:.1} ms", at.measured),
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
            offered_rps: None,
            limited_by: Some("p95Ms".into()),
            broke_at: Some(BreakPoint {
                users: 14,
                offered_rps: None,
                rps: 24.0,
                metric: "p95Ms".into(),
                measured: 612.4,
                budget: 500.0,
            }),
            output_tokens_per_second: None,
        };
        let [broke, held, at_once] = sentences(&broke);
        assert_eq!(
            broke,
            "holds p95 < 500 ms and errors < 1% up to 23.0 req/s (12 users); breaks at 14 users: p95 612 ms"
        );
        assert!(
            held.ends_with("the profile's peak: no budget broke"),
            "{held}"
        );
        assert_eq!(
            at_once,
            "breaks at the first step already (14 users: p95 612 ms)"
        );
    }

    /// The sentences of `broke`, of it holding to the end, and of it breaking at once.
    fn sentences(broke: &Capacity) -> [String; 3] {
        let held = Capacity {
            limited_by: None,
            broke_at: None,
            ..broke.clone()
        };
        let at_once = Capacity {
            max_users_within_budget: 0,
            max_rps_within_budget: 0.0,
            offered_rps: None,
            ..broke.clone()
        };
        [broke, &held, &at_once].map(|c| c.sentence(&budgets()))
    }

    #[test]
    fn a_search_speaks_of_offered_rates() {
        let broke = Capacity {
            max_users_within_budget: 9,
            max_rps_within_budget: 38.24,
            offered_rps: Some(40.0),
            limited_by: Some("p95Ms".into()),
            broke_at: Some(BreakPoint {
                users: 30,
                offered_rps: Some(50.0),
                rps: 41.0,
                metric: "p95Ms".into(),
                measured: 612.4,
                budget: 500.0,
            }),
            output_tokens_per_second: None,
        };
        let [broke, held, at_once] = sentences(&broke);
        assert_eq!(
            broke,
            "holds p95 < 500 ms and errors < 1% up to 38.2 req/s (40 req/s offered); breaks at 50 req/s offered: p95 612 ms"
        );
        assert!(
            held.ends_with("(40 req/s offered), the search's maximum: no budget broke"),
            "{held}"
        );
        assert_eq!(
            at_once,
            "breaks at the first step already (50 req/s offered: p95 612 ms)"
        );
    }
}
