//! The load spec shared by the runner CLI, local mode and the operator: what each virtual user
//! does (weighted [`Task`]s, [`WaitTime`]), how many users arrive how fast ([`LoadProfile`]),
//! and the budgets a run must stay inside ([`Thresholds`]). What a run measured is in
//! [`crate::stats`], what it came to in [`crate::summary`].
//!
//! Enums are externally tagged with struct variants only, the one enum shape a Kubernetes
//! structural schema can express (../shared/notes/rust-stack.md, pitfall table).

use crate::duration::Duration;
use crate::llm_request::{CHAT_PATH, COMPLETION_PATH, LlmRequest};
use serde::{Deserialize, Serialize};

/// One load shape. Closed model (default): `users` users arrive at `spawn_rate` per second and
/// each loops over the task mix until `duration` has passed. Open model (`arrival_rate` set):
/// requests start at that rate whatever the answers do, at most `users` in flight, and latency
/// counts from each request's scheduled start, so queueing is measured, not hidden (no
/// coordinated omission). A search (`search` set) is the open model with a rate that climbs
/// step by step until the budgets break.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadProfile {
    /// Name of the profile (ramp-up, sustained, spike, ...); names rows in reports.
    pub name: String,
    /// Peak number of concurrent users (≥ 1).
    #[cfg_attr(feature = "crd", schemars(range(min = 1)))]
    pub users: u32,
    /// Users started per second until `users` run (> 0; not used, and may be left out, by a
    /// search); `users` starts them all at once.
    #[serde(default)]
    pub spawn_rate: f64,
    /// How long the profile runs, ramp included (not used, and may be left out, with `stages`
    /// or `search`).
    #[serde(default)]
    pub duration: Duration,
    /// Open model: requests started per second (> 0); `users` caps how many are in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<f64>,
    /// Explicit shape (k6 `stages`): the user count moves linearly from the previous stage's
    /// target (0 at the start) to each stage's `users` over its `duration`. When set, the
    /// profile runs for the stages' total time and `users`/`spawnRate` are not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// A capacity search (open model): the arrival rate climbs by `stepRps` every
    /// `stepDuration` from `startRps` to `maxRps`, each step judged on its own histogram, and the
    /// run stops once two steps in a row broke a latency or error budget. When set, the profile
    /// runs for the steps' total time and `duration`/`spawnRate` are not used; `users` caps the
    /// requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
    /// Warm-up: load is sent from the start, but requests that finish in the first `warmup`
    /// (counted in whole one-second windows) are left out of every figure, curve and budget;
    /// they stay in the history CSV, marked `warm-up`. Shorter than the run.
    #[serde(default, skip_serializing_if = "Duration::is_zero")]
    pub warmup: Duration,
}

/// Most steps in one capacity search (its curve has one point per step, in the status).
pub const MAX_SEARCH_STEPS: u32 = 24;

/// A capacity search: the offered rate of each step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "crd", schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.startRps > 0.0 && self.stepRps > 0.0", "message": "startRps and stepRps must be > 0"},
    {"rule": "self.maxRps >= self.startRps", "message": "maxRps must be at least startRps"},
    {"rule": "self.stepRps <= 0.0 || (self.maxRps - self.startRps) / self.stepRps < 23.000001", "message": "a search has at most 24 steps: raise stepRps"},
])))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Search {
    /// Requests per second of the first step (> 0).
    pub start_rps: f64,
    /// Requests per second added at each next step (> 0).
    pub step_rps: f64,
    /// How long each step lasts: whole seconds, 2s to 1h (a step is judged on its own one-second
    /// windows).
    pub step_duration: Duration,
    /// The highest rate a step may offer (≥ `startRps`); a search has at most 24 steps.
    pub max_rps: f64,
}

impl Search {
    /// Number of steps from `start_rps` up to `max_rps`.
    pub fn steps(&self) -> u32 {
        if !(self.start_rps > 0.0 && self.step_rps > 0.0 && self.max_rps >= self.start_rps) {
            return 1;
        }
        // A hair of slack, so 10 + 3 × 0.1 reaches 10.3 however the floats round.
        let more = ((self.max_rps - self.start_rps) / self.step_rps + 1e-9).floor();
        (more.min(f64::from(u32::MAX - 1)) as u32) + 1
    }

