//! Reports: Locust-format CSVs (the same headers and row conventions, so existing Locust tooling
//! reads them unchanged) and the JSON run summary. Written in full when a run ends, also after
//! SIGTERM.

use crate::stats::{Entry, PERCENTILES, Stats};
use loadgate_api::load::RunSummary;
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
fn percentile_cells(entry: &Entry) -> String {
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

fn avg_size(entry: &Entry) -> f64 {
    if entry.requests == 0 {
        0.0
    } else {
        entry.bytes as f64 / entry.requests as f64
    }
}

fn stats_row(out: &mut String, entry: &Entry, elapsed: f64) {
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
        avg_size(entry),
        per_s(entry.requests),
        per_s(entry.failures),
        percentile_cells(entry)
    );
}

/// `_stats.csv`: a row per task, then the `Aggregated` row.
pub fn stats_csv(stats: &Stats, elapsed: f64) -> String {
    let mut out = format!("{STATS_HEADER}\n");
    for entry in &stats.tasks {
        stats_row(&mut out, entry, elapsed);
    }
    stats_row(&mut out, &stats.total, elapsed);
    out
}

/// `_stats_history.csv`: one `Aggregated` row per second.
pub fn history_csv(stats: &Stats) -> String {
    let mut out = format!("{HISTORY_HEADER}\n");
    for row in &stats.history {
        let (w, t) = (&row.window, &row.total);
        let _ = writeln!(
            out,
            "{},{},,Aggregated,{:.2},{:.2},{},{},{},{:.0},{:.2},{:.2},{:.2},{:.2}",
            row.timestamp,
            row.users,
            w.requests as f64,
            w.failures as f64,
            percentile_cells(w),
            t.requests,
            t.failures,
            t.percentile_ms(0.5),
            t.mean_ms(),
            t.min_ms(),
            t.percentile_ms(1.0),
            avg_size(t)
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
    Ok(())
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
