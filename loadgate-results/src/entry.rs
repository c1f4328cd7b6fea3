//! The figures of one task, or of all: an [`Entry`] holds an HDR histogram of latencies
//! (microsecond resolution, 3 significant digits, so every reported percentile is within 0.1% of
//! the exact value) with its counts, [`Figures`] what the reports print of it, and [`HistoryRow`]
//! one second of a run's history.

use crate::checked::PartError;
use crate::codec::MAX_MICROS;
use crate::llm::LlmEntry;
use crate::sample::LlmSample;
use hdrhistogram::Histogram;
use loadgate_api::stats::RequestStats;
use std::time::Duration;

/// Percentiles Locust reports, in its column order.
pub const PERCENTILES: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// Counts and latencies of one task (or of all).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Task name (`Aggregated` for the total).
    pub name: String,
    /// HTTP method (empty for the total).
    pub method: String,
    /// Latency histogram in microseconds, of the requests sent (`requests - not_sent`): one never
    /// sent has no latency, and a near-zero one would flatter every percentile.
    pub histogram: Histogram<u64>,
    /// Requests recorded.
    pub requests: u64,
    /// Failures among them.
    pub failures: u64,
    /// Failures among them that were never sent (open model, [`crate::sample::Outcome::NotSent`]).
    pub not_sent: u64,
    /// Sum of response body sizes.
    pub bytes: u64,
    /// Exact sum of the sent requests' latencies, µs (for the mean).
    pub sum_micros: u128,
    /// Texts embedded by the successful requests.
    pub embeddings: u64,
    /// LLM tasks' timings and tokens (`None` until an LLM request is recorded).
    pub llm: Option<Box<LlmEntry>>,
}

impl Entry {
    /// An empty entry.
    pub fn new(name: &str, method: &str) -> Self {
        Self {
            name: name.to_owned(),
            method: method.to_owned(),
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("static histogram bounds are valid; this is a bug"),
            requests: 0,
            failures: 0,
            not_sent: 0,
            bytes: 0,
            sum_micros: 0,
            embeddings: 0,
            llm: None,
        }
    }

    /// Records an LLM request's timings and tokens (`answer` None when it failed); its count
    /// and latency go in through [`Self::record`] as any request's do.
    pub(crate) fn record_llm(&mut self, answer: Option<&LlmSample>, latency: Duration, good: bool) {
        self.llm
            .get_or_insert_with(Box::default)
            .record(answer, latency, good);
    }

    pub(crate) fn record(&mut self, micros: u64, failed: bool, not_sent: bool, bytes: usize) {
        self.requests += 1;
        self.failures += u64::from(failed);
        if not_sent {
            self.not_sent += 1;
            return;
        }
        self.histogram
            .saturating_record(micros.clamp(1, MAX_MICROS));
        self.bytes += bytes as u64;
        self.sum_micros += u128::from(micros);
    }

    /// Requests that were sent, and so have a latency.
    pub fn sent(&self) -> u64 {
        self.requests - self.not_sent
    }

    /// Adds `other`'s requests (same histogram bounds, so the sum is exact).
    pub(crate) fn add(&mut self, other: &Entry) {
        let added = self.histogram.add(&other.histogram);
        debug_assert!(added.is_ok(), "entries share bounds: {added:?}");
        self.requests += other.requests;
        self.failures += other.failures;
        self.not_sent += other.not_sent;
        self.bytes += other.bytes;
        self.sum_micros += other.sum_micros;
        self.embeddings += other.embeddings;
        if let Some(theirs) = &other.llm {
            self.llm.get_or_insert_with(Box::default).add(theirs);
        }
    }

