//! A runner's [`RequestStats`] histogram, decoded within the codec's bounds and checked against
//! the counts the stats claim ([`decode`]); [`MergeError`] names what is wrong when runners'
//! summaries are decoded and added up, [`PartError`] when their steps and windows are. Summaries
//! may be forged, so nothing here trusts a count.

use crate::codec::{self, HistogramError};
use hdrhistogram::Histogram;
use loadgate_api::stats::RequestStats;

/// Summaries that cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no summaries to merge")]
    Empty,
    /// A summary carries no histogram (e.g. it came from a Locust CSV).
    #[error("summary of {0:?} carries no histogram; percentiles cannot be merged exactly")]
    NoHistogram(String),
    /// A histogram does not decode, or is outside the bounds a runner writes.
    #[error("histogram of {name:?} does not decode: {source}")]
    BadHistogram {
        /// Stats name.
        name: String,
        /// Why.
        #[source]
        source: HistogramError,
    },
    /// A histogram holds a different number of latencies than its stats count requests sent.
    #[error(
        "histogram of {name:?} holds {histogram} latencies but the stats count {requests} requests, {not_sent} of them not sent"
    )]
    CountMismatch {
        /// Stats name.
        name: String,
        /// Latencies in the histogram.
        histogram: u64,
        /// The stats' `requests`.
        requests: u64,
        /// The stats' `not_sent` (no latency; more than `requests` is itself a mismatch).
        not_sent: u64,
    },
    /// Histograms of one name that cannot be added (one holds values beyond the other's range).
    #[error("histogram of {name:?} cannot be added to the others: {source}")]
    Incompatible {
        /// Stats name.
        name: String,
        /// Why.
        #[source]
        source: hdrhistogram::AdditionError,
    },
    /// A summary's failure reasons break what a runner writes (too many, too long, counted
    /// twice, or more than its failures).
    #[error("failure reasons of profile {profile:?}: {why}")]
    BadFailureReasons {
        /// The profile.
        profile: String,
        /// What is wrong.
        why: String,
    },
    /// Counts that overflow when added up (requests: past [`codec::MAX_COUNT`], the most a
    /// histogram encodes; no real run comes near).
    #[error("{what} of {name:?} overflow when the summaries are added up")]
    Overflow {
        /// Stats name (or the profile, for users).
        name: String,
        /// Which count.
        what: &'static str,
    },
}

impl MergeError {
    /// A static name of the failure, for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            MergeError::Empty => "empty",
            MergeError::NoHistogram(_) => "no_histogram",
            MergeError::BadHistogram { .. } => "bad_histogram",
            MergeError::CountMismatch { .. } => "count_mismatch",
            MergeError::Incompatible { .. } => "incompatible_histograms",
            MergeError::Overflow { .. } => "overflow",
            MergeError::BadFailureReasons { .. } => "bad_failure_reasons",
        }
    }
}

/// The histogram of encoded stats, decoded within [`codec`]'s bounds and checked to hold exactly
/// `stats.requests - stats.not_sent` latencies (one per request sent).
///
/// # Errors
/// [`MergeError`] when missing, malformed, out of bounds or not matching the request count.
pub fn decode(stats: &RequestStats) -> Result<Histogram<u64>, MergeError> {
    let encoded = stats
        .histogram
        .as_deref()
        .ok_or_else(|| MergeError::NoHistogram(stats.name.clone()))?;
    let histogram = codec::decode(encoded).map_err(|source| MergeError::BadHistogram {
        name: stats.name.clone(),
        source,
    })?;
    // Requests never sent have no latency (open model, `notSent`): the histogram holds the rest.
    let sent = stats.requests.checked_sub(stats.not_sent);
    if sent != Some(histogram.len()) {
        return Err(MergeError::CountMismatch {
            name: stats.name.clone(),
            histogram: histogram.len(),
            requests: stats.requests,
            not_sent: stats.not_sent,
        });
    }
    Ok(histogram)
}

/// Why runners' parts (a task's counts, a ramp's step, a second's window) cannot be added up.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// A count would pass what a histogram can encode ([`codec::MAX_COUNT`]).
    #[error("{0} overflow")]
    Overflow(&'static str),
    /// A histogram holds values beyond the other's range.
    #[error("histogram out of bounds: {0:?}")]
    OutOfBounds(hdrhistogram::AdditionError),
    /// A window's histogram does not decode.
    #[error(transparent)]
    Histogram(#[from] HistogramError),
    /// A step's stats do not decode or do not match their counts.
    #[error(transparent)]
    Stats(#[from] MergeError),
    /// Runners cut the step starting at `first` into different numbers of windows.
    #[error("runners disagree on the step at window {first}: {theirs} windows against {ours}")]
    StepWindows {
        /// The step's first window.
        first: u32,
        /// One runner's count.
        theirs: u32,
        /// The first runner's count.
        ours: u32,
    },
    /// A step's offered rate is not a finite, non-negative number.
    #[error("step at window {first} offered {offered:?} req/s")]
    Offered {
        /// The step's first window.
        first: u32,
        /// What the runners said, added up.
        offered: Option<f64>,
    },
    /// A step's length is not a finite, non-negative number.
    #[error("step at window {first} lasted {seconds} s")]
    Seconds {
        /// The step's first window.
        first: u32,
        /// What the runners said.
        seconds: f64,
    },
    /// A part of the step starting at `first`.
    #[error("step at window {first}: {source}")]
    InStep {
        /// The step's first window.
        first: u32,
        /// What is wrong.
        #[source]
        source: Box<PartError>,
    },
    /// A part of the window of second `window`.
    #[error("window {window}: {source}")]
    InWindow {
        /// The window's second.
        window: u32,
        /// What is wrong.
        #[source]
        source: Box<PartError>,
    },
}

impl PartError {
    /// This error, placed in the step starting at window `first`.
    pub fn in_step(first: u32) -> impl FnOnce(PartError) -> PartError {
        move |e| PartError::InStep {
            first,
            source: Box::new(e),
        }
    }

    /// This error, placed in the window of second `window`.
    pub fn in_window(window: u32) -> impl FnOnce(PartError) -> PartError {
        move |e| PartError::InWindow {
            window,
            source: Box::new(e),
        }
    }
}
