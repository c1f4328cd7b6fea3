//! What LLM requests measured: each answer ([`LlmSample`], in [`crate::sample`]) counted
//! against the per-request SLO that goodput counts
//! against ([`Slo`]), and their accumulation ([`LlmEntry`]: HDR histograms of TTFT, ITL, TPOT and
//! whole latency at the latency histograms' bounds and precision, token counts and goodput) with
//! its contract form ([`LlmStats`]) and the exact merge of several runners' ([`merge`]).
//!
//! Definitions (those of vLLM's `bench serve`, inference-perf and AIPerf):
//! - TTFT: from the request's start (in the open model its scheduled start) to the first chunk
//!   that carries content; a request that does not stream has its whole latency as TTFT.
//! - ITL: every gap between two content chunks as they arrived (chunks that arrive in one read
//!   are a gap of 0: the runner cannot tell them apart, and says so by recording it).
//! - TPOT: (latency − TTFT) / (output tokens − 1) of a streamed answer of at least two tokens.

use crate::checked::{MergeError, PartError};
use crate::codec::{self, MAX_MICROS};
use crate::sample::LlmSample;
use hdrhistogram::Histogram;
use loadgate_api::report::PointLlm;
use loadgate_api::results::WindowLlm;
use loadgate_api::stats::{LlmStats, TimingStats};
use std::time::Duration;

/// The per-request SLO goodput counts against: a request is good when it succeeded, its TTFT
/// is within `ttft` and its TPOT within `tpot` (an unset bound always holds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slo {
    /// Most TTFT (the `ttftP95Ms` budget).
    pub ttft: Option<Duration>,
    /// Most TPOT (the `tpotP95Ms` budget).
    pub tpot: Option<Duration>,
}

