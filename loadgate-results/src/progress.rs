//! A runner's progress line: every 10 s of load, one line on its standard output,
//! `loadgate-progress v1 {json}` holding its [`Progress`] so far ([`of_stats`]), which the
//! operator reads through `pods/log` while the profile runs ([`last_in`]) and merges over the
//! profile's pods into `status.profiles[].progress`.
//!
//! A pod's log is hostile input: a line longer than [`MAX_LINE`], one that is not the JSON of a
//! [`Progress`], or one whose figures no runner could print ([`Progress::is_plausible`]) is
//! skipped, and only the newest good line counts.

use crate::stats::Stats;
use loadgate_api::progress::Progress;

/// A progress line's first words.
pub const PREFIX: &str = "loadgate-progress v1 ";
/// Longest progress line read, bytes (a real one is about 250).
pub const MAX_LINE: usize = 1024;
/// Log lines the operator asks for (the newest): a runner prints a few between two progress
/// lines.
pub const TAIL_LINES: i64 = 64;
/// Log bytes the operator reads at most for one pod's progress.
pub const TAIL_BYTES: i64 = 64 << 10;

/// Seconds the requests-per-second figure looks back over.
const RATE_SECONDS: usize = 10;

/// The line for `progress` (without its newline).
pub fn line(progress: &Progress) -> String {
    format!(
        "{PREFIX}{}",
        serde_json::to_string(progress).expect("progress serialises; this is a bug")
    )
}

/// The newest good progress line in `log`, if any.
pub fn last_in(log: &str) -> Option<Progress> {
    log.lines().rev().find_map(|l| {
        let json = l.strip_prefix(PREFIX).filter(|_| l.len() <= MAX_LINE)?;
        serde_json::from_str::<Progress>(json)
            .ok()
            .filter(Progress::is_plausible)
    })
}

/// A runner's progress after `elapsed_seconds` of a profile planned to load
/// `planned_seconds`, from its stats: the counts and percentiles so far (after the warm-up),
/// the requests per second of the last 10 s, the users of the last second.
pub fn of_stats(stats: &Stats, elapsed_seconds: u64, planned_seconds: u64) -> Progress {
    let recent = &stats.history[stats.history.len().saturating_sub(RATE_SECONDS)..];
    let rps = if recent.is_empty() {
        0.0
    } else {
        recent.iter().map(|r| r.window.requests).sum::<u64>() as f64 / recent.len() as f64
    };
    let measured = stats.history.iter().filter(|r| !r.warmup).count() as f64;
    let total = &stats.total;
    let llm = total.llm.as_deref();
    Progress {
        elapsed_seconds,
        planned_seconds,
        users: recent.last().map_or(0, |r| u64::from(r.users)),
        requests: total.requests,
        failures: total.failures,
        error_rate: total.error_rate(),
        rps,
        p50_ms: total.percentile_ms(0.50),
        p95_ms: total.percentile_ms(0.95),
        ttft_p95_ms: llm
            .filter(|l| !l.ttft.is_empty())
            .map(|l| l.ttft.value_at_quantile(0.95) as f64 / 1000.0),
        output_tokens_per_second: llm.map(|l| l.output_tokens_per_second(measured)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Outcome, Sample};
    use std::time::Duration;

    fn sample(ms: u64, ok: bool) -> Sample {
        let outcome = if ok {
            Outcome::Ok { bytes: 10 }
        } else {
            Outcome::Failed {
                reason: "HTTPError 503".into(),
                bytes: 0,
            }
        };
        Sample {
            task: 0,
            latency: Duration::from_millis(ms),
            outcome,
            start_delay: None,
            texts: 1,
            quality: None,
            dial: None,
            llm: None,
        }
    }

    #[test]
    fn a_runners_figures_round_trip_through_its_line() {
        let mut stats = Stats::new(&[("embed".into(), "POST".into())]);
        for ms in 1..=100 {
            stats.record(&sample(ms, ms % 10 != 0));
        }
        stats.snapshot(7);
        let p = of_stats(&stats, 12, 60);
        assert_eq!((p.users, p.requests, p.failures), (7, 100, 10));
        assert_eq!((p.elapsed_seconds, p.planned_seconds), (12, 60));
        assert!((p.error_rate - 0.1).abs() < 1e-12);
        assert!((p.rps - 100.0).abs() < 1e-9, "{}", p.rps);
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{}", p.p50_ms);
        assert!((p.p95_ms - 95.0).abs() < 0.1, "{}", p.p95_ms);
        assert_eq!((p.ttft_p95_ms, p.output_tokens_per_second), (None, None));
        let text = line(&p);
        assert!(text.starts_with(PREFIX) && text.len() < 400, "{text}");
        let log = format!("some log line\n{text}\nINFO later words\n");
        assert_eq!(last_in(&log), Some(p));
    }

    #[test]
    fn an_llm_tasks_progress_has_its_ttft_and_output_tokens_per_second() {
        use crate::sample::LlmSample;
        let mut stats = Stats::new(&[("chat".into(), "POST".into())])
            .measuring_llm(vec![true], crate::llm::Slo::default());
        for i in 1..=20u64 {
            let mut s = sample(1000, true);
            s.llm = Some(Box::new(LlmSample {
                ttft: Duration::from_millis(10 * i),
                gaps: vec![Duration::from_millis(5); 9],
                input_tokens: 12,
                output_tokens: 10,
                from_usage: true,
                streamed: true,
            }));
            stats.record(&s);
        }
        stats.snapshot(2);
        stats.snapshot(2);
        let p = of_stats(&stats, 2, 60);
        let ttft = p.ttft_p95_ms.expect("an LLM task has a TTFT");
        assert!((ttft - 190.0).abs() < 1.0, "{ttft}");
        // 200 output tokens over the 2 measured seconds.
        assert_eq!(p.output_tokens_per_second, Some(100.0));
        assert!(last_in(&line(&p)).is_some());
    }

    #[test]
    fn the_newest_good_line_counts_and_forgeries_are_skipped() {
        let good = |requests| Progress {
            elapsed_seconds: 10,
            planned_seconds: 30,
            requests,
            ..Progress::default()
        };
        let forged = Progress {
            failures: 10,
            requests: 1,
            ..Progress::default()
        };
        let long = format!("{PREFIX}{{\"pad\":\"{}\"}}", "x".repeat(MAX_LINE));
        let log = [
            line(&good(5)),
            line(&good(9)),
            line(&forged),
            long,
            format!("{PREFIX}not json"),
            format!("{PREFIX}{{\"elapsedSeconds\":1}}"),
            "loadgate-results v1 10 0".into(),
        ]
        .join("\n");
        assert_eq!(last_in(&log), Some(good(9)));
        assert_eq!(last_in("no progress here\n"), None);
        // A cut line (the read's byte limit) is skipped, the one before it counts.
        let cut = format!("{}\n{}", line(&good(3)), &line(&good(4))[..40]);
        assert_eq!(last_in(&cut), Some(good(3)));
    }
}
