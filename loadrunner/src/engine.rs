//! The load engine: starts users at the spawn rate, lets each loop over the task mix on its own
//! keep-alive connection, stops them at the deadline or on a signal (in-flight requests finish
//! and are counted), and returns what the aggregator measured.
//!
//! Open model: every scheduled request leaves a sample. One the runner sheds (the queue for a
//! free user is full, or it still waits when the run ends) is a failed request with reason
//! [`NotSent`] and no latency (it is kept out of the histograms and means: a shed request's
//! near-zero give-up time would flatter every percentile), its task drawn as a sent one's would
//! be, so shed load fails an error-rate budget and the per-task mix stays right. A search is the
//! open model on a climbing schedule ([`crate::arrivals`]) that stops early once the aggregator
//! has seen two steps in a row break the budgets.

use crate::aggregator;
use crate::arrivals::Arrivals;
use crate::client::Connection;
use crate::connect::Endpoint;
use crate::rng::Rng;
use crate::scenario::Scenario;
use loadgate_api::load::{LoadProfile, Thresholds, WaitTime};
use loadgate_results::sample::{NotSent, Outcome, Sample};
use loadgate_results::stats::{RunOutcome, Stats};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Samples buffered between users and the aggregator. Users wait (briefly) when it is full, so a
/// slow aggregator slows the load rather than growing memory.
const SAMPLE_CHANNEL: usize = 65_536;

/// Everything one profile run needs.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Users, spawn rate, duration: this runner's share.
    pub profile: LoadProfile,
    /// The whole profile all shards run together (the same as `profile` for a lone runner):
    /// a ramp's steps are cut on its plan, so every shard cuts the same ones.
    pub whole: LoadProfile,
    /// This runner's first window on the shards' common clock (its late start, whole seconds).
    pub first_window: u32,
    /// The task mix.
    pub scenario: Arc<Scenario>,
    /// Pause after each task.
    pub wait: WaitTime,
    /// Where requests go, and how (TLS, headers).
    pub target: Arc<Endpoint>,
    /// Per-request timeout; a slower answer is a failure.
    pub request_timeout: Duration,
    /// Seed of payloads and picks (each user derives its own).
    pub seed: u64,
    /// A search: the budgets its steps are judged on; it stops once two in a row broke one.
    pub search_budgets: Option<Thresholds>,
    /// The profile's budgets, when they say `abortOnFail`: each second is judged on them, and
    /// the load stops once `abortAfter` in a row broke one (not in a search).
    pub abort_budgets: Option<Thresholds>,
    /// The per-request SLO LLM requests' goodput counts against (from `ttftP95Ms` and
    /// `tpotP95Ms`).
    pub slo: loadgate_results::llm::Slo,
}

/// How often a staged profile adjusts its user count.
const STAGE_TICK: Duration = Duration::from_millis(100);

/// Open model: most requests waiting for a free user before new ones are dropped (per user).
const WAITING_PER_USER: usize = 10;

