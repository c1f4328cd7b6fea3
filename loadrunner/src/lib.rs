//! loadrunner: the load engine loadgate measures with, as a library (for local mode and the
//! operator's runner Jobs) and a Locust-like CLI. What a run measured, and the math and reports
//! over it, live in `loadgate_results`; this crate makes the load.
//!
//! Module map: a run is one [`loadgate_api::run_spec::RunSpec`], built from the flags of
//! [`config`] or read from `--spec`, and carried out by [`run`]: [`target`] finds the target and
//! waits on it; [`scenario`] (weighted tasks and payloads from [`corpus`] or the team's
//! [`dataset`], seeded by [`rng`]; bodies and answer checks in [`wire`], LLM bodies and
//! streamed answers in [`llm_wire`]) says what users send;
//! [`engine`] runs the users (spawn rate, deadline, drain; [`arrivals`] for the open model) over
//! [`client`] (keep-alive HTTP/1.1 or HTTP/2, connections opened by [`connect`]) and hands each
//! sample to the [`aggregator`], which owns the run's `loadgate_results::stats::Stats`;
//! [`quality`] checks sampled embed answers against vectors taken on the idle endpoint;
//! [`console`] prints progress and the summary; [`outputs`] writes the reports and the results
//! frame. [`gate_command`] is `loadrunner gate` over a Locust CSV.

#![forbid(unsafe_code)]

pub use error::{RunError, UsageError};

pub mod aggregator;
pub mod arrivals;
pub mod client;
pub mod config;
pub mod connect;
pub mod console;
pub mod corpus;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod gate_command;
pub mod llm_wire;
pub mod metrics;
pub mod outputs;
pub mod quality;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod target;
pub mod wire;

/// How a command ended, as a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every budget held (exit 0).
    Pass,
    /// A budget broke, or the target never became ready (exit 1).
    Fail,
    /// A usage or spec error (exit 2).
    Usage,
}

impl Verdict {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Usage => 2,
        }
    }
}

/// Resolves on SIGINT or SIGTERM (the signals a terminal and Kubernetes send to stop a run).
pub async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
