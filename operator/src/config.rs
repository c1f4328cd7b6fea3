//! The `loadgate` command line: `crds` (print or write the CRDs) and `operator` (run the
//! controllers). Every operator flag has an environment fallback of the same name, which is how
//! the Helm chart sets them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// loadgate: where does this model endpoint fall over, and may this rollout go ahead?
#[derive(Debug, Parser)]
#[command(name = "loadgate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (or write them into a directory).
    Crds(CrdsArgs),
    /// Run the ModelEndpoint and LoadTest controllers against the cluster of the current
    /// kubeconfig (or in-cluster config).
    Operator(OperatorArgs),
    /// Run a LoadTest (and the ModelEndpoint it targets) on this machine, no cluster: the
    /// status the operator would write is printed, reports go to results/. Exit 0 pass, 1 a
    /// budget broke, 2 bad manifest, 3 no verdict (endpoint never ready, runner failed, timeout).
    Local(crate::local::LocalArgs),
    /// Fetch a LoadTest's merged report from its ConfigMap (it outlives the runner Jobs and
    /// their pods) and write it as one self-contained HTML page, or as JSON.
    Report(ReportArgs),
}

/// `loadgate report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The LoadTest.
    pub name: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Where to write it (default NAME.html, or NAME.json with --json); `-` for stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The run to show (the `loadgate.dev/run` annotation's value); default: the latest.
    #[arg(long)]
    pub run: Option<String>,
    /// Write the report's JSON instead of HTML.
    #[arg(long)]
    pub json: bool,
    /// Also write each profile's Locust-format CSVs, merged across its runner pods:
    /// PREFIX<profile>_stats.csv and PREFIX<profile>_stats_history.csv.
    #[arg(long, value_name = "PREFIX")]
    pub csv: Option<String>,
}

/// `loadgate crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write `modelendpoints.yaml` and `loadtests.yaml` into this directory instead of printing
    /// both to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// `loadgate operator`.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// model-server image for ModelEndpoints that name none.
    #[arg(
        long,
        env = "MODEL_SERVER_IMAGE",
        default_value = "ghcr.io/loadgate/model-server:0.1.0"
    )]
    pub model_server_image: String,

    /// loadrunner image for LoadTests that name none.
    #[arg(
        long,
        env = "LOADRUNNER_IMAGE",
        default_value = "ghcr.io/loadgate/loadrunner:0.1.0"
    )]
    pub loadrunner_image: String,

    /// Seconds each runner pod keeps serving its live `/metrics` (port 9090) after its results
    /// are written, so a Prometheus scrape sees the final counts: about two scrape intervals
    /// with the chart's runner PodMonitor, 0 without one (the Job ends as soon as it can).
    #[arg(long, env = "RUNNER_METRICS_LINGER_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub runner_metrics_linger_seconds: u64,

    /// Targets a LoadTest's `target.url` may load, comma-separated: `*` (any host not denied),
    /// host names, `*.domain` for the names under it, IPs or CIDRs. Names are matched as
    /// written, not resolved: pair with the chart's runner NetworkPolicy.
    #[arg(long, env = "ALLOWED_TARGETS", default_value = "*")]
    pub allowed_targets: String,

    /// Targets no LoadTest may load, whatever is allowed: the same shapes. Default: loopback
    /// and link-local (the cloud metadata address), and `localhost`.
    #[arg(long, env = "DENIED_TARGETS", default_value = crate::policy::DEFAULT_DENIED_TARGETS)]
    pub denied_targets: String,

    /// Runner images a LoadTest may name (`spec.runner.image`), comma-separated repositories
    /// (any tag or digest), or prefixes ending in `/`. Default: `--loadrunner-image`'s
    /// repository only.
    #[arg(long, env = "ALLOWED_RUNNER_IMAGES", default_value = "")]
    pub allowed_runner_images: String,

    /// Model-server images a ModelEndpoint may name (`spec.image`, or a team's own server in
    /// `spec.runtime.image`), as above. Default: `--model-server-image`'s repository only.
    #[arg(long, env = "ALLOWED_MODEL_SERVER_IMAGES", default_value = "")]
    pub allowed_model_server_images: String,

    /// Most users any profile of one LoadTest may start, all its runner pods together.
    #[arg(long, env = "MAX_USERS_PER_LOAD_TEST", default_value_t = crate::policy::DEFAULT_MAX_USERS)]
    pub max_users_per_load_test: u32,

    /// Address of /health and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Objects of each kind reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,

    /// Only watch this namespace (default: all namespaces). With a namespace, the operator
    /// needs only a Role there (the chart's `watchNamespace`).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Run the controllers only while holding the Lease (coordination.k8s.io), so several
    /// replicas are safe: one leads, the others wait. Off only for a single replica you are sure
    /// of (e.g. while debugging).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the Lease; default: the pod's own (POD_NAMESPACE), else the kubeconfig's.
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the Lease; replicas of one install share it.
    #[arg(long, env = "LEASE_NAME", default_value = "loadgate-operator")]
    pub lease_name: String,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}
