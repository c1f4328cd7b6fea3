//! The one Rust twin of every schema and CEL rule of the CRDs: [`LoadTestSpec::validate`] and
//! [`ModelEndpointSpec::validate`]. The apiserver checks the schema on admission; local mode
//! (which never meets an apiserver) and the reconciler (which must not trust that the CRD
//! installed is the one this release generated) call these. Each error names the field the way
//! the apiserver does (`spec.profiles[1].spawnRate`).
//!
//! The caps here ([`MAX_DURATION`], [`MAX_STAGES`], [`MAX_USERS_PER_RUNNER`], name lengths) are
//! also in the generated schema; `operator` tests that both refuse the same examples, and the
//! end-to-end test applies them to a real apiserver.

use crate::load::{Search, TaskRequest, Thresholds, WaitTime};
use crate::load_test::LoadTestSpec;
use crate::model_endpoint::ModelEndpointSpec;
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
/// Longest LoadTest name: it is the value of the `loadgate.dev/loadtest` label on every Job and
/// pod, and a label value holds 63 characters.
pub const MAX_LOAD_TEST_NAME: usize = 63;
/// Longest ModelEndpoint name: it names the Service, a DNS-1035 label of at most 63 characters.
pub const MAX_ENDPOINT_NAME: usize = 63;
/// The CRD's pattern for `target.url`: `http://host[:port]` with an optional trailing `/` and
/// no path, exactly what the runner's `--host` accepts (task paths are absolute).
pub const TARGET_URL_PATTERN: &str = r"^http://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$";

/// A rule a spec breaks: the field (as the apiserver names it) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, e.g. `spec.profiles[1].spawnRate`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

fn check_duration(field: &str, d: crate::duration::Duration) -> Result<(), FieldError> {
    if d.get() > MAX_DURATION {
        return err(field, format!("{d} is longer than the 24h a spec may hold"));
    }
    Ok(())
}

/// True when `url` is what the runner's `--host` accepts (the same as [`TARGET_URL_PATTERN`]).
pub fn target_url_ok(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
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

fn check_thresholds(field: &str, t: &Thresholds) -> Result<(), FieldError> {
    if t.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return err(
            format!("{field}.maxErrorRate"),
            "must be between 0 and 1 (1% is 0.01)",
        );
    }
    for (name, v) in [
        ("p95Ms", t.p95_ms),
        ("p99Ms", t.p99_ms),
        ("minRps", t.min_rps),
    ] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return err(format!("{field}.{name}"), "must be ≥ 0");
        }
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
    if budgets.p95_ms.is_none() && budgets.p99_ms.is_none() && budgets.max_error_rate.is_none() {
        return err(
            format!("{at}.search"),
            "a search needs a p95Ms, p99Ms or maxErrorRate budget (the profile's or the spec's) \
             to judge its steps on",
        );
    }
    Ok(())
}