    /// The offered rate of step `index` (0-based).
    pub fn rate(&self, index: u32) -> f64 {
        self.start_rps + self.step_rps * f64::from(index)
    }

    /// The whole search's time: every step.
    pub fn run_time(&self) -> std::time::Duration {
        self.step_duration.get().saturating_mul(self.steps())
    }

    /// The step running `elapsed` into the search, and `None` from its end on.
    pub fn step_at(&self, elapsed: std::time::Duration) -> Option<u32> {
        let step = self.step_duration.get();
        if step.is_zero() {
            return None;
        }
        let index = elapsed.as_nanos() / step.as_nanos();
        u32::try_from(index).ok().filter(|&i| i < self.steps())
    }

    /// This search's share for one of `count` runners side by side.
    fn share(&self, count: f64) -> Search {
        Search {
            start_rps: self.start_rps / count,
            step_rps: self.step_rps / count,
            step_duration: self.step_duration,
            max_rps: self.max_rps / count,
        }
    }
}

/// One stage of an explicit load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stage {
    /// How long the stage lasts.
    pub duration: Duration,
    /// Users running at the end of the stage.
    pub users: u32,
}

impl LoadProfile {
    /// How long the profile runs: a search's steps, the stages' total when stages are set, else
    /// `duration`.
    pub fn run_time(&self) -> std::time::Duration {
        if let Some(search) = &self.search {
            return search.run_time();
        }
        if self.stages.is_empty() {
            self.duration.get()
        } else {
            self.stages.iter().map(|s| s.duration.get()).sum()
        }
    }

    /// Runner `index` of `count` side by side (the operator's `parallelism`): this runner's share
    /// of the users, spawn rate, arrival rate and stage targets, so the runners together make
    /// the profile's load (a search's rates split like the arrival rate). Users split as evenly
    /// as integers allow (the first runners take one more); each runner keeps at least one user.
    pub fn shard(&self, index: u32, count: u32) -> LoadProfile {
        let count = count.max(1);
        let share = |users: u32| (users / count + u32::from(index < users % count)).max(1);
        let part = f64::from(count);
        LoadProfile {
            name: self.name.clone(),
            users: share(self.users),
            spawn_rate: self.spawn_rate / part,
            duration: self.duration,
            arrival_rate: self.arrival_rate.map(|r| r / part),
            stages: self
                .stages
                .iter()
                .map(|s| Stage {
                    duration: s.duration,
                    users: if s.users == 0 { 0 } else { share(s.users) },
                })
                .collect(),
            search: self.search.map(|s| s.share(part)),
            warmup: self.warmup,
        }
    }

    /// One-second windows of warm-up: `warmup` rounded up to whole seconds.
    pub fn warmup_windows(&self) -> u32 {
        let warmup = self.warmup.get();
        let whole = warmup.as_secs() + u64::from(warmup.subsec_nanos() > 0);
        u32::try_from(whole).unwrap_or(u32::MAX)
    }

    /// The shape in a few words: "4 users at +1/s for 5s", "120 req/s for 30s (at most 50 in
    /// flight)", "3 stages over 40s (peak 100 users)", "a search from 10 to 200 req/s, +10
    /// every 20s (at most 50 in flight)".
    pub fn describe(&self) -> String {
        let run = Duration(self.run_time());
        if let Some(s) = &self.search {
            return format!(
                "a search from {} to {} req/s, +{} every {} (at most {} in flight)",
                s.start_rps, s.max_rps, s.step_rps, s.step_duration, self.users
            );
        }
        if let Some(rate) = self.arrival_rate {
            return format!("{rate} req/s for {run} (at most {} in flight)", self.users);
        }
        if !self.stages.is_empty() {
            let peak = self.stages.iter().map(|s| s.users).max().unwrap_or(0);
            return format!(
                "{} stages over {run} (peak {peak} users)",
                self.stages.len()
            );
        }
        format!(
            "{} users at +{}/s for {}",
            self.users, self.spawn_rate, self.duration
        )
    }

    /// The load the plan offers `elapsed` into the profile, the level a step is cut on: a
    /// search's arrival rate, else the users [`Self::planned_users`] has running; 0 from the end
    /// of the run on.
    pub fn planned_level(&self, elapsed: std::time::Duration) -> f64 {
        match &self.search {
            Some(search) => search.step_at(elapsed).map_or(0.0, |i| search.rate(i)),
            None => f64::from(self.planned_users(elapsed)),
        }
    }

