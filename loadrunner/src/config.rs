//! The `loadrunner` command line, Locust-flavoured: `-H/--host`, `-u/--users`, `-r/--spawn-rate`,
//! `-t/--run-time`, `--csv PREFIX`; plus thresholds that turn a run into a gate. The load flags
//! are one way to build a [`RunSpec`] ([`RunArgs::run_spec`]); `--spec` hands one over whole.

use crate::UsageError;
use crate::outputs::RunOutputs;
use clap::{Args, Parser, Subcommand};
use loadgate_api::duration::Duration;
use loadgate_api::load::{LoadProfile, Search, Stage, Task, TaskThresholds, Thresholds, WaitTime};
use loadgate_api::run_spec::{MAX_RUN_SPEC_BYTES, Readiness, RunSpec, Shard};
use loadgate_api::target::{RunHeader, RunTls};
use std::path::PathBuf;

/// The flags that build a [`RunSpec`]: `--spec` replaces them all.
const SPEC_FLAGS: [&str; 36] = [
    "host",
    "ca_file",
    "insecure",
    "server_name",
    "headers",
    "env_headers",
    "users",
    "spawn_rate",
    "run_time",
    "arrival_rate",
    "stages",
    "search",
    "profile_name",
    "tasks",
    "wait_time",
    "seed",
    "request_timeout",
    "ready_timeout",
    "ready_path",
    "no_wait_ready",
    "start_at",
    "exit_zero",
    "p95_ms",
    "p99_ms",
    "max_error_rate",
    "min_rps",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "itl_p95_ms",
    "tpot_p95_ms",
    "min_output_tokens_per_second",
    "min_goodput",
    "task_budgets",
    "warmup",
    "abort_on_fail",
    "abort_after",
];

/// loadrunner: a Locust-like HTTP load generator with exact percentiles and a pass/fail gate.
#[derive(Debug, Parser)]
#[command(name = "loadrunner", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run load against a target, write reports, exit 0 on pass and 1 on fail.
    Run(Box<RunArgs>),
    /// Gate an existing Locust-format `_stats.csv` (written by loadrunner or by Locust itself).
    Gate(GateArgs),
}

