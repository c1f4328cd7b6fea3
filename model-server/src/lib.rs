//! model-server: an HTTP embedding and reranking server for sentence-transformers BERT and
//! XLM-RoBERTa models (first all-MiniLM-L6-v2) on axum + candle + tokenizers.
//!
//! Module map, in request order:
//! - [`http`]: accept loop (connection cap, header and body timeouts), routes, JSON errors,
//!   request timeout, metrics middleware;
//! - [`infer`]: admission (429), tokenization ([`tokenize`]), dynamic batching, worker threads;
//! - [`backend`]: the model (`candle` encoder, then pooling and Dense, or a classifier), behind a
//!   trait tests can fake;
//! - [`model`]: finding the model's files (local directory or Hub id); [`modules`]: what its
//!   sentence-transformers files say to compute, refusing what the server would not match;
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
pub mod modules;
pub mod shutdown;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
pub mod tokenize;

use anyhow::Context;
use backend::candle::CandleBert;
use config::Args;
use http::{AppState, HttpConfig, ModelCard, ServedModel};
use infer::{EmbedOptions, Infer, InferTasks, Limits};
use metrics::Metrics;
use modules::Task;
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

/// Loads the model `args` names (off the async runtime), starts the pipeline under `limits` and
/// warms it up; `started` is when start-up began, for the load-time metric. [`run`] serves what
/// it returns; tests serve it through [`http::app`].
///
/// # Errors
/// A model that cannot be found, read, or served as sentence-transformers would compute it.
pub async fn load_model(
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
        default_prompt_name,
        ..
    } = args;
    let (backend, tokenizer, card) = tokio::task::spawn_blocking(move || {
        let files = model::resolve(&model, &hub)?;
        let mut prompts = files.modules.prompts.clone();
        if let Some(name) = default_prompt_name {
            anyhow::ensure!(
                prompts.named.contains_key(&name),
                "--default-prompt-name {name:?}: {} has no such prompt in config_sentence_transformers.json (it has {:?})",
                files.dir.display(),
                prompts.named.keys().collect::<Vec<_>>()
            );
            prompts.default = Some(name);
        }
        let mut backend = CandleBert::load(&files, &kernels)?;
        let model_max = backend.max_position_embeddings();
        let max_len = max_input_length
            .or(files.modules.max_seq_length.map(|n| n.min(model_max)))
            .unwrap_or(model_max);
        anyhow::ensure!(
            (3..=model_max).contains(&max_len),
            "--max-input-length {max_len} is outside 3..={model_max} (the model's position embeddings)"
        );
        let tokenizer = TextTokenizer::from_file(&files.tokenizer, max_len)?
            .lowercasing(files.modules.lowercase);
        if dtype == config::Dtype::Int8 {
            let layers = backend.quantize_int8(&tokenizer)?;
            let kernel = backend::quantized::Kernel::best(kernels.int8_kernel).name();
            tracing::info!(layers, kernel, "dense layers quantized to int8");
        }
        let huge_page_mib = backend::pages::anon_huge_page_bytes().map(|b| b >> 20);
        let card = ModelCard {
            architecture: files.modules.architecture.as_str(),
            task: files.modules.task.clone(),
            prompts,
        };
        tracing::info!(
            dir = %files.dir.display(),
            architecture = card.architecture,
            task = card.task.kind(),
            pooling = files.pooling().map_or("none", |p| p.as_str()),
            prompts = ?card.prompts.named.keys().collect::<Vec<_>>(),
            max_input_length = max_len,
            dtype = dtype.as_str(),
            huge_page_mib,
            "model loaded"
        );
        anyhow::Ok((backend, tokenizer, card))
    })
    .await
    .context("model loading panicked")??;
    let task = card.task.clone();
    let (infer, tasks) = Infer::start(Arc::new(backend), tokenizer, limits, metrics.clone())?;
    warm_up(&infer, &task).await?;
    let seconds = started.elapsed().as_secs_f64();
    metrics.model_load_seconds.set(seconds);
    tracing::info!(seconds, "warmed up");
    let dtype = dtype.as_str();
    Ok((ServedModel { infer, dtype, card }, tasks))
}

/// One pass per worker, so first requests do not pay for lazy allocations.
async fn warm_up(infer: &Infer, task: &Task) -> anyhow::Result<()> {
    let text = "loadgate warm-up: a short sentence to embed.".to_owned();
    let passes = (0..infer.limits().inference_workers).map(|_| async {
        match task {
            Task::Embed { .. } => infer.embed([text.clone()], EmbedOptions::default()).await,
            Task::Rerank { .. } => infer.rerank(text.clone(), vec![text.clone()], true).await,
        }
    });
    for result in futures::future::join_all(passes).await {
        result.context("warm-up inference failed")?;
    }
    Ok(())
}
