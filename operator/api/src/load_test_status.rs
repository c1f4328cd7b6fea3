//! What a `LoadTest` run came to, as its status: the run's phase and each profile's
//! ([`LoadPhase`], [`ProfilePhase`]), each profile's figures, violations, curve and capacity
//! ([`ProfileStatus`]), the whole test's summary, capacity, baseline and verdict, and the
//! conditions every gate reads ([`LoadTestStatus`]). The operator (or `loadgate local`) is its
//! only writer; the spec it describes is in [`crate::load_test`].

use crate::capacity::{Capacity, CurvePoint};
use crate::conditions::{Condition, Time};
use crate::summary::Violation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a LoadTest is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LoadPhase {
    /// Accepted, nothing started.
    Pending,
    /// Waiting for the target ModelEndpoint to become Ready.
    WaitingForEndpoint,
    /// Runner Jobs are running.
    Running,
    /// Finished inside every budget.
    Passed,
    /// Finished, and a budget was broken.
    Failed,
    /// No verdict could be reached (timeout, runner failure, endpoint never ready).
    Error,
}

impl LoadPhase {
    /// Passed, Failed or Error.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            LoadPhase::Passed | LoadPhase::Failed | LoadPhase::Error
        )
    }
}

/// Where one profile is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProfilePhase {
    /// Not started.
    Pending,
    /// Its Job is running.
    Running,
    /// Finished inside its budgets.
    Passed,
    /// Finished, and a budget was broken.
    Failed,
    /// No numbers (runner failed, timeout).
    Error,
    /// Not run: an earlier profile was aborted on its budgets (`thresholds.abortOnFail`).
    Skipped,
}

/// The verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    /// Every profile stayed inside its budgets.
    Pass,
    /// A budget was broken, or no verdict could be reached.
    Fail,
}

/// Request counts and latency of a profile (or of the whole test).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultFigures {
    /// Requests completed.
    pub requests: i64,
    /// Requests failed (connection errors, timeouts, 4xx, 5xx, and open-model requests never
    /// sent).
    pub failures: i64,
    /// Open model: requests the schedule called for that were never sent (the runner's queue
    /// was full, or they still waited for a free user at the deadline). Counted in `requests`
    /// and `failures`, so an error-rate budget fails on shed load.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_sent: i64,
    /// failures / requests.
    pub error_rate: f64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 95th percentile latency, ms.
    pub p95_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest request, ms.
    pub max_ms: f64,
    /// LLM tasks (chat, completion): time to first token, inter-token latency, time per output
    /// token and whole latency (p50/p95/p99, ms, exact over every runner pod), tokens, output
    /// tokens per second and goodput. Absent without an LLM task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::stats::LlmStats>,
    /// Why requests failed: the most frequent reasons (at most 5), each with its task and how
    /// many requests it failed, added up over every runner pod
    /// (`HTTPError 404` on `GET /nope` of task `wrong-path`: 970).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub failure_reasons: Vec<crate::failures::FailureReason>,
}

/// What one profile measured.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileStatus {
    /// Profile name.
    pub name: String,
    /// Where it is.
    pub phase: ProfilePhase,
    /// Its runner Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Figures merged over all runner pods (exact percentiles from merged histograms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultFigures>,
    /// Peak users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,
    /// A hash of what the profile loads and how: its load shape (users, rates, stages, search,
    /// duration, warm-up), the runner pods, the task mix, the wait time and the target. A
    /// baseline compares a profile only with a run of the same fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Budgets it broke.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// A ramp (users growing at `spawnRate`, or rising `stages`): the highest step of users
    /// inside the p95, p99 and error budgets, and where one broke. Read from `curve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// A ramp's load curve: one point per step of users (at most 24), from this run; with
    /// several runner pods, their steps added up on their common clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub curve: Vec<CurvePoint>,
    /// Several runner pods (`parallelism` > 1): how far apart their loads began, ms. They are
    /// given one start time a few seconds after their Job is created; a pod that started late
    /// shows here, and its windows still add up with the others' on the common clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_skew_ms: Option<i64>,
    /// With `spec.quality`: what checking its sampled answers found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::summary::QualityResult>,
    /// The connections its runners opened: the protocol spoken (`HTTP/2` by ALPN on https),
    /// and connect and TLS handshake times, which no request's latency includes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<crate::stats::ConnectionStats>,
    /// Embeddings per second, per CPU core of the endpoint, and their cost (`spec.pricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efficiency: Option<crate::efficiency::Efficiency>,
    /// Why it has no numbers, when it errored (or was aborted or skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When its Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When its results were collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// While it runs: its load so far, merged from the progress line each runner pod prints
    /// every 10 s (read through `pods/log`), written at most every 10 s and only when it
    /// changed; cleared when the profile ends (its `results` hold the exact figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProfileProgress>,
}