/// `loadrunner run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The whole run as one JSON value (a run spec: target, profile, tasks, budgets, shard, as
    /// the operator writes it into each runner pod), or a file holding it; replaces the load
    /// flags. `--shard` still picks this runner's share; report and `--resolve` flags apply.
    #[arg(long, value_name = "JSON|FILE", conflicts_with_all = SPEC_FLAGS)]
    pub spec: Option<String>,

    /// Base URL of the target, e.g. http://127.0.0.1:8080 or https://embed.example.com (TLS by
    /// rustls, HTTP/2 by ALPN; see --ca-file, --header-env).
    #[arg(
        short = 'H',
        long,
        env = "LOADRUNNER_HOST",
        required_unless_present = "spec"
    )]
    pub host: Option<String>,

    /// https: a PEM file of CA certificates trusted beside the system roots (a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<String>,

    /// https: trust any certificate (a test endpoint only).
    #[arg(long, conflicts_with = "ca_file")]
    pub insecure: bool,

    /// https: the name sent as SNI and checked in the certificate, when not the URL's host.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// A header sent on every request, repeatable: 'Name: value'. Not for credentials (a value
    /// on the command line shows in `ps`): use --header-env for those.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// A header whose value is read from an environment variable, repeatable: 'Name=VAR'
    /// (e.g. --header-env Authorization=EMBED_API_KEY); the value is never echoed.
    #[arg(long = "header-env", value_name = "NAME=VAR", value_parser = parse_env_header)]
    pub env_headers: Vec<(String, String)>,

    /// Peak number of concurrent users.
    #[arg(short = 'u', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,

    /// Users started per second (> 0).
    #[arg(short = 'r', long, default_value_t = 1.0, value_parser = positive_f64)]
    pub spawn_rate: f64,

    /// How long to run, ramp included ("30s", "5m", "1h30m").
    #[arg(short = 't', long, default_value = "30s")]
    pub run_time: Duration,

    /// Open model: start this many requests per second whatever the answers do, at most
    /// `--users` in flight; latency counts from each scheduled start (no coordinated omission).
    #[arg(long, value_parser = positive_f64)]
    pub arrival_rate: Option<f64>,

    /// Explicit shape, repeatable: DURATION:USERS ramps linearly to USERS over DURATION (k6
    /// stages), e.g. --stage 30s:50 --stage 1m:50 --stage 10s:0. Replaces -u/-r/-t.
    #[arg(long = "stage", value_name = "DURATION:USERS", value_parser = parse_stage)]
    pub stages: Vec<Stage>,

    /// A capacity search (open model): START:STEP:STEP_DURATION:MAX offers START req/s, then
    /// STEP more every STEP_DURATION up to MAX, judges each step on its own histogram against
    /// --p95-ms/--p99-ms/--max-error-rate, and stops once two steps in a row broke one, e.g.
    /// --search 10:10:20s:200. `--users` caps the requests in flight; replaces -r/-t.
    #[arg(
        long,
        value_name = "START:STEP:STEP_DURATION:MAX",
        value_parser = parse_search,
        conflicts_with_all = ["arrival_rate", "stages"]
    )]
    pub search: Option<Search>,

    /// Warm-up: send load from the start, but leave the requests that finish in the first
    /// DURATION (whole seconds) out of every figure and budget; the history CSV keeps them,
    /// marked `warm-up` in its Type column.
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<Duration>,

    /// Stop the run as soon as --abort-after one-second windows in a row broke --p95-ms,
    /// --p99-ms or --max-error-rate (the run fails, saying why and when).
    #[arg(long)]
    pub abort_on_fail: bool,

    /// Windows in a row over budget before --abort-on-fail stops the run.
    #[arg(long, value_name = "N", requires = "abort_on_fail", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub abort_after: Option<u32>,

    /// Profile name used in reports and messages.
    #[arg(long, default_value = "run")]
    pub profile_name: String,

    /// The task mix: a JSON file, or the JSON itself (starting with `[`), holding a list of
    /// {name, weight, request}; default: the classic embedding mix (single embed weight 8, batch
    /// embed weight 2, health weight 1).
    #[arg(long, env = "LOADRUNNER_TASKS")]
    pub tasks: Option<String>,

    /// Run share INDEX of COUNT runners side by side ("0/4"): this runner makes 1/COUNT of the
    /// profile's users, spawn rate and arrival rate, and offsets its seed by INDEX. The operator
    /// sets it from the Job's completion index.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,

    /// Wait after each task: "constant:1s", "between:1s..3s" or "pacing:2s".
    #[arg(long, default_value = "constant:0s", value_parser = parse_wait_time)]
    pub wait_time: WaitTime,

    /// Threads generating load; default one per core. When the target shares the machine, fewer
    /// threads leave it more CPU (one thread sends ~40% more requests per CPU-second than two on
    /// a 2-core machine, measured against a trivial endpoint).
    #[arg(long, env = "LOADRUNNER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Seed of payloads and task picks; equal seeds send equal traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// A request slower than this fails as a timeout.
    #[arg(long, default_value = "30s")]
    pub request_timeout: Duration,

    /// How long to wait for the target's readiness path to answer 200 before starting.
    #[arg(long, default_value = "60s")]
    pub ready_timeout: Duration,

    /// Readiness path polled before the clock starts.
    #[arg(long, default_value = "/health")]
    pub ready_path: String,

    /// Start at once, without waiting for readiness.
    #[arg(long)]
    pub no_wait_ready: bool,

    /// Connect HOST:PORT to ADDR instead of resolving it (curl's syntax: HOST:PORT:ADDR). The env
    /// form takes a comma-separated list (the test kubelet passes Service addresses this way).
    #[arg(
        long,
        value_name = "HOST:PORT:ADDR",
        env = "LOADRUNNER_RESOLVE",
        value_delimiter = ','
    )]
    pub resolve: Vec<String>,

    /// Write Locust-format CSVs: PREFIX_stats.csv, _stats_history.csv, _failures.csv,
    /// _exceptions.csv.
    #[arg(long, value_name = "PREFIX")]
    pub csv: Option<PathBuf>,

    /// Write a self-contained HTML report (charts and tables, nothing fetched at view time).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Write the JSON run summary here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the summary as compact JSON of at most 4096 bytes here, for a Kubernetes
    /// termination message (`/dev/termination-log`): the operator merges these across runner pods.
    #[arg(long, value_name = "FILE", env = "LOADRUNNER_TERMINATION_SUMMARY")]
    pub termination_summary: Option<PathBuf>,

    /// Begin the load at this time, unix milliseconds, once the target is ready: runners side
    /// by side start on one clock, so their once-a-second windows line up. A time already past
    /// starts at once, and the summary's `startedAtMs` shows the lag. The operator sets it.
    #[arg(long, value_name = "UNIX_MS")]
    pub start_at: Option<u64>,

    /// Print the full results (every histogram, a ramp's steps, the once-a-second windows) as a
    /// frame at the end of standard output, named in the termination summary: the operator
    /// reads it through the pod's log, past the termination message's 4 KiB.
    #[arg(long, env = "LOADRUNNER_RESULTS_LOG")]
    pub results_log: bool,

    /// Serve live Prometheus metrics of the run (requests and failures by task and reason, a
    /// latency histogram, users, the budgets, LLM figures) at `GET /metrics` on this port while
    /// it runs. The operator sets it (9090) for the runner pods' PodMonitor.
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,

    /// Address `--metrics-port` listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub metrics_host: String,

    /// Keep serving `/metrics` this many seconds after the results are written, so the last
    /// scrape sees the final counts (at most 300).
    #[arg(long, value_name = "SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub metrics_linger: u64,

    /// Write the full results (the summary, a ramp's or search's steps, the once-a-second
    /// windows) as JSON here: what the results frame carries, for a caller on this machine
    /// (`loadgate local`).
    #[arg(long, value_name = "FILE")]
    pub results_json: Option<PathBuf>,

    /// Exit 0 once the run completed and its results are written, even when a budget broke:
    /// the caller judges them (the operator passes it, so a broken budget is the profile's
    /// verdict, not a failed pod).
    #[arg(long)]
    pub exit_zero: bool,

    /// Budgets.
    #[command(flatten)]
    pub thresholds: ThresholdArgs,

    /// A budget on one task, repeatable: "TASK:METRIC=VALUE" with METRIC p95Ms, p99Ms,
    /// maxErrorRate, minRps or an LLM one (ttftP95Ms, ttftP99Ms, itlP95Ms, tpotP95Ms,
    /// minOutputTokensPerSecond, minGoodput), e.g. --task-budget "embed batch:p95Ms=800".
    #[arg(long = "task-budget", value_name = "TASK:METRIC=VALUE", value_parser = parse_task_budget)]
    pub task_budgets: Vec<TaskThresholds>,
}

