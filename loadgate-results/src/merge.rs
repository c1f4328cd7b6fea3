//! Merging run summaries from parallel runners (the operator's `parallelism` pods) into one:
//! counts add up, and latency histograms, carried in each summary, are added so the merged
//! percentiles are exact. Averaging per-runner p95s would be wrong.
//!
//! Summaries may be forged (any user of the namespace can run a pod that looks like a runner),
//! so nothing here panics or allocates without bound on hostile input: histograms decode through
//! the bounded [`codec::decode`], each must hold as many latencies as its stats count requests sent,
//! and counts add up with overflow checks.

use crate::capacity;
use crate::checked::{MergeError, decode};
use crate::codec::{self, encode};
use crate::{failures, gate};
use loadgate_api::capacity::CurvePoint;
use loadgate_api::load::Thresholds;
use loadgate_api::stats::{LlmStats, RequestStats};
use loadgate_api::summary::{Abort, QualityResult, RunSummary};
use std::collections::BTreeMap;

/// A summary that does not fit a termination message even at its most compact.
#[derive(Debug, thiserror::Error)]
#[error(
    "the run summary is {bytes} bytes even with a coarse total and no per-task histograms (limit {limit})"
)]
pub struct TooLarge {
    /// Its most compact size.
    pub bytes: usize,
    /// The limit.
    pub limit: usize,
}

/// Kubernetes keeps at most this many bytes of a container's termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The summary as compact JSON that fits `limit` bytes, for a pod's termination message (the
/// channel from runner pods to the operator, which needs no API access or RBAC for runners).
/// The total's histogram is always kept at full precision, since the profile's verdict rests on
/// it; when the whole does not fit, the per-task histograms are re-recorded at 2 significant
/// digits (1% resolution), and if that is still too big they are dropped (per-task latency
/// budgets then cannot be merged, and the operator says so); LLM tasks' timing histograms go
/// first, then their LLM figures, then the total's LLM histograms (merged LLM percentiles are
/// then the worst runner's); then a ramp's curve is dropped (the profile then has no capacity in
/// the status).
///
/// # Errors
/// When even the summary without per-task histograms is larger than `limit`.
pub fn compact_summary(summary: &RunSummary, limit: usize) -> Result<String, TooLarge> {
    let to_json =
        |s: &RunSummary| serde_json::to_string(s).expect("a summary serialises; this is a bug");
    let full = to_json(summary);
    if full.len() <= limit {
        return Ok(full);
    }
    let mut coarse = summary.clone();
    // First the connection times' histograms: their percentiles stay, and the full results
    // frame carries them for an exact merge.
    if let Some(c) = &mut coarse.connections {
        c.connect_histogram = None;
        c.tls_histogram = None;
    }
    // LLM tasks' timing histograms next: their percentiles stay, and the results frame carries
    // them whole (the operator merges from it).
    for task in &mut coarse.tasks {
        drop_llm_histograms(task);
    }
    for task in &mut coarse.tasks {
        task.histogram = decode(task).ok().map(|h| encode(&codec::coarsen(&h)));
    }
    let coarse_json = to_json(&coarse);
    if coarse_json.len() <= limit {
        return Ok(coarse_json);
    }
    for task in &mut coarse.tasks {
        task.histogram = None;
    }
    let bare = to_json(&coarse);
    if bare.len() <= limit {
        return Ok(bare);
    }
    // Then the tasks' LLM figures (the total keeps its own): merged task figures are then
    // absent, never those of some runners passed off as all.
    for task in &mut coarse.tasks {
        task.llm = None;
    }
    let bare_llm = to_json(&coarse);
    if bare_llm.len() <= limit {
        return Ok(bare_llm);
    }
    // Then the total's LLM histograms: merged LLM percentiles are then the worst runner's, an
    // upper bound (a budget can fail too eagerly, never pass wrongly).
    drop_llm_histograms(&mut coarse.total);
    let bare_total = to_json(&coarse);
    if bare_total.len() <= limit {
        return Ok(bare_total);
    }
    // Then the ramp's curve: the operator reads the capacity from it, and says it has none.
    coarse.curve.clear();
    coarse.capacity = None;
    let flat = to_json(&coarse);
    if flat.len() <= limit {
        return Ok(flat);
    }
    // Last resort (a wide spread, e.g. fast 429s and 30 s successes): the total at 2 significant
    // digits too. A lone runner's own percentiles stay exact (merge keeps them); merged
    // percentiles of parallel runners are then within 1%.
    coarse.total.histogram = decode(&coarse.total)
        .ok()
        .map(|h| encode(&codec::coarsen(&h)));
    let coarsest = to_json(&coarse);
    if coarsest.len() <= limit {
        Ok(coarsest)
    } else {
        Err(TooLarge {
            bytes: coarsest.len(),
            limit,
        })
    }
}

