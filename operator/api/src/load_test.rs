//! `LoadTest` (short name `lt`): load profiles run against an endpoint, with budgets; the
//! operator (or `loadgate local`) runs each profile and writes the numbers, the verdict and the
//! conditions into its status ([`crate::load_test_status`]).

use crate::duration::Duration;
use crate::load::{LoadProfile, Task, TaskThresholds, Thresholds, WaitTime, default_tasks};
use crate::load_test_status::LoadTestStatus;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation that names a run: set it to a new value (a commit SHA, a timestamp) to run the
/// test again without deleting it. The previous run's results move to `status.previous`.
pub const RUN_ANNOTATION: &str = "loadgate.dev/run";

/// The desired load test.
// Each printcolumn repeats `type_`/`name` keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "loadgate.dev",
    version = "v1alpha1",
    kind = "LoadTest",
    namespaced,
    status = "LoadTestStatus",
    shortname = "lt",
    category = "loadgate",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "P95 ms", type_ = "number", json_path = ".status.summary.p95Ms"),
    printcolumn(
        name = "Error rate",
        type_ = "number",
        json_path = ".status.summary.errorRate"
    ),
    printcolumn(
        name = "TTFT P95 ms",
        type_ = "number",
        json_path = ".status.summary.llm.ttft.p95Ms",
        priority = 1
    ),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(
        name = "Capacity rps",
        type_ = "number",
        json_path = ".status.capacity.maxRpsWithinBudget"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "Load profiles run against a model endpoint, with budgets and a verdict",
    validation = kube::core::Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name must be at most 63 characters (it is a label value)")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.profiles.all(p, self.profiles.exists_one(q, q.name == p.name))", "message": "profile names must be unique"},
    {"rule": "self.tasks.size() == 0 || self.tasks.exists(t, t.weight > 0)", "message": "at least one task needs a weight > 0"},
    {"rule": "self.profiles.all(p, p.users >= self.parallelism)", "message": "every profile needs at least `parallelism` users (one per runner pod)"},
    {"rule": "self.profiles.all(p, p.users <= self.parallelism * 10000)", "message": "at most 10000 users per runner pod: raise spec.parallelism"},
]))]
pub struct LoadTestSpec {
    /// What to load: a ModelEndpoint of this namespace, or any URL.
    pub target: Target,
    /// The weighted task mix each user draws from. Default: the classic embedding mix (single
    /// embed of 1–2 texts weight 8, batch embed of 8–32 texts weight 2, health check weight 1).
    #[serde(default = "default_tasks")]
    #[schemars(length(max = 32))]
    pub tasks: Vec<Task>,
    /// Pause each user takes after a task. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_time: Option<WaitTime>,
    /// Load shapes, run one after the other (e.g. ramp-up, sustained, spike).
    #[schemars(length(min = 1, max = 16))]
    pub profiles: Vec<ProfileSpec>,
    /// Budgets every profile must stay inside (a profile's own `thresholds` override these
    /// field by field).
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Budgets on single tasks of the mix, checked in every profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_thresholds: Vec<TaskThresholds>,
    /// Runner pods per profile; each runs the whole profile, and their histograms are merged
    /// into exact percentiles.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 100))]
    pub parallelism: i32,
    /// The whole test (waiting for the endpoint included) ends with an error after this long.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// How long to wait for the target ModelEndpoint to become Ready.
    #[serde(default = "default_endpoint_timeout")]
    pub endpoint_timeout: Duration,
    /// Delete the runner Jobs (and their pods) this many seconds after the whole test ends,
    /// once their results are in the status (the operator deletes them; a Job's own TTL would
    /// count from that Job's end and could lose a profile's numbers). Unset: Jobs are kept
    /// until the LoadTest is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// The runner pods.
    #[serde(default)]
    pub runner: RunnerSettings,
    /// Regression budgets against a baseline: by default the last finished run of this
    /// LoadTest that passed its budgets, or with `loadTestRef` the latest passed run of another
    /// LoadTest of this namespace. The baseline compared against is kept in
    /// `status.baseline`; a run with none passes this check and says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSpec>,
    /// Prices to report each profile's cost per 1,000 embeddings with, from the endpoint's CPU
    /// (and memory) limits, else requests, times its replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<crate::efficiency::Pricing>,
    /// Embedding quality under load: before each profile's clock starts, its runners embed a
    /// reference set of texts one at a time on the idle endpoint; under load a `sampleRate`
    /// share of the embed requests send those texts, and every answer must match its reference
    /// vector (same dimension, cosine ≥ `minCosine`, unit norm when normalised). A response
    /// that does not fails the profile: "3 of 412 sampled responses below cosine 0.9999 (worst
    /// 0.97)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::load::Quality>,
    /// The team's own texts, which embed and rerank tasks draw from instead of the built-in
    /// corpus (seeded, so a run is reproducible): a ConfigMap key (at most 1 MiB) or inline
    /// lines. Plain text lines, or JSON lines `{"text"}` (embed) and `{"query", "documents"}`
    /// (rerank).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<crate::target::Dataset>,
}