impl RunArgs {
    /// The run these arguments ask for: `--spec`'s, or one built from the load flags; `--shard`
    /// sets the share either way. It is checked by [`RunSpec::validate`] before it runs.
    ///
    /// # Errors
    /// [`UsageError`] naming the flag (or the spec's field) that cannot be run.
    pub fn run_spec(&self) -> Result<RunSpec, UsageError> {
        let mut spec = match &self.spec {
            Some(arg) => read_spec(arg)?,
            None => self.flags_spec()?,
        };
        if let Some((index, count)) = self.shard {
            spec.shard = Shard { index, count };
        }
        spec.validate().map_err(|e| {
            if self.spec.is_some() {
                UsageError(format!("--spec: {e}"))
            } else {
                UsageError(format!("{}: {}", flag_of(&e.field), e.message))
            }
        })?;
        Ok(spec)
    }

    /// The reports these arguments ask for.
    pub fn outputs(&self) -> RunOutputs {
        RunOutputs {
            csv: self.csv.clone(),
            html: self.html.clone(),
            json: self.json.clone(),
            results_json: self.results_json.clone(),
            termination_summary: self.termination_summary.clone(),
            results_log: self.results_log,
            metrics: self.metrics_port.map(|port| crate::outputs::MetricsListen {
                host: self.metrics_host.clone(),
                port,
                linger: std::time::Duration::from_secs(self.metrics_linger),
            }),
        }
    }

