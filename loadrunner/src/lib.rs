//! loadrunner: the load engine loadgate measures with, as a library (for local mode and the
//! operator's runner Jobs) and a Locust-like CLI.
//!
//! Module map: [`config`] (CLI) → [`scenario`] (weighted tasks and payloads from [`corpus`],
//! seeded by [`rng`]) → [`engine`] (users, spawn rate, deadline, drain) over [`client`]
//! (keep-alive HTTP/1.1) → [`stats`] (HDR histograms, history) → [`report`] (Locust CSVs, JSON)
//! and [`gate`] (thresholds → violations → exit code); [`capacity`] (a ramp's steps and knee); [`merge`] adds parallel runners'
//! summaries up, their histograms carried in the bounded wire form of [`codec`].

pub mod arrivals;
pub mod capacity;
pub mod client;
pub mod codec;
pub mod config;
pub mod corpus;
pub mod engine;
pub mod gate;
pub mod history;
pub mod html;
pub mod merge;
pub mod report;
pub mod results_frame;
pub mod rng;
pub mod scenario;
pub mod stats;

use anyhow::Context;
use config::{GateArgs, RunArgs};
use engine::{RunPlan, Target};
use loadgate_api::load::{
    LoadProfile, RequestStats, RunSummary, StartDelay, Task, TaskThresholds, Thresholds,
    default_tasks,
};
use loadgate_api::results::RunResults;
use scenario::Scenario;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A spec or flag the runner cannot use; reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses `http://host[:port]` into (host, port).
///
/// # Errors
/// [`UsageError`] naming `--host` when the URL is not plain http.
pub fn parse_host(url: &str) -> Result<(String, u16), UsageError> {
    let bad = |why: &str| {
        UsageError(format!(
            "--host {url:?}: {why} (write e.g. http://127.0.0.1:8080)"
        ))
    };
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            bad("https is not supported yet")
        } else {
            bad("must start with http://")
        }
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(bad("must not have a path; task paths are absolute"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| bad("bad port"))?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

/// Resolves the target: a matching `--resolve HOST:PORT:ADDR` entry, else DNS.
async fn resolve_target(host: &str, port: u16, overrides: &[String]) -> anyhow::Result<SocketAddr> {
    for entry in overrides {
        let mut parts = entry.splitn(3, ':');
        let (Some(h), Some(p), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(UsageError(format!("--resolve {entry:?}: write HOST:PORT:ADDR")).into());
        };
        if h == host && p.parse::<u16>().ok() == Some(port) {
            let ip = addr
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .map_err(|_| {
                    UsageError(format!(
                        "--resolve {entry:?}: {addr:?} is not an IP address"
                    ))
                })?;
            return Ok(SocketAddr::new(ip, port));
        }
    }
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to no address"))
}

/// Polls `path` until it answers 2xx, or fails after `timeout` with the last reason.
pub async fn wait_ready(
    target: &Target,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut conn = client::Connection::new(
        target.addr,
        target.host_header.clone(),
        Duration::from_secs(5),
    );
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        match conn.send("GET", path, None).await {
            client::Outcome::Ok { .. } => return Ok(started.elapsed()),
            client::Outcome::Failed { reason, .. } => last = reason,
            client::Outcome::NotSent(why) => last = why.reason().to_owned(),
        }
        tokio::time::sleep(
            Duration::from_millis(200).min(timeout.saturating_sub(started.elapsed())),
        )
        .await;
    }
    anyhow::bail!(
        "target http://{}{path} not ready after {:.0}s: {last}",
        target.host_header,
        timeout.as_secs_f64()
    )
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

/// Builds the summary and verdict of a finished run.
pub fn summarize(
    profile: &LoadProfile,
    outcome: &engine::RunOutcome,
    thresholds: &Thresholds,
    task_budgets: &[TaskThresholds],
) -> RunSummary {
    let elapsed = outcome.elapsed.as_secs_f64();
    let total = outcome.stats.total.summary(elapsed);
    let tasks: Vec<RequestStats> = outcome
        .stats
        .tasks
        .iter()
        .map(|t| t.summary(elapsed))
        .collect();
    let curve: Vec<_> = outcome
        .stats
        .steps
        .iter()
        .flat_map(capacity::Steps::curve)
        .collect();
    let capacity = capacity::knee(&curve, thresholds);
    let scope = format!("profile {}", profile.name);
    let violations = if profile.search.is_some() {
        // A search is judged on what its steps found, not on the whole run (task budgets too
        // would break by design at the top of the climb).
        gate::evaluate_search(capacity.as_ref(), thresholds, &scope)
    } else {
        let mut violations = gate::evaluate(&total, thresholds, &scope);
        // Task names were checked before the run; an unknown one here cannot happen.
        violations
            .extend(gate::evaluate_tasks(&tasks, task_budgets, &profile.name).unwrap_or_default());
        violations
    };
    let start_delay = outcome.stats.start_delay.as_ref().map(|h| StartDelay {
        p95_ms: h.value_at_quantile(0.95) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
        dropped: outcome.dropped,
    });
    RunSummary {
        profile: profile.name.clone(),
        duration_seconds: elapsed,
        users: profile.users,
        tasks,
        passed: violations.is_empty() && !outcome.interrupted,
        violations,
        total,
        interrupted: outcome.interrupted,
        start_delay,
        started_at_ms: None,
        results: None,
        capacity,
        curve,
    }
}

/// The task mix of `--tasks`: inline JSON when it starts with `[`, else a file of JSON.
fn load_tasks(arg: Option<&str>) -> Result<Vec<Task>, UsageError> {
    let Some(arg) = arg else {
        return Ok(default_tasks());
    };
    if arg.trim_start().starts_with('[') {
        return serde_json::from_str(arg)
            .map_err(|e| UsageError(format!("--tasks (inline JSON): {e}")));
    }
    let text =
        std::fs::read_to_string(arg).map_err(|e| UsageError(format!("--tasks {arg}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| UsageError(format!("--tasks {arg}: {e}")))
}

/// `loadrunner run`: readiness, load, reports, verdict. `shutdown` stops the load early (reports
/// are still written, and the run does not pass).
///
/// # Errors
/// [`UsageError`] (exit 2) for bad flags or specs; other errors (exit 1) for an unreachable
/// target or unwritable reports.
pub async fn run_command(
    args: RunArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Verdict> {
    let RunArgs {
        host,
        users,
        spawn_rate,
        run_time,
        arrival_rate,
        stages,
        search,
        profile_name,
        tasks,
        shard,
        wait_time,
        threads: _,
        seed,
        request_timeout,
        ready_timeout,
        ready_path,
        no_wait_ready,
        resolve,
        csv,
        html,
        json,
        termination_summary,
        start_at,
        results_log,
        results_json,
        exit_zero,
        thresholds,
        task_budgets,
    } = args;
    let thresholds = Thresholds::from(thresholds);
    if search.is_some() {
        if arrival_rate.is_some() || !stages.is_empty() {
            return Err(UsageError(
                "--search sets its own rates: leave out --arrival-rate and --stage".to_owned(),
            )
            .into());
        }
        if thresholds.p95_ms.is_none()
            && thresholds.p99_ms.is_none()
            && thresholds.max_error_rate.is_none()
        {
            return Err(UsageError(
                "--search judges each step on --p95-ms, --p99-ms or --max-error-rate: set one"
                    .to_owned(),
            )
            .into());
        }
    }
    let (host_name, port) = parse_host(&host)?;
    let (shard_index, shard_count) = shard.unwrap_or((0, 1));
    let seed = seed.wrapping_add(u64::from(shard_index));
    let scenario = Scenario::new(load_tasks(tasks.as_deref())?, seed)
        .map_err(|e| UsageError(e.to_string()))?;
    // Check budget task names now, not after minutes of load.
    let names: Vec<RequestStats> = scenario
        .tasks()
        .iter()
        .map(|t| stats::Entry::new(&t.name, t.request.method()).summary(0.0))
        .collect();
    gate::evaluate_tasks(&names, &task_budgets, "")
        .map_err(|e| UsageError(format!("--task-budget: {e}")))?;
    let addr = resolve_target(&host_name, port, &resolve).await?;
    let target = Target {
        addr,
        host_header: format!("{host_name}:{port}"),
    };
    if !no_wait_ready {
        let waited = wait_ready(&target, &ready_path, ready_timeout.get()).await?;
        tracing::info!(target = %host, waited_ms = waited.as_millis() as u64, "target ready");
    }
    let whole = LoadProfile {
        name: profile_name,
        users,
        spawn_rate,
        duration: run_time,
        arrival_rate,
        stages,
        search,
    };
    let profile = whole.shard(shard_index, shard_count);
    let users = profile.users;
    let clock = start_clock(start_at).await?;
    let plan = RunPlan {
        profile: profile.clone(),
        whole,
        first_window: clock.first_window,
        scenario: Arc::new(scenario),
        wait: wait_time,
        target,
        request_timeout: request_timeout.get(),
        seed,
        search_budgets: search.map(|_| thresholds),
    };
    tracing::info!(profile = %profile.name, users, spawn_rate = profile.spawn_rate, run_time = %run_time, "starting load");
    let outcome = engine::run(plan, shutdown, progress_printer(users)).await;
    if outcome.stopped_at_break {
        tracing::info!(
            elapsed_s = outcome.elapsed.as_secs(),
            "search stopped: two steps in a row broke a budget"
        );
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let mut summary = summarize(&profile, &outcome, &thresholds, &task_budgets);
    summary.started_at_ms = Some(clock.started_at_ms);
    if shard_count > 1 {
        // One shard's curve is not the profile's: its users are a share. Its steps travel in
        // the results frame, where the operator adds them up with the other shards'.
        summary.curve.clear();
        summary.capacity = None;
    }
    let results = || RunResults {
        summary: summary.clone(),
        steps: outcome
            .stats
            .steps
            .iter()
            .flat_map(|s| s.rows.iter().map(capacity::StepRow::result))
            .collect(),
        windows: outcome.stats.windows.clone(),
    };
    if let Some(path) = &results_json {
        let text = serde_json::to_string(&results()).expect("results serialise; this is a bug");
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let frame = results_log.then(|| results_frame::encode(&results()));
    summary.results = frame.as_ref().map(|f| f.reference);
    if let Some(prefix) = &csv {
        report::write_csvs(prefix, &outcome.stats, summary.duration_seconds)
            .with_context(|| format!("cannot write CSVs at {}", prefix.display()))?;
    }
    if let Some(path) = &html {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, html::render(&summary, &outcome.stats, &thresholds))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &json {
        report::write_json(path, &summary)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &termination_summary {
        let compact = merge::compact_summary(&summary, merge::TERMINATION_MESSAGE_LIMIT)
            .map_err(|e| anyhow::anyhow!("--termination-summary: {e}"))?;
        std::fs::write(path, compact)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    print_summary(&summary, &thresholds);
    if let Some(frame) = &frame {
        // Last on standard output, so the operator's `tailLines` finds it whole.
        let mut out = std::io::stdout().lock();
        out.write_all(frame.text.as_bytes())
            .and_then(|()| out.flush())
            .context("cannot print the results frame")?;
    }
    Ok(if summary.passed || (exit_zero && !summary.interrupted) {
        Verdict::Pass
    } else {
        Verdict::Fail
    })
}

/// Where this runner's load begins on the shards' common clock.
struct StartClock {
    /// When it began, unix ms.
    started_at_ms: u64,
    /// Its first window on the common clock: whole seconds it began after `--start-at`.
    first_window: u32,
}

/// Longest wait for `--start-at` accepted: a time further ahead is a mistake (a clock in the
/// wrong unit), not a plan.
const MAX_START_WAIT: Duration = Duration::from_secs(600);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Waits for `start_at` (unix ms), if given and ahead, and says where the load begins.
async fn start_clock(start_at: Option<u64>) -> Result<StartClock, UsageError> {
    let Some(at) = start_at else {
        return Ok(StartClock {
            started_at_ms: unix_ms(),
            first_window: 0,
        });
    };
    let ahead = Duration::from_millis(at.saturating_sub(unix_ms()));
    if ahead > MAX_START_WAIT {
        return Err(UsageError(format!(
            "--start-at {at} is {} s ahead, more than the {} s a runner waits (unix milliseconds?)",
            ahead.as_secs(),
            MAX_START_WAIT.as_secs()
        )));
    }
    tokio::time::sleep(ahead).await;
    let started_at_ms = unix_ms();
    let late_ms = started_at_ms.saturating_sub(at);
    if late_ms > 1000 {
        tracing::warn!(
            late_ms,
            "started after --start-at: the target took long to be ready, or the pod to start"
        );
    }
    Ok(StartClock {
        started_at_ms,
        first_window: u32::try_from((late_ms + 500) / 1000).unwrap_or(u32::MAX),
    })
}

/// `loadrunner gate`: thresholds over a Locust-format stats CSV.
///
/// # Errors
/// When the file is unreadable or not a Locust stats CSV.
pub fn gate_command(args: &GateArgs) -> anyhow::Result<Verdict> {
    let stats = gate::read_stats_csv(&args.file).map_err(|e| UsageError(e.to_string()))?;
    let violations = gate::evaluate(
        &stats,
        &Thresholds::from(args.thresholds),
        &args.file.display().to_string(),
    );
    println!(
        "{}: {} requests, {} failures ({:.2}%), {:.1} req/s, p95 {:.0} ms, p99 {:.0} ms",
        args.file.display(),
        stats.requests,
        stats.failures,
        stats.error_rate * 100.0,
        stats.rps,
        stats.p95_ms,
        stats.p99_ms
    );
    for v in &violations {
        println!("FAIL {}", v.message);
    }
    println!(
        "{}",
        if violations.is_empty() {
            "PASS"
        } else {
            "FAIL"
        }
    );
    Ok(if violations.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    })
}

fn print_summary(summary: &RunSummary, thresholds: &Thresholds) {
    let t = &summary.total;
    println!(
        "{}: {} requests, {} failures ({:.2}%), {:.1} req/s over {:.1}s; p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        summary.profile,
        t.requests,
        t.failures,
        t.error_rate * 100.0,
        t.rps,
        summary.duration_seconds,
        t.p50_ms,
        t.p95_ms,
        t.p99_ms,
        t.max_ms
    );
    for v in &summary.violations {
        println!("FAIL {}", v.message);
    }
    if let Some(delay) = &summary.start_delay {
        println!(
            "open model: requests started up to {:.1} ms late (p95 {:.1} ms); {} not sent, counted as failures ({} dropped for want of a free user, {} still waiting at the end)",
            delay.max_ms,
            delay.p95_ms,
            t.not_sent,
            delay.dropped,
            t.not_sent.saturating_sub(delay.dropped)
        );
    }
    if let Some(capacity) = &summary.capacity {
        println!("capacity: {}", capacity.sentence(thresholds));
    }
    if summary.interrupted {
        println!("INTERRUPTED: the run was stopped early; reports hold what was measured");
    }
    println!("{}", if summary.passed { "PASS" } else { "FAIL" });
}

/// A live line on a terminal (users, RPS, p95, failures), a log line every 10 s otherwise.
fn progress_printer(peak_users: u32) -> impl FnMut(&stats::HistoryRow, Instant) + Send + 'static {
    let tty = std::io::stderr().is_terminal();
    move |row, started| {
        let secs = started.elapsed().as_secs();
        let (w, t) = (&row.window, &row.total);
        if tty {
            eprint!(
                "\r[{secs:>4}s] users {}/{peak_users}  rps {:>7.1}  p95 {:>7.1} ms  failures {} ({:.2}%)   ",
                row.users,
                w.requests as f64,
                w.p95_ms(),
                t.failures,
                t.error_rate() * 100.0
            );
        } else if secs % 10 == 0 {
            tracing::info!(
                elapsed_s = secs,
                users = row.users,
                rps = w.requests,
                p95_ms = w.p95_ms(),
                failures = t.failures,
                "progress"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_host;

    #[test]
    fn hosts_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_host("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(parse_host("http://svc.ns/").unwrap(), ("svc.ns".into(), 80));
        assert!(
            parse_host("https://x")
                .unwrap_err()
                .to_string()
                .contains("https is not supported")
        );
        assert!(
            parse_host("127.0.0.1:80")
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        assert!(
            parse_host("http://x/embed")
                .unwrap_err()
                .to_string()
                .contains("path")
        );
    }
}