    /// Closed model: users the plan has running `elapsed` into the profile (the engine starts
    /// user `n` at `n / spawnRate`, or follows the stages), and 0 from the end of the run on.
    /// Every shard reads the same plan from the whole profile, so steps cut on it line up.
    pub fn planned_users(&self, elapsed: std::time::Duration) -> u32 {
        if elapsed >= self.run_time() {
            return 0;
        }
        if !self.stages.is_empty() {
            return self.staged_users(elapsed);
        }
        let started = (elapsed.as_secs_f64() * self.spawn_rate).floor() + 1.0;
        started.min(f64::from(self.users)) as u32
    }

    /// Users that should be running `elapsed` into the profile, following the stages.
    pub fn staged_users(&self, elapsed: std::time::Duration) -> u32 {
        let mut from = 0u32;
        let mut start = std::time::Duration::ZERO;
        for stage in &self.stages {
            let end = start + stage.duration.get();
            if elapsed < end {
                let progress = (elapsed - start).as_secs_f64() / stage.duration.get().as_secs_f64();
                let users = f64::from(from) + (f64::from(stage.users) - f64::from(from)) * progress;
                return users.round() as u32;
            }
            from = stage.users;
            start = end;
        }
        from
    }
}

/// A weighted kind of request a user makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Task {
    /// Name in reports (Locust's "Name" column).
    pub name: String,
    /// Relative frequency (≥ 0); a user picks the next task with probability weight / total.
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub weight: u32,
    /// The request.
    pub request: TaskRequest,
    /// Follow a redirect (3xx with a `Location` on the same host and port, up to 5 hops) and
    /// judge the answer it leads to. Off by default: a redirect is then a failure with its
    /// reason (`redirect 301 to https://…`), so an http→https redirect never passes as a fast
    /// success. A redirect to another host, port or scheme is never followed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow_redirects: bool,
    /// Largest answer read, bytes (default 16 MiB); a larger one is a failure
    /// (`ResponseTooLarge`), never memory growth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 1, max = 268435456)))]
    pub max_response_bytes: Option<u64>,
}

/// What a task sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum TaskRequest {
    /// `GET path` (e.g. a health check).
    Get {
        /// Path and query.
        path: String,
    },
    /// `POST path` with between `minTexts` and `maxTexts` texts (from the built-in corpus or
    /// `spec.dataset`) in the body shape of `api`; the answer must hold one vector per text.
    Embed(EmbedRequest),
    /// `POST path` with a query and between `minDocuments` and `maxDocuments` documents in the
    /// body shape of `api`; the answer must score every document (or `topN` of them).
    Rerank(RerankRequest),
    /// `POST path` (default `/v1/chat/completions`) with an OpenAI-style chat request of one
    /// user message; the answer streams by default, and its time to first token, gaps between
    /// tokens and token counts are measured.
    Chat(LlmRequest),
    /// `POST path` (default `/v1/completions`) with an OpenAI-style text completion request,
    /// measured as `chat` is.
    Completion(LlmRequest),
    /// `POST path` with a fixed JSON body.
    Post {
        /// Path and query.
        path: String,
        /// The JSON body, sent as is.
        body: String,
    },
}

/// An embedding request: how many texts, and which API's body shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmbedRequest {
    /// Path (e.g. `/embed`, `/v1/embeddings`).
    pub path: String,
    /// Fewest texts per request (≥ 1).
    pub min_texts: u32,
    /// Most texts per request (≥ `minTexts`).
    pub max_texts: u32,
    /// The body shape: `tutorial` (`{"texts": [...]}` → `{"embeddings": [[...]]}`, the default),
    /// `tei` (`{"inputs": [...]}` → `[[...]]`) or `openai` (`{"input": [...], "model"}` →
    /// `{"data": [{"embedding", "index"}]}`; vLLM, infinity, TEI's `/v1/embeddings`, gateways).
    #[serde(default, skip_serializing_if = "EmbedApi::is_tutorial")]
    pub api: EmbedApi,
    /// The model to ask for (OpenAI's required `model` field; sent only with `api: openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 256)))]
    pub model: Option<String>,
    /// Ask for vectors of this many dimensions (OpenAI's and TEI's `dimensions`); each answer's
    /// vectors must have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 1, max = 65536)))]
    pub dimensions: Option<u32>,
    /// `float` (default) or `base64` (OpenAI's `encoding_format`: little-endian f32 vectors,
    /// decoded and checked like floats). Only with `api: openai`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
}