impl Slo {
    /// The SLO of budgets `ttftP95Ms` and `tpotP95Ms` (in ms).
    pub fn of(thresholds: &loadgate_api::load::Thresholds) -> Self {
        let ms = |v: Option<f64>| {
            v.filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| Duration::from_secs_f64(v / 1000.0))
        };
        Self {
            ttft: ms(thresholds.ttft_p95_ms),
            tpot: ms(thresholds.tpot_p95_ms),
        }
    }

    /// Whether an answered request of `latency` met it.
    pub fn met_by(&self, sample: &LlmSample, latency: Duration) -> bool {
        self.ttft.is_none_or(|most| sample.ttft <= most)
            && self
                .tpot
                .is_none_or(|most| sample.tpot(latency).is_none_or(|t| t <= most))
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
        .expect("static histogram bounds are valid; this is a bug")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

/// LLM requests of one task (or of all, or of one window or step), added up.
#[derive(Debug, Clone)]
pub struct LlmEntry {
    /// LLM requests made (answered or failed).
    pub requests: u64,
    /// Answered in full.
    pub answered: u64,
    /// Answered by a stream.
    pub streamed: u64,
    /// Prompt tokens of the answered.
    pub input_tokens: u64,
    /// Output tokens of the answered.
    pub output_tokens: u64,
    /// Answers whose tokens came from `usage`.
    pub tokens_from_usage: u64,
    /// Answered within the SLO.
    pub good: u64,
    /// Time to first token, µs.
    pub ttft: Histogram<u64>,
    /// Inter-token gaps, µs.
    pub itl: Histogram<u64>,
    /// Time per output token, µs.
    pub tpot: Histogram<u64>,
    /// Whole latency of the answered, µs.
    pub e2e: Histogram<u64>,
}

impl Default for LlmEntry {
    fn default() -> Self {
        Self {
            requests: 0,
            answered: 0,
            streamed: 0,
            input_tokens: 0,
            output_tokens: 0,
            tokens_from_usage: 0,
            good: 0,
            ttft: histogram(),
            itl: histogram(),
            tpot: histogram(),
            e2e: histogram(),
        }
    }
}

impl LlmEntry {
    /// Records one LLM request: `answer` when it was answered in full (None when it failed),
    /// `latency` its whole latency, `good` whether it met the SLO.
    pub fn record(&mut self, answer: Option<&LlmSample>, latency: Duration, good: bool) {
        self.requests += 1;
        let Some(a) = answer else {
            return;
        };
        self.answered += 1;
        self.good += u64::from(good);
        self.input_tokens = self.input_tokens.saturating_add(a.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(a.output_tokens);
        self.tokens_from_usage += u64::from(a.from_usage);
        self.ttft.saturating_record(micros(a.ttft));
        self.e2e.saturating_record(micros(latency));
        if a.streamed {
            self.streamed += 1;
            for gap in &a.gaps {
                self.itl.saturating_record(micros(*gap));
            }
        }
        if let Some(tpot) = a.tpot(latency) {
            self.tpot.saturating_record(micros(tpot));
        }
    }

    /// Adds `other` (same bounds, so the sum is exact).
    pub fn add(&mut self, other: &LlmEntry) {
        self.requests += other.requests;
        self.answered += other.answered;
        self.streamed += other.streamed;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.tokens_from_usage += other.tokens_from_usage;
        self.good += other.good;
        for (mine, theirs) in [
            (&mut self.ttft, &other.ttft),
            (&mut self.itl, &other.itl),
            (&mut self.tpot, &other.tpot),
            (&mut self.e2e, &other.e2e),
        ] {
            let added = mine.add(theirs);
            debug_assert!(added.is_ok(), "LLM entries share bounds: {added:?}");
        }
    }

    /// Empties it in place (keeping the histograms' allocations).
    pub fn reset(&mut self) {
        self.requests = 0;
        self.answered = 0;
        self.streamed = 0;
        self.input_tokens = 0;
        self.output_tokens = 0;
        self.tokens_from_usage = 0;
        self.good = 0;
        for h in [&mut self.ttft, &mut self.itl, &mut self.tpot, &mut self.e2e] {
            h.reset();
        }
    }

    /// good / requests (0 with none).
    pub fn goodput(&self) -> f64 {
        loadgate_api::stats::error_rate(self.good, self.requests)
    }

    /// Output tokens per second over `seconds` (0 when none passed).
    pub fn output_tokens_per_second(&self, seconds: f64) -> f64 {
        if seconds > 0.0 {
            self.output_tokens as f64 / seconds
        } else {
            0.0
        }
    }

    /// The contract form over `seconds` of measured time, with its histograms.
    pub fn summary(&self, seconds: f64) -> LlmStats {
        LlmStats {
            requests: self.requests,
            answered: self.answered,
            streamed: self.streamed,
            ttft: timing(&self.ttft),
            itl: timing(&self.itl),
            tpot: timing(&self.tpot),
            e2e: timing(&self.e2e),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            tokens_from_usage: self.tokens_from_usage,
            output_tokens_per_second: self.output_tokens_per_second(seconds),
            good: self.good,
            goodput: self.goodput(),
        }
    }
}

/// One window's LLM answers as a runner's results carry them (histograms at 2 significant
/// digits, as the window's latencies are).
pub fn window(entry: &LlmEntry) -> WindowLlm {
    let coarse = |h: &Histogram<u64>| (!h.is_empty()).then(|| codec::encode(&codec::coarsen(h)));
    WindowLlm {
        answered: entry.answered,
        output_tokens: entry.output_tokens,
        ttft: coarse(&entry.ttft),
        tpot: coarse(&entry.tpot),
    }
}

/// Windows' LLM answers added up (runners' same second, or one runner's seconds coarsened into
/// one span): counts summed, histograms merged. `None` when no part has any.
///
/// # Errors
/// When a histogram does not decode or cannot be added.
pub fn add_windows(parts: &[&WindowLlm]) -> Result<Option<WindowLlm>, PartError> {
    if parts.is_empty() {
        return Ok(None);
    }
    let merged = |f: fn(&WindowLlm) -> Option<&String>| -> Result<Option<String>, PartError> {
        let mut sum: Option<Histogram<u64>> = None;
        for encoded in parts.iter().filter_map(|p| f(p)) {
            let h = codec::decode(encoded)?;
            match &mut sum {
                Some(s) => s.add(&h).map_err(PartError::OutOfBounds)?,
                None => sum = Some(h),
            }
        }
        Ok(sum.map(|h| codec::encode(&h)))
    };
    Ok(Some(WindowLlm {
        answered: parts.iter().fold(0u64, |a, p| a.saturating_add(p.answered)),
        output_tokens: parts
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.output_tokens)),
        ttft: merged(|p| p.ttft.as_ref())?,
        tpot: merged(|p| p.tpot.as_ref())?,
    }))
}

/// A window's LLM answers as a report's point: their TTFT and TPOT p95.
///
/// # Errors
/// When a histogram does not decode.
pub fn point(window: &WindowLlm) -> Result<PointLlm, PartError> {
    let p95 = |encoded: &Option<String>| -> Result<f64, PartError> {
        Ok(match encoded {
            Some(e) => codec::decode(e)?.value_at_quantile(0.95) as f64 / 1000.0,
            None => 0.0,
        })
    };
    Ok(PointLlm {
        answered: window.answered,
        output_tokens: window.output_tokens,
        ttft_p95_ms: p95(&window.ttft)?,
        tpot_p95_ms: p95(&window.tpot)?,
    })
}

