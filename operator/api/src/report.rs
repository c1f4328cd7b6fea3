//! The report that outlives the pods: each profile's merged figures (the summary with its curve
//! and capacity, judged on the same budgets as the status) and its per-second history added up
//! across runner pods on their common clock. The operator keeps it in a ConfigMap owned by the
//! LoadTest, local mode writes it beside the other reports, and `loadgate report` renders it
//! into one self-contained HTML page for the whole test.

use crate::load::Thresholds;
use crate::summary::RunSummary;
use serde::{Deserialize, Serialize};

/// One second of a profile, all its runners together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPoint {
    /// Seconds since the profile's (common) start.
    pub second: u32,
    /// Users (in the open model: requests in flight) at the second's end, all runners.
    pub users: u32,
    /// Requests that finished in the second.
    pub requests: u64,
    /// Failures among them.
    pub failures: u64,
    /// Their median latency, ms (2 significant digits: within 1%).
    pub p50_ms: f64,
    /// Their p95 latency, ms.
    pub p95_ms: f64,
    /// A warm-up second: shown, but left out of every figure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warmup: bool,
    /// LLM tasks: the second's answers (absent without an LLM task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<PointLlm>,
}

/// One second's LLM answers, all runners together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PointLlm {
    /// Answers that finished in the second.
    pub answered: u64,
    /// Their output tokens.
    pub output_tokens: u64,
    /// Their time to first token p95, ms (2 significant digits).
    pub ttft_p95_ms: f64,
    /// Their time per output token p95, ms.
    pub tpot_p95_ms: f64,
}

/// One profile's merged report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileReport {
    /// The runners' summaries merged: exact percentiles, the verdict and broken budgets as the
    /// status has them, a ramp's or search's curve and capacity.
    pub summary: RunSummary,
    /// The budgets it was judged on.
    pub thresholds: Thresholds,
    /// Embeddings per second, per core, and their cost (as the status has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efficiency: Option<crate::efficiency::Efficiency>,
    /// Once a second, all runners added up (empty when only termination messages were read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryPoint>,
}

/// A whole run of a LoadTest: its profiles' reports, in spec order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    /// The LoadTest's name.
    pub test: String,
    /// The run (the `loadgate.dev/run` annotation, or `initial`).
    pub run: String,
    /// The spec generation it ran.
    pub generation: i64,
    /// The profiles that finished, in spec order.
    pub profiles: Vec<ProfileReport>,
    /// The target's cold start, seconds (`status.coldStartSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start_seconds: Option<f64>,
}

/// Most history points a stored profile report keeps: a longer run's seconds are added up into
/// this many buckets (counts summed, the worst second's p95 kept), so an hour fits in a
/// ConfigMap beside other runs.
pub const MAX_HISTORY_POINTS: usize = 600;

/// `history` in at most `max` points: consecutive seconds added up into equal buckets (counts
/// summed, users and latencies of the bucket's worst second), each named by its first second.
pub fn bucket_history(history: &[HistoryPoint], max: usize) -> Vec<HistoryPoint> {
    if history.len() <= max || max == 0 {
        return history.to_vec();
    }
    let per = history.len().div_ceil(max);
    history
        .chunks(per)
        .map(|chunk| {
            let worst = chunk
                .iter()
                .max_by(|a, b| a.p95_ms.total_cmp(&b.p95_ms))
                .expect("chunks are never empty");
            HistoryPoint {
                second: chunk[0].second,
                users: chunk.iter().map(|p| p.users).max().unwrap_or(0),
                requests: chunk.iter().map(|p| p.requests).sum(),
                failures: chunk.iter().map(|p| p.failures).sum(),
                p50_ms: worst.p50_ms,
                p95_ms: worst.p95_ms,
                warmup: chunk.iter().all(|p| p.warmup),
                llm: worst_llm(chunk),
            }
        })
        .collect()
}

/// A bucket's LLM answers: counts summed, each p95 the worst second's.
fn worst_llm(chunk: &[HistoryPoint]) -> Option<PointLlm> {
    chunk.iter().filter_map(|p| p.llm).reduce(|a, b| PointLlm {
        answered: a.answered.saturating_add(b.answered),
        output_tokens: a.output_tokens.saturating_add(b.output_tokens),
        ttft_p95_ms: a.ttft_p95_ms.max(b.ttft_p95_ms),
        tpot_p95_ms: a.tpot_p95_ms.max(b.tpot_p95_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_history_is_bucketed_keeping_counts_and_the_worst_second() {
        let history: Vec<HistoryPoint> = (0..1000)
            .map(|i| HistoryPoint {
                second: i,
                users: i,
                requests: 10,
                failures: u64::from(i == 7),
                p50_ms: 5.0,
                p95_ms: if i == 7 { 900.0 } else { 10.0 },
                warmup: false,
                llm: None,
            })
            .collect();
        let short = bucket_history(&history, MAX_HISTORY_POINTS);
        assert_eq!(short.len(), 500, "buckets of 2 seconds");
        assert_eq!(short.iter().map(|p| p.requests).sum::<u64>(), 10_000);
        assert_eq!(
            (short[3].second, short[3].p95_ms, short[3].failures),
            (6, 900.0, 1)
        );
        assert_eq!(bucket_history(&history[..10], 600).len(), 10);
    }
}
