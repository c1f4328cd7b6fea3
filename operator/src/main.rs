//! `loadgate`: parse the command line, start logging, run the subcommand, exit with its code.

#![forbid(unsafe_code)]

use clap::Parser;
use loadgate::config::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds(args) => match loadgate::crdgen::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgate crds: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Local(args) => {
            loadgate::telemetry::init(loadgate::config::LogFormat::Plain);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts; this is a bug");
            runtime.block_on(loadgate::local::run(args))
        }
        Command::Report(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts; this is a bug");
            match runtime.block_on(loadgate::reports::command(&args)) {
                Ok(path) => {
                    if path != "-" {
                        eprintln!("loadgate report: wrote {path}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgate report: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Operator(args) => {
            loadgate::telemetry::init(args.log_format);
            tracing::info!(config = ?args, "starting the operator");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts; this is a bug");
            match runtime.block_on(loadgate::run_operator(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