/// A running profile's load so far ([`crate::progress::Progress`]), merged over its pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileProgress {
    /// The figures (counts and rates added up over the pods; latency the highest pod's).
    #[serde(flatten)]
    pub figures: crate::progress::Progress,
    /// Runner pods whose progress line these figures merge (of `spec.parallelism`).
    pub pods: u32,
    /// When the operator read it.
    pub observed_time: Time,
}

impl ProfileStatus {
    /// A profile not started yet, of `users` peak users.
    pub fn pending(name: &str, users: u32) -> Self {
        ProfileStatus {
            name: name.to_owned(),
            phase: ProfilePhase::Pending,
            job: None,
            results: None,
            users: Some(i64::from(users)),
            fingerprint: None,
            violations: Vec::new(),
            capacity: None,
            curve: Vec::new(),
            start_skew_ms: None,
            message: None,
            start_time: None,
            completion_time: None,
            efficiency: None,
            quality: None,
            connections: None,
            progress: None,
        }
    }
}

/// The capacity that binds over a whole test.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestCapacity {
    /// Requests per second of the highest step inside every budget.
    pub max_rps_within_budget: f64,
    /// Users of that step.
    pub max_users_within_budget: u32,
    /// The budget field that broke (`p95Ms`, `p99Ms`, `maxErrorRate`); absent when none broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    /// The profile it comes from.
    pub profile: String,
    /// The same in one sentence: "holds p95 < 500 ms up to 23.0 req/s (12 users); breaks at 14
    /// users: p95 612 ms".
    pub message: String,
}

/// A finished run, kept when the test is run again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run's name (the `loadgate.dev/run` annotation, or `initial`).
    pub run: String,
    /// The spec generation it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Its phase at the end.
    pub phase: LoadPhase,
    /// Its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Its overall figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ResultFigures>,
    /// The URL it loaded: a LoadTest's own later run is compared with it only on the same
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// Its capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<TestCapacity>,
    /// Its profiles.
    #[serde(default)]
    pub profiles: Vec<ProfileStatus>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// The baseline a run is compared against.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaselineStatus {
    /// The LoadTest it comes from (this one, or `spec.baseline.loadTestRef`).
    pub load_test: String,
    /// Its run: the latest that passed its budgets; absent when there is none yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RunRecord>,
    /// For a person: "within 10% of run 3f2a9c1" or "no baseline yet: ...".
    pub message: String,
}

/// Why a run stopped early (`thresholds.abortOnFail`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbortStatus {
    /// The profile that was stopped.
    pub profile: String,
    /// Profiles not run because of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Seconds of planned load not run: the rest of the aborted profile and the skipped
    /// profiles' run time.
    pub saved_seconds: f64,
    /// For a person.
    pub message: String,
}

/// What the operator observed and measured.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The run this status reports (the `loadgate.dev/run` annotation, or `initial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Pending, WaitingForEndpoint, Running, Passed, Failed or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LoadPhase>,
    /// While a profile runs, where it is: `steady 120/300s` (its name, then seconds of load so
    /// far of those planned), the `PROGRESS` column of `kubectl get loadtests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Pass or Fail, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// URL the runners load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Totals over all profiles; latency figures are the worst profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ResultFigures>,
    /// One row per profile, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<ProfileStatus>,
    /// Where the endpoint falls over, over the whole test: the capacity of the ramp profile
    /// with the lowest `maxRpsWithinBudget` (the one that binds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<TestCapacity>,
    /// The previous run's results, kept when the test is run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<RunRecord>,
    /// Seconds the target ModelEndpoint's latest rollout took from pod creation to Ready (its
    /// `status.coldStartSeconds` when this run started; in local mode the child server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start_seconds: Option<f64>,
    /// What the target ModelEndpoint runs on when this run started (all replicas), the
    /// denominator of each profile's `efficiency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resources: Option<crate::efficiency::TargetResources>,
    /// With `spec.baseline`: the run this one is compared against, and what the comparison
    /// found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineStatus>,
    /// Budgets of the whole test it broke, beside each profile's own: `maxColdStartSeconds` and
    /// the `spec.baseline` budgets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// Set when a profile was stopped early on its budgets (`thresholds.abortOnFail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<AbortStatus>,
    /// `Complete`, `Passed`, `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
