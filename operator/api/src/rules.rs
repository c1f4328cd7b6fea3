//! The spec rules that hold with or without the CRDs: [`FieldError`] and the checks of a load
//! shape, a task mix and budgets that a LoadTest's [`crate::validate`] and a runner's
//! [`crate::run_spec::RunSpec::validate`] share. Each check takes the path its fields are named
//! under (`spec.profiles[1]` in a LoadTest, `profile` in a run spec).

use crate::llm_request::{LlmRequest, MAX_OUTPUT_TOKENS, MAX_PROMPT_TOKENS};
use crate::load::{
    EmbedApi, LoadProfile, Search, Task, TaskRequest, TaskThresholds, Thresholds, WaitTime,
};
use std::time::Duration;

/// The longest duration a spec may hold (profile, stage, timeouts, waits): a load test runs for
/// hours at most; anything longer is a typo, and would overflow the runner's 1 h histograms'
/// assumptions and the Job's deadline arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Most explicit stages in one profile.
pub const MAX_STAGES: usize = 32;
pub use crate::load::MAX_SEARCH_STEPS;
/// Longest step of a capacity search.
pub const MAX_SEARCH_STEP: Duration = Duration::from_secs(3600);
/// Most users one runner pod runs (each is a task with its own connection).
pub const MAX_USERS_PER_RUNNER: u32 = 10_000;
/// Longest task name (it is a CSV cell, a metric label and a report heading).
pub const MAX_TASK_NAME: usize = 64;
/// The CRD's pattern for `target.url`: `http://host[:port]` or `https://host[:port]` with an
/// optional trailing `/` and no path, exactly what the runner's `--host` accepts (task paths are
/// absolute).
pub const TARGET_URL_PATTERN: &str = r"^https?://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$";

/// A rule a spec breaks: the field (as the apiserver names it) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, e.g. `spec.profiles[1].spawnRate`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

pub(crate) fn err<T>(
    field: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

/// A DNS label: lowercase letters, digits and `-`, not at either end (length checked by callers).
pub(crate) fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub(crate) fn check_duration(field: &str, d: crate::duration::Duration) -> Result<(), FieldError> {
    if d.get() > MAX_DURATION {
        return err(field, format!("{d} is longer than the 24h a spec may hold"));
    }
    Ok(())
}

/// True when `url` is what the runner's `--host` accepts (the same as [`TARGET_URL_PATTERN`]).
pub fn target_url_ok(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        match after {
            "" => ("v6", None),
            p => match p.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = host == "v6"
        || (!host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && host.starts_with(|c: char| c.is_ascii_alphanumeric())
            && host.ends_with(|c: char| c.is_ascii_alphanumeric()));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && !p.starts_with('0')
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    host_ok && port_ok
}

pub(crate) fn check_thresholds(field: &str, t: &Thresholds) -> Result<(), FieldError> {
    if t.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return err(
            format!("{field}.maxErrorRate"),
            "must be between 0 and 1 (1% is 0.01)",
        );
    }
    if t.min_goodput.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return err(
            format!("{field}.minGoodput"),
            "must be between 0 and 1 (95% is 0.95)",
        );
    }
    for (name, v) in [
        ("p95Ms", t.p95_ms),
        ("p99Ms", t.p99_ms),
        ("minRps", t.min_rps),
        ("maxColdStartSeconds", t.max_cold_start_seconds),
        ("ttftP95Ms", t.ttft_p95_ms),
        ("ttftP99Ms", t.ttft_p99_ms),
        ("itlP95Ms", t.itl_p95_ms),
        ("tpotP95Ms", t.tpot_p95_ms),
        ("minOutputTokensPerSecond", t.min_output_tokens_per_second),
    ] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return err(format!("{field}.{name}"), "must be ≥ 0");
        }
    }
    if t.abort_after.is_some_and(|n| !(1..=3600).contains(&n)) {
        return err(format!("{field}.abortAfter"), "must be between 1 and 3600");
    }
    Ok(())
}