    fn flags_spec(&self) -> Result<RunSpec, UsageError> {
        let host = self.host.clone().unwrap_or_default();
        crate::target::parse_host(&host)?;
        let mut thresholds = Thresholds::from(self.thresholds);
        if self.abort_on_fail {
            thresholds.abort_on_fail = Some(true);
            thresholds.abort_after = self.abort_after;
        }
        // The run spec's rule names its fields (`p95Ms`); on the command line, name the flags.
        if self.search.is_some() && !thresholds.judges_steps() {
            return Err(UsageError(
                "--search judges each step on --p95-ms, --p99-ms, --max-error-rate, --ttft-p95-ms, \
                 --itl-p95-ms or --tpot-p95-ms: set one"
                    .to_owned(),
            ));
        }
        let profile = LoadProfile {
            name: self.profile_name.clone(),
            users: self.users,
            spawn_rate: self.spawn_rate,
            duration: self.run_time,
            arrival_rate: self.arrival_rate,
            stages: self.stages.clone(),
            search: self.search,
            warmup: self.warmup.unwrap_or_default(),
        };
        Ok(RunSpec {
            readiness: Readiness {
                path: self.ready_path.clone(),
                timeout: self.ready_timeout,
                wait: !self.no_wait_ready,
            },
            tasks: load_tasks(self.tasks.as_deref())?,
            wait_time: self.wait_time,
            thresholds,
            task_thresholds: self.task_budgets.clone(),
            seed: self.seed,
            request_timeout: self.request_timeout,
            start_at_ms: self.start_at,
            caller_judges: self.exit_zero,
            tls: (self.ca_file.is_some() || self.insecure || self.server_name.is_some()).then(
                || RunTls {
                    ca_file: self.ca_file.clone(),
                    ca_pem: None,
                    insecure_skip_verify: self.insecure,
                    server_name: self.server_name.clone(),
                },
            ),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| RunHeader {
                    name: name.clone(),
                    value: Some(value.clone()),
                    value_from_env: None,
                    value_from_file: None,
                })
                .chain(self.env_headers.iter().map(|(name, var)| RunHeader {
                    name: name.clone(),
                    value: None,
                    value_from_env: Some(var.clone()),
                    value_from_file: None,
                }))
                .collect(),
            ..RunSpec::new(host, profile)
        })
    }
}