/// Runs one profile until its duration has passed or `shutdown` resolves.
pub async fn run(
    plan: RunPlan,
    shutdown: impl Future<Output = ()>,
    progress: impl FnMut(&Stats, Instant) + Send + 'static,
) -> RunOutcome {
    let task_names: Vec<(String, String)> = plan
        .scenario
        .tasks()
        .iter()
        .map(|t| (t.name.clone(), t.request.method().to_owned()))
        .collect();
    let (samples_tx, samples_rx) = mpsc::channel(SAMPLE_CHANNEL);
    let running = Arc::new(AtomicU32::new(0));
    let mut stats = Stats::new(&task_names)
        .with_steps(&plan.whole, &plan.profile)
        .starting_at_window(plan.first_window)
        .warming_up_for(plan.profile.warmup_windows())
        .measuring_llm(
            plan.scenario
                .tasks()
                .iter()
                .map(|t| t.request.llm().is_some())
                .collect(),
            plan.slo,
        );
    if let Some((budgets, windows)) = plan
        .abort_budgets
        .filter(|_| plan.profile.search.is_none())
        .and_then(|b| Some((b, b.abort_windows()?)))
    {
        stats = stats.aborting_after(budgets, windows);
    }
    if let Some(budgets) = plan
        .search_budgets
        .filter(|_| plan.profile.search.is_some())
    {
        stats = stats.stopping_on_break(budgets);
    }
    let (break_tx, mut break_rx) = watch::channel(false);
    let aggregator = tokio::spawn(aggregator::aggregate(
        samples_rx,
        stats,
        running.clone(),
        progress,
        break_tx,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);

    let started = tokio::time::Instant::now();
    let deadline = started + plan.profile.run_time();
    if let Some(arrivals) = Arrivals::of(&plan.profile) {
        let plan = Arc::new(plan);
        let open = run_open(
            plan, arrivals, samples_tx, running, deadline, shutdown, break_rx,
        )
        .await;
        let _ = stop_tx.send(true);
        let elapsed = started.elapsed();
        let stats = aggregator
            .await
            .expect("the aggregator does not panic; this is a bug");
        return RunOutcome {
            stats,
            elapsed,
            interrupted: open.interrupted,
            dropped: open.dropped,
            stopped_at_break: open.stopped_at_break,
        };
    }
    let spawn_every = Duration::from_secs_f64(1.0 / plan.profile.spawn_rate.max(1e-3));
    let staged = !plan.profile.stages.is_empty();
    // Users whose id is at or above `limit` stop after their current task (stages ramping down).
    let limit = Arc::new(AtomicU32::new(if staged { 0 } else { plan.profile.users }));
    let plan = Arc::new(plan);
    let mut users = JoinSet::new();
    let mut next_id = 0u32;
    let mut interrupted = false;
    let mut tick = tokio::time::interval(STAGE_TICK);
    tokio::pin!(shutdown);
    loop {
        let next_spawn = (!staged && next_id < plan.profile.users)
            .then(|| started + spawn_every.mul_f64(f64::from(next_id)));
        tokio::select! {
            () = tokio::time::sleep_until(next_spawn.unwrap_or(deadline)), if next_spawn.is_some_and(|t| t < deadline) => {
                running.fetch_add(1, Ordering::Relaxed);
                users.spawn(user(next_id, plan.clone(), samples_tx.clone(), stop_rx.clone(), running.clone(), limit.clone()));
                next_id += 1;
            }
            _ = tick.tick(), if staged => {
                let target = plan.profile.staged_users(started.elapsed());
                limit.store(target, Ordering::Relaxed);
                while next_id < target {
                    running.fetch_add(1, Ordering::Relaxed);
                    users.spawn(user(next_id, plan.clone(), samples_tx.clone(), stop_rx.clone(), running.clone(), limit.clone()));
                    next_id += 1;
                }
                next_id = next_id.min(target);
                while users.try_join_next().is_some() {}
            }
            () = tokio::time::sleep_until(deadline) => break,
            () = &mut shutdown => {
                interrupted = true;
                break;
            }
            // `abortOnFail`: the aggregator saw enough seconds in a row over budget.
            Ok(()) = break_rx.changed() => break,
        }
    }
    let _ = stop_tx.send(true);
    drop(samples_tx);
    while users.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let stats = aggregator
        .await
        .expect("the aggregator does not panic; this is a bug");
    RunOutcome {
        stats,
        elapsed,
        interrupted,
        dropped: 0,
        stopped_at_break: false,
    }
}

/// How an open-model run ended.
struct OpenEnd {
    interrupted: bool,
    dropped: u64,
    stopped_at_break: bool,
}

/// Open model: starts each request when `arrivals` says it is due on the first free of `users`
/// connections; latency counts from the scheduled start. Requests not sent are recorded as
/// [`NotSent`] failures. Stops at the deadline, on `shutdown`, or when `break_found` turns true.
async fn run_open(
    plan: Arc<RunPlan>,
    arrivals: Arrivals,
    samples: mpsc::Sender<Sample>,
    running: Arc<AtomicU32>,
    deadline: tokio::time::Instant,
    shutdown: impl Future<Output = ()>,
    mut break_found: watch::Receiver<bool>,
) -> OpenEnd {
    let users = plan.profile.users.max(1) as usize;
    let free = Arc::new(tokio::sync::Semaphore::new(users));
    let connections = (0..users)
        .map(|_| Connection::new(plan.target.clone(), plan.request_timeout))
        .collect();
    let pool: Arc<std::sync::Mutex<Vec<Connection>>> = Arc::new(std::sync::Mutex::new(connections));
    let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut rng = Rng::new(plan.seed);
    let mut requests = JoinSet::new();
    let (mut interrupted, mut dropped, mut stopped_at_break) = (false, 0u64, false);
    tokio::pin!(shutdown);
    for due in arrivals {
        let scheduled = start + due;
        if scheduled >= deadline {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(scheduled) => {}
            () = &mut shutdown => {
                interrupted = true;
                break;
            }
            Ok(()) = break_found.changed() => {
                stopped_at_break = true;
                break;
            }
        }
        while requests.try_join_next().is_some() {}
        // Drawn before the queue check, so shed requests take the mix's tasks (and the draws
        // after them stay those of a run that sheds nothing).
        let request = plan.scenario.next(&mut rng);
        // A free user takes the request at once (so one scheduled just before the deadline is
        // still sent); otherwise it waits for one, or is dropped when too many already wait.
        let permit = match free.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if waiting.load(Ordering::Relaxed) >= users * WAITING_PER_USER => {
                dropped += 1;
                let sample = Sample {
                    task: request.task,
                    latency: scheduled.elapsed(),
                    outcome: Outcome::NotSent(NotSent::QueueFull),
                    start_delay: None,
                    texts: request.texts,
                    quality: None,
                    dial: None,
                    llm: None,
                };
                // Waits only while the aggregator is behind by a full channel.
                let _ = samples.send(sample).await;
                continue;
            }
            Err(_) => {
                waiting.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let (free, pool, waiting, samples, running) = (
            free.clone(),
            pool.clone(),
            waiting.clone(),
            samples.clone(),
            running.clone(),
        );
        let scenario = plan.scenario.clone();
        requests.spawn(async move {
            let permit = match permit {
                Some(permit) => permit,
                None => {
                    let permit = free.acquire_owned().await;
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    // After the deadline or a signal the semaphore is closed: requests still
                    // waiting for a user are not sent, and count as failures.
                    let Ok(permit) = permit else {
                        let sample = Sample {
                            task: request.task,
                            latency: scheduled.elapsed(),
                            outcome: Outcome::NotSent(NotSent::RunEnded),
                            start_delay: None,
                            texts: request.texts,
                            quality: None,
                            dial: None,
                            llm: None,
                        };
                        let _ = samples.send(sample).await;
                        return;
                    };
                    permit
                }
            };
            // Plain pushes and pops cannot leave the pool inconsistent, so poisoning is ignored.
            let mut conn = {
                let mut idle = pool.lock().unwrap_or_else(|p| p.into_inner());
                idle.pop()
                    .expect("a permit guarantees a free connection; this is a bug")
            };
            running.fetch_add(1, Ordering::Relaxed);
            let start_delay = scheduled.elapsed();
            let sample = exchange(
                &mut conn,
                &scenario,
                request,
                scheduled.into_std(),
                Some(start_delay),
            )
            .await;
            running.fetch_sub(1, Ordering::Relaxed);
            pool.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            drop(permit);
            let _ = samples.send(sample).await;
        });
    }
    // Requests still waiting for a user are not sent (each leaves a `NotSent` sample); in-flight
    // ones finish and are counted.
    free.close();
    drop(samples);
    while requests.join_next().await.is_some() {}
    OpenEnd {
        interrupted,
        dropped,
        stopped_at_break,
    }
}

/// One virtual user: pick a task, send it, record it, wait; until told to stop.
async fn user(
    id: u32,
    plan: Arc<RunPlan>,
    samples: mpsc::Sender<Sample>,
    mut stop: watch::Receiver<bool>,
    running: Arc<AtomicU32>,
    limit: Arc<AtomicU32>,
) {
    let mut rng = Rng::new(plan.seed ^ (u64::from(id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut conn = Connection::new(plan.target.clone(), plan.request_timeout);
    while !*stop.borrow() && id < limit.load(Ordering::Relaxed) {
        let request = plan.scenario.next(&mut rng);
        let sent = Instant::now();
        let sample = exchange(&mut conn, &plan.scenario, request, sent, None).await;
        if samples.send(sample).await.is_err() {
            break;
        }
        let wait = match plan.wait {
            WaitTime::Constant { wait } => wait.get(),
            WaitTime::Between { min, max } => {
                let (lo, hi) = (min.get(), max.get().max(min.get()));
                lo + (hi - lo).mul_f64(rng.unit())
            }
            WaitTime::ConstantPacing { interval } => interval.get().saturating_sub(sent.elapsed()),
        };
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
        }
    }
    running.fetch_sub(1, Ordering::Relaxed);
}

/// Sends one request and makes its sample: latency from `since` (its start, or in the open
/// model its scheduled start), less the time spent opening a connection (reported apart in the
/// sample's `dial`). Its answer is checked against its task's shape (a 200 with the wrong body
/// fails `bad response: …`), and a quality sample's against the reference vectors, after the
/// latency is taken, so no check counts in it.
async fn exchange(
    conn: &mut Connection,
    scenario: &Scenario,
    request: crate::scenario::Prepared,
    since: Instant,
    start_delay: Option<Duration>,
) -> Sample {
    if let Some(plan) = request.llm
        && plan.stream
    {
        // Boxed, as a connection's opening is: held inline, the stream reader's future would
        // enlarge (and slow) every plain request's future too.
        return Box::pin(exchange_stream(conn, request, plan, since, start_delay)).await;
    }
    let check = scenario.quality().zip(request.check.as_deref());
    let (mut outcome, answer) = conn
        .send_with(request.method, &request.path, request.body, request.limits)
        .await;
    let dial = conn.take_dial();
    let latency = since
        .elapsed()
        .saturating_sub(dial.map(|d| d.total()).unwrap_or_default());
    let dial = dial.map(Box::new);
    if let (Outcome::Ok { bytes }, Some(body)) = (&outcome, &answer)
        && let Err(reason) = request.expect.check(body)
    {
        outcome = Outcome::Failed {
            reason,
            bytes: *bytes,
        };
    }
    let mut llm = None;
    if let (Some(plan), Outcome::Ok { bytes }, Some(body)) = (request.llm, &outcome, &answer) {
        match crate::llm_wire::read_whole(plan.chat, body, latency, plan.prompt_tokens) {
            Ok(sample) => llm = Some(Box::new(sample)),
            Err(reason) => {
                outcome = Outcome::Failed {
                    reason,
                    bytes: *bytes,
                }
            }
        }
    }
    let quality = match (&outcome, check, answer) {
        (Outcome::Ok { .. }, Some((plan, sent)), Some(answer)) => Some(plan.check(&answer, sent)),
        _ => None,
    };
    Sample {
        task: request.task,
        latency,
        outcome,
        start_delay,
        texts: request.texts,
        quality,
        dial,
        llm,
    }
}

/// Sends one streaming LLM request and makes its sample: latency to the stream's end, time to
/// the first content token and the gaps after it, from `since` less the connection's opening.
async fn exchange_stream(
    conn: &mut Connection,
    request: crate::scenario::Prepared,
    plan: crate::scenario::LlmPlan,
    since: Instant,
    start_delay: Option<Duration>,
) -> Sample {
    let mut reader = crate::llm_wire::StreamReader::new(plan.chat);
    let body = request.body.unwrap_or_default();
    let mut outcome = conn
        .stream(&request.path, body, request.limits.max_bytes, &mut reader)
        .await;
    let dial = conn.take_dial();
    let opening = dial.map(|d| d.total()).unwrap_or_default();
    let latency = since.elapsed().saturating_sub(opening);
    let mut llm = None;
    if let Outcome::Ok { bytes } = outcome {
        match reader.finish(since, opening, plan.prompt_tokens) {
            Ok(sample) => llm = Some(Box::new(sample)),
            Err(reason) => outcome = Outcome::Failed { reason, bytes },
        }
    }
    Sample {
        task: request.task,
        latency,
        outcome,
        start_delay,
        texts: 0,
        quality: None,
        dial: dial.map(Box::new),
        llm,
    }
}
