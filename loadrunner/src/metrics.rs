//! Live Prometheus metrics of a run (`--metrics-port`): what the runner measured so far, served
//! at `GET /metrics` in the OpenMetrics text format while the load runs (and `--metrics-linger`
//! seconds after, so the last scrape sees the final counts).
//!
//! The figures are a [`Snapshot`] taken from the run's stats once a second (never on a
//! request's path) and encoded at scrape time by a [`Collector`]: the counters and histograms
//! are the same cumulative figures the run's results end with (warm-up excluded), so the last
//! scrape adds up to the final results. Failure reasons are bounded: a task's first
//! [`MAX_REASONS`] distinct reasons are labels, later ones count as `other`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `loadgate_runner_users` | gauge | |
//! | `loadgate_runner_elapsed_seconds`, `loadgate_runner_planned_seconds` | gauge | |
//! | `loadgate_runner_requests_total` | counter | `task` |
//! | `loadgate_runner_failures_total` | counter | `task`, `reason` |
//! | `loadgate_runner_request_duration_seconds` | histogram | `task` |
//! | `loadgate_runner_budget_p95_seconds`, `loadgate_runner_budget_error_rate` | gauge | |
//! | `loadgate_runner_time_to_first_token_seconds` | histogram | `task` (LLM tasks) |
//! | `loadgate_runner_output_tokens_total` | counter | `task` (LLM tasks) |

use hdrhistogram::Histogram;
use loadgate_api::load::Thresholds;
use loadgate_results::stats::Stats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Distinct failure reasons a task keeps as labels; the rest count as `other`.
pub const MAX_REASONS: usize = 20;
/// Longest reason label, bytes (cut at a character boundary).
const MAX_REASON_BYTES: usize = 200;
/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0,
];

/// A histogram as encoded: sum (s), count, and the count of each bucket (not cumulative; the
/// last is `+Inf`'s).
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets {
    sum: f64,
    count: u64,
    counts: Vec<(f64, u64)>,
}

impl Buckets {
    /// The buckets of an HDR histogram of microseconds, and its exact sum when known.
    fn of(h: &Histogram<u64>, sum_micros: Option<u128>) -> Self {
        let mut counts = Vec::with_capacity(BUCKETS.len() + 1);
        let mut below = 0;
        for bound in BUCKETS {
            let upto = h.count_between(0, (bound * 1e6) as u64);
            counts.push((bound, upto.saturating_sub(below)));
            below = upto;
        }
        counts.push((f64::INFINITY, h.len().saturating_sub(below)));
        let sum = match sum_micros {
            Some(s) => s as f64 / 1e6,
            None => h.mean() * h.len() as f64 / 1e6,
        };
        Self {
            sum,
            count: h.len(),
            counts,
        }
    }
}

/// One task's figures.
#[derive(Debug, Clone, Default, PartialEq)]
struct TaskFigures {
    name: String,
    requests: u64,
    /// Failures by reason label (at most [`MAX_REASONS`] and `other`).
    failures: BTreeMap<String, u64>,
    latency: Buckets,
    ttft: Option<Buckets>,
    output_tokens: Option<u64>,
}

/// What the metrics show: the run's figures as of its last second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    users: u64,
    elapsed_seconds: u64,
    planned_seconds: u64,
    budget_p95_seconds: Option<f64>,
    budget_error_rate: Option<f64>,
    tasks: Vec<TaskFigures>,
}

/// The run's live metrics: a snapshot updated once a second, encoded at each scrape.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    snapshot: Mutex<Snapshot>,
    /// Reasons admitted as labels, per task (they only grow, so every series is monotonic).
    admitted: Mutex<Vec<Vec<String>>>,
}