/// True when `name` is a DNS-1123 label (lowercase alphanumerics and '-', alphanumeric ends).
fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl LoadTestSpec {
    /// Every rule of the LoadTest CRD's schema and CEL, and the caps that keep an admitted test
    /// from overflowing or failing late (label-sized names, durations ≤ 24h, stage and user
    /// counts).
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let target = &self.target;
        if target.endpoint_ref.is_some() == target.url.is_some() {
            return err(
                "spec.target",
                "set exactly one of target.endpointRef and target.url",
            );
        }
        if let Some(url) = &target.url
            && !target_url_ok(url)
        {
            return err(
                "spec.target.url",
                format!("{url:?} must be http://host[:port] with no path"),
            );
        }
        if let Some(r) = &target.endpoint_ref
            && (r.name.len() > MAX_ENDPOINT_NAME || !dns_label(&r.name))
        {
            return err(
                "spec.target.endpointRef.name",
                "must be a ModelEndpoint name (a DNS label of at most 63 characters)",
            );
        }
        if !(1..=100).contains(&self.parallelism) {
            return err("spec.parallelism", "must be between 1 and 100");
        }
        if self.profiles.is_empty() || self.profiles.len() > 16 {
            return err("spec.profiles", "must hold between 1 and 16 profiles");
        }
        if self.tasks.len() > 32 {
            return err("spec.tasks", "must hold at most 32 tasks");
        }
        let parallelism = u32::try_from(self.parallelism).unwrap_or(1);
        for (i, p) in self.profiles.iter().enumerate() {
            let at = format!("spec.profiles[{i}]");
            if p.name.is_empty() || p.name.len() > 40 || !dns_label(&p.name) {
                return err(
                    format!("{at}.name"),
                    "must be lowercase alphanumerics and '-', 1 to 40 characters",
                );
            }
            if self.profiles[..i].iter().any(|q| q.name == p.name) {
                return err(format!("{at}.name"), "profile names must be unique");
            }
            if !(1..=100_000).contains(&p.users) {
                return err(format!("{at}.users"), "must be between 1 and 100000");
            }
            if p.users < parallelism {
                return err(
                    format!("{at}.users"),
                    "every profile needs at least `parallelism` users (one per runner pod)",
                );
            }
            if p.users.div_ceil(parallelism) > MAX_USERS_PER_RUNNER {
                return err(
                    format!("{at}.users"),
                    format!(
                        "{} users over {parallelism} runner pods is more than \
                         {MAX_USERS_PER_RUNNER} per pod: raise spec.parallelism",
                        p.users
                    ),
                );
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
                if stage.users > 100_000 {
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
                check_search(&at, search, &p.effective_thresholds(&self.thresholds))?;
            }
            if p.load_profile().run_time().is_zero() {
                return err(format!("{at}.duration"), "must be above 0s");
            }
            if let Some(t) = &p.thresholds {
                check_thresholds(&format!("{at}.thresholds"), t)?;
            }
        }
        if !self.tasks.is_empty() && self.tasks.iter().all(|t| t.weight == 0) {
            return err("spec.tasks", "at least one task needs a weight > 0");
        }
        for (i, t) in self.tasks.iter().enumerate() {
            let at = format!("spec.tasks[{i}]");
            if t.name.is_empty() || t.name.len() > MAX_TASK_NAME {
                return err(
                    format!("{at}.name"),
                    format!("must be 1 to {MAX_TASK_NAME} characters"),
                );
            }
            if let TaskRequest::Embed {
                min_texts,
                max_texts,
                ..
            } = &t.request
                && (*min_texts < 1 || max_texts < min_texts)
            {
                return err(
                    format!("{at}.request.embed"),
                    "needs 1 ≤ minTexts ≤ maxTexts",
                );
            }
        }
        check_thresholds("spec.thresholds", &self.thresholds)?;
        for (i, t) in self.task_thresholds.iter().enumerate() {
            if !self.tasks.is_empty() && !self.tasks.iter().any(|task| task.name == t.task) {
                return err(
                    format!("spec.taskThresholds[{i}].task"),
                    format!("no task is named {:?}", t.task),
                );
            }
            check_thresholds(&format!("spec.taskThresholds[{i}]"), &t.thresholds)?;
        }
        if let Some(wait) = &self.wait_time {
            let (field, durations): (&str, Vec<crate::duration::Duration>) = match wait {
                WaitTime::Between { min, max } => {
                    if max < min {
                        return err("spec.waitTime.between", "needs min ≤ max");
                    }
                    ("spec.waitTime", vec![*min, *max])
                }
                WaitTime::Constant { wait } => ("spec.waitTime", vec![*wait]),
                WaitTime::ConstantPacing { interval } => ("spec.waitTime", vec![*interval]),
            };
            for d in durations {
                check_duration(field, d)?;
            }
        }
        check_duration("spec.timeout", self.timeout)?;
        check_duration("spec.endpointTimeout", self.endpoint_timeout)?;
        if let Some(t) = self.runner.request_timeout {
            check_duration("spec.runner.requestTimeout", t)?;
        }
        if self.ttl_seconds_after_finished.is_some_and(|t| t < 0) {
            return err("spec.ttlSecondsAfterFinished", "must be ≥ 0");
        }
        Ok(())
    }
}

/// The rules of a LoadTest's metadata the schema checks on the object's root.
///
/// # Errors
/// When the name is longer than a label value holds.
pub fn validate_load_test_name(name: &str) -> Result<(), FieldError> {
    if name.len() > MAX_LOAD_TEST_NAME {
        return err(
            "metadata.name",
            format!("must be at most {MAX_LOAD_TEST_NAME} characters (it is a label value)"),
        );
    }
    Ok(())
}

/// The rules of a ModelEndpoint's metadata the schema checks on the object's root.
///
/// # Errors
/// When the name cannot name a Service.
pub fn validate_endpoint_name(name: &str) -> Result<(), FieldError> {
    if name.len() > MAX_ENDPOINT_NAME
        || !dns_label(name)
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return err(
            "metadata.name",
            "must be a DNS-1035 label of at most 63 characters (it names the Service)",
        );
    }
    Ok(())
}

impl ModelEndpointSpec {
    /// Every rule of the ModelEndpoint CRD's schema.
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.model.is_empty() {
            return err("spec.model", "must name a model directory or hub id");
        }
        if !(0..=1000).contains(&self.replicas) {
            return err("spec.replicas", "must be between 0 and 1000");
        }
        if !(1..=65535).contains(&self.port) {
            return err("spec.port", "must be between 1 and 65535");
        }
        let s = &self.server;
        for (field, v) in [
            ("maxBatchSize", s.max_batch_size),
            ("maxBatchTokens", s.max_batch_tokens),
            ("maxConcurrentRequests", s.max_concurrent_requests),
            ("maxClientBatchSize", s.max_client_batch_size),
            ("inferenceWorkers", s.inference_workers),
            ("requestTimeoutSecs", s.request_timeout_secs),
        ] {
            if v.is_some_and(|v| v < 1) {
                return err(format!("spec.server.{field}"), "must be ≥ 1");
            }
        }
        let r = &self.readiness;
        for (field, v) in [
            ("periodSeconds", r.period_seconds),
            ("timeoutSeconds", r.timeout_seconds),
            ("failureThreshold", r.failure_threshold),
        ] {
            if v < 1 {
                return err(format!("spec.readiness.{field}"), "must be ≥ 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_are_exactly_plain_http_authorities() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://minilm.ml.svc:8080/",
            "http://[::1]:9000",
            "http://host",
        ] {
            assert!(target_url_ok(ok), "{ok}");
        }
        for bad in [
            "https://x:1",
            "http://x:1/embed",
            "http://:80",
            "http://x:0",
            "http://x:65536",
            "http://x:",
            "http://-x",
            "http://[::1",
            "http://x y",
        ] {
            assert!(!target_url_ok(bad), "{bad}");
        }
    }
}