    /// Adds another runner's counts and latencies (decoded from its results), with overflow
    /// checks: the input may be forged.
    ///
    /// # Errors
    /// When a count overflows or the histogram cannot be added to this one's bounds.
    pub fn add_counts(
        &mut self,
        histogram: &Histogram<u64>,
        requests: u64,
        failures: u64,
        not_sent: u64,
    ) -> Result<(), PartError> {
        let add = |a: u64, b: u64, what: &'static str| {
            a.checked_add(b)
                .filter(|&sum| sum <= crate::codec::MAX_COUNT)
                .ok_or(PartError::Overflow(what))
        };
        self.requests = add(self.requests, requests, "requests")?;
        self.failures = add(self.failures, failures, "failures")?;
        self.not_sent = add(self.not_sent, not_sent, "not-sent requests")?;
        self.histogram
            .add(histogram)
            .map_err(PartError::OutOfBounds)
    }

    /// Empties it in place (keeping the histogram's allocation).
    pub(crate) fn reset(&mut self) {
        self.histogram.reset();
        self.requests = 0;
        self.failures = 0;
        self.not_sent = 0;
        self.bytes = 0;
        self.sum_micros = 0;
        self.embeddings = 0;
        if let Some(llm) = &mut self.llm {
            llm.reset();
        }
    }

    /// Latency at quantile `q` (0–1) of the sent requests in milliseconds; 0 with none.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.sent() == 0 {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    /// Mean latency of the sent requests in ms.
    pub fn mean_ms(&self) -> f64 {
        if self.sent() == 0 {
            0.0
        } else {
            self.sum_micros as f64 / self.sent() as f64 / 1000.0
        }
    }

    /// Fastest request in ms.
    pub fn min_ms(&self) -> f64 {
        if self.sent() == 0 {
            0.0
        } else {
            self.histogram.min() as f64 / 1000.0
        }
    }

    /// failures / requests.
    pub fn error_rate(&self) -> f64 {
        loadgate_api::stats::error_rate(self.failures, self.requests)
    }

    /// The contract form, over `elapsed` seconds.
    pub fn summary(&self, elapsed: f64) -> RequestStats {
        RequestStats {
            name: self.name.clone(),
            method: self.method.clone(),
            requests: self.requests,
            failures: self.failures,
            embeddings: self.embeddings,
            not_sent: self.not_sent,
            error_rate: self.error_rate(),
            rps: if elapsed > 0.0 {
                self.requests as f64 / elapsed
            } else {
                0.0
            },
            mean_ms: self.mean_ms(),
            p50_ms: self.percentile_ms(0.50),
            p90_ms: self.percentile_ms(0.90),
            p95_ms: self.percentile_ms(0.95),
            p99_ms: self.percentile_ms(0.99),
            max_ms: self.percentile_ms(1.0),
            histogram: Some(crate::codec::encode(&self.histogram)),
            llm: self.llm.as_ref().map(|l| l.summary(elapsed)),
        }
    }
}

/// The figures of an [`Entry`] the reports print, without its histogram: what a history row
/// keeps (128 bytes instead of a 180 KiB histogram).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Requests recorded.
    pub requests: u64,
    /// Failures among them.
    pub failures: u64,
    /// Sum of response body sizes.
    pub bytes: u64,
    /// Mean latency, ms ([`Entry::mean_ms`]).
    pub mean_ms: f64,
    /// Fastest request, ms ([`Entry::min_ms`]).
    pub min_ms: f64,
    /// Latency at each of [`PERCENTILES`], ms ([`Entry::percentile_ms`]); the last is the max.
    pub percentiles_ms: [f64; PERCENTILES.len()],
}

impl Figures {
    /// The figures of `entry` now.
    pub fn of(entry: &Entry) -> Self {
        Self {
            requests: entry.requests,
            failures: entry.failures,
            bytes: entry.bytes,
            mean_ms: entry.mean_ms(),
            min_ms: entry.min_ms(),
            percentiles_ms: PERCENTILES.map(|q| entry.percentile_ms(q)),
        }
    }

    /// Median latency, ms.
    pub fn p50_ms(&self) -> f64 {
        self.percentiles_ms[0]
    }

    /// 95th percentile, ms.
    pub fn p95_ms(&self) -> f64 {
        self.percentiles_ms[5]
    }

    /// 99th percentile, ms.
    pub fn p99_ms(&self) -> f64 {
        self.percentiles_ms[7]
    }

    /// Slowest request, ms.
    pub fn max_ms(&self) -> f64 {
        self.percentiles_ms[PERCENTILES.len() - 1]
    }

    /// failures / requests.
    pub fn error_rate(&self) -> f64 {
        loadgate_api::stats::error_rate(self.failures, self.requests)
    }

    /// Mean response body size, bytes (0 with no requests).
    pub fn avg_size(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.bytes as f64 / self.requests as f64
        }
    }
}

/// One row of the once-a-second history (Locust's `_stats_history.csv`): numbers only, so a
/// long run's history stays small.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryRow {
    /// Unix seconds.
    pub timestamp: u64,
    /// Users running.
    pub users: u32,
    /// Requests in the last second.
    pub window: Figures,
    /// A warm-up second: its requests are in `window` only, not in `total` or any figure.
    pub warmup: bool,
    /// Everything so far.
    pub total: Figures,
}