/// How much worse than its baseline a run may be; each unset budget is not checked. Compared
/// profile by profile (by name) and on the test's capacity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaselineSpec {
    /// Most p95 increase over the baseline's, percent (10 allows 518 → 569 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_p95_increase_percent: Option<f64>,
    /// Most p99 increase over the baseline's, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_p99_increase_percent: Option<f64>,
    /// Most requests-per-second decrease from the baseline's, percent (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_rps_decrease_percent: Option<f64>,
    /// Most decrease of `status.capacity.maxRpsWithinBudget` from the baseline's, percent
    /// (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_capacity_decrease_percent: Option<f64>,
    /// LLM tasks: most increase of time to first token p95 over the baseline's, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_ttft_p95_increase_percent: Option<f64>,
    /// LLM tasks: most increase of time per output token p95 over the baseline's, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_tpot_p95_increase_percent: Option<f64>,
    /// LLM tasks: most decrease of output tokens per second from the baseline's, percent
    /// (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_output_tokens_per_second_decrease_percent: Option<f64>,
    /// Take the baseline from this LoadTest of the namespace (its latest passed run) instead of
    /// this one's own previous runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub load_test_ref: Option<String>,
}

/// A ModelEndpoint of this namespace, or any URL: exactly one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.endpointRef) != has(self.url)", "message": "set exactly one of target.endpointRef and target.url"},
    {"rule": "!has(self.tls) || (has(self.url) && self.url.startsWith('https://'))", "message": "tls needs an https:// target.url"},
]))]
pub struct Target {
    /// A ModelEndpoint in the LoadTest's namespace; the test waits until it is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_ref: Option<EndpointRef>,
    /// Base URL of any HTTP endpoint (`http://host:port` or `https://host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::rules::TARGET_URL_PATTERN), length(max = 2048))]
    pub url: Option<String>,
    /// How an `https` URL is trusted: the system roots, plus a CA bundle from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::target::TargetTls>,
    /// Headers sent on every request (an API key from a Secret, a tenant header). A value from
    /// a Secret reaches the runner pods as an environment variable and is never echoed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<crate::target::Header>,
    /// The path that must answer 2xx before the load starts (default: the ModelEndpoint's
    /// `runtime.readinessPath` when it runs the team's server image, else `/v1/models` when a
    /// task is a chat or completion (the OpenAI-compatible servers all serve it, and not all
    /// serve `/health`), else `/health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/"))]
    pub readiness_path: Option<String>,
}

/// A reference to a ModelEndpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointRef {
    /// Its name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// One load shape, with optional budgets of its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.search) || (has(self.spawnRate) && self.spawnRate > 0.0)", "message": "spawnRate must be > 0"},
    {"rule": "!has(self.arrivalRate) || self.arrivalRate > 0.0", "message": "arrivalRate must be > 0"},
    {"rule": "!has(self.search) || (!has(self.arrivalRate) && !has(self.stages))", "message": "search sets its own rates: leave arrivalRate and stages out"},
]))]
pub struct ProfileSpec {
    /// Name (ramp-up, sustained, spike, ...): names the Job, the report and the status row.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Peak number of concurrent users.
    #[schemars(range(min = 1, max = 100000))]
    pub users: u32,
    /// Users started per second until `users` run (required but for a search).
    #[serde(default)]
    pub spawn_rate: f64,
    /// How long the profile runs, ramp included (not used, and may be left out, with `stages`
    /// or `search`).
    #[serde(default)]
    pub duration: Duration,
    /// Open model: requests started per second whatever the answers do; `users` caps how many
    /// are in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<f64>,
    /// Explicit shape: the user count moves linearly to each stage's `users` over its
    /// `duration`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub stages: Vec<crate::load::Stage>,
    /// A capacity search (open model): the arrival rate climbs by `stepRps` every
    /// `stepDuration` from `startRps` up to `maxRps` (at most 24 steps), each step judged on
    /// its own merged histogram against the latency and error budgets, and the runners stop
    /// once two steps in a row broke one. `users` caps the requests in flight; `duration` and
    /// `spawnRate` are not used. The profile passes when its first step held and, with a
    /// `minRps` budget, when it held at least that rate; `status.profiles[].curve` has one point
    /// per step and `capacity` the highest rate that held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::load::Search>,
    /// Warm-up (e.g. `10s`): load is sent from the start, but requests that finish in these
    /// first seconds (whole one-second windows) are not counted in the figures, the curve or
    /// the budgets; the history CSV keeps them, marked `warm-up`. Shorter than the run.
    #[serde(default, skip_serializing_if = "Duration::is_zero")]
    pub warmup: Duration,
    /// Budgets for this profile; each set field overrides the spec-level one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
}

impl ProfileSpec {
    /// The load shape, as the runner takes it.
    pub fn load_profile(&self) -> LoadProfile {
        LoadProfile {
            name: self.name.clone(),
            users: self.users,
            spawn_rate: self.spawn_rate,
            duration: self.duration,
            arrival_rate: self.arrival_rate,
            stages: self.stages.clone(),
            search: self.search,
            warmup: self.warmup,
        }
    }

    /// The budgets of this profile: its own fields over the spec-level ones.
    pub fn effective_thresholds(&self, global: &Thresholds) -> Thresholds {
        self.thresholds.unwrap_or_default().or(global)
    }
}

/// The runner pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunnerSettings {
    /// loadrunner image; default: the operator's `--loadrunner-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory of each runner pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A request slower than this fails as a timeout (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// Seed of payloads and task picks (runner pod i uses seed + i).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seed: Option<i64>,
}

fn default_parallelism() -> i32 {
    1
}

fn default_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_endpoint_timeout() -> Duration {
    Duration::from_secs(5 * 60)
}