/// The body shape of an embedding API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EmbedApi {
    /// `{"texts": [...]}` → `{"embeddings": [[...]]}` (loadgate's model-server, the tutorial).
    #[default]
    Tutorial,
    /// Text Embeddings Inference's `/embed`: `{"inputs": [...]}` → `[[...]]`.
    Tei,
    /// OpenAI's `/v1/embeddings`: `{"input": [...], "model"}` → `{"data": [{"embedding"}]}`.
    Openai,
}

impl EmbedApi {
    fn is_tutorial(&self) -> bool {
        *self == EmbedApi::Tutorial
    }
}

/// How OpenAI-shaped answers carry vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON arrays of numbers.
    Float,
    /// Base64 of little-endian f32s.
    Base64,
}

/// A rerank request: a query and documents, in one API's body shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RerankRequest {
    /// Path (e.g. `/rerank`, `/v1/rerank`, `/v2/rerank`).
    pub path: String,
    /// The body shape: `tei` (`{"query", "texts"}` → `[{"index", "score"}]`), `cohere` or
    /// `jina` (`{"model", "query", "documents", "top_n"}` → `{"results": [{"index",
    /// "relevance_score"}]}`).
    pub api: RerankApi,
    /// The model to ask for (Cohere's and Jina's `model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 256)))]
    pub model: Option<String>,
    /// Fewest documents per request (≥ 1; default 8).
    #[serde(default = "default_min_documents")]
    pub min_documents: u32,
    /// Most documents per request (≥ `minDocuments`; default 32).
    #[serde(default = "default_max_documents")]
    pub max_documents: u32,
    /// Ask for the best `topN` only (Cohere's and Jina's `top_n`); the answer must then score
    /// min(topN, documents) of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 1)))]
    pub top_n: Option<u32>,
}

fn default_min_documents() -> u32 {
    8
}

fn default_max_documents() -> u32 {
    32
}

/// The body shape of a rerank API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RerankApi {
    /// Text Embeddings Inference's `/rerank`.
    Tei,
    /// Cohere's `/v1/rerank` and `/v2/rerank`.
    Cohere,
    /// Jina's `/v1/rerank` (Cohere's shape).
    Jina,
}

impl TaskRequest {
    /// The HTTP method (Locust's "Type" column).
    pub fn method(&self) -> &'static str {
        match self {
            TaskRequest::Get { .. } => "GET",
            TaskRequest::Embed(_)
            | TaskRequest::Rerank(_)
            | TaskRequest::Chat(_)
            | TaskRequest::Completion(_)
            | TaskRequest::Post { .. } => "POST",
        }
    }

    /// The path.
    pub fn path(&self) -> &str {
        match self {
            TaskRequest::Get { path } | TaskRequest::Post { path, .. } => path,
            TaskRequest::Embed(e) => &e.path,
            TaskRequest::Rerank(r) => &r.path,
            TaskRequest::Chat(r) => r.path.as_deref().unwrap_or(CHAT_PATH),
            TaskRequest::Completion(r) => r.path.as_deref().unwrap_or(COMPLETION_PATH),
        }
    }

    /// The LLM request of a chat or completion task.
    pub fn llm(&self) -> Option<&LlmRequest> {
        match self {
            TaskRequest::Chat(r) | TaskRequest::Completion(r) => Some(r),
            _ => None,
        }
    }

    /// A `tutorial`-shaped embed request of `min..=max` texts to `path`.
    pub fn embed(path: &str, min_texts: u32, max_texts: u32) -> Self {
        TaskRequest::Embed(EmbedRequest {
            path: path.to_owned(),
            min_texts,
            max_texts,
            api: EmbedApi::Tutorial,
            model: None,
            dimensions: None,
            encoding_format: None,
        })
    }
}

