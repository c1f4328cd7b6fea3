//! A profile's once-a-second history for its report: one runner's own ([`of_stats`]), or
//! several runners' windows added up second by second on their common clock
//! ([`merge_windows`]): counts summed, histograms merged, so each second's percentiles are those
//! of all its requests (at the windows' 2 significant digits).

use crate::checked::PartError;
use crate::entry::Entry;
use crate::stats::Stats;
use loadgate_api::report::HistoryPoint;
use loadgate_api::results::WindowResult;
use std::collections::BTreeMap;

/// One runner's history as its report draws it (a second's LLM answers from its window, which
/// the same snapshot wrote).
pub fn of_stats(stats: &Stats) -> Vec<HistoryPoint> {
    stats
        .history
        .iter()
        .enumerate()
        .map(|(i, row)| HistoryPoint {
            second: u32::try_from(i).unwrap_or(u32::MAX),
            users: row.users,
            requests: row.window.requests,
            failures: row.window.failures,
            p50_ms: row.window.p50_ms(),
            p95_ms: row.window.p95_ms(),
            warmup: row.warmup,
            llm: stats
                .windows
                .get(i)
                .and_then(|w| w.llm.as_ref())
                .and_then(|l| crate::llm::point(l).ok()),
        })
        .collect()
}

/// Several runners' windows added up second by second.
///
/// # Errors
/// When a window's histogram does not decode, or its counts overflow.
pub fn merge_windows(runners: &[&[WindowResult]]) -> Result<Vec<HistoryPoint>, PartError> {
    let mut by_second: BTreeMap<u32, Vec<&WindowResult>> = BTreeMap::new();
    for windows in runners {
        for window in *windows {
            by_second.entry(window.window).or_default().push(window);
        }
    }
    let mut history = Vec::with_capacity(by_second.len());
    for (second, parts) in by_second {
        let mut entry = Entry::new("second", "");
        let mut users = 0u32;
        let warmup = parts.iter().any(|p| p.warmup);
        let llm: Vec<&loadgate_api::results::WindowLlm> =
            parts.iter().filter_map(|p| p.llm.as_ref()).collect();
        let llm = crate::llm::add_windows(&llm)
            .and_then(|l| l.as_ref().map(crate::llm::point).transpose())
            .map_err(PartError::in_window(second))?;
        for part in parts {
            users = users.saturating_add(part.users);
            let histogram = match &part.histogram {
                Some(encoded) => crate::codec::decode(encoded)
                    .map_err(|e| PartError::in_window(second)(e.into()))?,
                // No request was sent in that second (none, or all shed).
                None => hdrhistogram::Histogram::new(2).expect("2 digits are valid; this is a bug"),
            };
            entry
                .add_counts(&histogram, part.requests, part.failures, 0)
                .map_err(PartError::in_window(second))?;
        }
        history.push(HistoryPoint {
            second,
            users,
            requests: entry.requests,
            failures: entry.failures,
            p50_ms: entry.percentile_ms(0.5),
            p95_ms: entry.percentile_ms(0.95),
            warmup,
            llm,
        });
    }
    Ok(history)
}

