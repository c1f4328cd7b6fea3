//! [`RunSpec`]: everything one runner runs, as one typed value. The operator writes it into each
//! runner pod as one JSON argument (`loadrunner run --spec JSON`), local mode hands it to the
//! engine directly, and the runner's Locust-like flags are one more way to build it. Where the
//! runner writes its reports (CSV, HTML, JSON paths) and how this machine reaches the target
//! (`--resolve`, threads) are not part of it: they belong to the machine, not to the run.
//!
//! [`RunSpec::validate`] is the runner's check of a spec it was handed (a forged or stale one
//! included): the same rules as a LoadTest's profile ([`crate::rules`]), each error naming its
//! field (`profile.search.maxRps`).

use crate::duration::Duration;
use crate::load::{LoadProfile, Task, TaskThresholds, Thresholds, WaitTime, default_tasks};
use crate::rules::{
    FieldError, MAX_USERS_PER_RUNNER, check_duration, check_load, check_tasks, check_thresholds,
    check_wait_time, err, target_url_ok,
};
use crate::target::{
    RunDataset, RunHeader, RunTls, check_run_dataset, check_run_headers, check_run_tls,
};
use serde::{Deserialize, Serialize};

/// Largest run spec a runner reads (its task mix with inline texts included); a bigger one is
/// refused before it is parsed.
pub const MAX_RUN_SPEC_BYTES: usize = 1 << 20;

/// One runner's whole run: the target, the load shape (the whole profile, before its share is
/// taken), the task mix, the budgets and this runner's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunSpec {
    /// Base URL of the target: `http(s)://host[:port]`, no path (task paths are absolute).
    pub target: String,
    /// How an `https` target is trusted (default: the system roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RunTls>,
    /// Headers sent on every request; secrets come from an environment variable or a file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<RunHeader>,
    /// The team's texts the embed and rerank tasks draw from (default: the built-in corpus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<RunDataset>,
    /// How the runner waits for the target before its clock starts.
    #[serde(default)]
    pub readiness: Readiness,
    /// The whole profile all shards run together; this runner runs its [`Shard`] of it.
    pub profile: LoadProfile,
    /// What each user does: weighted tasks (default: the classic embedding mix).
    #[serde(default = "default_tasks")]
    pub tasks: Vec<Task>,
    /// Pause after each task.
    #[serde(default)]
    pub wait_time: WaitTime,
    /// Budgets on the whole profile: the verdict, and what a search's steps are judged on.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Budgets on single tasks of the mix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_thresholds: Vec<TaskThresholds>,
    /// Seed of payloads and task picks (each shard offsets it by its index): equal seeds send
    /// equal traffic.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// A request slower than this fails as a timeout.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// This runner's share of the profile.
    #[serde(default)]
    pub shard: Shard,
    /// When the shards begin their load together, unix milliseconds (once the target is ready):
    /// their once-a-second windows line up. Absent: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_ms: Option<u64>,
    /// The caller judges the results (the operator, on every shard's merged results): a broken
    /// budget still exits 0 once the results are written; only a run that could not complete
    /// fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caller_judges: bool,
    /// Embedding quality under load: check a share of the embed answers against vectors taken
    /// one text at a time before the clock starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::load::Quality>,
}

fn default_seed() -> u64 {
    1
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// How the runner waits for its target: `path` must answer 2xx within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Readiness {
    /// Polled before the clock starts.
    #[serde(default = "default_ready_path")]
    pub path: String,
    /// How long to wait for it.
    #[serde(default = "default_ready_timeout")]
    pub timeout: Duration,
    /// False: start at once (the caller has just waited on it, as local mode does).
    #[serde(default = "yes")]
    pub wait: bool,
}

fn default_ready_path() -> String {
    "/health".to_owned()
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(60)
}

fn yes() -> bool {
    true
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            path: default_ready_path(),
            timeout: default_ready_timeout(),
            wait: true,
        }
    }
}

