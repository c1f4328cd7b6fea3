//! model-server: an HTTP embedding server for sentence-transformers BERT models (first
//! all-MiniLM-L6-v2) on axum + candle + tokenizers.
//!
//! Module map, in request order:
//! - [`http`]: accept loop (connection cap, header and body timeouts), routes, JSON errors,
//!   request timeout, metrics middleware;
//! - [`infer`]: admission (429), tokenization ([`tokenize`]), dynamic batching, worker threads;
//! - [`backend`]: the model (`candle` BERT, mean pooling), behind a trait tests can fake;
//! - [`model`]: finding the model's files (local directory or Hub id);
//! - [`config`], [`metrics`], [`telemetry`], [`shutdown`]: flags, Prometheus, logs, signals.
//!
//! Start-up order matters for probes: the port is bound first and answers `/health` with 503
//! while the model loads and warms up, then 200; SIGTERM stops accepting, finishes in-flight
//! requests and exits 0.
//!
//! Only [`backend::kernels`] may hold `unsafe` code: it is denied everywhere else.

#![deny(unsafe_code)]

pub mod backend;
pub mod config;
pub mod http;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod shutdown;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
pub mod tokenize;

use anyhow::Context;
use backend::candle::CandleBert;
use config::Args;
use http::{AppState, HttpConfig, ServedModel};
use infer::{EmbedOptions, Infer, InferTasks, Limits};
use metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenize::TextTokenizer;

/// Runs the server with the flags given until SIGINT/SIGTERM.
///
/// # Errors
/// When the port cannot be bound or the model cannot be loaded.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    tracing::info!(config = ?args, "starting model-server");
    let limits = args.limits();
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(
        HttpConfig {
            model_name: args.model_name(),
            limits,
            payload_limit: args.payload_limit,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs.max(1)),
            max_connections: args.max_connections.max(1),
        },
        metrics.clone(),
    );
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    tracing::info!(addr = %listener.local_addr()?, "listening; /health answers 503 until the model is ready");
    let loader = load_model(args, limits, metrics.clone(), started);
    serve(listener, state, loader, shutdown::signal()).await
}

/// Serves `state` on `listener`: answers at once (not ready), installs the model when `loader`
/// finishes, and drains when `shutdown` resolves. Split from [`run`] so tests can drive it with a
/// fake model and their own shutdown trigger.
///
/// # Errors
/// When `loader` fails (the server still answers until then, and stops right after).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    loader: impl Future<Output = anyhow::Result<(ServedModel, InferTasks)>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::server::serve(listener, state.clone(), stop_rx));
    tokio::pin!(shutdown);
    let loaded = tokio::select! {
        loaded = loader => Some(loaded),
        () = &mut shutdown => None,
    };
    let tasks = match loaded {
        Some(Ok((model, tasks))) => {
            state.set_ready(model);
            tracing::info!("model ready");
            shutdown.await;
            Some(tasks)
        }
        Some(Err(error)) => {
            let _ = stop_tx.send(true);
            let _ = server.await;
            return Err(error);
        }
        None => None,
    };
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    server.await.context("server task failed")?;
    // The router's state was the last other holder of the pipeline; dropping ours lets the batch
    // actor answer what is queued and stop the workers.
    drop(state);
    if let Some(tasks) = tasks {
        tasks.join().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Loads the model (off the async runtime), starts the pipeline and warms it up.
async fn load_model(
    args: Args,
    limits: Limits,
    metrics: Arc<Metrics>,
    started: Instant,
) -> anyhow::Result<(ServedModel, InferTasks)> {
    let hub = args.hub();
    let kernels = args.kernel_config();
    let Args {
        model,
        max_input_length,
        dtype,
        ..
    } = args;
    let (backend, tokenizer, pooling) = tokio::task::spawn_blocking(move || {
        let files = model::resolve(&model, &hub)?;
        let mut backend = CandleBert::load(&files, &kernels)?;
        let model_max = backend.max_position_embeddings();
        let max_len = max_input_length.or(files.max_seq_length).unwrap_or(model_max);
        anyhow::ensure!(
            (3..=model_max).contains(&max_len),
            "--max-input-length {max_len} is outside 3..={model_max} (the model's position embeddings)"
        );
        let tokenizer = TextTokenizer::from_file(&files.tokenizer, max_len)?;
        if dtype == config::Dtype::Int8 {
            let layers = backend.quantize_int8(&tokenizer)?;
            let kernel = backend::quantized::Kernel::best(kernels.int8_kernel).name();
            tracing::info!(layers, kernel, "dense layers quantized to int8");
        }
        let huge_page_mib = backend::pages::anon_huge_page_bytes().map(|b| b >> 20);
        tracing::info!(dir = %files.dir.display(), max_input_length = max_len, pooling = files.pooling.as_str(), dtype = dtype.as_str(), huge_page_mib, "model loaded");
        anyhow::Ok((backend, tokenizer, files.pooling.as_str()))
    })
    .await
    .context("model loading panicked")??;
    let (infer, tasks) = Infer::start(Arc::new(backend), tokenizer, limits, metrics.clone())?;
    warm_up(&infer).await?;
    let seconds = started.elapsed().as_secs_f64();
    metrics.model_load_seconds.set(seconds);
    tracing::info!(seconds, "warmed up");
    let dtype = dtype.as_str();
    Ok((
        ServedModel {
            infer,
            pooling,
            dtype,
        },
        tasks,
    ))
}

/// One pass per worker, so first requests do not pay for lazy allocations.
async fn warm_up(infer: &Infer) -> anyhow::Result<()> {
    let text = ["loadgate warm-up: a short sentence to embed.".to_owned()];
    let passes =
        (0..infer.limits().inference_workers).map(|_| infer.embed(&text, EmbedOptions::default()));
    for result in futures::future::join_all(passes).await {
        result.context("warm-up inference failed")?;
    }
    Ok(())
}
