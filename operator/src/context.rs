//! What every reconcile shares: the client, the event recorder, the metrics and the settings.

use crate::config::OperatorArgs;
use crate::metrics::Metrics;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use std::sync::Arc;

/// Settings the controllers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default model-server image.
    pub model_server_image: String,
    /// Default loadrunner image.
    pub loadrunner_image: String,
    /// What LoadTests and ModelEndpoints may ask for.
    pub policy: crate::policy::Policy,
    /// Seconds a runner pod keeps serving `/metrics` after its results.
    pub runner_metrics_linger_seconds: u64,
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    /// The apiserver client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// What "now" is (the system's; tests set and move it).
    pub clock: crate::status::Clock,
}

impl Context {
    /// From the operator's arguments.
    ///
    /// # Errors
    /// A policy flag that does not parse, naming it.
    pub fn new(
        client: Client,
        args: &OperatorArgs,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self::with_settings(
            client,
            Settings {
                model_server_image: args.model_server_image.clone(),
                loadrunner_image: args.loadrunner_image.clone(),
                policy: crate::policy::Policy::from_args(args)?,
                runner_metrics_linger_seconds: args.runner_metrics_linger_seconds,
            },
            metrics,
        )))
    }

    /// From explicit settings (tests).
    pub fn with_settings(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "loadgate".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            clock: crate::status::Clock::system(),
        }
    }
}