impl RunMetrics {
    /// Metrics of a run planned for `planned_seconds` with these budgets.
    pub fn new(planned_seconds: u64, thresholds: &Thresholds) -> Self {
        let snapshot = Snapshot {
            planned_seconds,
            budget_p95_seconds: thresholds.p95_ms.map(|ms| ms / 1000.0),
            budget_error_rate: thresholds.max_error_rate,
            ..Snapshot::default()
        };
        Self {
            shared: Arc::new(Shared {
                snapshot: Mutex::new(snapshot),
                admitted: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A registry serving these metrics.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.shared.clone()));
        registry
    }

    /// Takes the figures of `stats` after `elapsed_seconds` of load.
    pub fn update(&self, stats: &Stats, elapsed_seconds: u64) {
        let mut admitted = self.shared.admitted.lock().expect("metrics lock");
        admitted.resize(stats.tasks.len(), Vec::new());
        let mut tasks: Vec<TaskFigures> = stats
            .tasks
            .iter()
            .map(|t| TaskFigures {
                name: t.name.clone(),
                requests: t.requests,
                failures: BTreeMap::new(),
                latency: Buckets::of(&t.histogram, Some(t.sum_micros)),
                ttft: t.llm.as_deref().map(|l| Buckets::of(&l.ttft, None)),
                output_tokens: t.llm.as_deref().map(|l| l.output_tokens),
            })
            .collect();
        for ((_, task, reason), count) in &stats.failures {
            let Some(i) = stats.tasks.iter().position(|t| &t.name == task) else {
                continue;
            };
            let reason = bounded(reason);
            let known = &mut admitted[i];
            let label = if known.contains(&reason) {
                reason
            } else if known.len() < MAX_REASONS {
                known.push(reason.clone());
                reason
            } else {
                "other".to_owned()
            };
            *tasks[i].failures.entry(label).or_default() += count;
        }
        let mut snapshot = self.shared.snapshot.lock().expect("metrics lock");
        snapshot.users = stats.history.last().map_or(0, |r| u64::from(r.users));
        snapshot.elapsed_seconds = elapsed_seconds;
        snapshot.tasks = tasks;
    }
}

fn bounded(reason: &str) -> String {
    let mut cut = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    reason[..cut].to_owned()
}

impl Collector for Shared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot.lock().expect("metrics lock").clone();
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&v)
        };
        gauge(
            &mut encoder,
            "loadgate_runner_users",
            "Users running now.",
            s.users as f64,
        )?;
        gauge(
            &mut encoder,
            "loadgate_runner_elapsed_seconds",
            "Seconds of load so far.",
            s.elapsed_seconds as f64,
        )?;
        gauge(
            &mut encoder,
            "loadgate_runner_planned_seconds",
            "Seconds the profile is planned to load.",
            s.planned_seconds as f64,
        )?;
        if let Some(v) = s.budget_p95_seconds {
            gauge(
                &mut encoder,
                "loadgate_runner_budget_p95_seconds",
                "The p95 budget, seconds.",
                v,
            )?;
        }
        if let Some(v) = s.budget_error_rate {
            gauge(
                &mut encoder,
                "loadgate_runner_budget_error_rate",
                "The error-rate budget (a ratio).",
                v,
            )?;
        }
        let task = |t: &TaskFigures| vec![("task", t.name.clone())];
        counters(
            &mut encoder,
            "loadgate_runner_requests",
            "Requests finished (failed ones included), warm-up excluded.",
            s.tasks.iter().map(|t| (task(t), t.requests)),
        )?;
        counters(
            &mut encoder,
            "loadgate_runner_failures",
            "Requests failed, by task and reason.",
            s.tasks.iter().flat_map(|t| {
                (t.failures.iter()).map(|(reason, n)| {
                    (
                        vec![("task", t.name.clone()), ("reason", reason.clone())],
                        *n,
                    )
                })
            }),
        )?;
        histograms(
            &mut encoder,
            "loadgate_runner_request_duration_seconds",
            "Latency of the requests sent, seconds.",
            s.tasks.iter().map(|t| (task(t), &t.latency)),
        )?;
        if s.tasks.iter().any(|t| t.ttft.is_some()) {
            histograms(
                &mut encoder,
                "loadgate_runner_time_to_first_token_seconds",
                "LLM tasks: time to the first token, seconds.",
                s.tasks
                    .iter()
                    .filter_map(|t| Some((task(t), t.ttft.as_ref()?))),
            )?;
            counters(
                &mut encoder,
                "loadgate_runner_output_tokens",
                "LLM tasks: output tokens of the answered requests.",
                s.tasks
                    .iter()
                    .filter_map(|t| Some((task(t), t.output_tokens?))),
            )?;
        }
        Ok(())
    }
}

/// Labels of one series.
type Labels = Vec<(&'static str, String)>;

/// A counter family, one series per labels.
fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

/// A histogram family, one series per labels.
fn histograms<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels, &'a Buckets)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, b) in series {
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(b.sum, b.count, &b.counts, None)?;
    }
    Ok(())
}

/// The OpenMetrics text of `registry`.
pub fn text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("encoding into a String cannot fail; this is a bug");
    out
}

