//! The condition vocabulary every gate understands, and the one function that writes conditions.
//!
//! LoadTest: `Complete` (True once finished, pass **or** fail; what `kubectl wait` waits on),
//! `Passed` (the verdict, with measured value and budget in the message), and kstatus' `Ready`,
//! `Reconciling` and `Stalled` (what Flux and Argo CD read). ModelEndpoint: `Ready`,
//! `Progressing`, `Degraded`.
//!
//! [`set_condition`] follows the Kubernetes API conventions: `lastTransitionTime` moves only when
//! `status` flips, every condition carries `observedGeneration`, and the list is keyed on `type`.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// LoadTest finished (pass or fail).
    pub const COMPLETE: &str = "Complete";
    /// LoadTest verdict.
    pub const PASSED: &str = "Passed";
    /// kstatus: the object is what it should be (LoadTest passed; ModelEndpoint serving).
    pub const READY: &str = "Ready";
    /// kstatus: work in progress.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: no progress will come without a change (LoadTest failed or errored).
    pub const STALLED: &str = "Stalled";
    /// ModelEndpoint: a rollout is in progress.
    pub const PROGRESSING: &str = "Progressing";
    /// ModelEndpoint: fewer ready replicas than wanted, or the rollout is stuck.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (PascalCase, as the API conventions ask).
pub mod reasons {
    /// Waiting for the target ModelEndpoint to become Ready.
    pub const WAITING_FOR_ENDPOINT: &str = "WaitingForEndpoint";
    /// The target did not become Ready within `endpointTimeout`.
    pub const ENDPOINT_TIMEOUT: &str = "EndpointTimeout";
    /// The target ModelEndpoint was Ready and then stopped being Ready mid-test.
    pub const ENDPOINT_LOST: &str = "EndpointNotReady";
    /// Runner Jobs are running.
    pub const RUNNING: &str = "Running";
    /// Every profile stayed inside its budgets.
    pub const THRESHOLDS_MET: &str = "ThresholdsMet";
    /// A profile broke a budget.
    pub const THRESHOLDS_EXCEEDED: &str = "ThresholdsExceeded";
    /// A profile stayed over budget and was stopped early (`thresholds.abortOnFail`); the
    /// profiles after it were skipped.
    pub const ABORTED_ON_BUDGET: &str = "AbortedOnBudget";
    /// The test could not produce a verdict (runner failed, timeout, bad results).
    pub const ERROR: &str = "Error";
    /// The whole test ran past `timeout`.
    pub const TIMEOUT: &str = "Timeout";
    /// A runner pod failed or was evicted.
    pub const RUNNER_FAILED: &str = "RunnerFailed";
    /// The test has not finished.
    pub const IN_PROGRESS: &str = "InProgress";
    /// Finished.
    pub const FINISHED: &str = "Finished";
    /// The spec cannot be run as written.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// An object the operator would create or change already exists and is not its own (a
    /// Deployment, Service or Job of that name controlled by someone else): nothing is changed.
    pub const NOT_OWNED: &str = "NotOwned";
    /// A runner pod left a summary that cannot be trusted (garbled, oversized, forged, a
    /// duplicate completion index, more pods than `parallelism`).
    pub const BAD_RESULTS: &str = "BadResults";
    /// The apiserver refused a child object the operator built (422 invalid, 403 forbidden).
    pub const REJECTED: &str = "Rejected";
    /// The operator's policy refuses what the spec asks for (a target, an image, a user
    /// count): the message names the field and the rule.
    pub const POLICY_DENIED: &str = "PolicyDenied";
    /// ModelEndpoint: every wanted replica is ready and updated.
    pub const AVAILABLE: &str = "Available";
    /// ModelEndpoint: pods are starting or updating.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// ModelEndpoint: fewer replicas ready than wanted.
    pub const REPLICAS_UNAVAILABLE: &str = "ReplicasUnavailable";
    /// ModelEndpoint: the Deployment reports its progress deadline exceeded.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
}

/// The content of a condition, without the bookkeeping [`set_condition`] adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Condition type (see [`types`]).
    pub type_: &'static str,
    /// True, False, or `None` for Unknown (e.g. `Passed` before a verdict).
    pub status: Option<bool>,
    /// PascalCase reason (see [`reasons`]).
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

impl ConditionUpdate {
    /// A condition of `type_`.
    pub fn new(
        type_: &'static str,
        status: Option<bool>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(status: Option<bool>) -> &'static str {
    match status {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// Writes `update` into `conditions`: replaces the condition of the same type, keeping its
/// `lastTransitionTime` unless the status flips; appends a new one with `now`.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: &Time,
) {
    let status = status_str(update.status);
    let new = |last_transition_time: Time| Condition {
        type_: update.type_.to_owned(),
        status: status.to_owned(),
        reason: update.reason.to_owned(),
        message: update.message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            let since = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                now.clone()
            };
            *existing = new(since);
        }
        None => conditions.push(new(now.clone())),
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of `type_` is present with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Conditions equal apart from `lastTransitionTime` (which [`set_condition`] already keeps
/// stable): a status write is skipped when nothing else changed.
pub fn same_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        let running = ConditionUpdate::new(
            types::COMPLETE,
            Some(false),
            reasons::RUNNING,
            "profile 1 of 3",
        );
        set_condition(&mut conditions, running.clone(), Some(1), &at(100));
        let later = ConditionUpdate {
            message: "profile 2 of 3".into(),
            ..running
        };
        set_condition(&mut conditions, later, Some(1), &at(200));
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].last_transition_time,
            at(100),
            "same status keeps the time"
        );
        assert_eq!(conditions[0].message, "profile 2 of 3");
        let done = ConditionUpdate::new(types::COMPLETE, Some(true), reasons::FINISHED, "done");
        set_condition(&mut conditions, done, Some(2), &at(300));
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert_eq!(
            (
                conditions[0].status.as_str(),
                conditions[0].observed_generation
            ),
            ("True", Some(2))
        );
        assert!(is_true(&conditions, types::COMPLETE));
    }

    #[test]
    fn unknown_is_written_as_unknown() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionUpdate::new(types::PASSED, None, reasons::IN_PROGRESS, ""),
            None,
            &at(1),
        );
        assert_eq!(conditions[0].status, "Unknown");
    }
}