/// Leaves the LLM timings' percentiles of `stats` and drops their histograms.
fn drop_llm_histograms(stats: &mut RequestStats) {
    if let Some(llm) = &mut stats.llm {
        for t in [&mut llm.ttft, &mut llm.itl, &mut llm.tpot, &mut llm.e2e] {
            t.histogram = None;
        }
    }
}

/// The parts' counts added up and their rates over `seconds` (the runners ran side by side);
/// percentiles are left at 0 for the caller to fill.
fn summed_counts(parts: &[&RequestStats], seconds: f64) -> Result<RequestStats, MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?;
    let sum = |what: &'static str, count: fn(&RequestStats) -> u64| {
        parts
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(count(p)))
            .ok_or_else(|| MergeError::Overflow {
                name: first.name.clone(),
                what,
            })
    };
    // At most MAX_COUNT, so the merged histogram (which holds as many) can be encoded.
    let requests = sum("requests", |p| p.requests)?;
    if requests > codec::MAX_COUNT {
        return Err(MergeError::Overflow {
            name: first.name.clone(),
            what: "requests",
        });
    }
    let failures = sum("failures", |p| p.failures)?;
    let not_sent = sum("notSent", |p| p.not_sent)?;
    let embeddings = sum("embeddings", |p| p.embeddings)?;
    // Means are over sent requests (never-sent ones have no latency).
    let sent = |p: &RequestStats| p.requests.saturating_sub(p.not_sent) as f64;
    let latency_sum: f64 = parts.iter().map(|p| p.mean_ms * sent(p)).sum();
    let sent_total: f64 = parts.iter().map(|p| sent(p)).sum();
    Ok(RequestStats {
        name: first.name.clone(),
        method: first.method.clone(),
        requests,
        failures,
        embeddings,
        not_sent,
        error_rate: loadgate_api::stats::error_rate(failures, requests),
        rps: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        mean_ms: if sent_total == 0.0 {
            0.0
        } else {
            latency_sum / sent_total
        },
        p50_ms: 0.0,
        p90_ms: 0.0,
        p95_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
        histogram: None,
        llm: merged_llm(parts, seconds)?,
    })
}

/// The LLM figures of `parts` added up ([`crate::llm::merge`]); `None` when none has any, and
/// when only some do (a termination message that had to drop a task's): figures of some runners
/// would pass for all of them.
fn merged_llm(parts: &[&RequestStats], seconds: f64) -> Result<Option<LlmStats>, MergeError> {
    let name = parts.first().map_or("", |p| p.name.as_str());
    let llm: Vec<&LlmStats> = parts.iter().filter_map(|p| p.llm.as_ref()).collect();
    if llm.len() < parts.len() {
        return Ok(None);
    }
    crate::llm::merge(name, &llm, seconds)
}

/// Adds `stats` together: counts add up, histograms are added, so percentiles are exact. A lone
/// part is kept as its runner measured it (its percentiles are exact even when its histogram
/// was coarsened to fit a termination message).
fn merge_stats(parts: &[&RequestStats], seconds: f64) -> Result<RequestStats, MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?;
    if parts.len() == 1 {
        decode(first)?;
        merged_llm(parts, seconds)?;
        return Ok((*first).clone());
    }
    // Summed first: with the totals known to fit, no bucket of the sum can overflow.
    let merged = summed_counts(parts, seconds)?;
    let mut histogram = decode(first)?;
    for part in &parts[1..] {
        histogram
            .add(decode(part)?)
            .map_err(|source| MergeError::Incompatible {
                name: part.name.clone(),
                source,
            })?;
    }
    let at = |q: f64| {
        if merged.requests == 0 {
            0.0
        } else {
            histogram.value_at_quantile(q) as f64 / 1000.0
        }
    };
    Ok(RequestStats {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        histogram: Some(encode(&histogram)),
        ..merged
    })
}

