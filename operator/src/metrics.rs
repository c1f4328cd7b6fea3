//! The operator's Prometheus metrics (prefix `loadgate_`): reconciles and their errors by
//! controller and category, reconcile duration, per-LoadTest gauges of the last result, and
//! the progress of the profile that runs now (gone when none runs).

use kube::ResourceExt;
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::LoadTestStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Labels of reconcile counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `modelendpoint` or `loadtest`.
    pub controller: &'static str,
}

/// Labels of error counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `modelendpoint` or `loadtest`.
    pub controller: &'static str,
    /// [`crate::Error::category`].
    pub category: &'static str,
}

/// Labels of per-LoadTest gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TestLabels {
    /// Namespace.
    pub namespace: String,
    /// LoadTest name.
    pub name: String,
}

/// All operator metrics.
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles that failed.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile duration, seconds.
    pub duration: Family<ControllerLabels, Histogram>,
    /// Last finished run's p95 in ms.
    pub last_p95_ms: Family<TestLabels, Gauge<f64, AtomicU64>>,
    /// Last finished run's error rate.
    pub last_error_rate: Family<TestLabels, Gauge<f64, AtomicU64>>,
    /// Last finished run's verdict: 1 pass, 0 fail.
    pub last_passed: Family<TestLabels, Gauge>,
    /// The running profile's progress: one gauge per figure.
    pub progress: ProgressGauges,
}

/// Gauges of floats by LoadTest.
type FloatGauges = Family<TestLabels, Gauge<f64, AtomicU64>>;

/// The running profile's figures (`status.profiles[].progress`), by LoadTest.
#[derive(Default)]
pub struct ProgressGauges {
    /// Seconds of load so far.
    pub elapsed_seconds: Family<TestLabels, Gauge<f64, AtomicU64>>,
    /// Seconds planned.
    pub planned_seconds: Family<TestLabels, Gauge<f64, AtomicU64>>,
    /// Users running.
    pub users: Family<TestLabels, Gauge<f64, AtomicU64>>,
    /// Requests per second over the last 10 s.
    pub rps: Family<TestLabels, Gauge<f64, AtomicU64>>,
    /// p95 so far, ms.
    pub p95_ms: Family<TestLabels, Gauge<f64, AtomicU64>>,
    /// Error rate so far.
    pub error_rate: Family<TestLabels, Gauge<f64, AtomicU64>>,
}

impl ProgressGauges {
    fn all(&self) -> [(&'static str, &'static str, &FloatGauges); 6] {
        [
            (
                "loadtest_progress_elapsed_seconds",
                "Seconds of load so far in the running profile",
                &self.elapsed_seconds,
            ),
            (
                "loadtest_progress_planned_seconds",
                "Seconds the running profile is planned to load",
                &self.planned_seconds,
            ),
            (
                "loadtest_progress_users",
                "Users running in the running profile (all runner pods)",
                &self.users,
            ),
            (
                "loadtest_progress_rps",
                "Requests per second of the running profile over the last 10 s",
                &self.rps,
            ),
            (
                "loadtest_progress_p95_ms",
                "p95 latency so far of the running profile, ms",
                &self.p95_ms,
            ),
            (
                "loadtest_progress_error_rate",
                "Error rate so far of the running profile",
                &self.error_rate,
            ),
        ]
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            }),
            last_p95_ms: Family::default(),
            last_error_rate: Family::default(),
            last_passed: Family::default(),
            progress: ProgressGauges::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn register(self, registry: &mut Registry) -> Self {
        registry.register("reconciles", "Reconciles run", self.reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed",
            self.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            self.duration.clone(),
        );
        registry.register(
            "loadtest_p95_ms",
            "p95 latency of the last finished run, ms",
            self.last_p95_ms.clone(),
        );
        registry.register(
            "loadtest_error_rate",
            "Error rate of the last finished run",
            self.last_error_rate.clone(),
        );
        registry.register(
            "loadtest_passed",
            "1 when the last finished run passed, else 0",
            self.last_passed.clone(),
        );
        for (name, help, family) in self.progress.all() {
            registry.register(name, help, family.clone());
        }
        self
    }

    /// Shows the running profile's progress of `test` (its new `status`), or removes its
    /// progress gauges when no profile runs.
    pub fn show_progress(&self, test: &LoadTest, status: &LoadTestStatus) {
        let labels = TestLabels {
            namespace: test.namespace().unwrap_or_default(),
            name: test.name_any(),
        };
        let running = status.profiles.iter().find_map(|p| p.progress.as_ref());
        let Some(p) = running.map(|p| &p.figures) else {
            for (_, _, family) in self.progress.all() {
                family.remove(&labels);
            }
            return;
        };
        let figures = [
            p.elapsed_seconds as f64,
            p.planned_seconds as f64,
            p.users as f64,
            p.rps,
            p.p95_ms,
            p.error_rate,
        ];
        for ((_, _, family), value) in self.progress.all().into_iter().zip(figures) {
            family.get_or_create(&labels).set(value);
        }
    }

    /// Counts a reconcile and times it until the guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, controller: &'static str, error: &crate::Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                controller,
                category: error.category(),
            })
            .inc();
    }
}

/// Observes the reconcile duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}
