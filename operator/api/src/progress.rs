//! A profile while it runs: [`Progress`], the figures a runner prints every 10 s (its load so
//! far) and the operator merges over a profile's pods into `status.profiles[].progress`, and
//! [`column`], the short `PROGRESS` column of `kubectl get loadtests` (`steady 120/300s`).
//!
//! These are live figures to watch a run by, never to gate on: the verdict is judged on the
//! results, from the exact merged histograms, once the profile ends (and `progress` is cleared).

use serde::{Deserialize, Serialize};

/// How often a runner prints its progress, and how often the operator writes it at most.
pub const PROGRESS_EVERY_SECONDS: u64 = 10;

/// A profile's load so far, as one runner printed it (or several runners', merged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Seconds of load so far (the warm-up included).
    pub elapsed_seconds: u64,
    /// Seconds the profile is planned to load (a search or an abort may end it sooner).
    pub planned_seconds: u64,
    /// Users running now (all pods).
    pub users: u64,
    /// Requests finished so far (after the warm-up), failed ones included.
    pub requests: u64,
    /// Requests failed so far.
    pub failures: u64,
    /// failures / requests so far.
    pub error_rate: f64,
    /// Requests per second over the last 10 s (all pods).
    pub rps: f64,
    /// Median latency so far, ms. With several runner pods, the highest pod's: an upper bound
    /// of the merged median (the exact figure comes with the results).
    pub p50_ms: f64,
    /// 95th percentile latency so far, ms; with several pods the highest pod's, an upper bound.
    pub p95_ms: f64,
    /// LLM tasks: time to first token, 95th percentile so far, ms (the highest pod's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_ms: Option<f64>,
    /// LLM tasks: output tokens per second so far (all pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_second: Option<f64>,
}

impl Progress {
    /// Whether every figure is one a runner could print: finite, not negative, and within
    /// loose bounds (a forged line is dropped, not shown).
    pub fn is_plausible(&self) -> bool {
        const DAY: u64 = 86_400 * 7;
        let mut floats = [self.error_rate, self.rps, self.p50_ms, self.p95_ms]
            .into_iter()
            .chain(self.ttft_p95_ms)
            .chain(self.output_tokens_per_second);
        self.elapsed_seconds <= DAY
            && self.planned_seconds <= DAY
            && self.users <= 10_000_000
            && self.failures <= self.requests
            && self.error_rate <= 1.0
            && floats.all(|f| (0.0..1e12).contains(&f))
    }

    /// Adds up runners' progress: counts and rates summed, elapsed and planned the longest,
    /// latency figures the highest pod's (an upper bound of the merged ones).
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Progress>) -> Option<Progress> {
        let mut merged: Option<Progress> = None;
        for p in parts {
            let m = merged.get_or_insert_with(Progress::default);
            m.elapsed_seconds = m.elapsed_seconds.max(p.elapsed_seconds);
            m.planned_seconds = m.planned_seconds.max(p.planned_seconds);
            m.users = m.users.saturating_add(p.users);
            m.requests = m.requests.saturating_add(p.requests);
            m.failures = m.failures.saturating_add(p.failures);
            m.rps += p.rps;
            m.p50_ms = m.p50_ms.max(p.p50_ms);
            m.p95_ms = m.p95_ms.max(p.p95_ms);
            m.ttft_p95_ms = max_of(m.ttft_p95_ms, p.ttft_p95_ms);
            m.output_tokens_per_second =
                match (m.output_tokens_per_second, p.output_tokens_per_second) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
        }
        if let Some(m) = merged.as_mut() {
            m.error_rate = if m.requests == 0 {
                0.0
            } else {
                m.failures as f64 / m.requests as f64
            };
        }
        merged
    }

    /// The figures in one line: `120/300s, 50 users, 48.2 req/s, p50 12.0 ms, p95 30.1 ms,
    /// 0 failures (0.00%)` (and TTFT p95 and output tokens/s for LLM tasks).
    pub fn describe(&self) -> String {
        let mut line = format!(
            "{}/{}s, {} users, {:.1} req/s, p50 {:.1} ms, p95 {:.1} ms, {} failures ({:.2}%)",
            self.elapsed_seconds,
            self.planned_seconds,
            self.users,
            self.rps,
            self.p50_ms,
            self.p95_ms,
            self.failures,
            self.error_rate * 100.0
        );
        if let Some(ttft) = self.ttft_p95_ms {
            line.push_str(&format!(", TTFT p95 {ttft:.1} ms"));
        }
        if let Some(tps) = self.output_tokens_per_second {
            line.push_str(&format!(", {tps:.1} output tokens/s"));
        }
        line
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The `PROGRESS` column of a profile that runs: `steady 120/300s`.
pub fn column(profile: &str, progress: &Progress) -> String {
    format!(
        "{profile} {}/{}s",
        progress.elapsed_seconds, progress.planned_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(users: u64, requests: u64, failures: u64, p95: f64) -> Progress {
        Progress {
            elapsed_seconds: 20,
            planned_seconds: 60,
            users,
            requests,
            failures,
            error_rate: failures as f64 / requests as f64,
            rps: requests as f64 / 20.0,
            p50_ms: p95 / 2.0,
            p95_ms: p95,
            ttft_p95_ms: None,
            output_tokens_per_second: None,
        }
    }

    #[test]
    fn pods_add_up_and_latency_is_the_highest_pods() {
        let a = pod(10, 400, 4, 30.0);
        let mut b = pod(10, 600, 0, 50.0);
        b.elapsed_seconds = 21;
        let m = Progress::merge([&a, &b]).unwrap();
        assert_eq!((m.users, m.requests, m.failures), (20, 1000, 4));
        assert_eq!(m.elapsed_seconds, 21);
        assert!((m.rps - 50.0).abs() < 1e-9);
        assert!((m.error_rate - 0.004).abs() < 1e-12);
        assert_eq!((m.p50_ms, m.p95_ms), (25.0, 50.0));
        assert_eq!(Progress::merge(std::iter::empty()), None);
        assert_eq!(
            m.describe(),
            "21/60s, 20 users, 50.0 req/s, p50 25.0 ms, p95 50.0 ms, 4 failures (0.40%)"
        );
        assert_eq!(column("steady", &m), "steady 21/60s");
    }

    #[test]
    fn llm_figures_merge_where_any_pod_has_them() {
        let mut a = pod(1, 10, 0, 900.0);
        a.ttft_p95_ms = Some(150.0);
        a.output_tokens_per_second = Some(40.0);
        let mut b = pod(1, 10, 0, 800.0);
        b.ttft_p95_ms = Some(170.0);
        b.output_tokens_per_second = Some(45.0);
        let m = Progress::merge([&a, &b]).unwrap();
        assert_eq!(m.ttft_p95_ms, Some(170.0));
        assert_eq!(m.output_tokens_per_second, Some(85.0));
        assert!(
            m.describe()
                .ends_with("TTFT p95 170.0 ms, 85.0 output tokens/s")
        );
    }

    #[test]
    fn forged_figures_are_not_plausible() {
        assert!(pod(1, 10, 1, 5.0).is_plausible());
        let mut p = pod(1, 10, 11, 5.0);
        assert!(!p.is_plausible(), "more failures than requests");
        p = pod(1, 10, 1, f64::NAN);
        assert!(!p.is_plausible());
        p = pod(1, 10, 1, -1.0);
        assert!(!p.is_plausible());
        p = pod(1, 10, 1, 5.0);
        p.elapsed_seconds = u64::MAX;
        assert!(!p.is_plausible());
    }
}