/// A histogram's percentiles, ms, and its encoding.
pub fn timing(h: &Histogram<u64>) -> TimingStats {
    let at = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    TimingStats {
        count: h.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        histogram: Some(codec::encode(h)),
    }
}

/// The histogram of one timing of `name`'s LLM stats, decoded within the codec's bounds and
/// checked to hold `timing.count` values.
fn decode(name: &str, timing: &TimingStats) -> Result<Histogram<u64>, MergeError> {
    let encoded = timing
        .histogram
        .as_deref()
        .ok_or_else(|| MergeError::NoHistogram(name.to_owned()))?;
    let h = codec::decode(encoded).map_err(|source| MergeError::BadHistogram {
        name: name.to_owned(),
        source,
    })?;
    if h.len() != timing.count {
        return Err(MergeError::CountMismatch {
            name: name.to_owned(),
            histogram: h.len(),
            requests: timing.count,
            not_sent: 0,
        });
    }
    Ok(h)
}

/// The LLM figures of parts that ran side by side, over `seconds`: counts add up with overflow
/// checks (they may be forged), histograms merge exactly when every part carries them, else each
/// percentile is the worst part's (an upper bound: a budget can fail too eagerly, never pass
/// wrongly). `None` when no part has LLM figures.
///
/// # Errors
/// [`MergeError`] when a count overflows or a histogram is malformed or does not match its count.
pub fn merge(
    name: &str,
    parts: &[&LlmStats],
    seconds: f64,
) -> Result<Option<LlmStats>, MergeError> {
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    if parts.len() == 1 {
        for t in [&first.ttft, &first.itl, &first.tpot, &first.e2e] {
            if t.histogram.is_some() {
                decode(name, t)?;
            }
        }
        return Ok(Some((*first).clone()));
    }
    let sum = |what: &'static str, f: fn(&LlmStats) -> u64| {
        parts
            .iter()
            .try_fold(0u64, |s, p| s.checked_add(f(p)))
            .filter(|&s| s <= codec::MAX_COUNT)
            .ok_or_else(|| MergeError::Overflow {
                name: name.to_owned(),
                what,
            })
    };
    let requests = sum("LLM requests", |p| p.requests)?;
    let good = sum("good LLM requests", |p| p.good)?;
    let output_tokens = sum("output tokens", |p| p.output_tokens)?;
    let merged_timing = |f: fn(&LlmStats) -> &TimingStats| -> Result<TimingStats, MergeError> {
        if parts.iter().all(|p| f(p).histogram.is_some()) {
            let mut h = histogram();
            for p in parts {
                h.add(decode(name, f(p))?)
                    .map_err(|source| MergeError::Incompatible {
                        name: name.to_owned(),
                        source,
                    })?;
            }
            return Ok(timing(&h));
        }
        let worst = |g: fn(&TimingStats) -> f64| parts.iter().map(|p| g(f(p))).fold(0.0, f64::max);
        Ok(TimingStats {
            count: parts
                .iter()
                .map(|p| f(p).count)
                .fold(0, u64::saturating_add),
            p50_ms: worst(|t| t.p50_ms),
            p95_ms: worst(|t| t.p95_ms),
            p99_ms: worst(|t| t.p99_ms),
            histogram: None,
        })
    };
    Ok(Some(LlmStats {
        requests,
        answered: sum("answered LLM requests", |p| p.answered)?,
        streamed: sum("streamed LLM requests", |p| p.streamed)?,
        ttft: merged_timing(|p| &p.ttft)?,
        itl: merged_timing(|p| &p.itl)?,
        tpot: merged_timing(|p| &p.tpot)?,
        e2e: merged_timing(|p| &p.e2e)?,
        input_tokens: sum("input tokens", |p| p.input_tokens)?,
        output_tokens,
        tokens_from_usage: sum("answers counted by usage", |p| p.tokens_from_usage)?,
        output_tokens_per_second: if seconds > 0.0 {
            output_tokens as f64 / seconds
        } else {
            0.0
        },
        good,
        goodput: loadgate_api::stats::error_rate(good, requests),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ttft_ms: u64, gap_ms: u64, tokens: u64) -> (LlmSample, Duration) {
        let gaps = vec![Duration::from_millis(gap_ms); tokens.saturating_sub(1) as usize];
        let latency = Duration::from_millis(ttft_ms + gap_ms * tokens.saturating_sub(1));
        let sample = LlmSample {
            ttft: Duration::from_millis(ttft_ms),
            gaps,
            input_tokens: 100,
            output_tokens: tokens,
            from_usage: true,
            streamed: true,
        };
        (sample, latency)
    }

    #[test]
    fn a_stream_of_known_timings_reads_back_within_the_histograms_precision() {
        let mut entry = LlmEntry::default();
        let slo = Slo {
            ttft: Some(Duration::from_millis(200)),
            tpot: Some(Duration::from_millis(15)),
        };
        for i in 0..100u64 {
            // TTFT 150 ms for 90 requests, 300 ms for 10; gaps of 10 ms; 40 tokens.
            let (a, latency) = answer(if i < 90 { 150 } else { 300 }, 10, 40);
            entry.record(Some(&a), latency, slo.met_by(&a, latency));
        }
        entry.record(None, Duration::from_millis(5), false);
        let s = entry.summary(10.0);
        assert_eq!((s.requests, s.answered, s.streamed), (101, 100, 100));
        assert!((s.ttft.p50_ms - 150.0).abs() <= 0.15, "{}", s.ttft.p50_ms);
        assert!((s.ttft.p95_ms - 300.0).abs() <= 0.3, "{}", s.ttft.p95_ms);
        assert!((s.itl.p95_ms - 10.0).abs() <= 0.01 && s.itl.count == 3900);
        assert!((s.tpot.p50_ms - 10.0).abs() <= 0.01, "{}", s.tpot.p50_ms);
        assert_eq!((s.output_tokens, s.input_tokens), (4000, 10_000));
        assert_eq!(s.output_tokens_per_second, 400.0);
        assert_eq!(s.good, 90, "the 300 ms first tokens miss the 200 ms SLO");
        assert!((s.goodput - 90.0 / 101.0).abs() < 1e-12);
    }

    #[test]
    fn an_answer_that_did_not_stream_has_ttft_but_no_itl_or_tpot() {
        let mut entry = LlmEntry::default();
        let a = LlmSample {
            ttft: Duration::from_millis(800),
            output_tokens: 50,
            from_usage: true,
            ..LlmSample::default()
        };
        assert_eq!(a.tpot(Duration::from_millis(800)), None);
        entry.record(Some(&a), Duration::from_millis(800), true);
        let s = entry.summary(1.0);
        assert_eq!(
            (s.ttft.count, s.itl.count, s.tpot.count, s.streamed),
            (1, 0, 0, 0)
        );
    }

    #[test]
    fn runners_merge_into_the_percentiles_of_one_that_saw_everything() {
        let (mut one, mut two, mut all) = (
            LlmEntry::default(),
            LlmEntry::default(),
            LlmEntry::default(),
        );
        for i in 0..200u64 {
            let (a, latency) = answer(100 + i, 5 + i % 7, 10 + i % 30);
            let part = if i % 3 == 0 { &mut one } else { &mut two };
            part.record(Some(&a), latency, i % 2 == 0);
            all.record(Some(&a), latency, i % 2 == 0);
        }
        let merged = merge("chat", &[&one.summary(10.0), &two.summary(10.0)], 10.0)
            .unwrap()
            .unwrap();
        let mut want = all.summary(10.0);
        // Histogram encodings of equal contents may differ in their byte layout.
        for t in [&mut want.ttft, &mut want.itl, &mut want.tpot, &mut want.e2e] {
            t.histogram = None;
        }
        let mut got = merged.clone();
        for t in [&mut got.ttft, &mut got.itl, &mut got.tpot, &mut got.e2e] {
            t.histogram = None;
        }
        assert_eq!(got, want);
    }

    #[test]
    fn forged_llm_figures_are_errors_not_panics() {
        let mut entry = LlmEntry::default();
        let (a, latency) = answer(100, 5, 10);
        entry.record(Some(&a), latency, true);
        let good = entry.summary(1.0);
        let mut lying = good.clone();
        lying.ttft.count = 7;
        assert!(matches!(
            merge("chat", &[&good, &lying], 1.0),
            Err(MergeError::CountMismatch { .. })
        ));
        let mut huge = good.clone();
        huge.output_tokens = u64::MAX;
        assert!(matches!(
            merge("chat", &[&good, &huge], 1.0),
            Err(MergeError::Overflow { .. })
        ));
        let mut garbage = good.clone();
        garbage.itl.histogram = Some("not base64!".into());
        assert!(merge("chat", &[&good, &garbage], 1.0).is_err());
    }
}
