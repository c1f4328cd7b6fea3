//! What a run measured, as numbers that travel: a task's (or all requests') counts and latency
//! percentiles with the HDR histogram they came from ([`RequestStats`]), the connections it
//! opened ([`ConnectionStats`]), the dataset it drew texts from ([`DatasetStats`]) and, in the
//! open model, how late requests started ([`StartDelay`]). Measured types only: no budget, no
//! verdict ([`crate::summary`] judges).

use serde::{Deserialize, Serialize};

/// failures / requests, and 0 (not NaN) when there were no requests.
pub fn error_rate(failures: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        failures as f64 / requests as f64
    }
}

/// Serde helper: leave zero counts out of summaries.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Latency and count figures of one task, or of all together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStats {
    /// Task name, or `Aggregated`.
    pub name: String,
    /// HTTP method (empty for the aggregate).
    pub method: String,
    /// Requests completed (successes and failures), and in the open model also those scheduled
    /// but not sent (`not_sent`).
    pub requests: u64,
    /// Failed requests (connection errors, timeouts, 4xx, 5xx, and requests not sent).
    pub failures: u64,
    /// Texts embedded by the successful requests (embed tasks' text counts). Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub embeddings: u64,
    /// Open model only: requests the runner scheduled but never sent, counted in `requests` and
    /// `failures` too (so an error-rate budget sees shed load): dropped because the queue for a
    /// free user was full (failure reason `NotSent: queue full`) or still waiting for one when
    /// the run ended (`NotSent: run ended`). Omitted when 0; summaries without it read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_sent: u64,
    /// failures / requests (0 when no requests).
    pub error_rate: f64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Mean latency, ms. Latencies (mean, percentiles, max, histogram) are of the requests sent:
    /// one never sent (`not_sent`) has none.
    pub mean_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest request, ms.
    pub max_ms: f64,
    /// The latency histogram (HdrHistogram V2 + DEFLATE, base64, microseconds, 3 significant
    /// digits), so summaries from parallel runners merge into exact percentiles; averaging their
    /// p95s would be wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// LLM tasks (chat, completion): time to first token, between tokens and per output token,
    /// token counts and goodput. Absent for tasks of other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmStats>,
}

/// What LLM requests measured: the timings of their streamed answers (each with its HDR
/// histogram, so parallel runners merge into exact percentiles), their tokens and goodput.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LlmStats {
    /// LLM requests made (answered or failed).
    pub requests: u64,
    /// Of which answered in full (a 2xx, a well-formed answer or stream with content).
    pub answered: u64,
    /// Of the answered, how many streamed (they alone have `itl` and `tpot`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streamed: u64,
    /// Time to first token, ms: from the request's start (in the open model its scheduled
    /// start) to the first content token; a request that does not stream, its whole latency.
    pub ttft: TimingStats,
    /// Inter-token latency, ms: every gap between content chunks of a stream.
    pub itl: TimingStats,
    /// Time per output token, ms: (latency − TTFT) / (output tokens − 1) of each streamed answer
    /// of at least two tokens.
    pub tpot: TimingStats,
    /// Whole-answer latency of the answered requests, ms.
    pub e2e: TimingStats,
    /// Prompt tokens of the answered requests (the server's `usage.prompt_tokens`, else the
    /// runner's estimate).
    pub input_tokens: u64,
    /// Output tokens of the answered requests: the server's `usage.completion_tokens`, else one
    /// per content chunk (`tokensFromUsage` says how many answers had `usage`).
    pub output_tokens: u64,
    /// Answers whose tokens the server counted (`usage`); the rest were counted by chunk.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tokens_from_usage: u64,
    /// Output tokens per second over the measured time.
    pub output_tokens_per_second: f64,
    /// Requests that succeeded within every per-request SLO set (TTFT ≤ `ttftP95Ms`, TPOT ≤
    /// `tpotP95Ms`).
    pub good: u64,
    /// good / requests (0 with no request).
    pub goodput: f64,
}

impl LlmStats {
    /// The figures without their histograms: what a status keeps.
    pub fn without_histograms(&self) -> LlmStats {
        let mut figures = self.clone();
        for t in [
            &mut figures.ttft,
            &mut figures.itl,
            &mut figures.tpot,
            &mut figures.e2e,
        ] {
            t.histogram = None;
        }
        figures
    }
}

/// Percentiles of one LLM timing, ms, with the histogram they came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TimingStats {
    /// Values recorded (0: the others are 0 too).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// The HDR histogram (as [`RequestStats::histogram`], microseconds): in a runner's summary,
    /// never in a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(skip))]
    pub histogram: Option<String>,
}

/// The connections a run opened, and what opening them took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStats {
    /// The protocol spoken: `HTTP/1.1`, `HTTP/2`, or both (`HTTP/1.1, HTTP/2`).
    pub protocol: String,
    /// Connections opened (a user's first request, and after one broke).
    pub opened: u64,
    /// DNS and TCP connect, median, ms.
    pub connect_p50_ms: f64,
    /// DNS and TCP connect, 95th percentile, ms.
    pub connect_p95_ms: f64,
    /// The TLS handshake, median, ms (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_p50_ms: Option<f64>,
    /// The TLS handshake, 95th percentile, ms (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_p95_ms: Option<f64>,
    /// The connect times' histogram (as `RequestStats.histogram`), so shards merge exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(skip))]
    pub connect_histogram: Option<String>,
    /// The TLS handshakes' histogram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(skip))]
    pub tls_histogram: Option<String>,
}

/// What a run's dataset held, with an estimate of its texts' token lengths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DatasetStats {
    /// `file …` or `inline`.
    pub source: String,
    /// Texts for embed tasks.
    pub texts: u64,
    /// Rerank cases (`{"query", "documents"}` lines).
    #[serde(default)]
    pub rerank_cases: u64,
    /// Estimated tokens per text (WordPiece-like, no vocabulary), median.
    pub tokens_p50: u64,
    /// The same, 95th percentile.
    pub tokens_p95: u64,
    /// The same, largest.
    pub tokens_max: u64,
}

/// How late open-model requests started against their schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartDelay {
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Requests dropped because too many were already waiting for a free user (also counted in
    /// the total's `not_sent`, with those still waiting when the run ended).
    pub dropped: u64,
}