/// Adds `stats` of which some carry no histogram (a termination message had to drop it): counts
/// add up exactly, and each percentile is the largest of the parts' — an upper bound, since a
/// quantile of a union never exceeds the largest quantile of its parts — so a latency budget
/// judged on it can fail too eagerly but never pass wrongly.
fn merge_stats_bounded(parts: &[&RequestStats], seconds: f64) -> Result<RequestStats, MergeError> {
    let worst = |f: fn(&RequestStats) -> f64| parts.iter().map(|p| f(p)).fold(0.0, f64::max);
    Ok(RequestStats {
        p50_ms: worst(|p| p.p50_ms),
        p90_ms: worst(|p| p.p90_ms),
        p95_ms: worst(|p| p.p95_ms),
        p99_ms: worst(|p| p.p99_ms),
        max_ms: worst(|p| p.max_ms),
        ..summed_counts(parts, seconds)?
    })
}

/// One summary of runners that ran the same profile side by side, with the verdict re-evaluated
/// against `thresholds` on the merged numbers.
///
/// # Errors
/// [`MergeError`] when there is nothing to merge or a histogram is missing or malformed.
pub fn merge(summaries: &[RunSummary], thresholds: &Thresholds) -> Result<RunSummary, MergeError> {
    let first = summaries.first().ok_or(MergeError::Empty)?;
    let seconds = measured_span(summaries);
    let totals: Vec<&RequestStats> = summaries.iter().map(|s| &s.total).collect();
    let total = merge_stats(&totals, seconds)?;
    let mut by_task: BTreeMap<(String, String), Vec<&RequestStats>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for task in summaries.iter().flat_map(|s| &s.tasks) {
        let key = (task.method.clone(), task.name.clone());
        if !by_task.contains_key(&key) {
            order.push(key.clone());
        }
        by_task.entry(key).or_default().push(task);
    }
    let tasks = order
        .iter()
        .map(|key| {
            let parts = &by_task[key];
            if parts.iter().all(|p| p.histogram.is_some()) {
                merge_stats(parts, seconds)
            } else {
                merge_stats_bounded(parts, seconds)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut violations = gate::evaluate(&total, thresholds, &format!("profile {}", first.profile));
    let failure_reasons = failures::merge(summaries)?;
    failures::name_top_reason(&mut violations, &failure_reasons);
    let interrupted = summaries.iter().any(|s| s.interrupted);
    let aborted = merged_abort(summaries);
    let quality = merged_quality(summaries);
    if let Some(violation) = quality
        .as_ref()
        .and_then(|q| q.violation(&format!("profile {}", first.profile)))
    {
        violations.push(violation);
    }
    if let Some(abort) = &aborted {
        violations.push(abort.violation(&format!("profile {}", first.profile), thresholds));
    }
    Ok(RunSummary {
        profile: first.profile.clone(),
        duration_seconds: seconds,
        users: summaries
            .iter()
            .try_fold(0u32, |sum, s| sum.checked_add(s.users))
            .ok_or_else(|| MergeError::Overflow {
                name: first.profile.clone(),
                what: "users",
            })?,
        total,
        tasks,
        passed: violations.is_empty() && !interrupted,
        violations,
        interrupted,
        start_delay: None,
        started_at_ms: summaries.iter().filter_map(|s| s.started_at_ms).min(),
        results: None,
        capacity: curve_of_one(summaries).and_then(|c| capacity::knee(&c, thresholds)),
        curve: curve_of_one(summaries).unwrap_or_default(),
        warmup_seconds: summaries
            .iter()
            .filter_map(|s| s.warmup_seconds)
            .filter(|s| s.is_finite())
            .reduce(f64::max),
        aborted,
        quality,
        connections: crate::dials::merge(summaries.iter().filter_map(|s| s.connections.as_ref())),
        // Every runner read the same dataset.
        dataset: summaries.iter().find_map(|s| s.dataset.clone()),
        failure_reasons,
    })
}

/// The seconds the runners' measured load spans together, which every rate is over: from the
/// first runner's measured start (its start plus its warm-up) to the last one's end. Runners
/// that began apart (a pod scheduled late) measured `n` requests over more than the longest
/// one's own duration; dividing by that duration would inflate rps (and pass `minRps`) by the
/// start skew. Without every runner's start, the longest duration (a lone runner's own).
fn measured_span(summaries: &[RunSummary]) -> f64 {
    let longest = summaries
        .iter()
        .map(|s| s.duration_seconds)
        .filter(|d| d.is_finite())
        .fold(0.0, f64::max);
    if summaries.len() < 2 {
        return longest;
    }
    let mut span: Option<(f64, f64)> = None;
    for s in summaries {
        let (Some(started), true) = (s.started_at_ms, s.duration_seconds.is_finite()) else {
            return longest;
        };
        let warmup = s.warmup_seconds.filter(|w| w.is_finite()).unwrap_or(0.0);
        let begin = started as f64 / 1000.0 + warmup.max(0.0);
        let end = begin + s.duration_seconds.max(0.0);
        span = Some(span.map_or((begin, end), |(b, e)| (b.min(begin), e.max(end))));
    }
    // A span longer than a day past the longest run is a forged clock, not skew: keep the
    // longest run's own duration then.
    span.map(|(b, e)| e - b)
        .filter(|d| d.is_finite() && *d >= longest && *d <= longest + 86_400.0)
        .unwrap_or(longest)
}

/// Runners' quality checks added up: samples and failures summed, the lowest cosine kept; `None`
/// when no runner checked (a count that overflows reads as the most a runner could send).
fn merged_quality(summaries: &[RunSummary]) -> Option<QualityResult> {
    let parts: Vec<&QualityResult> = summaries
        .iter()
        .filter_map(|s| s.quality.as_ref())
        .collect();
    let first = parts.first()?;
    Some(QualityResult {
        sampled: parts.iter().fold(0u64, |n, q| n.saturating_add(q.sampled)),
        bad: parts.iter().fold(0u64, |n, q| n.saturating_add(q.bad)),
        worst_cosine: parts
            .iter()
            .filter_map(|q| q.worst_cosine)
            .filter(|c| c.is_finite())
            .reduce(f64::min),
        min_cosine: first.min_cosine,
    })
}

/// Longest abort message kept from a runner's summary (which may be forged).
const MAX_ABORT_MESSAGE: usize = 240;

/// Runners side by side each stop on their own windows: the profile was aborted when any was,
/// first by the earliest (its reason), and it saved only what every runner left unrun (0 when
/// one ran to the end).
fn merged_abort(summaries: &[RunSummary]) -> Option<Abort> {
    let first = summaries
        .iter()
        .filter_map(|s| s.aborted.as_ref())
        .filter(|a| a.after_seconds.is_finite() && a.saved_seconds.is_finite())
        .min_by(|a, b| a.after_seconds.total_cmp(&b.after_seconds))?;
    let saved = summaries
        .iter()
        .map(|s| s.aborted.as_ref().map_or(0.0, |a| a.saved_seconds.max(0.0)))
        .fold(f64::INFINITY, f64::min);
    let mut message = first.message.clone();
    if message.len() > MAX_ABORT_MESSAGE {
        let mut end = MAX_ABORT_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    Some(Abort {
        after_seconds: first.after_seconds,
        saved_seconds: saved,
        message,
    })
}

/// A lone runner's curve, its points with non-finite figures left out; `None` for several
/// runners: their summaries carry no curve (a shard's users are a share), their steps add up
/// in [`capacity::merge_steps`] from their results frames.
fn curve_of_one(summaries: &[RunSummary]) -> Option<Vec<CurvePoint>> {
    let [only] = summaries else {
        return None;
    };
    Some(
        only.curve
            .iter()
            .filter(|p| {
                [p.seconds, p.rps, p.p50_ms, p.p95_ms, p.p99_ms, p.error_rate]
                    .iter()
                    .all(|v| v.is_finite() && *v >= 0.0)
            })
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Outcome, Sample};
    use crate::stats::Stats;
    use hdrhistogram::Histogram;
    use std::time::Duration;

    fn summary(stats: &Stats, seconds: f64) -> RunSummary {
        RunSummary {
            profile: "p".into(),
            duration_seconds: seconds,
            users: 2,
            total: stats.total.summary(seconds),
            tasks: stats.tasks.iter().map(|t| t.summary(seconds)).collect(),
            violations: vec![],
            passed: true,
            interrupted: false,
            start_delay: None,
            started_at_ms: None,
            results: None,
            curve: Vec::new(),
            capacity: None,
            aborted: None,
            warmup_seconds: None,
            quality: None,
            connections: None,
            dataset: None,
            failure_reasons: Vec::new(),
        }
    }

    /// Before: two shards of 10 s each, begun 5 s apart, were divided by 10 s (the longest
    /// pod's own duration), though their load spanned 15 s: rps read 20 instead of 13.3.
    #[test]
    fn sharded_rps_is_over_the_span_from_the_first_start_to_the_last_end() {
        let tasks = [("a".to_owned(), "GET".to_owned())];
        let (mut one, mut two) = (Stats::new(&tasks), Stats::new(&tasks));
        let sample = Sample {
            task: 0,
            latency: Duration::from_millis(10),
            outcome: Outcome::Ok { bytes: 1 },
            start_delay: None,
            quality: None,
            texts: 0,
            dial: None,
            llm: None,
        };
        for _ in 0..100 {
            one.record(&sample);
            two.record(&sample);
        }
        let (mut a, mut b) = (summary(&one, 10.0), summary(&two, 10.0));
        a.started_at_ms = Some(1_000_000);
        b.started_at_ms = Some(1_005_000);
        let budgets = Thresholds {
            min_rps: Some(15.0),
            ..Thresholds::default()
        };
        let merged = merge(&[a.clone(), b.clone()], &budgets).unwrap();
        assert!((merged.duration_seconds - 15.0).abs() < 1e-9);
        assert!(
            (merged.total.rps - 200.0 / 15.0).abs() < 1e-9,
            "{}",
            merged.total.rps
        );
        assert_eq!(merged.violations[0].metric, "minRps");
        // Warm-ups that end together measure the same span; a runner without a start falls
        // back to the longest duration.
        a.warmup_seconds = Some(5.0);
        let merged = merge(&[a.clone(), b.clone()], &budgets).unwrap();
        assert!((merged.duration_seconds - 10.0).abs() < 1e-9);
        b.started_at_ms = None;
        assert!((merge(&[a, b], &budgets).unwrap().duration_seconds - 10.0).abs() < 1e-9);
    }

    #[test]
    fn merged_percentiles_equal_those_of_one_runner_seeing_everything() {
        let tasks = [("a".to_owned(), "GET".to_owned())];
        let (mut one, mut two, mut all) =
            (Stats::new(&tasks), Stats::new(&tasks), Stats::new(&tasks));
        for i in 0..5_000u64 {
            // Two runners with very different latency profiles.
            let ms = if i % 2 == 0 {
                5 + i % 50
            } else {
                200 + i % 700
            };
            let sample = Sample {
                task: 0,
                latency: Duration::from_millis(ms),
                outcome: Outcome::Ok { bytes: 1 },
                start_delay: None,
                quality: None,
                texts: 0,
                dial: None,
                llm: None,
            };
            if i % 2 == 0 {
                one.record(&sample)
            } else {
                two.record(&sample)
            }
            all.record(&sample);
        }
        let merged = merge(
            &[summary(&one, 10.0), summary(&two, 10.0)],
            &Thresholds {
                p95_ms: Some(100.0),
                ..Thresholds::default()
            },
        )
        .unwrap();
        let truth = all.total.summary(10.0);
        assert_eq!(
            (
                merged.total.requests,
                merged.total.p50_ms,
                merged.total.p95_ms,
                merged.total.p99_ms,
                merged.total.max_ms
            ),
            (
                truth.requests,
                truth.p50_ms,
                truth.p95_ms,
                truth.p99_ms,
                truth.max_ms
            )
        );
        assert!((merged.total.mean_ms - truth.mean_ms).abs() < 1e-9);
        assert_eq!(merged.total.rps, 500.0);
        assert!(!merged.passed && merged.violations[0].message.starts_with("p95"));
        // Averaging the runners' p95s would have said something else entirely.
        let averaged = (one.total.percentile_ms(0.95) + two.total.percentile_ms(0.95)) / 2.0;
        assert!((averaged - truth.p95_ms).abs() > 100.0);
        // Small enough for a 4 KiB termination message (with the summary around it).
        let encoded = merged.total.histogram.as_ref().unwrap().len();
        println!("merged histogram: {encoded} bytes of base64");
        assert!(encoded < 2_048, "histogram is {encoded} bytes of base64");
    }

    #[test]
    fn a_wide_spread_still_fits_and_a_lone_runner_keeps_exact_percentiles() {
        // The quickstart's spike on a slow machine: ~95k fast 429s, a few hundred 10-30 s answers.
        let names = vec![("embed".to_owned(), "POST".to_owned())];
        let mut stats = Stats::new(&names);
        // Irregular latencies (xorshift), as a real run's are: regular ones deflate too well.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // (count, lowest µs, spread µs): the 429s, then the slow successes.
        for (count, low, spread) in [(95_000, 100, 60_000), (400, 10_000_000, 20_000_000)] {
            for _ in 0..count {
                stats.record(&Sample {
                    task: 0,
                    latency: Duration::from_micros(low + next() % spread),
                    outcome: Outcome::Ok { bytes: 1 },
                    start_delay: None,
                    quality: None,
                    texts: 0,
                    dial: None,
                    llm: None,
                });
            }
        }
        let exact = summary(&stats, 30.0);
        let compact = compact_summary(&exact, TERMINATION_MESSAGE_LIMIT).unwrap();
        assert!(
            compact.len() <= TERMINATION_MESSAGE_LIMIT,
            "{}",
            compact.len()
        );
        let back: RunSummary = serde_json::from_str(&compact).unwrap();
        assert_ne!(
            back.total.histogram, exact.total.histogram,
            "the total was coarsened"
        );
        let merged = merge(std::slice::from_ref(&back), &Thresholds::default()).unwrap();
        assert_eq!(
            (
                merged.total.p95_ms,
                merged.total.p99_ms,
                merged.total.max_ms
            ),
            (exact.total.p95_ms, exact.total.p99_ms, exact.total.max_ms)
        );
        // Two such runners merge within the coarse histogram's 1%.
        let two = merge(&[back.clone(), back], &Thresholds::default()).unwrap();
        assert_eq!(two.total.requests, 2 * exact.total.requests);
        let error = (two.total.p99_ms - exact.total.p99_ms).abs() / exact.total.p99_ms;
        assert!(
            error <= 0.01,
            "p99 {} vs {}",
            two.total.p99_ms,
            exact.total.p99_ms
        );
    }

    #[test]
    fn compact_summary_fits_a_termination_message() {
        let names: Vec<(String, String)> = (0..3)
            .map(|i| (format!("task {i}"), "POST".to_owned()))
            .collect();
        let mut stats = Stats::new(&names);
        // A wide spread (1 ms .. 4 s) in every task: many distinct buckets per histogram.
        for i in 0..60_000u64 {
            stats.record(&Sample {
                task: (i % 3) as usize,
                latency: Duration::from_micros(1_000 + (i * 7_919) % 4_000_000),
                outcome: Outcome::Ok { bytes: 1 },
                start_delay: None,
                quality: None,
                texts: 0,
                dial: None,
                llm: None,
            });
        }
        let full = serde_json::to_string(&summary(&stats, 60.0)).unwrap();
        let compact = compact_summary(&summary(&stats, 60.0), TERMINATION_MESSAGE_LIMIT).unwrap();
        println!(
            "summary: {} bytes full, {} compact",
            full.len(),
            compact.len()
        );
        assert!(compact.len() <= TERMINATION_MESSAGE_LIMIT);
        let back: RunSummary = serde_json::from_str(&compact).unwrap();
        // The total keeps its full-precision histogram, so merged profile percentiles stay exact.
        assert_eq!(back.total.histogram, summary(&stats, 60.0).total.histogram);
        let merged = merge(&[back.clone(), back], &Thresholds::default()).unwrap();
        assert_eq!(merged.total.requests, 120_000);
        assert_eq!(merged.tasks.len(), 3);
    }

    #[test]
    fn compact_summary_of_llm_tasks_fits_and_merges_their_totals() {
        let names: Vec<(String, String)> = (0..4)
            .map(|i| (format!("chat {i}"), "POST".to_owned()))
            .collect();
        let mut stats = Stats::new(&names).measuring_llm(vec![true; 4], Default::default());
        for i in 0..20_000u64 {
            let answer = crate::sample::LlmSample {
                ttft: Duration::from_micros(50_000 + (i * 7_919) % 900_000),
                gaps: vec![Duration::from_micros(5_000 + i % 20_000); 20],
                input_tokens: 100,
                output_tokens: 21,
                from_usage: true,
                streamed: true,
            };
            stats.record(&Sample {
                task: (i % 4) as usize,
                latency: Duration::from_micros(200_000 + (i * 7_919) % 2_000_000),
                outcome: Outcome::Ok { bytes: 1 },
                start_delay: None,
                quality: None,
                texts: 0,
                dial: None,
                llm: Some(Box::new(answer)),
            });
        }
        let full = summary(&stats, 60.0);
        let compact = compact_summary(&full, TERMINATION_MESSAGE_LIMIT).unwrap();
        assert!(
            compact.len() <= TERMINATION_MESSAGE_LIMIT,
            "{}",
            compact.len()
        );
        let back: RunSummary = serde_json::from_str(&compact).unwrap();
        let merged = merge(&[back.clone(), back], &Thresholds::default()).unwrap();
        let llm = merged.total.llm.expect("the total keeps its LLM figures");
        assert_eq!((llm.answered, llm.output_tokens), (40_000, 840_000));
        assert!(
            back_has_total_histograms(&compact),
            "the total keeps its LLM histograms while they fit"
        );
        assert_eq!(
            llm.ttft.p95_ms,
            full.total.llm.as_ref().unwrap().ttft.p95_ms
        );
        // A task whose figures one runner had to drop has none merged, not half of them.
        assert!(
            merged
                .tasks
                .iter()
                .all(|t| t.llm.is_none() || t.llm.as_ref().unwrap().answered == 10_000)
        );
        let with = |drop: bool| {
            let mut s = full.clone();
            if drop {
                s.tasks[0].llm = None;
            }
            s
        };
        let mixed = merge(&[with(false), with(true)], &Thresholds::default()).unwrap();
        assert!(mixed.tasks[0].llm.is_none());
        assert_eq!(mixed.tasks[1].llm.as_ref().unwrap().answered, 10_000);
    }

    fn back_has_total_histograms(compact: &str) -> bool {
        let back: RunSummary = serde_json::from_str(compact).unwrap();
        back.total.llm.is_some_and(|l| l.ttft.histogram.is_some())
    }

    fn one_task_stats(requests: u64, not_sent: u64) -> Stats {
        let mut stats = Stats::new(&[("a".to_owned(), "GET".to_owned())]);
        for i in 0..requests {
            let outcome = if i < not_sent {
                Outcome::NotSent(crate::sample::NotSent::QueueFull)
            } else {
                Outcome::Ok { bytes: 1 }
            };
            stats.record(&Sample {
                task: 0,
                latency: Duration::from_millis(1 + i % 20),
                outcome,
                start_delay: None,
                quality: None,
                texts: 0,
                dial: None,
                llm: None,
            });
        }
        stats
    }

    #[test]
    fn not_sent_requests_add_up_and_fail_the_error_budget() {
        let (one, two) = (one_task_stats(100, 30), one_task_stats(50, 0));
        let (a, b) = (summary(&one, 10.0), summary(&two, 10.0));
        assert_eq!((a.total.not_sent, a.tasks[0].not_sent), (30, 30));
        assert_eq!((a.total.failures, a.total.requests), (30, 100));
        let budget = Thresholds {
            max_error_rate: Some(0.05),
            ..Thresholds::default()
        };
        let merged = merge(&[a.clone(), b.clone()], &budget).unwrap();
        assert_eq!(
            (
                merged.total.requests,
                merged.total.failures,
                merged.total.not_sent
            ),
            (150, 30, 30)
        );
        assert_eq!(merged.tasks[0].not_sent, 30);
        assert!(!merged.passed && merged.violations[0].metric == "maxErrorRate");
        // Without per-task histograms (a trimmed termination message) the counts still add up.
        let (mut a, mut b) = (a, b);
        a.tasks[0].histogram = None;
        b.tasks[0].histogram = None;
        b.tasks[0].not_sent = 4;
        let merged = merge(&[a, b], &budget).unwrap();
        assert_eq!(merged.tasks[0].not_sent, 34);
        // Omitted from JSON when 0, and old summaries without it read as 0.
        let json = serde_json::to_value(summary(&two, 1.0)).unwrap();
        assert!(json["total"].get("notSent").is_none(), "{json}");
        let old: RequestStats = serde_json::from_value(json["total"].clone()).unwrap();
        assert_eq!(old.not_sent, 0);
        let json = serde_json::to_value(summary(&one, 1.0)).unwrap();
        assert_eq!(json["total"]["notSent"], 30);
    }

    /// Never-sent requests have no latency: the merged mean and percentiles are those of the 70
    /// requests sent (1 + i % 20 ms for i in 30..100), not dragged down by the 30 shed ones.
    #[test]
    fn not_sent_requests_have_no_latency() {
        let merged = merge(
            &[summary(&one_task_stats(100, 30), 10.0)],
            &Thresholds::default(),
        );
        let total = merged.unwrap().total;
        let sent: Vec<f64> = (30..100).map(|i| (1 + i % 20) as f64).collect();
        let mean = sent.iter().sum::<f64>() / sent.len() as f64;
        assert!(
            (total.mean_ms - mean).abs() < 0.01,
            "{} vs {mean}",
            total.mean_ms
        );
        assert!(total.p50_ms >= 10.0 && total.max_ms >= 20.0, "{total:?}");
        // A forged summary claiming more never-sent requests than requests does not merge.
        let mut forged = summary(&one_task_stats(10, 0), 1.0);
        forged.total.not_sent = 11;
        let err = merge(&[forged], &Thresholds::default()).unwrap_err();
        assert!(
            matches!(err, MergeError::CountMismatch { not_sent: 11, .. }),
            "{err}"
        );
    }

    /// A runner's summary may be forged: its abort message is cut to a bound before it reaches a
    /// status, non-finite abort times are ignored, and quality counts saturate, never wrap.
    #[test]
    fn forged_gate_fields_are_bounded_when_merged() {
        let stats = one_task_stats(10, 0);
        let mut forged = summary(&stats, 1.0);
        forged.aborted = Some(Abort {
            after_seconds: 3.0,
            saved_seconds: 7.0,
            message: "é".repeat(10_000),
        });
        forged.quality = Some(QualityResult {
            sampled: u64::MAX,
            bad: u64::MAX,
            worst_cosine: Some(f64::NAN),
            min_cosine: 0.9999,
        });
        let mut nan = summary(&stats, 1.0);
        nan.aborted = Some(Abort {
            after_seconds: f64::NAN,
            saved_seconds: 1.0,
            message: "forged".into(),
        });
        nan.quality = Some(QualityResult {
            sampled: 5,
            bad: 1,
            worst_cosine: Some(0.5),
            min_cosine: 0.9999,
        });
        let merged = merge(&[forged, nan], &Thresholds::default()).unwrap();
        let abort = merged.aborted.unwrap();
        assert!(
            abort.message.len() <= MAX_ABORT_MESSAGE,
            "{}",
            abort.message.len()
        );
        assert_eq!(abort.after_seconds, 3.0, "the NaN abort time is not taken");
        let quality = merged.quality.unwrap();
        assert_eq!((quality.sampled, quality.bad), (u64::MAX, u64::MAX));
        assert_eq!(quality.worst_cosine, Some(0.5), "a NaN cosine is not kept");
        assert!(!merged.passed);
    }

    #[test]
    fn forged_counts_are_errors_not_panics() {
        let stats = one_task_stats(10, 0);
        let mut forged = summary(&stats, 1.0);
        forged.total.requests = 11;
        let err = merge(&[forged], &Thresholds::default()).unwrap_err();
        assert!(
            matches!(
                err,
                MergeError::CountMismatch {
                    histogram: 10,
                    requests: 11,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.category(), "count_mismatch");
        assert!(
            err.to_string()
                .contains("holds 10 latencies but the stats count 11"),
            "{err}"
        );
        // Counts past what a histogram encodes (with a histogram that agrees): an error.
        let mut h = Histogram::<u64>::new_with_bounds(1, crate::codec::MAX_MICROS, 3).unwrap();
        h.record_n(1_000, codec::MAX_COUNT).unwrap();
        let mut huge = summary(&stats, 1.0);
        huge.total.requests = codec::MAX_COUNT;
        huge.total.histogram = Some(encode(&h));
        huge.tasks.clear();
        let err = merge(&[huge.clone(), huge.clone()], &Thresholds::default()).unwrap_err();
        assert!(
            matches!(
                err,
                MergeError::Overflow {
                    what: "requests",
                    ..
                }
            ),
            "{err}"
        );
        let mut users = summary(&stats, 1.0);
        users.users = u32::MAX;
        let err = merge(&[users.clone(), users], &Thresholds::default()).unwrap_err();
        assert!(
            matches!(err, MergeError::Overflow { what: "users", .. }),
            "{err}"
        );
        // A histogram that does not decode names the stats and the reason.
        let mut garbage = summary(&stats, 1.0);
        garbage.total.histogram = Some("HISTogramAAA".into());
        let err = merge(&[garbage], &Thresholds::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("histogram of \"Aggregated\" does not decode: V2 + DEFLATE cookie"),
            "{err}"
        );
    }

    #[test]
    fn a_summary_without_histogram_is_refused() {
        let stats = Stats::new(&[("a".to_owned(), "GET".to_owned())]);
        let mut s = summary(&stats, 1.0);
        s.total.histogram = None;
        assert!(matches!(
            merge(&[s], &Thresholds::default()),
            Err(MergeError::NoHistogram(_))
        ));
    }
}