/// `--header 'Name: value'`; a credential's name is refused (its value would show in `ps`).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "write 'Name: value'".to_owned())?;
    let (name, value) = (name.trim(), value.trim());
    if loadgate_api::target::is_credential(name) {
        return Err(format!(
            "{name} carries a credential, and a value on the command line shows in `ps`: \
             pass it as --header-env {name}=VARIABLE"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// `--header-env Name=VAR`.
fn parse_env_header(text: &str) -> Result<(String, String), String> {
    let (name, var) = text
        .split_once('=')
        .filter(|(n, v)| !n.trim().is_empty() && !v.trim().is_empty())
        .ok_or_else(|| "write 'Name=VARIABLE'".to_owned())?;
    Ok((name.trim().to_owned(), var.trim().to_owned()))
}

/// The flag that set a run spec's `field`, to name it in an error about flags.
fn flag_of(field: &str) -> &str {
    const FLAGS: [(&str, &str); 22] = [
        ("tls.serverName", "--server-name"),
        ("tls", "--ca-file/--insecure/--server-name"),
        ("headers", "--header/--header-env"),
        ("shard", "--shard"),
        ("target", "--host"),
        ("readiness.path", "--ready-path"),
        ("readiness.timeout", "--ready-timeout"),
        ("profile.name", "--profile-name"),
        ("profile.users", "--users"),
        ("profile.spawnRate", "--spawn-rate"),
        ("profile.duration", "--run-time"),
        ("profile.arrivalRate", "--arrival-rate"),
        ("profile.stages", "--stage"),
        ("profile.search", "--search"),
        ("taskThresholds", "--task-budget"),
        ("tasks", "--tasks"),
        ("thresholds.p95Ms", "--p95-ms"),
        ("thresholds.p99Ms", "--p99-ms"),
        ("thresholds.maxErrorRate", "--max-error-rate"),
        ("thresholds.minRps", "--min-rps"),
        ("waitTime", "--wait-time"),
        ("requestTimeout", "--request-timeout"),
    ];
    FLAGS
        .iter()
        .find(|(prefix, _)| {
            field
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
        .map_or(field, |(_, flag)| flag)
}

/// `--spec`: inline JSON when it starts with `{`, else a file of it; bounded before it is read.
fn read_spec(arg: &str) -> Result<RunSpec, UsageError> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_owned()
    } else {
        let bad = |e: &dyn std::fmt::Display| UsageError(format!("--spec {arg}: {e}"));
        let size = std::fs::metadata(arg).map_err(|e| bad(&e))?.len();
        if size > MAX_RUN_SPEC_BYTES as u64 {
            return Err(bad(&format!(
                "{size} bytes; a run spec holds at most {MAX_RUN_SPEC_BYTES}"
            )));
        }
        std::fs::read_to_string(arg).map_err(|e| bad(&e))?
    };
    RunSpec::from_json(&text).map_err(|e| UsageError(format!("--spec: {e}")))
}

/// The task mix of `--tasks`: inline JSON when it starts with `[`, else a file of JSON.
fn load_tasks(arg: Option<&str>) -> Result<Vec<Task>, UsageError> {
    let Some(arg) = arg else {
        return Ok(loadgate_api::load::default_tasks());
    };
    if arg.trim_start().starts_with('[') {
        return serde_json::from_str(arg)
            .map_err(|e| UsageError(format!("--tasks (inline JSON): {e}")));
    }
    let text =
        std::fs::read_to_string(arg).map_err(|e| UsageError(format!("--tasks {arg}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| UsageError(format!("--tasks {arg}: {e}")))
}

/// Parses "TASK:METRIC=VALUE" into a one-budget [`TaskThresholds`].
pub fn parse_task_budget(s: &str) -> Result<TaskThresholds, String> {
    let usage = || format!("{s:?}: write TASK:METRIC=VALUE, e.g. \"embed batch:p95Ms=800\"");
    let (task, budget) = s.rsplit_once(':').ok_or_else(usage)?;
    let (metric, value) = budget.split_once('=').ok_or_else(usage)?;
    let mut thresholds = Thresholds::default();
    match metric {
        "p95Ms" => thresholds.p95_ms = Some(non_negative_f64(value)?),
        "p99Ms" => thresholds.p99_ms = Some(non_negative_f64(value)?),
        "maxErrorRate" => thresholds.max_error_rate = Some(fraction(value)?),
        "minRps" => thresholds.min_rps = Some(non_negative_f64(value)?),
        "ttftP95Ms" => thresholds.ttft_p95_ms = Some(non_negative_f64(value)?),
        "ttftP99Ms" => thresholds.ttft_p99_ms = Some(non_negative_f64(value)?),
        "itlP95Ms" => thresholds.itl_p95_ms = Some(non_negative_f64(value)?),
        "tpotP95Ms" => thresholds.tpot_p95_ms = Some(non_negative_f64(value)?),
        "minOutputTokensPerSecond" => {
            thresholds.min_output_tokens_per_second = Some(non_negative_f64(value)?);
        }
        "minGoodput" => thresholds.min_goodput = Some(fraction(value)?),
        _ => {
            return Err(format!(
                "{s:?}: unknown metric {metric:?}; use p95Ms, p99Ms, maxErrorRate, minRps, \
                 ttftP95Ms, ttftP99Ms, itlP95Ms, tpotP95Ms, minOutputTokensPerSecond or minGoodput"
            ));
        }
    }
    if task.is_empty() {
        return Err(usage());
    }
    Ok(TaskThresholds {
        task: task.to_owned(),
        thresholds,
    })
}

/// Budgets; each unset one is not checked.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ThresholdArgs {
    /// Fail when p95 latency exceeds this many milliseconds.
    #[arg(long, value_parser = non_negative_f64)]
    pub p95_ms: Option<f64>,
    /// Fail when p99 latency exceeds this many milliseconds.
    #[arg(long, value_parser = non_negative_f64)]
    pub p99_ms: Option<f64>,
    /// Fail when failures / requests exceeds this (0–1).
    #[arg(long, value_parser = fraction)]
    pub max_error_rate: Option<f64>,
    /// Fail when requests per second fall below this.
    #[arg(long, value_parser = non_negative_f64)]
    pub min_rps: Option<f64>,
    /// LLM tasks: fail when time to first token p95 exceeds this many milliseconds (also each
    /// request's goodput SLO).
    #[arg(long, value_parser = non_negative_f64)]
    pub ttft_p95_ms: Option<f64>,
    /// LLM tasks: fail when time to first token p99 exceeds this many milliseconds.
    #[arg(long, value_parser = non_negative_f64)]
    pub ttft_p99_ms: Option<f64>,
    /// LLM tasks: fail when inter-token latency p95 exceeds this many milliseconds.
    #[arg(long, value_parser = non_negative_f64)]
    pub itl_p95_ms: Option<f64>,
    /// LLM tasks: fail when time per output token p95 exceeds this many milliseconds (also each
    /// request's goodput SLO).
    #[arg(long, value_parser = non_negative_f64)]
    pub tpot_p95_ms: Option<f64>,
    /// LLM tasks: fail when output tokens per second fall below this.
    #[arg(long, value_parser = non_negative_f64)]
    pub min_output_tokens_per_second: Option<f64>,
    /// LLM tasks: fail when the share of requests within their TTFT and TPOT SLO is below this
    /// (0–1).
    #[arg(long, value_parser = fraction)]
    pub min_goodput: Option<f64>,
}

impl From<ThresholdArgs> for Thresholds {
    fn from(t: ThresholdArgs) -> Self {
        Thresholds {
            p95_ms: t.p95_ms,
            p99_ms: t.p99_ms,
            max_error_rate: t.max_error_rate,
            min_rps: t.min_rps,
            ttft_p95_ms: t.ttft_p95_ms,
            ttft_p99_ms: t.ttft_p99_ms,
            itl_p95_ms: t.itl_p95_ms,
            tpot_p95_ms: t.tpot_p95_ms,
            min_output_tokens_per_second: t.min_output_tokens_per_second,
            min_goodput: t.min_goodput,
            ..Thresholds::default()
        }
    }
}

/// `loadrunner gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// A Locust-format PREFIX_stats.csv.
    pub file: PathBuf,
    /// Budgets.
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number above 0")),
    }
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number ≥ 0")),
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a fraction between 0 and 1 (1% is 0.01)"
        )),
    }
}