/// The classic embedding mix: single embed (1–2 texts) weight 8, batch embed (8–32 texts)
/// weight 2, health check weight 1.
pub fn default_tasks() -> Vec<Task> {
    vec![
        Task {
            name: "embed single".to_owned(),
            weight: 8,
            request: TaskRequest::embed("/embed", 1, 2),
            follow_redirects: false,
            max_response_bytes: None,
        },
        Task {
            name: "embed batch".to_owned(),
            weight: 2,
            request: TaskRequest::embed("/embed", 8, 32),
            follow_redirects: false,
            max_response_bytes: None,
        },
        Task {
            name: "health".to_owned(),
            weight: 1,
            request: TaskRequest::Get {
                path: "/health".to_owned(),
            },
            follow_redirects: false,
            max_response_bytes: None,
        },
    ]
}

/// Pause a user takes after each task (Locust's `wait_time`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum WaitTime {
    /// Uniformly random between `min` and `max`.
    Between {
        /// Shortest wait.
        min: Duration,
        /// Longest wait.
        max: Duration,
    },
    /// Always `wait`.
    Constant {
        /// The wait.
        wait: Duration,
    },
    /// Start a task every `interval` (waiting out what the task did not use).
    ConstantPacing {
        /// Time from one task's start to the next's.
        interval: Duration,
    },
}

/// The runner's flag syntax: `constant:1s`, `between:1s..3s`, `pacing:2s`.
impl std::fmt::Display for WaitTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitTime::Between { min, max } => write!(f, "between:{min}..{max}"),
            WaitTime::Constant { wait } => write!(f, "constant:{wait}"),
            WaitTime::ConstantPacing { interval } => write!(f, "pacing:{interval}"),
        }
    }
}

impl Default for WaitTime {
    fn default() -> Self {
        WaitTime::Constant {
            wait: Duration::default(),
        }
    }
}

/// Budgets a run must stay inside; each unset one is not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Thresholds {
    /// Most p95 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub p95_ms: Option<f64>,
    /// Most p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub p99_ms: Option<f64>,
    /// Most failures / requests, 0–1 (1% is 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0, max = 1)))]
    pub max_error_rate: Option<f64>,
    /// Fewest requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub min_rps: Option<f64>,
    /// Stop a profile as soon as `abortAfter` one-second windows in a row broke the p95, p99 or
    /// error-rate budget: the profile fails, the profiles after it are skipped (reason
    /// `AbortedOnBudget`) and the status says how much time that saved. With several runner
    /// pods each stops on its own windows. Not for a search (it stops at its own break) nor a
    /// task's budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_on_fail: Option<bool>,
    /// Windows in a row over budget before `abortOnFail` stops the profile (default 5, ≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 1, max = 3600)))]
    pub abort_after: Option<u32>,
    /// Most seconds the target ModelEndpoint's latest rollout took from pod creation to Ready
    /// (its `status.coldStartSeconds`; in local mode the child server's). A test-wide budget:
    /// set it in `spec.thresholds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub max_cold_start_seconds: Option<f64>,
    /// LLM tasks: most p95 time to first token, ms (from the request's start, in the open model
    /// its scheduled start, to the first content token). Also each request's goodput SLO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub ttft_p95_ms: Option<f64>,
    /// LLM tasks: most p99 time to first token, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub ttft_p99_ms: Option<f64>,
    /// LLM tasks: most p95 inter-token latency (each gap between streamed chunks), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub itl_p95_ms: Option<f64>,
    /// LLM tasks: most p95 time per output token, ms ((latency − TTFT) / (output tokens − 1)
    /// of each streamed answer). Also each request's goodput SLO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub tpot_p95_ms: Option<f64>,
    /// LLM tasks: fewest output tokens per second over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub min_output_tokens_per_second: Option<f64>,
    /// LLM tasks: the least share (0–1) of LLM requests that succeeded within every per-request
    /// SLO set: their own TTFT within `ttftP95Ms` and TPOT within `tpotP95Ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0, max = 1)))]
    pub min_goodput: Option<f64>,
}

/// Windows in a row over budget before `abortOnFail` stops a profile, unless `abortAfter` says.
pub const DEFAULT_ABORT_AFTER: u32 = 5;

impl Thresholds {
    /// Windows in a row over budget that stop the profile, when `abortOnFail` is on.
    pub fn abort_windows(&self) -> Option<u32> {
        self.abort_on_fail
            .filter(|on| *on)
            .map(|_| self.abort_after.unwrap_or(DEFAULT_ABORT_AFTER).max(1))
    }