/// One runner's windows coarsened to `seconds` each: the windows of each span of `seconds` on
/// the common clock (`window / seconds`) merged into one, starting at the span's first second,
/// with the requests and failures summed, the users at the span's end, the histograms merged,
/// and `warmup` only when the whole span was. Every shard of a profile coarsens with the same
/// width, so the spans line up across pods.
///
/// # Errors
/// When a window's histogram does not decode.
pub fn coarsen_windows(
    windows: Vec<WindowResult>,
    seconds: u32,
) -> Result<Vec<WindowResult>, PartError> {
    if seconds <= 1 {
        return Ok(windows);
    }
    let mut out: Vec<WindowResult> = Vec::with_capacity(windows.len() / seconds as usize + 1);
    let mut histogram: Option<hdrhistogram::Histogram<u64>> = None;
    // The span's windows' LLM answers, added up when it closes.
    let mut llm: Vec<loadgate_api::results::WindowLlm> = Vec::new();
    let finish = |out: &mut Vec<WindowResult>,
                  h: Option<hdrhistogram::Histogram<u64>>,
                  llm: Vec<loadgate_api::results::WindowLlm>|
     -> Result<(), PartError> {
        let Some(last) = out.last_mut() else {
            return Ok(());
        };
        if let Some(h) = h {
            last.histogram = Some(crate::codec::encode(&h));
        }
        let parts: Vec<&loadgate_api::results::WindowLlm> = llm.iter().collect();
        last.llm = crate::llm::add_windows(&parts).map_err(PartError::in_window(last.window))?;
        Ok(())
    };
    for window in windows {
        let start = window.window / seconds * seconds;
        if out.last().is_none_or(|last| last.window != start) {
            finish(&mut out, histogram.take(), std::mem::take(&mut llm))?;
            out.push(WindowResult {
                window: start,
                seconds: Some(seconds),
                users: 0,
                requests: 0,
                failures: 0,
                warmup: true,
                histogram: None,
                llm: None,
            });
        }
        let span = out.last_mut().expect("pushed above; this is a bug");
        span.users = window.users;
        span.requests = span.requests.saturating_add(window.requests);
        span.failures = span.failures.saturating_add(window.failures);
        span.warmup &= window.warmup;
        llm.extend(window.llm.clone());
        if let Some(encoded) = &window.histogram {
            let part = crate::codec::decode(encoded)
                .map_err(|e| PartError::in_window(window.window)(e.into()))?;
            match &mut histogram {
                Some(h) => h
                    .add(&part)
                    .map_err(|e| PartError::in_window(window.window)(PartError::OutOfBounds(e)))?,
                None => histogram = Some(part),
            }
        }
    }
    finish(&mut out, histogram, llm)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(second: u32, users: u32, ms: &[u64]) -> WindowResult {
        let mut entry = Entry::new("w", "");
        for &m in ms {
            entry.record(m * 1000, false, false, 0);
        }
        WindowResult {
            window: second,
            seconds: None,
            users,
            requests: entry.requests,
            failures: 0,
            histogram: (entry.requests > 0)
                .then(|| crate::codec::encode(&crate::codec::coarsen(&entry.histogram))),
            warmup: Default::default(),
            llm: None,
        }
    }

    /// A long run's seconds become spans of the same width on every shard, which still add up
    /// across pods, with every request kept.
    #[test]
    fn coarsened_windows_keep_every_request_and_line_up_across_shards() {
        let a: Vec<WindowResult> = (0..10).map(|s| window(s, 1, &[10, 20])).collect();
        // The second shard began three seconds late.
        let b: Vec<WindowResult> = (3..10).map(|s| window(s, 2, &[30])).collect();
        let (a, b) = (
            coarsen_windows(a, 4).unwrap(),
            coarsen_windows(b, 4).unwrap(),
        );
        assert_eq!(
            a.iter().map(|w| (w.window, w.requests)).collect::<Vec<_>>(),
            [(0, 8), (4, 8), (8, 4)]
        );
        assert_eq!(
            b.iter().map(|w| (w.window, w.requests)).collect::<Vec<_>>(),
            [(0, 1), (4, 4), (8, 2)]
        );
        assert!(a.iter().all(|w| w.seconds == Some(4)));
        let history = merge_windows(&[&a, &b]).unwrap();
        assert_eq!(
            history
                .iter()
                .map(|p| (p.second, p.users, p.requests))
                .collect::<Vec<_>>(),
            [(0, 3, 9), (4, 3, 12), (8, 3, 6)]
        );
        assert_eq!(history.iter().map(|p| p.requests).sum::<u64>(), 10 * 2 + 7);
        // Width 1 changes nothing.
        let one: Vec<WindowResult> = (0..3).map(|s| window(s, 1, &[10])).collect();
        assert_eq!(coarsen_windows(one.clone(), 1).unwrap(), one);
    }

    #[test]
    fn runners_seconds_add_up_on_the_common_clock() {
        let a = [window(0, 1, &[10; 10]), window(1, 2, &[10; 10])];
        // The second runner began a second late: its first window is the common clock's 1.
        let b = [window(1, 1, &[100; 10]), window(2, 1, &[])];
        let history = merge_windows(&[&a, &b]).unwrap();
        let got: Vec<(u32, u32, u64)> = history
            .iter()
            .map(|p| (p.second, p.users, p.requests))
            .collect();
        assert_eq!(got, [(0, 1, 10), (1, 3, 20), (2, 1, 0)]);
        // Half at 10 ms, half at 100: p95 is the slow half's.
        assert!((history[1].p95_ms - 100.0).abs() < 1.0, "{history:?}");
        let mut forged = b.clone();
        forged[0].histogram = Some("not a histogram".into());
        assert!(merge_windows(&[&a, &forged]).is_err());
    }

    /// A window of `answers` LLM answers, each `ttft_ms` to its first token and 10 tokens.
    fn llm_window(second: u32, answers: u64, ttft_ms: u64) -> WindowResult {
        let mut llm = crate::llm::LlmEntry::default();
        for _ in 0..answers {
            let answer = crate::sample::LlmSample {
                ttft: std::time::Duration::from_millis(ttft_ms),
                gaps: vec![std::time::Duration::from_millis(5); 9],
                output_tokens: 10,
                streamed: true,
                ..Default::default()
            };
            llm.record(
                Some(&answer),
                std::time::Duration::from_millis(ttft_ms + 45),
                true,
            );
        }
        WindowResult {
            llm: Some(crate::llm::window(&llm)),
            ..window(second, 1, &vec![ttft_ms + 45; answers as usize])
        }
    }

    #[test]
    fn llm_answers_add_up_per_second_across_runners_and_spans() {
        let a = [llm_window(0, 10, 100), llm_window(1, 10, 100)];
        let b = [llm_window(1, 10, 400)];
        let history = merge_windows(&[&a, &b]).unwrap();
        let llm: Vec<(u64, u64, f64)> = history
            .iter()
            .map(|p| {
                p.llm
                    .map(|l| (l.answered, l.output_tokens, l.ttft_p95_ms))
                    .unwrap()
            })
            .collect();
        assert_eq!((llm[0].0, llm[0].1, llm[1].0, llm[1].1), (10, 100, 20, 200));
        assert!(
            (llm[0].2 - 100.0).abs() < 1.0 && (llm[1].2 - 400.0).abs() < 4.0,
            "{llm:?}"
        );
        let tpot = history[0].llm.unwrap().tpot_p95_ms;
        assert!((tpot - 5.0).abs() < 0.1, "{tpot}");
        // Coarsened into one span of 2 s: the answers of both seconds, merged.
        let span = coarsen_windows(a.to_vec(), 2).unwrap();
        let llm = span[0].llm.as_ref().unwrap();
        assert_eq!((span.len(), llm.answered, llm.output_tokens), (1, 20, 200));
        // A forged histogram is an error, not a panic.
        let mut forged = b.clone();
        forged[0].llm.as_mut().unwrap().ttft = Some("not a histogram".into());
        assert!(merge_windows(&[&a, &forged]).is_err());
    }
}