/// Serves `GET /metrics` (and `/` answers 404) on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let registry = registry.clone();
                async move {
                    let response = if request.uri().path() == "/metrics"
                        && request.method() == hyper::Method::GET
                    {
                        Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(text(&registry))))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(
                                br#"{"error":"not found: the runner serves GET /metrics"}"#,
                            )))
                    };
                    Ok::<_, std::convert::Infallible>(
                        response.expect("a static response is valid; this is a bug"),
                    )
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_results::sample::{Outcome, Sample};
    use std::time::Duration;

    fn sample(task: usize, ms: u64, failure: Option<&str>) -> Sample {
        Sample {
            task,
            latency: Duration::from_millis(ms),
            outcome: match failure {
                None => Outcome::Ok { bytes: 1 },
                Some(reason) => Outcome::Failed {
                    reason: reason.into(),
                    bytes: 0,
                },
            },
            start_delay: None,
            texts: 1,
            quality: None,
            dial: None,
            llm: None,
        }
    }

    fn value(scrape: &str, series: &str) -> f64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn a_scrape_adds_up_to_the_stats() {
        let mut stats = Stats::new(&[
            ("embed".into(), "POST".into()),
            ("nope".into(), "GET".into()),
        ]);
        for ms in [3, 8, 20, 40, 90, 200, 700] {
            stats.record(&sample(0, ms, None));
        }
        stats.record(&sample(1, 2, Some("HTTPError 404")));
        stats.record(&sample(1, 2, Some("HTTPError 404")));
        stats.snapshot(4);
        let thresholds = Thresholds {
            p95_ms: Some(500.0),
            max_error_rate: Some(0.01),
            ..Thresholds::default()
        };
        let metrics = RunMetrics::new(60, &thresholds);
        metrics.update(&stats, 12);
        let scrape = text(&metrics.registry());
        assert_eq!(value(&scrape, "loadgate_runner_users"), 4.0);
        assert_eq!(value(&scrape, "loadgate_runner_elapsed_seconds"), 12.0);
        assert_eq!(value(&scrape, "loadgate_runner_planned_seconds"), 60.0);
        assert_eq!(value(&scrape, "loadgate_runner_budget_p95_seconds"), 0.5);
        assert_eq!(
            value(&scrape, "loadgate_runner_requests_total{task=\"embed\"}"),
            7.0
        );
        assert_eq!(
            value(&scrape, "loadgate_runner_requests_total{task=\"nope\"}"),
            2.0
        );
        assert_eq!(
            value(
                &scrape,
                "loadgate_runner_failures_total{task=\"nope\",reason=\"HTTPError 404\"}"
            ),
            2.0
        );
        let bucket = |le: &str| {
            value(
                &scrape,
                &format!(
                    "loadgate_runner_request_duration_seconds_bucket{{le=\"{le}\",task=\"embed\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.005"), 1.0);
        assert_eq!(bucket("0.025"), 3.0);
        assert_eq!(bucket("0.1"), 5.0);
        assert_eq!(bucket("1.0"), 7.0);
        assert_eq!(bucket("+Inf"), 7.0);
        assert_eq!(
            value(
                &scrape,
                "loadgate_runner_request_duration_seconds_count{task=\"embed\"}"
            ),
            7.0
        );
        let sum = value(
            &scrape,
            "loadgate_runner_request_duration_seconds_sum{task=\"embed\"}",
        );
        assert!((sum - 1.061).abs() < 1e-9, "{sum}");
        assert!(scrape.ends_with("# EOF\n"));
        assert!(
            !scrape.contains("time_to_first_token"),
            "no LLM task, no LLM metrics"
        );
    }

    #[test]
    fn reasons_past_the_bound_count_as_other_and_stay_there() {
        let mut stats = Stats::new(&[("embed".into(), "POST".into())]);
        for i in 0..MAX_REASONS + 5 {
            stats.record(&sample(0, 1, Some(&format!("HTTPError {}", 400 + i))));
        }
        let metrics = RunMetrics::new(60, &Thresholds::default());
        metrics.update(&stats, 1);
        let scrape = text(&metrics.registry());
        let series = scrape
            .lines()
            .filter(|l| l.starts_with("loadgate_runner_failures_total"))
            .count();
        assert_eq!(series, MAX_REASONS + 1, "{scrape}");
        assert_eq!(
            value(
                &scrape,
                "loadgate_runner_failures_total{task=\"embed\",reason=\"other\"}"
            ),
            5.0
        );
        // A reason once counted as other stays there, so no series ever goes down.
        stats.record(&sample(0, 1, Some("HTTPError 400")));
        metrics.update(&stats, 2);
        let again = text(&metrics.registry());
        assert_eq!(
            value(
                &again,
                "loadgate_runner_failures_total{task=\"embed\",reason=\"HTTPError 400\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &again,
                "loadgate_runner_failures_total{task=\"embed\",reason=\"other\"}"
            ),
            5.0
        );
    }
}
