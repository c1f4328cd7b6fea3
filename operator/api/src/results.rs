//! A runner pod's full results, for the channel with no 4 KiB ceiling: the pod's log.
//!
//! The termination message (4 KiB on a real kubelet) carries a compact [`RunSummary`] and a
//! [`crate::summary::ResultsRef`] naming the size and checksum of a frame the runner printed last on its
//! standard output: [`RunResults`], with every histogram at full precision, the ramp's steps and
//! the once-a-second windows. The operator reads the frame through `pods/log` (no API access or
//! RBAC for runner pods), checks it against the reference, and uses it; the termination message
//! is the fallback when the log is gone.
//!
//! Steps and windows are numbered on the shards' common clock: window `i` is the second
//! `[startAt + i s, startAt + (i + 1) s)`, so the windows of parallel runners line up and add
//! up, and the steps are cut on the whole profile's planned users (not one shard's), the same in
//! every pod.

use crate::stats::RequestStats;
use crate::summary::RunSummary;
use serde::{Deserialize, Serialize};

/// Everything one runner measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResults {
    /// The summary, every histogram at 3 significant digits (none coarsened or dropped).
    pub summary: RunSummary,
    /// A closed-model ramp's steps on the common clock, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// One per second on the common clock, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowResult>,
}

/// One step of a ramp as one runner measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// Its first window on the common clock.
    pub first_window: u32,
    /// How many windows it spans.
    pub windows: u32,
    /// This runner's users at the end of the step.
    pub users: u32,
    /// This runner's users through the whole of the step's last second.
    pub users_throughout: u32,
    /// A search: the rate this runner offered in the step (its share of the step's rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    /// Seconds it lasted.
    pub seconds: f64,
    /// Its requests, with their histogram.
    pub stats: RequestStats,
}

/// Most windows the frames of one profile hold together, all runner pods summed: six hours of
/// seconds (the report draws at most 600 points of history anyway). A runner coarsens its
/// windows to `ceil(run seconds × pods / this)` seconds each ([`window_seconds`]), which bounds
/// what the operator decodes for any legal profile: an hour on one pod keeps its seconds, 24 h
/// over 100 pods gives 216 windows of 400 s per pod.
pub const MAX_PROFILE_WINDOWS: u64 = 21_600;

/// The width of a runner's windows for a profile of `run_seconds` over `pods` runner pods: one
/// second, unless the profile's windows would pass [`MAX_PROFILE_WINDOWS`] together.
pub fn window_seconds(run_seconds: u64, pods: u32) -> u32 {
    let total = run_seconds.saturating_mul(u64::from(pods.max(1)));
    u32::try_from(total.div_ceil(MAX_PROFILE_WINDOWS).max(1)).unwrap_or(u32::MAX)
}

/// One second (or, coarsened, several) of one runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowResult {
    /// The window on the common clock: its first second.
    pub window: u32,
    /// Seconds it spans (absent: one). A long run's windows are coarsened at the runner so a
    /// profile's frames together hold at most [`MAX_PROFILE_WINDOWS`] windows; every shard of a
    /// profile uses the same width, so windows still line up across pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// Users running at its end.
    pub users: u32,
    /// Requests finished in it.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// A warm-up window: kept for the history, left out of every figure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warmup: bool,
    /// Their latencies (HdrHistogram V2 + DEFLATE, base64, µs, 2 significant digits: a
    /// one-second window needs no more, and a 1 h run's windows stay under a MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// LLM tasks: the answers that finished in it (absent without an LLM task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<WindowLlm>,
}

/// The LLM answers of one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowLlm {
    /// Answers finished in it.
    pub answered: u64,
    /// Their output tokens.
    pub output_tokens: u64,
    /// Their times to first token (as `histogram`, 2 significant digits); absent with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<String>,
    /// Their times per output token; absent with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot: Option<String>,
}