/// LLM budgets (`ttftP95Ms`, …) under `field` judge LLM tasks only: refused, naming the first,
/// where no task they would judge is an LLM one (`llm` false).
pub(crate) fn check_llm_budgets(field: &str, t: &Thresholds, llm: bool) -> Result<(), FieldError> {
    if llm {
        return Ok(());
    }
    let set = [
        ("ttftP95Ms", t.ttft_p95_ms.is_some()),
        ("ttftP99Ms", t.ttft_p99_ms.is_some()),
        ("itlP95Ms", t.itl_p95_ms.is_some()),
        ("tpotP95Ms", t.tpot_p95_ms.is_some()),
        (
            "minOutputTokensPerSecond",
            t.min_output_tokens_per_second.is_some(),
        ),
        ("minGoodput", t.min_goodput.is_some()),
    ];
    match set.into_iter().find(|(_, on)| *on) {
        Some((name, _)) => err(
            format!("{field}.{name}"),
            "an LLM budget needs a chat or completion task (with a weight above 0) to judge",
        ),
        None => Ok(()),
    }
}

/// True when a task with a weight above 0 in `tasks` is a chat or completion.
pub fn has_llm_task(tasks: &[Task]) -> bool {
    tasks
        .iter()
        .any(|t| t.weight > 0 && t.request.llm().is_some())
}

/// A quality check (`field`): a sample rate in (0, 1], a cosine bar in [-1, 1], and an embed
/// task in `tasks` to sample.
pub(crate) fn check_quality(
    field: &str,
    quality: &crate::load::Quality,
    tasks: &[Task],
) -> Result<(), FieldError> {
    if !(quality.sample_rate > 0.0 && quality.sample_rate <= 1.0) {
        return err(
            format!("{field}.sampleRate"),
            "must be above 0 and at most 1",
        );
    }
    if !(-1.0..=1.0).contains(&quality.min_cosine) {
        return err(format!("{field}.minCosine"), "must be between -1 and 1");
    }
    let embeds = tasks.is_empty()
        || tasks
            .iter()
            .any(|t| t.weight > 0 && matches!(t.request, TaskRequest::Embed(_)));
    if !embeds {
        return err(
            field.to_owned(),
            "needs an embed task with a weight above 0 to sample",
        );
    }
    Ok(())
}

/// Budgets that judge the whole test or stop a profile make no sense on one task of the mix
/// (`test_wide`: also not on one profile).
pub(crate) fn check_scoped_thresholds(
    field: &str,
    t: &Thresholds,
    test_wide: bool,
) -> Result<(), FieldError> {
    if t.max_cold_start_seconds.is_some() {
        return err(
            format!("{field}.maxColdStartSeconds"),
            "is a test-wide budget: set it in spec.thresholds",
        );
    }
    if test_wide && (t.abort_on_fail.is_some() || t.abort_after.is_some()) {
        return err(
            format!("{field}.abortOnFail"),
            "stops a whole profile: set it in spec.thresholds or a profile's thresholds",
        );
    }
    Ok(())
}

/// A capacity search: positive rates climbing in at most [`MAX_SEARCH_STEPS`] whole-second
/// steps, and a latency or error budget to judge each step on (`budgets`: the profile's
/// effective ones).
fn check_search(at: &str, search: &Search, budgets: &Thresholds) -> Result<(), FieldError> {
    for (name, v) in [
        ("startRps", search.start_rps),
        ("stepRps", search.step_rps),
        ("maxRps", search.max_rps),
    ] {
        if !v.is_finite() || v <= 0.0 {
            return err(format!("{at}.search.{name}"), "must be > 0");
        }
    }
    if search.max_rps < search.start_rps {
        return err(
            format!("{at}.search.maxRps"),
            format!("must be at least startRps ({})", search.start_rps),
        );
    }
    let step = search.step_duration.get();
    if step < Duration::from_secs(2) || step > MAX_SEARCH_STEP || step.subsec_nanos() != 0 {
        return err(
            format!("{at}.search.stepDuration"),
            "must be whole seconds from 2s to 1h (each step is judged on its one-second windows)",
        );
    }
    if search.steps() > MAX_SEARCH_STEPS {
        return err(
            format!("{at}.search"),
            format!(
                "climbs in {} steps from {} to {} req/s, and a search has at most \
                 {MAX_SEARCH_STEPS} steps: raise stepRps",
                search.steps(),
                search.start_rps,
                search.max_rps
            ),
        );
    }
    if search.run_time() > MAX_DURATION {
        return err(
            format!("{at}.search"),
            "its steps add up to more than the 24h a spec may hold",
        );
    }
    if !budgets.judges_steps() {
        return err(
            format!("{at}.search"),
            "a search needs a p95Ms, p99Ms, maxErrorRate, ttftP95Ms, itlP95Ms or tpotP95Ms budget \
             (the profile's or the spec's) to judge its steps on",
        );
    }
    Ok(())
}