/// Parses "INDEX/COUNT" with INDEX < COUNT.
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: write INDEX/COUNT with INDEX < COUNT, e.g. 0/4");
    let (index, count) = s.split_once('/').ok_or_else(bad)?;
    let (index, count): (u32, u32) = (
        index.trim().parse().map_err(|_| bad())?,
        count.trim().parse().map_err(|_| bad())?,
    );
    if index >= count {
        return Err(bad());
    }
    Ok((index, count))
}

/// Parses a stage "DURATION:USERS", e.g. "30s:50".
pub fn parse_stage(s: &str) -> Result<Stage, String> {
    let (duration, users) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: write DURATION:USERS, e.g. 30s:50"))?;
    let duration = duration.parse::<Duration>().map_err(|e| e.to_string())?;
    if duration.get().is_zero() {
        return Err(format!("{s:?}: a stage needs a duration above 0"));
    }
    let users = users
        .parse::<u32>()
        .map_err(|_| format!("{s:?}: {users:?} is not a user count"))?;
    Ok(Stage { duration, users })
}

/// Parses a search "START:STEP:STEP_DURATION:MAX", e.g. "10:10:20s:200".
pub fn parse_search(s: &str) -> Result<Search, String> {
    let usage = || format!("{s:?}: write START:STEP:STEP_DURATION:MAX, e.g. 10:10:20s:200");
    let parts: Vec<&str> = s.split(':').collect();
    let [start, step, duration, max] = parts[..] else {
        return Err(usage());
    };
    let (start_rps, step_rps, max_rps) = (
        positive_f64(start)?,
        positive_f64(step)?,
        positive_f64(max)?,
    );
    let step_duration = duration.parse::<Duration>().map_err(|e| e.to_string())?;
    let seconds = step_duration.get();
    if seconds < std::time::Duration::from_secs(2) || seconds.subsec_nanos() != 0 {
        return Err(format!(
            "{s:?}: STEP_DURATION must be whole seconds, at least 2s"
        ));
    }
    if max_rps < start_rps {
        return Err(format!("{s:?}: MAX is below START"));
    }
    let search = Search {
        start_rps,
        step_rps,
        step_duration,
        max_rps,
    };
    let most = loadgate_api::load::MAX_SEARCH_STEPS;
    if search.steps() > most {
        return Err(format!(
            "{s:?}: {} steps; at most {most} (raise STEP)",
            search.steps()
        ));
    }
    Ok(search)
}

