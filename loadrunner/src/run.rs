//! One run from its [`RunSpec`]: the target found and waited on, this runner's share started on
//! the shards' common clock, the load, the summary and verdict, the reports. [`execute`] is what
//! local mode calls with the spec it built; [`run_command`] is `loadrunner run`, the spec built
//! from its flags or read from `--spec`.

use crate::config::RunArgs;
use crate::engine::{self, RunPlan};
use crate::outputs::RunOutputs;
use crate::scenario::Scenario;
use crate::{RunError, UsageError, Verdict, console, target};
use loadgate_api::results::RunResults;
use loadgate_api::run_spec::RunSpec;
use loadgate_api::stats::RequestStats;
use loadgate_results::{capacity, gate, summary};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A run that completed: its full results and how the process should exit.
#[derive(Debug)]
pub struct Finished {
    /// The summary, a ramp's or search's steps, the once-a-second windows.
    pub results: RunResults,
    /// Pass when every budget held, or when the caller judges and the run was not cut short.
    pub verdict: Verdict,
}

/// `loadrunner run`: the spec from `--spec` or the flags, then [`execute`].
///
/// # Errors
/// As [`execute`], and [`UsageError`] for a spec or flags that cannot be run.
pub async fn run_command(
    args: RunArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<Verdict, RunError> {
    let spec = args.run_spec()?;
    let finished = execute(&spec, &args.resolve, &args.outputs(), shutdown).await?;
    Ok(finished.verdict)
}

/// Runs `spec` against its target (reached through `resolve`'s `HOST:PORT:ADDR` overrides, if
/// any), writes `outputs`, prints the summary (and the results frame, last), and returns the
/// results. `shutdown` stops the load early: reports are still written, and the run does not
/// pass.
///
/// # Errors
/// [`UsageError`] for a spec that breaks a rule; other errors for an unreachable target or
/// unwritable reports.
pub async fn execute(
    spec: &RunSpec,
    resolve: &[String],
    outputs: &RunOutputs,
    shutdown: impl Future<Output = ()>,
) -> Result<Finished, RunError> {
    spec.validate()
        .map_err(|e| UsageError(format!("run spec: {e}")))?;
    let shard = spec.shard;
    let seed = spec.seed.wrapping_add(u64::from(shard.index));
    let mut scenario =
        Scenario::new(spec.tasks.clone(), seed).map_err(|e| UsageError(e.to_string()))?;
    if let Some(dataset) = &spec.dataset {
        let dataset = crate::dataset::Dataset::load(dataset)?;
        let stats = dataset.stats();
        tracing::info!(source = %stats.source, texts = stats.texts, rerank_cases = stats.rerank_cases, tokens_p50 = stats.tokens_p50, tokens_p95 = stats.tokens_p95, "dataset read");
        scenario = scenario.with_dataset(dataset);
    }
    // Check budget task names now, not after minutes of load.
    let names: Vec<RequestStats> = scenario
        .tasks()
        .iter()
        .map(|t| loadgate_results::entry::Entry::new(&t.name, t.request.method()).summary(0.0))
        .collect();
    gate::evaluate_tasks(&names, &spec.task_thresholds, "")
        .map_err(|e| UsageError(format!("task budget: {e}")))?;
    let target = target::locate(spec, resolve)?;
    if spec.readiness.wait {
        let path = &spec.readiness.path;
        let waited = target::wait_ready(&target, path, spec.readiness.timeout.get()).await?;
        tracing::info!(target = %spec.target, waited_ms = waited.as_millis() as u64, "target ready");
    }
    if let Some(quality) = &spec.quality {
        scenario = with_reference(scenario, quality, &target, spec.request_timeout.get()).await?;
    }
    let profile = spec.shard_profile();
    let users = profile.users;
    let plan_dataset = scenario.dataset().cloned();
    let clock = start_clock(spec.start_at_ms).await?;
    let plan = RunPlan {
        profile: profile.clone(),
        whole: spec.profile.clone(),
        first_window: clock.first_window,
        scenario: Arc::new(scenario),
        wait: spec.wait_time,
        target,
        request_timeout: spec.request_timeout.get(),
        seed,
        search_budgets: spec.search_budgets(),
        abort_budgets: spec.thresholds.abort_windows().map(|_| spec.thresholds),
        slo: loadgate_results::llm::Slo::of(&spec.thresholds),
    };
    tracing::info!(profile = %profile.name, users, spawn_rate = profile.spawn_rate, run_time = ?profile.run_time(), "starting load");
    let planned = profile.run_time().as_secs();
    let mut printer = console::progress_printer(&profile.name, users, planned, outputs.results_log);
    let metrics = match &outputs.metrics {
        Some(listen) => Some(serve_metrics(listen, planned, &spec.thresholds).await?),
        None => None,
    };
    let live = metrics.as_ref().map(|(m, _)| m.clone());
    let watch = move |stats: &loadgate_results::stats::Stats, started: std::time::Instant| {
        printer(stats, started);
        if let Some(m) = &live {
            m.update(stats, started.elapsed().as_secs());
        }
    };
    let outcome = engine::run(plan, shutdown, watch).await;
    if let Some((m, _)) = &metrics {
        // The final figures, as the results hold them.
        m.update(&outcome.stats, outcome.elapsed.as_secs());
    }
    if let Some((why, _)) = &outcome.stats.aborted {
        tracing::warn!(
            elapsed_s = outcome.elapsed.as_secs(),
            "profile stopped on its budgets (abortOnFail): {why}"
        );
    } else if outcome.stopped_at_break {
        tracing::info!(
            elapsed_s = outcome.elapsed.as_secs(),
            "search stopped: two steps in a row broke a budget"
        );
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let mut summary =
        summary::summarize(&profile, &outcome, &spec.thresholds, &spec.task_thresholds);
    summary.started_at_ms = Some(clock.started_at_ms);
    loadgate_results::failures::name_in_verdict(&mut summary, |task| {
        (spec.tasks.iter())
            .find(|t| t.name == task)
            .map(|t| t.request.path())
    });
    if let Some(quality) = &spec.quality {
        summary::add_quality(&mut summary, &outcome.stats.quality, quality);
    }
    summary.dataset = plan_dataset.map(|d| d.stats());
    if shard.count > 1 {
        // One shard's curve is not the profile's: its users are a share. Its steps travel in
        // the results frame, where the operator adds them up with the other shards'.
        summary.curve.clear();
        summary.capacity = None;
    }
    let results = RunResults {
        summary: summary.clone(),
        steps: outcome
            .stats
            .steps
            .iter()
            .flat_map(|s| s.rows.iter().map(capacity::StepRow::result))
            .collect(),
        // A long sharded profile's windows are coarsened, the same on every shard, so what the
        // operator decodes for the profile stays bounded (MAX_PROFILE_WINDOWS in all).
        windows: loadgate_results::history::coarsen_windows(
            outcome.stats.windows.clone(),
            loadgate_api::results::window_seconds(spec.profile.run_time().as_secs(), shard.count),
        )
        .map_err(RunError::Windows)?,
    };
    let frame = outputs.write(&mut summary, &results, &outcome.stats, &spec.thresholds)?;
    console::print_summary(&summary, &spec.thresholds);
    if let Some(frame) = &frame {
        // Last on standard output, so the operator's `tailLines` finds it whole.
        let mut out = std::io::stdout().lock();
        out.write_all(frame.text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| RunError::Io {
                what: "print the results frame".into(),
                source,
            })?;
    }
    if let Some((_, server)) = metrics {
        if let Some(listen) = &outputs.metrics {
            tokio::time::sleep(listen.linger).await;
        }
        server.abort();
    }
    let verdict = if summary.passed || (spec.caller_judges && !summary.interrupted) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    Ok(Finished { results, verdict })
}

/// Starts serving the run's live metrics at `listen`.
async fn serve_metrics(
    listen: &crate::outputs::MetricsListen,
    planned_seconds: u64,
    thresholds: &loadgate_api::load::Thresholds,
) -> Result<(crate::metrics::RunMetrics, tokio::task::JoinHandle<()>), RunError> {
    let address = format!("{}:{}", listen.host, listen.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| RunError::Io {
            what: format!("listen for /metrics on {address}"),
            source,
        })?;
    tracing::info!(%address, "serving live metrics at /metrics");
    let metrics = crate::metrics::RunMetrics::new(planned_seconds, thresholds);
    let registry = Arc::new(metrics.registry());
    let server = tokio::spawn(crate::metrics::serve(listener, registry));
    Ok((metrics, server))
}

/// Embeds the scenario's reference texts one at a time on the idle target (the first embed
/// task's path), so its quality samples have vectors to be held to.
async fn with_reference(
    scenario: Scenario,
    quality: &loadgate_api::load::Quality,
    target: &Arc<crate::connect::Endpoint>,
    timeout: Duration,
) -> Result<Scenario, RunError> {
    let Some(request) = scenario.tasks().iter().find_map(|t| match &t.request {
        loadgate_api::load::TaskRequest::Embed(e) if t.weight > 0 => Some(e.clone()),
        _ => None,
    }) else {
        return Err(UsageError("quality needs an embed task with a weight above 0".into()).into());
    };
    let texts = crate::quality::reference_texts(scenario.corpus(), scenario.dataset());
    let mut connection = crate::client::Connection::new(target.clone(), timeout);
    let started = std::time::Instant::now();
    let reference = tokio::time::timeout(
        crate::quality::REFERENCE_TIMEOUT,
        crate::quality::Reference::embed(&mut connection, &request, texts),
    )
    .await
    .map_err(|_| {
        RunError::Quality(format!(
            "the reference texts took over {:?} to embed",
            crate::quality::REFERENCE_TIMEOUT
        ))
    })?
    .map_err(RunError::Quality)?;
    tracing::info!(
        texts = reference.texts.len(),
        normalised = reference.normalised,
        took_ms = started.elapsed().as_millis() as u64,
        "quality: reference vectors taken one text at a time"
    );
    Ok(scenario.checking_quality(crate::quality::QualityPlan::new(quality, reference)))
}

/// Where this runner's load begins on the shards' common clock.
struct StartClock {
    /// When it began, unix ms.
    started_at_ms: u64,
    /// Its first window on the common clock: whole seconds it began after `startAtMs`.
    first_window: u32,
}

/// Longest wait for `startAtMs` accepted: a time further ahead is a mistake (a clock in the
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
            "startAtMs {at} is {} s ahead, more than the {} s a runner waits (unix milliseconds?)",
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
            "started after startAtMs: the target took long to be ready, or the pod to start"
        );
    }
    Ok(StartClock {
        started_at_ms,
        first_window: u32::try_from((late_ms + 500) / 1000).unwrap_or(u32::MAX),
    })
}