    /// These budgets, each unset one taken from `fallback` (`maxColdStartSeconds` only ever
    /// from `fallback`: it is test-wide).
    pub fn or(&self, fallback: &Thresholds) -> Thresholds {
        Thresholds {
            p95_ms: self.p95_ms.or(fallback.p95_ms),
            p99_ms: self.p99_ms.or(fallback.p99_ms),
            max_error_rate: self.max_error_rate.or(fallback.max_error_rate),
            min_rps: self.min_rps.or(fallback.min_rps),
            abort_on_fail: self.abort_on_fail.or(fallback.abort_on_fail),
            abort_after: self.abort_after.or(fallback.abort_after),
            max_cold_start_seconds: fallback.max_cold_start_seconds,
            ttft_p95_ms: self.ttft_p95_ms.or(fallback.ttft_p95_ms),
            ttft_p99_ms: self.ttft_p99_ms.or(fallback.ttft_p99_ms),
            itl_p95_ms: self.itl_p95_ms.or(fallback.itl_p95_ms),
            tpot_p95_ms: self.tpot_p95_ms.or(fallback.tpot_p95_ms),
            min_output_tokens_per_second: self
                .min_output_tokens_per_second
                .or(fallback.min_output_tokens_per_second),
            min_goodput: self.min_goodput.or(fallback.min_goodput),
        }
    }

    /// True when a budget a step or a second can break is set: p95, p99, error rate, or an LLM
    /// task's TTFT, ITL or TPOT p95 (what a search's steps and `abortOnFail` are judged on).
    pub fn judges_steps(&self) -> bool {
        self.p95_ms.is_some()
            || self.p99_ms.is_some()
            || self.max_error_rate.is_some()
            || self.ttft_p95_ms.is_some()
            || self.itl_p95_ms.is_some()
            || self.tpot_p95_ms.is_some()
    }

    /// True when an LLM budget is set (a run with one must have an LLM task).
    pub fn has_llm_budget(&self) -> bool {
        self.ttft_p95_ms.is_some()
            || self.ttft_p99_ms.is_some()
            || self.itl_p95_ms.is_some()
            || self.tpot_p95_ms.is_some()
            || self.min_output_tokens_per_second.is_some()
            || self.min_goodput.is_some()
    }
}

/// Budgets for one task of the mix (by its name), checked on that task's own numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskThresholds {
    /// The task's `name`.
    pub task: String,
    /// Its budgets.
    #[serde(flatten)]
    pub thresholds: Thresholds,
}

/// Embedding quality under load: a share of the embed requests send texts whose vectors the
/// runner took, one text at a time, from the idle endpoint before the clock started, and their
/// answers must match those vectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quality {
    /// Share of embed requests checked, above 0 and at most 1 (default 0.05).
    #[serde(default = "default_sample_rate")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0, max = 1)))]
    pub sample_rate: f64,
    /// Lowest cosine a checked vector may have against its reference (default 0.9999).
    #[serde(default = "default_min_cosine")]
    #[cfg_attr(feature = "crd", schemars(range(min = -1, max = 1)))]
    pub min_cosine: f64,
}

fn default_sample_rate() -> f64 {
    0.05
}

