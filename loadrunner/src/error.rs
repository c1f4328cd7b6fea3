//! Why a run or a gate ended without a verdict, typed ([`RunError`]): a spec or flag the runner
//! cannot use (exit 2), or a target, file or check that failed (exit 1). `main` prints the
//! chain; [`RunError::category`] names it for logs and metrics.

use crate::Verdict;
use std::path::Path;

/// A spec or flag the runner cannot use; reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Why a run (or `loadrunner gate`) ended without a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A spec, flag or file the runner cannot use.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The target never answered its readiness path within the time allowed.
    #[error("target {url} not ready after {seconds:.0}s: {last}")]
    NotReady {
        /// The readiness URL.
        url: String,
        /// How long it was given.
        seconds: f64,
        /// The last answer (or why there was none).
        last: String,
    },
    /// The quality check's reference vectors could not be taken on the idle target.
    #[error("quality: {0}")]
    Quality(String),
    /// The run's windows could not be coarsened for its results (a bug if it ever happens).
    #[error("cannot coarsen the run's windows: {0}")]
    Windows(#[source] loadgate_results::checked::PartError),
    /// The summary cannot be made to fit a termination message.
    #[error("--termination-summary: {0}")]
    TerminationSummary(#[source] loadgate_results::merge::TooLarge),
    /// A report could not be written, or the results frame printed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done: "write results/run.html".
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// A static name of the failure, for logs and metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            RunError::Usage(_) => "usage",
            RunError::NotReady { .. } => "not_ready",
            RunError::Quality(_) => "quality",
            RunError::Windows(_) => "windows",
            RunError::TerminationSummary(_) => "termination_summary",
            RunError::Io { .. } => "io",
        }
    }

    /// The exit code's verdict: [`Verdict::Usage`] for a usage error, else [`Verdict::Fail`].
    pub fn verdict(&self) -> Verdict {
        match self {
            RunError::Usage(_) => Verdict::Usage,
            _ => Verdict::Fail,
        }
    }

    /// An I/O failure while doing `what` to `path` ("write", "create").
    pub fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let what = format!("{what} {}", path.display());
        move |source| RunError::Io { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_the_rest_1_each_with_a_category() {
        let usage = RunError::from(UsageError("--users: not a number".into()));
        assert_eq!(
            (usage.verdict(), usage.category()),
            (Verdict::Usage, "usage")
        );
        assert_eq!(usage.to_string(), "--users: not a number");
        let io =
            RunError::io("write", Path::new("out/run.html"))(std::io::Error::other("disk full"));
        assert_eq!((io.verdict(), io.category()), (Verdict::Fail, "io"));
        assert_eq!(io.to_string(), "cannot write out/run.html: disk full");
        assert!(
            std::error::Error::source(&io).is_some(),
            "the cause is kept as a source"
        );
    }
}