/// Most users one profile holds (over all its runners).
pub const MAX_USERS: u32 = 100_000;
/// Most tasks in one mix.
pub const MAX_TASKS: usize = 32;

/// A load shape under `at`: users, spawn rate, arrival rate, duration, stages and a search
/// (judged on `budgets`, the profile's effective ones), and a run time above zero.
pub(crate) fn check_load(
    at: &str,
    p: &LoadProfile,
    budgets: &Thresholds,
) -> Result<(), FieldError> {
    if !(1..=MAX_USERS).contains(&p.users) {
        return err(format!("{at}.users"), "must be between 1 and 100000");
    }
    if p.search.is_none() && (!p.spawn_rate.is_finite() || p.spawn_rate <= 0.0) {
        return err(format!("{at}.spawnRate"), "must be > 0");
    }
    if p.arrival_rate.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        return err(format!("{at}.arrivalRate"), "must be > 0");
    }
    check_duration(&format!("{at}.duration"), p.duration)?;
    if p.stages.len() > MAX_STAGES {
        return err(
            format!("{at}.stages"),
            format!("must hold at most {MAX_STAGES} stages"),
        );
    }
    let mut total = Duration::ZERO;
    for (j, stage) in p.stages.iter().enumerate() {
        let field = format!("{at}.stages[{j}]");
        check_duration(&format!("{field}.duration"), stage.duration)?;
        if stage.users > MAX_USERS {
            return err(format!("{field}.users"), "must be at most 100000");
        }
        total = total.saturating_add(stage.duration.get());
    }
    if total > MAX_DURATION {
        return err(
            format!("{at}.stages"),
            "the stages add up to more than the 24h a spec may hold",
        );
    }
    if let Some(search) = &p.search {
        if p.arrival_rate.is_some() || !p.stages.is_empty() {
            return err(
                format!("{at}.search"),
                "search sets its own rates: leave arrivalRate and stages out",
            );
        }
        check_search(at, search, budgets)?;
    }
    if p.run_time().is_zero() {
        return err(format!("{at}.duration"), "must be above 0s");
    }
    if !p.warmup.is_zero() && u64::from(p.warmup_windows()) >= p.run_time().as_secs() {
        return err(
            format!("{at}.warmup"),
            format!(
                "{} leaves nothing to measure in a run of {}",
                p.warmup,
                crate::duration::Duration(p.run_time())
            ),
        );
    }
    if budgets.abort_windows().is_some() && p.search.is_none() && !budgets.judges_steps() {
        return err(
            format!("{at}.thresholds.abortOnFail"),
            "needs a p95Ms, p99Ms, maxErrorRate, ttftP95Ms, itlP95Ms or tpotP95Ms budget to \
             judge each second on",
        );
    }
    Ok(())
}

/// A task mix under `tasks_at` and the budgets on its tasks under `budgets_at`: at most
/// [`MAX_TASKS`] named tasks, one with a weight, sane text counts, and budgets that name a
/// task of the mix.
pub(crate) fn check_tasks(
    tasks_at: &str,
    tasks: &[Task],
    budgets_at: &str,
    budgets: &[TaskThresholds],
) -> Result<(), FieldError> {
    if tasks.len() > MAX_TASKS {
        return err(tasks_at, format!("must hold at most {MAX_TASKS} tasks"));
    }
    if !tasks.is_empty() && tasks.iter().all(|t| t.weight == 0) {
        return err(tasks_at, "at least one task needs a weight > 0");
    }
    for (i, t) in tasks.iter().enumerate() {
        let at = format!("{tasks_at}[{i}]");
        if t.name.is_empty() || t.name.len() > MAX_TASK_NAME {
            return err(
                format!("{at}.name"),
                format!("must be 1 to {MAX_TASK_NAME} characters"),
            );
        }
        check_request(&format!("{at}.request"), &t.request)?;
    }
    for (i, t) in budgets.iter().enumerate() {
        if !tasks.is_empty() && !tasks.iter().any(|task| task.name == t.task) {
            return err(
                format!("{budgets_at}[{i}].task"),
                format!("no task is named {:?}", t.task),
            );
        }
        check_thresholds(&format!("{budgets_at}[{i}]"), &t.thresholds)?;
        let llm = tasks
            .iter()
            .any(|task| task.name == t.task && task.request.llm().is_some());
        check_llm_budgets(&format!("{budgets_at}[{i}]"), &t.thresholds, llm)?;
        check_scoped_thresholds(&format!("{budgets_at}[{i}]"), &t.thresholds, true)?;
    }
    Ok(())
}