/// Parses "constant:1s", "between:1s..3s", "pacing:2s".
pub fn parse_wait_time(s: &str) -> Result<WaitTime, String> {
    let (kind, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: write constant:1s, between:1s..3s or pacing:2s"))?;
    let duration = |v: &str| v.parse::<Duration>().map_err(|e| e.to_string());
    match kind {
        "constant" => Ok(WaitTime::Constant {
            wait: duration(value)?,
        }),
        "pacing" => Ok(WaitTime::ConstantPacing {
            interval: duration(value)?,
        }),
        "between" => {
            let (min, max) = value
                .split_once("..")
                .ok_or_else(|| format!("{s:?}: write between:MIN..MAX"))?;
            let (min, max) = (duration(min)?, duration(max)?);
            if min > max {
                return Err(format!("{s:?}: MIN is above MAX"));
            }
            Ok(WaitTime::Between { min, max })
        }
        _ => Err(format!(
            "{s:?}: unknown kind {kind:?}; write constant:1s, between:1s..3s or pacing:2s"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_trust_and_headers_come_from_flags_and_credentials_only_from_the_environment() {
        let run = |args: &[&str]| {
            let mut all = vec!["loadrunner", "run", "-H", "https://embed.example.com"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Command::Run(run) => run,
                Command::Gate(_) => panic!("run expected"),
            })
        };
        let args = run(&[
            "--ca-file",
            "/etc/ca.pem",
            "--server-name",
            "gw.internal",
            "--header",
            "X-Tenant: blue",
            "--header-env",
            "Authorization=EMBED_API_KEY",
        ])
        .unwrap();
        let spec = args.run_spec().unwrap();
        let tls = spec.tls.unwrap();
        assert_eq!(
            (tls.ca_file.as_deref(), tls.server_name.as_deref()),
            (Some("/etc/ca.pem"), Some("gw.internal"))
        );
        assert_eq!(spec.headers[0].value.as_deref(), Some("blue"));
        assert_eq!(
            spec.headers[1].value_from_env.as_deref(),
            Some("EMBED_API_KEY")
        );
        let refused = run(&["--header", "Authorization: Bearer s3cr3t"]).unwrap_err();
        assert!(
            refused.to_string().contains("--header-env Authorization="),
            "{refused}"
        );
        assert!(run(&["--insecure", "--ca-file", "x"]).is_err());
        let plain = Cli::try_parse_from([
            "loadrunner",
            "run",
            "-H",
            "http://x:1",
            "--ca-file",
            "/ca.pem",
        ])
        .unwrap();
        let Command::Run(plain) = plain.command else {
            panic!("run expected")
        };
        let e = plain.run_spec().unwrap_err().0;
        assert!(e.starts_with("--ca-file/--insecure/--server-name"), "{e}");
    }

    #[test]
    fn locust_style_flags_parse_and_bad_ones_are_named() {
        let cli = Cli::try_parse_from([
            "loadrunner",
            "run",
            "-H",
            "http://127.0.0.1:1",
            "-u",
            "50",
            "-r",
            "5",
            "-t",
            "1m",
            "--p95-ms",
            "500",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(
            (
                run.users,
                run.spawn_rate,
                run.run_time,
                run.thresholds.p95_ms
            ),
            (50, 5.0, Duration::from_secs(60), Some(500.0))
        );
        for (flag, value) in [
            ("-u", "0"),
            ("-r", "0"),
            ("-t", "5x"),
            ("--max-error-rate", "2"),
            ("--wait-time", "between:3s..1s"),
        ] {
            let err = Cli::try_parse_from(["loadrunner", "run", "-H", "http://x", flag, value])
                .unwrap_err();
            assert_eq!(err.exit_code(), 2, "{flag} {value}");
        }
        assert_eq!(
            parse_wait_time("between:1s..2s").unwrap(),
            WaitTime::Between {
                min: Duration::from_secs(1),
                max: Duration::from_secs(2)
            }
        );
        assert_eq!(
            parse_stage("30s:50").unwrap(),
            Stage {
                duration: Duration::from_secs(30),
                users: 50
            }
        );
        assert!(
            parse_stage("0s:5").is_err()
                && parse_stage("30s").is_err()
                && parse_stage("30s:x").is_err()
        );
        let budget = parse_task_budget("embed batch:p95Ms=800").unwrap();
        assert_eq!(
            (budget.task.as_str(), budget.thresholds.p95_ms),
            ("embed batch", Some(800.0))
        );
        let search = parse_search("10:10:20s:200").unwrap();
        assert_eq!(
            (search.start_rps, search.step_duration, search.steps()),
            (10.0, Duration::from_secs(20), 20)
        );
        for bad in [
            "10:10:20s",
            "0:10:20s:200",
            "10:10:1s:200",
            "10:10:2500ms:200",
            "20:10:5s:10",
            "1:1:5s:100",
        ] {
            assert!(parse_search(bad).is_err(), "{bad}");
        }
        assert!(
            parse_task_budget("x:p42=1")
                .unwrap_err()
                .contains("unknown metric")
        );
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["loadrunner", "run"];
        argv.extend_from_slice(args);
        let Command::Run(run) = Cli::try_parse_from(argv)?.command else {
            panic!("run expected")
        };
        Ok(*run)
    }

    /// The flags and `--spec` build the same run; a spec replaces the load flags (mixing them is
    /// refused), `--shard` still picks the share, and a flag's error names the flag.
    #[test]
    fn flags_and_a_spec_build_the_same_run() {
        let flags = run_args(&[
            "-H",
            "http://127.0.0.1:9",
            "-u",
            "4",
            "-t",
            "5s",
            "--p95-ms",
            "300",
            "--shard",
            "1/2",
        ])
        .unwrap()
        .run_spec()
        .unwrap();
        assert_eq!(
            (flags.profile.users, flags.shard.index, flags.shard.count),
            (4, 1, 2)
        );
        let json = flags.to_container_arg();
        let from_spec = run_args(&["--spec", &json]).unwrap().run_spec().unwrap();
        assert_eq!(from_spec, flags);
        let reshard = run_args(&["--spec", &json, "--shard", "0/2"])
            .unwrap()
            .run_spec()
            .unwrap();
        assert_eq!(reshard.shard.index, 0);
        let file = std::env::temp_dir().join(format!("run-spec-{}.json", std::process::id()));
        std::fs::write(&file, &json).unwrap();
        let from_file = run_args(&["--spec", file.to_str().unwrap()])
            .unwrap()
            .run_spec()
            .unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(from_file, flags);
        let both = run_args(&[
            "-H",
            "http://x:1",
            "--search",
            "1:1:2s:2",
            "--arrival-rate",
            "3",
        ]);
        assert_eq!(
            both.unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
        let mixed = run_args(&["--spec", &json, "-u", "9"]).unwrap_err();
        assert_eq!(mixed.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(
            run_args(&[]).unwrap_err().kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let too_few = run_args(&["-H", "http://x:1", "-u", "1", "--shard", "0/2"])
            .unwrap()
            .run_spec()
            .unwrap_err();
        assert!(too_few.0.starts_with("--shard: "), "{}", too_few.0);
        let forged = run_args(&["--spec", r#"{"target": "http://x:1"}"#])
            .unwrap()
            .run_spec()
            .unwrap_err();
        assert!(forged.0.contains("profile"), "{}", forged.0);
    }
}