/// Share `index` of `count` runners side by side: 1/`count` of the profile's users and rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Shard {
    /// This runner, from 0.
    pub index: u32,
    /// Runners in all (≥ 1).
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl RunSpec {
    /// A spec with every default: `profile` against `target`.
    pub fn new(target: impl Into<String>, profile: LoadProfile) -> Self {
        Self {
            target: target.into(),
            tls: None,
            headers: Vec::new(),
            dataset: None,
            readiness: Readiness::default(),
            profile,
            tasks: default_tasks(),
            wait_time: WaitTime::default(),
            thresholds: Thresholds::default(),
            task_thresholds: Vec::new(),
            seed: default_seed(),
            request_timeout: default_request_timeout(),
            shard: Shard::default(),
            start_at_ms: None,
            caller_judges: false,
            quality: None,
        }
    }

    /// Reads a spec from JSON, bounded before it is parsed.
    ///
    /// # Errors
    /// When it is over [`MAX_RUN_SPEC_BYTES`], not JSON of a run spec (the message names the
    /// unknown or missing field), or breaks a rule of [`RunSpec::validate`].
    pub fn from_json(text: &str) -> Result<Self, String> {
        if text.len() > MAX_RUN_SPEC_BYTES {
            return Err(format!(
                "{} bytes; a run spec holds at most {MAX_RUN_SPEC_BYTES}",
                text.len()
            ));
        }
        let spec: RunSpec = serde_json::from_str(text).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    /// This spec as JSON for a container argument: every `$` is written `\u0024` (the same
    /// string to a JSON reader), so the kubelet's `$(VAR)` expansion of arguments never touches
    /// a task's text.
    pub fn to_container_arg(&self) -> String {
        serde_json::to_string(self)
            .expect("a run spec serialises; this is a bug")
            .replace('$', "\\u0024")
    }

    /// The profile's budgets a search is judged on, when the profile is a search.
    pub fn search_budgets(&self) -> Option<Thresholds> {
        self.profile.search.map(|_| self.thresholds)
    }

    /// This runner's share of the profile.
    pub fn shard_profile(&self) -> LoadProfile {
        self.profile.shard(self.shard.index, self.shard.count)
    }

    /// The rules a runner holds a spec to: a plain-http target, a load shape a LoadTest
    /// profile could hold, a task mix, budgets, and a share with at least one user.
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !target_url_ok(&self.target) {
            return err(
                "target",
                format!(
                    "{:?} must be http(s)://host[:port] with no path",
                    self.target
                ),
            );
        }
        if let Some(tls) = &self.tls {
            check_run_tls("tls", tls, &self.target)?;
        }
        check_run_headers("headers", &self.headers)?;
        if let Some(dataset) = &self.dataset {
            check_run_dataset("dataset", dataset)?;
        }
        if !self.readiness.path.starts_with('/') {
            return err("readiness.path", "must start with /");
        }
        check_duration("readiness.timeout", self.readiness.timeout)?;
        if self.profile.name.is_empty() || self.profile.name.len() > 64 {
            return err("profile.name", "must be 1 to 64 characters");
        }
        check_load("profile", &self.profile, &self.thresholds)?;
        check_tasks(
            "tasks",
            &self.tasks,
            "taskThresholds",
            &self.task_thresholds,
        )?;
        if self.tasks.is_empty() {
            return err("tasks", "must hold at least one task");
        }
        check_thresholds("thresholds", &self.thresholds)?;
        if let Some(quality) = &self.quality {
            crate::rules::check_quality("quality", quality, &self.tasks)?;
        }
        check_wait_time("waitTime", &self.wait_time)?;
        if self.request_timeout.get().is_zero() {
            return err("requestTimeout", "must be above 0s");
        }
        check_duration("requestTimeout", self.request_timeout)?;
        let Shard { index, count } = self.shard;
        if count == 0 || index >= count {
            return err("shard", "needs index < count");
        }
        if self.profile.users < count {
            return err(
                "shard.count",
                format!(
                    "{count} runners share {} users: each needs one",
                    self.profile.users
                ),
            );
        }
        if self.profile.users.div_ceil(count) > MAX_USERS_PER_RUNNER {
            return err(
                "profile.users",
                format!("more than {MAX_USERS_PER_RUNNER} users in one runner: add runners"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Search, TaskRequest};

    fn ramp() -> LoadProfile {
        LoadProfile {
            name: "ramp".into(),
            users: 8,
            spawn_rate: 1.0,
            duration: Duration::from_secs(10),
            arrival_rate: None,
            stages: Vec::new(),
            search: None,
            warmup: Default::default(),
        }
    }

    #[test]
    fn a_minimal_spec_takes_every_default_and_round_trips() {
        let spec = RunSpec::from_json(
            r#"{"target": "http://127.0.0.1:8080",
                "profile": {"name": "ramp", "users": 8, "spawnRate": 1, "duration": "10s"}}"#,
        )
        .unwrap();
        assert_eq!(spec, RunSpec::new("http://127.0.0.1:8080", ramp()));
        let again = RunSpec::from_json(&spec.to_container_arg()).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn a_dollar_in_a_task_survives_as_an_escape_the_kubelet_does_not_expand() {
        let mut spec = RunSpec::new("http://x:1", ramp());
        spec.tasks = vec![Task {
            name: "cost $(HOME)".into(),
            weight: 1,
            request: TaskRequest::Get {
                path: "/health".into(),
            },
            follow_redirects: false,
            max_response_bytes: None,
        }];
        let arg = spec.to_container_arg();
        assert!(!arg.contains('$'), "{arg}");
        assert_eq!(
            RunSpec::from_json(&arg).unwrap().tasks[0].name,
            "cost $(HOME)"
        );
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        let base = RunSpec::new("http://x:1", ramp());
        /// Breaks one rule of a good spec.
        type Break = fn(&mut RunSpec);
        let cases: Vec<(&str, Break)> = vec![
            ("target", |s| s.target = "ftp://x".into()),
            ("tls", |s| s.tls = Some(RunTls::default())),
            ("headers[0]", |s| {
                s.headers = vec![RunHeader {
                    name: "X-Key".into(),
                    value: None,
                    value_from_env: None,
                    value_from_file: None,
                }];
            }),
            ("dataset", |s| s.dataset = Some(RunDataset::default())),
            ("readiness.path", |s| s.readiness.path = "health".into()),
            ("profile.users", |s| s.profile.users = 0),
            ("profile.spawnRate", |s| s.profile.spawn_rate = 0.0),
            ("profile.search", |s| {
                s.profile.search = Some(Search {
                    start_rps: 1.0,
                    step_rps: 1.0,
                    step_duration: Duration::from_secs(5),
                    max_rps: 4.0,
                });
            }),
            ("tasks", |s| s.tasks.clear()),
            ("taskThresholds[0].task", |s| {
                s.task_thresholds = vec![TaskThresholds {
                    task: "nope".into(),
                    thresholds: Thresholds::default(),
                }];
            }),
            ("thresholds.maxErrorRate", |s| {
                s.thresholds.max_error_rate = Some(2.0)
            }),
            ("requestTimeout", |s| {
                s.request_timeout = Duration::from_secs(0)
            }),
            ("shard", |s| s.shard = Shard { index: 2, count: 2 }),
            ("shard.count", |s| s.shard = Shard { index: 0, count: 9 }),
        ];
        for (field, break_it) in cases {
            let mut spec = base.clone();
            break_it(&mut spec);
            assert_eq!(spec.validate().unwrap_err().field, field);
        }
        assert!(
            RunSpec::from_json(
                r#"{"target": "http://x:1", "usres": 1,
                    "profile": {"name": "p", "users": 1, "spawnRate": 1, "duration": "1s"}}"#
            )
            .unwrap_err()
            .contains("usres")
        );
        let huge = format!("{{\"target\": \"{}\"}}", "x".repeat(MAX_RUN_SPEC_BYTES));
        assert!(RunSpec::from_json(&huge).unwrap_err().contains("at most"));
    }
}
