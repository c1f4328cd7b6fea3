//! `loadrunner` binary: parse flags, run or gate, exit 0 (pass), 1 (fail) or 2 (usage).

#![forbid(unsafe_code)]

use clap::Parser;
use loadrunner::Verdict;
use loadrunner::config::{Cli, Command};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Gate(args) => loadrunner::gate_command::command(&args),
        Command::Run(args) => match runtime(args.threads) {
            Ok(runtime) => runtime.block_on(loadrunner::run::run_command(*args, shutdown_signal())),
            Err(error) => {
                eprintln!("loadrunner: cannot start the async runtime: {error}");
                return ExitCode::from(Verdict::Fail.code());
            }
        },
    };
    match result {
        Ok(verdict) => ExitCode::from(verdict.code()),
        Err(error) => {
            // Each error's text carries its cause.
            eprintln!("loadrunner: {error}");
            ExitCode::from(error.verdict().code())
        }
    }
}

/// The async runtime, with `threads` workers (default: one per core).
fn runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(usize::from(threads));
    }
    builder.enable_all().build()
}

/// SIGINT or SIGTERM: stop users, drain, still write the reports.
async fn shutdown_signal() {
    loadrunner::interrupted().await;
    tracing::warn!("signal received: stopping users, draining in-flight requests, writing reports");
}
