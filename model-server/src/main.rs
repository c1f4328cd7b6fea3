//! `model-server` binary: parse flags, size candle's thread pools, start logging, run until
//! SIGTERM.

#![deny(unsafe_code)]

use clap::Parser;
use model_server::config::Args;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    size_compute_pools(args.threads_per_worker);
    model_server::telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "cannot start the async runtime"
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(model_server::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("model-server failed: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// candle sizes its CPU pools from `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS`, read once on first
/// use, and defaults to one thread per core in *global* pools shared by every inference worker:
/// its element-wise pool then serialises the workers on one lock while its spare threads spin
/// (perf: 16% of CPU in `BarrierGuard::drop` + `execute_chunked`). Sized to the per-worker thread
/// count, each worker runs its own passes inline: 78 against 53 embeddings/s at 50 users on 2
/// cores (bench/model_server.py). Values the operator set are kept. Runs first thing in `main`,
/// while the process has one thread: the environment can be changed only then.
fn size_compute_pools(threads_per_worker: usize) {
    let threads = threads_per_worker.max(1).to_string();
    let vars = [
        ("RAYON_NUM_THREADS", threads.as_str()),
        ("CANDLE_NUM_THREADS", threads.as_str()),
    ];
    if let Err(error) = model_server::backend::kernels::process::set_env_defaults(&vars) {
        // Logging starts after this (its writer may be a thread), so straight to stderr.
        eprintln!("model-server: candle's thread pools keep their default size: {error}");
    }
}
