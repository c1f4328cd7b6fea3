//! `process-kubelet`: a kubelet for loadgate's test cluster. It registers a Node, binds the
//! unscheduled pods to it and runs their containers as local processes of the workspace's own
//! binaries, each pod on its own loopback address, with readiness probes, exit codes and
//! termination messages reported as a kubelet would, and serves their logs to the apiserver
//! (`pods/log`). See test/cluster/README.md.

#![forbid(unsafe_code)]

mod logs;
mod node;
mod objects;
mod plan;
mod probe;
mod runtime;
mod services;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The Node this kubelet registers and serves.
    #[arg(long, default_value = "process-kubelet")]
    node_name: String,
    /// Pod directories (logs, termination messages, emptyDir volumes) go under this.
    #[arg(long)]
    state_dir: PathBuf,
    /// IMAGE=BINARY: the binary that plays an image, by repository basename
    /// (`model-server=target/debug/model-server`).
    #[arg(long = "image", value_name = "IMAGE=BINARY", value_parser = pair)]
    images: Vec<(String, PathBuf)>,
    /// PREFIX=DIR: where a container path lives here (`/models=./models`).
    #[arg(long = "path", value_name = "PREFIX=DIR", value_parser = pair)]
    paths: Vec<(String, PathBuf)>,
    /// Pods get 127.0.0.N from this N upwards.
    #[arg(long, default_value_t = 10)]
    first_ip: u8,
    /// Port of the log endpoint on 127.0.0.1 (the Node's kubelet endpoint; the apiserver
    /// proxies `pods/log` to it). Served when the three TLS files are given.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// The log endpoint's serving certificate (PEM).
    #[arg(long, requires_all = ["tls_private_key_file", "client_ca_file"])]
    tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// CA of the clients it serves (the apiserver's `--kubelet-client-certificate`).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
}

fn pair(value: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?}: write NAME=PATH"))?;
    let path = std::path::absolute(path).map_err(|e| format!("{path}: {e}"))?;
    Ok((name.to_owned(), path))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let client = kube::Client::try_default()
        .await
        .context("no kubeconfig (set KUBECONFIG)")?;
    let state_dir = std::path::absolute(&args.state_dir)?;
    let log_port = match (
        &args.tls_cert_file,
        &args.tls_private_key_file,
        &args.client_ca_file,
    ) {
        (Some(cert), Some(key), Some(client_ca)) => {
            let tls = logs::Tls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
            };
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
                .await
                .with_context(|| {
                    format!("log endpoint: cannot listen on 127.0.0.1:{}", args.port)
                })?;
            let dir = state_dir.clone();
            tokio::spawn(async move {
                if let Err(e) = logs::serve(listener, &tls, dir).await {
                    tracing::error!(error = format!("{e:#}"), "log endpoint stopped");
                }
            });
            tracing::info!(port = args.port, "serving container logs");
            Some(args.port)
        }
        _ => None,
    };
    node::register(&client, &args.node_name, log_port).await?;
    let settings = plan::Settings {
        images: args.images.into_iter().collect(),
        paths: args.paths,
        env: Vec::new(),
    };
    let mut kubelet = runtime::Kubelet::new(
        client.clone(),
        args.node_name.clone(),
        settings,
        state_dir,
        args.first_ip,
    );
    tracing::info!(node = %args.node_name, "serving pods");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut heartbeat = tokio::time::interval(Duration::from_secs(30));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = kubelet.tick().await {
                    tracing::warn!(error = %e, "pass failed");
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = node::heartbeat(&client, &args.node_name, log_port).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    kubelet.shutdown().await;
    tracing::info!("stopped every pod process");
    Ok(())
}
