//! The operator's Prometheus metrics (prefix `loadgate_`): reconciles and their errors by
//! controller and category, reconcile duration, and per-LoadTest gauges of the last result.

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
        self
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