fn default_min_cosine() -> f64 {
    0.9999
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_reads_the_way_yaml_and_json_write_it() {
        let task: Task = serde_json::from_str(
            r#"{"name":"b","weight":2,"request":{"embed":{"path":"/embed","minTexts":8,"maxTexts":32}}}"#,
        )
        .unwrap();
        assert_eq!(task.request, TaskRequest::embed("/embed", 8, 32));
        let wait: WaitTime =
            serde_json::from_str(r#"{"between":{"min":"1s","max":"2s"}}"#).unwrap();
        assert_eq!(
            wait,
            WaitTime::Between {
                min: Duration::from_secs(1),
                max: Duration::from_secs(2)
            }
        );
        let profile: LoadProfile =
            serde_json::from_str(r#"{"name":"spike","users":200,"spawnRate":200,"duration":"1m"}"#)
                .unwrap();
        assert_eq!(profile.duration, Duration::from_secs(60));
        let err = serde_json::from_str::<LoadProfile>(
            r#"{"name":"x","users":1,"spawnRate":1,"duration":"1m","extra":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
        let open: LoadProfile = serde_json::from_str(
            r#"{"name":"open","users":50,"spawnRate":50,"duration":"30s","arrivalRate":120}"#,
        )
        .unwrap();
        assert_eq!((open.arrival_rate, open.stages.len()), (Some(120.0), 0));
    }

    #[test]
    fn stages_ramp_linearly_and_set_the_run_time() {
        let profile: LoadProfile = serde_json::from_str(
            r#"{"name":"s","users":1,"spawnRate":1,"duration":"1s",
                "stages":[{"duration":"10s","users":100},{"duration":"20s","users":100},{"duration":"10s","users":0}]}"#,
        )
        .unwrap();
        let at = |s: u64| profile.staged_users(std::time::Duration::from_secs(s));
        assert_eq!(
            (at(0), at(5), at(10), at(25), at(35), at(40), at(99)),
            (0, 50, 100, 100, 50, 0, 0)
        );
        assert_eq!(profile.run_time(), std::time::Duration::from_secs(40));
    }

    #[test]
    fn shards_add_up_to_the_profile() {
        let profile = LoadProfile {
            name: "p".into(),
            users: 10,
            spawn_rate: 4.0,
            duration: Duration::from_secs(30),
            arrival_rate: Some(9.0),
            stages: vec![Stage {
                duration: Duration::from_secs(5),
                users: 7,
            }],
            search: Some(Search {
                start_rps: 9.0,
                step_rps: 3.0,
                step_duration: Duration::from_secs(10),
                max_rps: 30.0,
            }),
            warmup: Default::default(),
        };
        let shards: Vec<LoadProfile> = (0..3).map(|i| profile.shard(i, 3)).collect();
        assert_eq!(
            shards.iter().map(|s| s.users).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(shards.iter().map(|s| s.stages[0].users).sum::<u32>(), 7);
        assert!((shards.iter().map(|s| s.spawn_rate).sum::<f64>() - 4.0).abs() < 1e-12);
        assert!((shards.iter().map(|s| s.arrival_rate.unwrap()).sum::<f64>() - 9.0).abs() < 1e-12);
        let rates =
            |f: fn(&Search) -> f64| shards.iter().map(|s| f(&s.search.unwrap())).sum::<f64>();
        assert!((rates(|s| s.start_rps) - 9.0).abs() < 1e-12);
        assert!((rates(|s| s.max_rps) - 30.0).abs() < 1e-12);
        // Every shard climbs the same steps at the same times.
        assert!(shards.iter().all(|s| s.search.unwrap().steps() == 8));
        assert_eq!(profile.shard(0, 1), profile);
    }

    #[test]
    fn a_search_climbs_whole_steps_to_its_maximum() {
        let search: Search = serde_json::from_str(
            r#"{"startRps":10,"stepRps":0.1,"stepDuration":"5s","maxRps":10.3}"#,
        )
        .unwrap();
        assert_eq!(
            search.steps(),
            4,
            "10, 10.1, 10.2 and 10.3 despite float rounding"
        );
        assert_eq!(search.run_time(), std::time::Duration::from_secs(20));
        let profile = LoadProfile {
            name: "find".into(),
            users: 50,
            spawn_rate: 1.0,
            duration: Duration::from_secs(999),
            arrival_rate: None,
            stages: Vec::new(),
            search: Some(search),
            warmup: Default::default(),
        };
        assert_eq!(profile.run_time(), std::time::Duration::from_secs(20));
        let at = |ms: u64| profile.planned_level(std::time::Duration::from_millis(ms));
        assert_eq!((at(0), at(4_999), at(5_000)), (10.0, 10.0, 10.1));
        assert!((at(19_999) - 10.3).abs() < 1e-9);
        assert_eq!(at(20_000), 0.0, "the search has ended");
        let uneven = Search {
            max_rps: 10.25,
            ..search
        };
        assert_eq!(uneven.steps(), 3, "a step never passes maxRps");
    }

    #[test]
    fn wait_time_prints_the_runner_flag_syntax() {
        let between = WaitTime::Between {
            min: Duration::from_secs(1),
            max: Duration::from_secs(3),
        };
        assert_eq!(between.to_string(), "between:1s..3s");
        assert_eq!(WaitTime::default().to_string(), "constant:0s");
    }
}
