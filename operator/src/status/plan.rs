//! The state machine's vocabulary: what the operator observed ([`EndpointState`], [`JobState`])
//! going in, and what one step says to do ([`Plan`]: the status to write, one [`Step`], a
//! requeue, the [`Transition`]s worth an Event, a finished profile's report) coming out.

use super::profile_results::RunnerResults;
use loadgate_api::load_test_status::LoadTestStatus;
use loadgate_api::report::ProfileReport;
use std::time::Duration;

/// What the operator saw of the target.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointState {
    /// Serving at this URL (a Ready ModelEndpoint, or a plain `target.url`).
    Ready {
        /// Base URL.
        url: String,
        /// The ModelEndpoint's `status.coldStartSeconds` (local mode: the child server's);
        /// `None` for a URL target.
        cold_start_seconds: Option<f64>,
        /// What the endpoint runs on (all replicas), for each profile's efficiency; `None`
        /// for a URL target.
        resources: Option<loadgate_api::efficiency::TargetResources>,
        /// The path the endpoint's own server answers readiness on (`spec.runtime.readinessPath`)
        /// when it runs the team's image; `None` for model-server and URL targets.
        readiness_path: Option<String>,
    },
    /// Not (yet) Ready; the message says why.
    NotReady {
        /// Its Ready condition's message, or why it cannot be found.
        message: String,
    },
}

impl EndpointState {
    /// The endpoint's own readiness path, where it runs the team's server image.
    pub fn readiness_path(&self) -> Option<&str> {
        match self {
            EndpointState::Ready { readiness_path, .. } => readiness_path.as_deref(),
            EndpointState::NotReady { .. } => None,
        }
    }
}

/// What the operator saw of the current profile's Job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// No such Job.
    Missing,
    /// Pods still running.
    Running,
    /// Complete: the results of each completion index, from the Job's own pods.
    Succeeded(Vec<RunnerResults>),
    /// Complete, but its results cannot be trusted (a foreign or duplicate pod, a garbled,
    /// oversized or hostile summary): the message names the pod.
    BadResults(String),
    /// A Job under this run's name that is not this run's (another owner, run or generation):
    /// never adopted, never changed.
    Foreign(String),
    /// Failed (a pod failed or was evicted, or the deadline passed).
    Failed(String),
}

/// What to do besides writing the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: wait for a change (or the requeue).
    Wait,
    /// Create the runner Job of profile `index` against `target_url`.
    CreateJob {
        /// Index into `spec.profiles`.
        index: usize,
        /// Base URL the runners load.
        target_url: String,
    },
    /// Delete a Job whose load must stop (timeout, endpoint lost).
    DeleteJob(String),
}

/// Why the operator published an Event: one name for the controllers, local mode and the tests
/// (`kubectl get events --field-selector reason=ProfilePassed` relies on these strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    /// A run was accepted and its status reset.
    RunStarted,
    /// A profile's runner Job is being created.
    ProfileStarted,
    /// A profile finished within its budgets.
    ProfilePassed,
    /// A profile finished and broke a budget.
    ProfileFailed,
    /// The run ended and passed.
    TestPassed,
    /// The run ended and failed its budgets.
    TestFailed,
    /// The run ended in error (no verdict).
    TestError,
    /// A new run stopped the runner Jobs of earlier runs.
    SupersededRun,
    /// A ModelEndpoint became Ready.
    EndpointReady,
    /// A ModelEndpoint that was Ready no longer is.
    EndpointNotReady,
    /// A reconcile failed (the error chain is the note).
    ReconcileFailed,
    /// A profile's report was not stored: its ConfigMap is not this test's (`NotOwned`).
    ReportNotOwned,
    /// A profile's report was not stored: the apiserver refused it.
    ReportNotStored,
}

impl EventReason {
    /// The PascalCase reason an Event carries.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::RunStarted => "RunStarted",
            EventReason::ProfileStarted => "ProfileStarted",
            EventReason::ProfilePassed => "ProfilePassed",
            EventReason::ProfileFailed => "ProfileFailed",
            EventReason::TestPassed => "TestPassed",
            EventReason::TestFailed => "TestFailed",
            EventReason::TestError => "TestError",
            EventReason::SupersededRun => "SupersededRun",
            EventReason::EndpointReady => "EndpointReady",
            EventReason::EndpointNotReady => "EndpointNotReady",
            EventReason::ReconcileFailed => "ReconcileFailed",
            EventReason::ReportNotOwned => "NotOwned",
            EventReason::ReportNotStored => "ReportNotStored",
        }
    }
}

impl std::fmt::Display for EventReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition worth an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Why.
    pub reason: EventReason,
    /// For a person.
    pub note: String,
}

/// The outcome of one step of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to write (the controller skips the write when nothing changed).
    pub status: LoadTestStatus,
    /// The action.
    pub step: Step,
    /// Check again after this long even without a change.
    pub requeue: Option<Duration>,
    /// Events to publish.
    pub events: Vec<Transition>,
    /// A profile that finished in this step: its index and merged report, for the report store
    /// (the controller writes it before the status that names the profile's result).
    pub report: Option<(usize, ProfileReport)>,
}
