//! What one run of one profile came to: its [`RunSummary`] (the figures, a ramp's curve and
//! capacity, the verdict of its budgets as [`Violation`]s), what a quality check found
//! ([`QualityResult`]), an abort on budget ([`Abort`]), and where its full results are
//! ([`ResultsRef`]). A runner writes it; the operator merges and judges runners' summaries.

use crate::capacity::{Capacity, CurvePoint};
use crate::load::Thresholds;
use crate::stats::{ConnectionStats, DatasetStats, RequestStats, StartDelay};
use serde::{Deserialize, Serialize};

/// A budget a run broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The budget's field: `p95Ms`, `p99Ms`, `maxErrorRate`, `minRps`, `abortOnFail`,
    /// `maxColdStartSeconds`, or a `spec.baseline` field.
    pub metric: String,
    /// What was measured.
    pub measured: f64,
    /// The budget.
    pub budget: f64,
    /// For a person: "p95 612 ms > budget 500 ms in profile spike".
    pub message: String,
}

/// What one run of one profile measured, and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Profile name.
    pub profile: String,
    /// Seconds the run measured for (ramp included).
    pub duration_seconds: f64,
    /// Peak users.
    pub users: u32,
    /// All requests together.
    pub total: RequestStats,
    /// Per task.
    pub tasks: Vec<RequestStats>,
    /// Budgets broken (empty when passed).
    pub violations: Vec<Violation>,
    /// True when no budget was broken.
    pub passed: bool,
    /// True when the run was cut short (SIGTERM/SIGINT).
    pub interrupted: bool,
    /// Open model only: how late requests started against their schedule (waiting for a free
    /// user), p95 and max in ms. Large values mean the target could not keep up with the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_delay: Option<StartDelay>,
    /// A closed-model ramp's load curve: one point per step of users, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<CurvePoint>,
    /// A ramp's capacity, read from `curve` against the latency and error budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// When this runner began its load, unix ms (shards compare theirs to find the skew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// The full results this runner printed last in its log ([`crate::results`]; [`ResultsRef`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultsRef>,
    /// Seconds of warm-up left out of every figure (`warmup`), absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_seconds: Option<f64>,
    /// Set when the runner stopped the profile early on its budgets (`abortOnFail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Abort>,
    /// With `quality`: what its check of sampled answers found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityResult>,
    /// The connections the runner opened: protocol, and connect and TLS handshake times (kept
    /// out of every request's latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionStats>,
    /// With `spec.dataset`: what it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetStats>,
    /// Why requests failed: the most frequent reasons, at most
    /// [`crate::failures::MAX_RUNNER_FAILURE_REASONS`], most frequent first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_reasons: Vec<crate::failures::FailureReason>,
}

/// What the quality check of a run found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct QualityResult {
    /// Responses checked.
    pub sampled: u64,
    /// Of which failed: a vector under `minCosine`, of another dimension, off unit norm while
    /// the reference is normalised, or an answer that did not parse.
    pub bad: u64,
    /// The lowest cosine seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_cosine: Option<f64>,
    /// The bar.
    pub min_cosine: f64,
}

impl QualityResult {
    /// The violation it is, when a response failed its check, or none was checked; `scope`
    /// names the profile.
    pub fn violation(&self, scope: &str) -> Option<Violation> {
        if self.sampled == 0 {
            return Some(Violation {
                metric: "quality".to_owned(),
                measured: 0.0,
                budget: 1.0,
                message: format!(
                    "no embed response was sampled for quality in {scope}: raise quality.sampleRate"
                ),
            });
        }
        (self.bad > 0).then(|| Violation {
            metric: "quality".to_owned(),
            measured: self.bad as f64,
            budget: 0.0,
            message: format!(
                "{} of {} sampled responses below cosine {} (worst {}) in {scope}",
                self.bad,
                self.sampled,
                self.min_cosine,
                self.worst_cosine
                    .map_or("not comparable".to_owned(), |w| format!("{w:.4}"))
            ),
        })
    }
}

/// A profile stopped early because its windows stayed over budget (`thresholds.abortOnFail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Abort {
    /// Seconds into the profile it stopped at.
    pub after_seconds: f64,
    /// Seconds of its planned run it did not run.
    pub saved_seconds: f64,
    /// For a person: "5 windows in a row over budget (last: p95 812 ms > budget 500 ms)".
    pub message: String,
}

impl Abort {
    /// The violation it is in `scope` (the profile), under `budgets`' `abortAfter`.
    pub fn violation(&self, scope: &str, budgets: &Thresholds) -> Violation {
        Violation {
            metric: "abortOnFail".to_owned(),
            measured: self.after_seconds,
            budget: budgets.abort_windows().map_or(0.0, f64::from),
            message: format!(
                "{scope} aborted after {:.0} s: {}",
                self.after_seconds, self.message
            ),
        }
    }
}

/// Where a summary's full results are, and how to know them: the frame's size and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsRef {
    /// Bytes of the compressed frame (before its base64).
    pub bytes: u64,
    /// CRC-32 (IEEE) of those bytes.
    pub crc32: u32,
}
