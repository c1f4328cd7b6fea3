//! Where a run's results go on this machine, none of it part of the [`RunSpec`]: Locust-format
//! CSVs, the HTML page, the JSON summary, the full results as JSON, the compact summary of a
//! Kubernetes termination message, and the results frame printed last on standard output.
//!
//! [`RunSpec`]: loadgate_api::run_spec::RunSpec

use crate::RunError;
use loadgate_api::load::Thresholds;
use loadgate_api::results::RunResults;
use loadgate_api::summary::RunSummary;
use loadgate_results::results_frame::{self, Frame};
use loadgate_results::stats::Stats;
use loadgate_results::{html, merge, report};
use std::path::PathBuf;

/// The reports a run writes; each unset one is not written.
#[derive(Debug, Clone, Default)]
pub struct RunOutputs {
    /// Locust-format CSVs: PREFIX_stats.csv, _stats_history.csv, _failures.csv, _exceptions.csv.
    pub csv: Option<PathBuf>,
    /// A self-contained HTML report.
    pub html: Option<PathBuf>,
    /// The JSON run summary.
    pub json: Option<PathBuf>,
    /// The full results (summary, steps, once-a-second windows) as JSON.
    pub results_json: Option<PathBuf>,
    /// The summary as compact JSON of at most 4096 bytes, for `/dev/termination-log`.
    pub termination_summary: Option<PathBuf>,
    /// Print the full results as a frame at the end of standard output, named in the summary.
    pub results_log: bool,
    /// Serve live Prometheus metrics while the run lasts ([`crate::metrics`]).
    pub metrics: Option<MetricsListen>,
}

/// Where `GET /metrics` is served, and for how long after the run.
#[derive(Debug, Clone)]
pub struct MetricsListen {
    /// Address to listen on (`0.0.0.0`: every interface).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Kept serving this long after the results are written, so a scrape sees the final
    /// counts.
    pub linger: std::time::Duration,
}

impl RunOutputs {
    /// Writes every file asked for. With `results_log`, `summary` (and so the JSON summary and
    /// the termination message) names the frame it returns, which the caller prints last.
    ///
    /// # Errors
    /// When a file cannot be written, or the summary cannot be made to fit a termination
    /// message.
    pub fn write(
        &self,
        summary: &mut RunSummary,
        results: &RunResults,
        stats: &Stats,
        thresholds: &Thresholds,
    ) -> Result<Option<Frame>, RunError> {
        if let Some(path) = &self.results_json {
            let text = serde_json::to_string(results).expect("results serialise; this is a bug");
            std::fs::write(path, text).map_err(RunError::io("write", path))?;
        }
        let frame = self.results_log.then(|| results_frame::encode(results));
        summary.results = frame.as_ref().map(|f| f.reference);
        if let Some(prefix) = &self.csv {
            report::write_csvs(prefix, stats, summary.duration_seconds)
                .map_err(RunError::io("write CSVs at", prefix))?;
        }
        if let Some(path) = &self.html {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(RunError::io("create", dir))?;
            }
            std::fs::write(path, html::render(summary, stats, thresholds))
                .map_err(RunError::io("write", path))?;
        }
        if let Some(path) = &self.json {
            report::write_json(path, summary).map_err(RunError::io("write", path))?;
        }
        if let Some(path) = &self.termination_summary {
            let compact = merge::compact_summary(summary, merge::TERMINATION_MESSAGE_LIMIT)
                .map_err(RunError::TerminationSummary)?;
            std::fs::write(path, compact).map_err(RunError::io("write", path))?;
        }
        Ok(frame)
    }
}