/// One task's request under `at` (`spec.tasks[0].request`): sane counts, and the fields its
/// API needs.
fn check_request(at: &str, request: &TaskRequest) -> Result<(), FieldError> {
    match request {
        TaskRequest::Embed(e) => {
            let at = format!("{at}.embed");
            if e.min_texts < 1 || e.max_texts < e.min_texts {
                return err(&at, "needs 1 ≤ minTexts ≤ maxTexts");
            }
            if e.api == EmbedApi::Openai && e.model.is_none() {
                return err(
                    format!("{at}.model"),
                    "api openai needs the model to ask for (OpenAI's required field)",
                );
            }
            if e.encoding_format.is_some() && e.api != EmbedApi::Openai {
                return err(format!("{at}.encodingFormat"), "only with api openai");
            }
            if e.dimensions == Some(0) {
                return err(format!("{at}.dimensions"), "must be ≥ 1");
            }
        }
        TaskRequest::Rerank(r) => {
            let at = format!("{at}.rerank");
            if r.min_documents < 1 || r.max_documents < r.min_documents {
                return err(&at, "needs 1 ≤ minDocuments ≤ maxDocuments");
            }
            if r.max_documents > MAX_RERANK_DOCUMENTS {
                return err(
                    format!("{at}.maxDocuments"),
                    format!("at most {MAX_RERANK_DOCUMENTS}"),
                );
            }
            if r.top_n == Some(0) {
                return err(format!("{at}.topN"), "must be ≥ 1");
            }
        }
        TaskRequest::Chat(r) => check_llm_request(&format!("{at}.chat"), r)?,
        TaskRequest::Completion(r) => check_llm_request(&format!("{at}.completion"), r)?,
        TaskRequest::Get { .. } | TaskRequest::Post { .. } => {}
    }
    if !request.path().starts_with('/') {
        return err(at, format!("path {:?} must start with '/'", request.path()));
    }
    Ok(())
}

/// An LLM request under `at` (`spec.tasks[0].request.chat`): tokens in range, a sane prompt.
fn check_llm_request(at: &str, r: &LlmRequest) -> Result<(), FieldError> {
    if !(1..=MAX_OUTPUT_TOKENS).contains(&r.max_tokens) {
        return err(
            format!("{at}.maxTokens"),
            format!("must be 1 to {MAX_OUTPUT_TOKENS}"),
        );
    }
    if r.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return err(format!("{at}.temperature"), "must be between 0 and 2");
    }
    if let Some(p) = r.prompt
        && (p.min_tokens < 1 || p.max_tokens < p.min_tokens || p.max_tokens > MAX_PROMPT_TOKENS)
    {
        return err(
            format!("{at}.prompt"),
            format!("needs 1 ≤ minTokens ≤ maxTokens ≤ {MAX_PROMPT_TOKENS}"),
        );
    }
    if r.model.as_deref().is_some_and(str::is_empty) {
        return err(format!("{at}.model"), "must not be empty");
    }
    Ok(())
}

/// Most documents one rerank request sends.
pub const MAX_RERANK_DOCUMENTS: u32 = 1000;

/// A wait time under `at`: `between` needs min ≤ max, and every duration is capped.
pub(crate) fn check_wait_time(at: &str, wait: &WaitTime) -> Result<(), FieldError> {
    let durations = match wait {
        WaitTime::Between { min, max } => {
            if max < min {
                return err(format!("{at}.between"), "needs min ≤ max");
            }
            vec![*min, *max]
        }
        WaitTime::Constant { wait } => vec![*wait],
        WaitTime::ConstantPacing { interval } => vec![*interval],
    };
    for d in durations {
        check_duration(at, d)?;
    }
    Ok(())
}
