//! `model-server` binary: parse flags, start logging, run until SIGTERM.

use clap::Parser;
use model_server::config::Args;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    model_server::telemetry::init(args.log_format);
    match model_server::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("model-server failed: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
