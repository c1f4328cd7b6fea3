//! What one request measured, as the engine hands it to the results: its [`Outcome`] (success or
//! a failure with its reason), the opening of its connection ([`Dial`]) when it opened one, a
//! quality sample's [`Check`], and an LLM answer's timings and tokens ([`LlmSample`]). These are
//! the bottom of the results layer: plain data, no I/O.

use std::time::Duration;

/// One finished request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index of its task.
    pub task: usize,
    /// Time from the intended send to the last response byte.
    pub latency: Duration,
    /// Success or failure reason.
    pub outcome: Outcome,
    /// Open model: how late the request started against its schedule.
    pub start_delay: Option<Duration>,
    /// Texts the request asked to embed (counted as embeddings when it succeeded).
    pub texts: u32,
    /// A quality sample's check of its answer.
    pub quality: Option<Check>,
    /// The connection this request opened first, if it did (its time is not in `latency`).
    /// Boxed: it is rare, and every sample crosses a channel.
    pub dial: Option<Box<Dial>>,
    /// An LLM task's answer (time to first token, gaps, tokens) when it was answered in full.
    /// Boxed, as `dial` is: only LLM tasks have one.
    pub llm: Option<Box<LlmSample>>,
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx (a redirect followed to one, with `followRedirects`); body size in bytes.
    Ok {
        /// Response body size.
        bytes: usize,
    },
    /// A failure, with Locust-style reason text ("HTTPError 503", "ConnectionError ...").
    Failed {
        /// Why.
        reason: String,
        /// Response body size (0 when there was no response).
        bytes: usize,
    },
    /// Open model: a scheduled request that was never sent. Counted as a failed request, so
    /// load the runner shed shows in the error rate.
    NotSent(NotSent),
}

/// Why an open-model request was never sent. [`NotSent::reason`] is its failure reason in
/// reports (Locust's `_failures.csv` "Error" column); the strings are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// Dropped at its start time: as many requests as allowed already waited for a free user.
    QueueFull,
    /// Still waiting for a free user when the run ended (deadline or stop signal).
    RunEnded,
}

impl NotSent {
    /// `NotSent: queue full` or `NotSent: run ended`.
    pub fn reason(self) -> &'static str {
        match self {
            NotSent::QueueFull => "NotSent: queue full",
            NotSent::RunEnded => "NotSent: run ended",
        }
    }
}

/// The application protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.1 (plain http, or https without h2 agreed).
    Http1,
    /// HTTP/2, agreed by ALPN on https.
    Http2,
}

impl Protocol {
    /// `HTTP/1.1` or `HTTP/2`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

/// What opening one connection took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dial {
    /// DNS and TCP connect.
    pub connect: Duration,
    /// The TLS handshake (https only).
    pub tls: Option<Duration>,
    /// The protocol agreed.
    pub protocol: Protocol,
}

impl Dial {
    /// Connect and TLS together: what is left out of the request's latency.
    pub fn total(&self) -> Duration {
        self.connect + self.tls.unwrap_or_default()
    }
}

/// What one checked response showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// False when a vector was below `minCosine`, of another dimension, not unit norm while the
    /// reference is, or the answer did not parse or had the wrong count.
    pub good: bool,
    /// The lowest cosine among its vectors (`None` when none could be compared).
    pub worst_cosine: Option<f64>,
}

/// Checked responses of a run (or a window), added up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Responses checked.
    pub sampled: u64,
    /// Of which failed the check.
    pub bad: u64,
    /// The lowest cosine seen.
    pub worst_cosine: Option<f64>,
}

impl Tally {
    /// Adds one checked response.
    pub fn add(&mut self, check: &Check) {
        self.sampled += 1;
        self.bad += u64::from(!check.good);
        if let Some(c) = check.worst_cosine {
            self.worst_cosine = Some(self.worst_cosine.map_or(c, |w| w.min(c)));
        }
    }
}

/// One LLM answer, as the engine measured it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmSample {
    /// Time to the first content token (the whole latency when it did not stream).
    pub ttft: Duration,
    /// Gaps between content chunks, in order of arrival (empty when it did not stream).
    pub gaps: Vec<Duration>,
    /// Prompt tokens: the server's `usage.prompt_tokens`, else the runner's estimate.
    pub input_tokens: u64,
    /// Output tokens: the server's `usage.completion_tokens`, else content chunks.
    pub output_tokens: u64,
    /// The server counted the tokens (`usage` was in the answer).
    pub from_usage: bool,
    /// The answer streamed (server-sent events).
    pub streamed: bool,
}

impl LlmSample {
    /// Time per output token of a streamed answer of at least two tokens that took `latency`.
    pub fn tpot(&self, latency: Duration) -> Option<Duration> {
        let tokens = u32::try_from(self.output_tokens).unwrap_or(u32::MAX);
        (self.streamed && tokens >= 2).then(|| latency.saturating_sub(self.ttft) / (tokens - 1))
    }
}
