//! Reports: Locust-format CSVs (the same headers and row conventions, so existing Locust tooling
//! reads them unchanged) and the JSON run summary. Written in full when a run ends, also after
//! SIGTERM. The same CSVs come from a merged report of several runners too
//! ([`merged_stats_csv`], [`merged_history_csv`]).

use crate::entry::{Entry, Figures};
use crate::stats::Stats;
use loadgate_api::report::ProfileReport;
use loadgate_api::stats::RequestStats;
use loadgate_api::summary::RunSummary;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Locust's `_stats.csv` header, byte for byte.
pub const STATS_HEADER: &str = "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";
/// Locust's `_stats_history.csv` header, byte for byte.
pub const HISTORY_HEADER: &str = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size";
/// Locust's `_failures.csv` header.
pub const FAILURES_HEADER: &str = "Method,Name,Error,Occurrences";
/// Locust's `_exceptions.csv` header.
pub const EXCEPTIONS_HEADER: &str = "Count,Message,Traceback,Nodes";

/// Quotes a CSV cell when it holds a comma, quote or newline.
fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Percentile columns: whole milliseconds as Locust writes them, `N/A` with no requests.
fn percentile_cells(figures: &Figures) -> String {
    figures
        .percentiles_ms
        .iter()
        .map(|ms| {
            if figures.requests == 0 || !ms.is_finite() {
                "N/A".to_owned()
            } else {
                format!("{ms:.0}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn stats_row(out: &mut String, name: (&str, &str), entry: &Figures, elapsed: f64) {
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    // A merged row whose histogram is gone has no median (see [`merged_stats_csv`]).
    let median = if entry.p50_ms().is_finite() {
        format!("{:.0}", entry.p50_ms())
    } else {
        "N/A".to_owned()
    };
    let _ = writeln!(
        out,
        "{},{},{},{},{median},{:.2},{:.2},{:.2},{:.2},{:.4},{:.4},{}",
        cell(name.0),
        cell(name.1),
        entry.requests,
        entry.failures,
        entry.mean_ms,
        entry.min_ms,
        entry.max_ms(),
        entry.avg_size(),
        per_s(entry.requests),
        per_s(entry.failures),
        percentile_cells(entry)
    );
}

/// `_stats.csv`: a row per task, then the `Aggregated` row.
pub fn stats_csv(stats: &Stats, elapsed: f64) -> String {
    let mut out = format!("{STATS_HEADER}\n");
    for entry in stats.tasks.iter().chain([&stats.total]) {
        let name = (entry.method.as_str(), entry.name.as_str());
        stats_row(&mut out, name, &Figures::of(entry), elapsed);
    }
    out
}

/// The `Type` cell of a history row: empty as Locust writes `Aggregated` rows, `warm-up` for a
/// warm-up second (kept for the record, counted in no figure; its running totals stay 0).
fn history_type(warmup: bool) -> &'static str {
    if warmup { WARMUP_TYPE } else { "" }
}

/// The `Type` a warm-up second's history row carries.
pub const WARMUP_TYPE: &str = "warm-up";

/// `_stats_history.csv`: one `Aggregated` row per second.
pub fn history_csv(stats: &Stats) -> String {
    let mut out = format!("{HISTORY_HEADER}\n");
    for row in &stats.history {
        let (w, t) = (&row.window, &row.total);
        let _ = writeln!(
            out,
            "{},{},{},Aggregated,{:.2},{:.2},{},{},{},{:.0},{:.2},{:.2},{:.2},{:.2}",
            row.timestamp,
            row.users,
            history_type(row.warmup),
            w.requests as f64,
            w.failures as f64,
            percentile_cells(w),
            t.requests,
            t.failures,
            t.p50_ms(),
            t.mean_ms,
            t.min_ms,
            t.max_ms(),
            t.avg_size()
        );
    }
    out
}

/// `_failures.csv`: occurrences per (method, name, error).
pub fn failures_csv(stats: &Stats) -> String {
    let mut out = format!("{FAILURES_HEADER}\n");
    for ((method, name, error), count) in &stats.failures {
        let _ = writeln!(
            out,
            "{},{},{},{count}",
            cell(method),
            cell(name),
            cell(error)
        );
    }
    out
}

/// The four CSV paths for a prefix (`PREFIX_stats.csv`, ...).
pub fn csv_paths(prefix: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    [
        with("_stats.csv"),
        with("_stats_history.csv"),
        with("_failures.csv"),
        with("_exceptions.csv"),
    ]
}

/// Writes the four Locust CSVs next to `prefix`.
///
/// # Errors
/// When a file cannot be written.
pub fn write_csvs(prefix: &Path, stats: &Stats, elapsed: f64) -> std::io::Result<()> {
    if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let [stats_path, history_path, failures_path, exceptions_path] = csv_paths(prefix);
    std::fs::write(stats_path, stats_csv(stats, elapsed))?;
    std::fs::write(history_path, history_csv(stats))?;
    std::fs::write(failures_path, failures_csv(stats))?;
    std::fs::write(exceptions_path, format!("{EXCEPTIONS_HEADER}\n"))?;
    let tasks: Vec<RequestStats> = stats.tasks.iter().map(|t| t.summary(elapsed)).collect();
    write_llm_csv(prefix, &tasks, &stats.total.summary(elapsed))
}

/// Header of `_llm_stats.csv`.
pub const LLM_HEADER: &str = "Type,Name,Requests,Answered,Streamed,TTFT p50 (ms),TTFT p95 (ms),TTFT p99 (ms),ITL p50 (ms),ITL p95 (ms),ITL p99 (ms),TPOT p50 (ms),TPOT p95 (ms),TPOT p99 (ms),E2E p50 (ms),E2E p95 (ms),E2E p99 (ms),Input tokens,Output tokens,Output tokens/s,Tokens counted by,Goodput";

/// `_llm_stats.csv`: a row per LLM task, then `Aggregated`; `None` when no task is an LLM one
/// (Locust's own four CSVs keep their columns; the token figures live here).
pub fn llm_stats_csv(tasks: &[RequestStats], total: &RequestStats) -> Option<String> {
    total.llm.as_ref()?;
    let mut out = format!("{LLM_HEADER}\n");
    for stats in tasks.iter().chain(std::iter::once(total)) {
        let Some(l) = &stats.llm else { continue };
        let timing = |t: &loadgate_api::stats::TimingStats| {
            format!("{:.2},{:.2},{:.2}", t.p50_ms, t.p95_ms, t.p99_ms)
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{:.2},{},{:.4}",
            cell(&stats.method),
            cell(&stats.name),
            l.requests,
            l.answered,
            l.streamed,
            timing(&l.ttft),
            timing(&l.itl),
            timing(&l.tpot),
            timing(&l.e2e),
            l.input_tokens,
            l.output_tokens,
            l.output_tokens_per_second,
            tokens_counted_by(l),
            l.goodput
        );
    }
    Some(out)
}

/// How an LLM run's output tokens were counted: `usage` (the server's), `chunks` (one per
/// content chunk) or `usage and chunks` (some answers each way).
pub fn tokens_counted_by(l: &loadgate_api::stats::LlmStats) -> &'static str {
    match l.tokens_from_usage {
        0 => "chunks",
        n if n >= l.answered => "usage",
        _ => "usage and chunks",
    }
}

/// Writes `PREFIX_llm_stats.csv` when the run had an LLM task.
fn write_llm_csv(
    prefix: &Path,
    tasks: &[RequestStats],
    total: &RequestStats,
) -> std::io::Result<()> {
    let Some(csv) = llm_stats_csv(tasks, total) else {
        return Ok(());
    };
    let mut path = prefix.as_os_str().to_owned();
    path.push("_llm_stats.csv");
    std::fs::write(PathBuf::from(path), csv)
}

/// `_stats.csv` of a merged report: a row per task, then `Aggregated`, each from its merged
/// histogram (exact percentiles); a row whose histogram was not kept has `N/A` percentiles.
/// Response sizes are not merged (0).
pub fn merged_stats_csv(report: &ProfileReport) -> String {
    let summary = &report.summary;
    let elapsed = summary.duration_seconds;
    let mut out = format!("{STATS_HEADER}\n");
    for stats in summary.tasks.iter().chain([&summary.total]) {
        let mut entry = Entry::new(&stats.name, &stats.method);
        let figures = match crate::checked::decode(stats) {
            Ok(histogram) => {
                let added =
                    entry.add_counts(&histogram, stats.requests, stats.failures, stats.not_sent);
                // The mean as summarised (exact); the histogram gives the rest.
                added.map_or_else(
                    |_| unknown(stats),
                    |()| Figures {
                        mean_ms: stats.mean_ms,
                        ..Figures::of(&entry)
                    },
                )
            }
            Err(_) => unknown(stats),
        };
        stats_row(
            &mut out,
            (stats.method.as_str(), stats.name.as_str()),
            &figures,
            elapsed,
        );
    }
    out
}

/// Figures of a row whose histogram is gone: counts, mean and max as summarised, percentiles
/// unknown (written `N/A`: the median column too).
fn unknown(stats: &RequestStats) -> Figures {
    let mut percentiles_ms = [f64::NAN; crate::entry::PERCENTILES.len()];
    percentiles_ms[crate::entry::PERCENTILES.len() - 1] = stats.max_ms;
    Figures {
        requests: stats.requests,
        failures: stats.failures,
        bytes: 0,
        mean_ms: stats.mean_ms,
        min_ms: 0.0,
        percentiles_ms,
    }
}

/// `_stats_history.csv` of a merged report: one `Aggregated` row per second (or bucket) with the
/// report's p50 and p95; the percentiles it does not keep are `N/A`, as are the running totals'
/// latencies (the counts are summed).
pub fn merged_history_csv(report: &ProfileReport) -> String {
    let start = report.summary.started_at_ms.unwrap_or(0) / 1000;
    let mut out = format!("{HISTORY_HEADER}\n");
    let (mut requests, mut failures) = (0u64, 0u64);
    for point in &report.history {
        if !point.warmup {
            requests = requests.saturating_add(point.requests);
            failures = failures.saturating_add(point.failures);
        }
        let percentiles: Vec<String> = crate::entry::PERCENTILES
            .iter()
            .map(|&q| match q {
                _ if point.requests == 0 => "N/A".to_owned(),
                0.5 => format!("{:.0}", point.p50_ms),
                0.95 => format!("{:.0}", point.p95_ms),
                _ => "N/A".to_owned(),
            })
            .collect();
        let _ = writeln!(
            out,
            "{},{},{},Aggregated,{:.2},{:.2},{},{requests},{failures},N/A,N/A,N/A,N/A,0.00",
            start + u64::from(point.second),
            point.users,
            history_type(point.warmup),
            point.requests as f64,
            point.failures as f64,
            percentiles.join(","),
        );
    }
    out
}

/// Writes a merged report's `_stats.csv` and `_stats_history.csv` next to `prefix`.
///
/// # Errors
/// When a file cannot be written.
pub fn write_merged_csvs(prefix: &Path, report: &ProfileReport) -> std::io::Result<()> {
    if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let [stats_path, history_path, ..] = csv_paths(prefix);
    std::fs::write(stats_path, merged_stats_csv(report))?;
    std::fs::write(history_path, merged_history_csv(report))?;
    write_llm_csv(prefix, &report.summary.tasks, &report.summary.total)
}

/// Writes the JSON summary.
///
/// # Errors
/// When the file cannot be written.
pub fn write_json(path: &Path, summary: &RunSummary) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let json =
        serde_json::to_string_pretty(summary).expect("a summary always serialises; this is a bug");
    std::fs::write(path, json + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, PERCENTILES};
    use crate::sample::Sample;
    use crate::sample::{NotSent, Outcome};
    use std::time::Duration;

    // The CSV rows as written before history rows kept `Figures` instead of histogram copies,
    // verbatim, so the test proves the format did not change by a byte.
    fn old_percentile_cells(entry: &Entry) -> String {
        PERCENTILES
            .iter()
            .map(|&q| {
                if entry.requests == 0 {
                    "N/A".to_owned()
                } else {
                    format!("{:.0}", entry.percentile_ms(q))
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn old_avg_size(entry: &Entry) -> f64 {
        if entry.requests == 0 {
            0.0
        } else {
            entry.bytes as f64 / entry.requests as f64
        }
    }

    fn old_stats_row(out: &mut String, entry: &Entry, elapsed: f64) {
        let per_s = |n: u64| {
            if elapsed > 0.0 {
                n as f64 / elapsed
            } else {
                0.0
            }
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{:.0},{:.2},{:.2},{:.2},{:.2},{:.4},{:.4},{}",
            cell(&entry.method),
            cell(&entry.name),
            entry.requests,
            entry.failures,
            entry.percentile_ms(0.5),
            entry.mean_ms(),
            entry.min_ms(),
            entry.percentile_ms(1.0),
            old_avg_size(entry),
            per_s(entry.requests),
            per_s(entry.failures),
            old_percentile_cells(entry)
        );
    }

    fn old_history_row(out: &mut String, timestamp: u64, users: u32, w: &Entry, t: &Entry) {
        let _ = writeln!(
            out,
            "{},{},,Aggregated,{:.2},{:.2},{},{},{},{:.0},{:.2},{:.2},{:.2},{:.2}",
            timestamp,
            users,
            w.requests as f64,
            w.failures as f64,
            old_percentile_cells(w),
            t.requests,
            t.failures,
            t.percentile_ms(0.5),
            t.mean_ms(),
            t.min_ms(),
            t.percentile_ms(1.0),
            old_avg_size(t)
        );
    }

    #[test]
    fn a_merged_report_writes_locust_csvs_with_its_exact_percentiles() {
        let mut stats = Stats::new(&[("embed".into(), "POST".into())]);
        for ms in 1..=100 {
            stats.record(&Sample {
                task: 0,
                latency: Duration::from_millis(ms),
                outcome: Outcome::Ok { bytes: 0 },
                start_delay: None,
                quality: None,
                texts: 0,
                dial: None,
                llm: None,
            });
        }
        let summary = RunSummary {
            profile: "p".into(),
            duration_seconds: 10.0,
            users: 1,
            total: stats.total.summary(10.0),
            tasks: vec![stats.tasks[0].summary(10.0)],
            violations: Vec::new(),
            passed: true,
            interrupted: false,
            start_delay: None,
            started_at_ms: Some(1_700_000_000_000),
            results: None,
            curve: Vec::new(),
            capacity: None,
            aborted: None,
            warmup_seconds: None,
            quality: None,
            connections: None,
            dataset: None,
            failure_reasons: Vec::new(),
        };
        let mut report = ProfileReport {
            summary,
            thresholds: loadgate_api::load::Thresholds::default(),
            history: vec![loadgate_api::report::HistoryPoint {
                second: 3,
                users: 1,
                requests: 100,
                failures: 0,
                p50_ms: 50.0,
                p95_ms: 95.0,
                warmup: Default::default(),
                llm: None,
            }],
            efficiency: None,
        };
        // The runner's own CSV, row for row, from the merged histograms.
        assert_eq!(merged_stats_csv(&report), stats_csv(&stats, 10.0));
        let history = merged_history_csv(&report);
        assert!(
            history.contains("\n1700000003,1,,Aggregated,100.00,0.00,50,N/A,N/A,N/A,N/A,95,N/A,"),
            "{history}"
        );
        // A task whose histogram was not kept: its percentiles are unknown, not made up.
        report.summary.tasks[0].histogram = None;
        let row = merged_stats_csv(&report).lines().nth(1).unwrap().to_owned();
        assert!(
            row.starts_with("POST,embed,100,0,N/A,") && row.ends_with(",N/A,100"),
            "{row}"
        );
    }

    #[test]
    fn csvs_are_byte_for_byte_what_they_were() {
        let tasks = [
            ("a,b".to_owned(), "GET".to_owned()),
            ("c".to_owned(), "POST".to_owned()),
        ];
        let mut stats = Stats::new(&tasks);
        let mut expected = format!("{HISTORY_HEADER}\n");
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        // Five seconds of irregular samples, the third with none (N/A cells).
        for (second, count) in [(0u32, 700u64), (1, 5), (2, 0), (3, 1_000), (4, 37)] {
            // The window alone, as a separate Stats (its total is the window's entry).
            let mut window = Stats::new(&tasks);
            for i in 0..count {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let outcome = match i % 7 {
                    0 => Outcome::Failed {
                        reason: "HTTPError 500".into(),
                        bytes: 3,
                    },
                    1 => Outcome::NotSent(NotSent::QueueFull),
                    _ => Outcome::Ok {
                        bytes: (x % 5_000) as usize,
                    },
                };
                let sample = Sample {
                    task: (x % 2) as usize,
                    latency: Duration::from_micros(50 + x % 2_000_000),
                    outcome,
                    start_delay: None,
                    quality: None,
                    texts: 0,
                    dial: None,
                    llm: None,
                };
                stats.record(&sample);
                window.record(&sample);
            }
            stats.snapshot(second * 3);
            let timestamp = 1_700_000_000 + u64::from(second);
            stats.history.last_mut().unwrap().timestamp = timestamp;
            old_history_row(
                &mut expected,
                timestamp,
                second * 3,
                &window.total,
                &stats.total,
            );
        }
        assert_eq!(history_csv(&stats), expected);
        assert!(expected.contains(",N/A,N/A,"), "{expected}");
        let mut old_stats = format!("{STATS_HEADER}\n");
        for entry in stats.tasks.iter().chain([&stats.total]) {
            old_stats_row(&mut old_stats, entry, 4.5);
        }
        assert_eq!(stats_csv(&stats, 4.5), old_stats);
        assert!(old_stats.contains("GET,\"a,b\","), "{old_stats}");
        let failures = failures_csv(&stats);
        assert!(
            failures.contains("GET,\"a,b\",NotSent: queue full,"),
            "{failures}"
        );
    }
}
