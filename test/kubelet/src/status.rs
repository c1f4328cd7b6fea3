//! The PodStatus a kubelet reports for what its processes are doing: phase, conditions, the pod
//! address, and each container's state, restarts, exit code and termination message.
//!
//! Pure: built from [`ContainerState`]s, so the phase rules are tested without processes.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What one container is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum ContainerState {
    /// Not started (or failed to start: `reason`, `message`).
    Waiting {
        /// Short CamelCase reason.
        reason: String,
        /// What happened.
        message: Option<String>,
    },
    /// The process runs.
    Running {
        /// When it started.
        started: Time,
        /// The readiness probe passed last (true without a probe).
        ready: bool,
    },
    /// The process exited.
    Terminated {
        /// Its exit code (128 + signal when killed).
        exit_code: i32,
        /// The termination message.
        message: Option<String>,
        /// When it started.
        started: Time,
        /// When it exited.
        finished: Time,
    },
}

/// One container's report.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerReport {
    /// Container name.
    pub name: String,
    /// Image as the spec names it.
    pub image: String,
    /// Restarts so far.
    pub restarts: i32,
    /// Its state.
    pub state: ContainerState,
}

/// The pod-level facts.
#[derive(Clone, Debug)]
pub struct PodReport {
    /// The pod's loopback address.
    pub ip: Ipv4Addr,
    /// When the kubelet took the pod.
    pub started: Time,
    /// The pod's restartPolicy (`Always`, `OnFailure`, `Never`).
    pub restart_policy: String,
    /// Why the pod could not start at all (phase Failed with this message).
    pub failed: Option<String>,
    /// When every container last became ready (the Ready condition's `lastTransitionTime`, as
    /// a real kubelet sets it); `None` while not all are.
    pub ready_since: Option<Time>,
}

/// Whether every container runs and passes its readiness probe.
pub fn all_ready(containers: &[ContainerReport]) -> bool {
    !containers.is_empty()
        && containers
            .iter()
            .all(|c| matches!(c.state, ContainerState::Running { ready: true, .. }))
}

/// The pod phase: Running while any container may still run; Succeeded/Failed once all have
/// exited for good.
pub fn phase(pod: &PodReport, containers: &[ContainerReport]) -> &'static str {
    if pod.failed.is_some() {
        return "Failed";
    }
    if pod.restart_policy == "Always" {
        return "Running";
    }
    let exits: Vec<i32> = containers
        .iter()
        .filter_map(|c| match c.state {
            ContainerState::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        })
        .collect();
    if exits.len() < containers.len() {
        return "Running";
    }
    if exits.iter().all(|&code| code == 0) {
        "Succeeded"
    } else if pod.restart_policy == "OnFailure" {
        "Running"
    } else {
        "Failed"
    }
}

/// The whole PodStatus.
pub fn pod_status(pod: &PodReport, containers: &[ContainerReport]) -> PodStatus {
    let phase = phase(pod, containers);
    let all_ready = all_ready(containers);
    let condition = |type_: &str, status: bool| PodCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        last_transition_time: Some(pod.started.clone()),
        ..PodCondition::default()
    };
    // Readiness moves on its own clock: from the pod's start to when every container passed.
    let readiness = |type_: &str| PodCondition {
        last_transition_time: Some(
            pod.ready_since
                .clone()
                .filter(|_| all_ready)
                .unwrap_or_else(|| pod.started.clone()),
        ),
        ..condition(type_, all_ready)
    };
    PodStatus {
        phase: Some(phase.to_owned()),
        message: pod.failed.clone(),
        reason: pod.failed.as_ref().map(|_| "StartError".to_owned()),
        host_ip: Some(Ipv4Addr::LOCALHOST.to_string()),
        host_ips: Some(vec![HostIP {
            ip: Ipv4Addr::LOCALHOST.to_string(),
        }]),
        pod_ip: Some(pod.ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: pod.ip.to_string(),
        }]),
        start_time: Some(pod.started.clone()),
        conditions: Some(vec![
            condition("PodScheduled", true),
            condition("Initialized", true),
            readiness("ContainersReady"),
            readiness("Ready"),
        ]),
        container_statuses: Some(containers.iter().map(container_status).collect()),
        ..PodStatus::default()
    }
}

fn container_status(c: &ContainerReport) -> ContainerStatus {
    let (state, ready, started) = match &c.state {
        ContainerState::Waiting { reason, message } => (
            K8sState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..K8sState::default()
            },
            false,
            false,
        ),
        ContainerState::Running { started, ready } => (
            K8sState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started.clone()),
                }),
                ..K8sState::default()
            },
            *ready,
            true,
        ),
        ContainerState::Terminated {
            exit_code,
            message,
            started,
            finished,
        } => (
            K8sState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(
                        if *exit_code == 0 {
                            "Completed"
                        } else {
                            "Error"
                        }
                        .to_owned(),
                    ),
                    message: message.clone(),
                    started_at: Some(started.clone()),
                    finished_at: Some(finished.clone()),
                    ..ContainerStateTerminated::default()
                }),
                ..K8sState::default()
            },
            false,
            false,
        ),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        ready,
        started: Some(started),
        restart_count: c.restarts,
        state: Some(state),
        ..ContainerStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t() -> Time {
        Time(Timestamp::UNIX_EPOCH)
    }

    fn pod(policy: &str) -> PodReport {
        PodReport {
            ip: Ipv4Addr::new(127, 0, 0, 10),
            started: t(),
            restart_policy: policy.into(),
            failed: None,
            ready_since: None,
        }
    }

    fn exited(code: i32) -> ContainerReport {
        ContainerReport {
            name: "c".into(),
            image: "i".into(),
            restarts: 0,
            state: ContainerState::Terminated {
                exit_code: code,
                message: Some("summary".into()),
                started: t(),
                finished: t(),
            },
        }
    }

    #[test]
    fn phases_follow_exits_and_restart_policy() {
        assert_eq!(phase(&pod("Never"), &[exited(0)]), "Succeeded");
        assert_eq!(phase(&pod("Never"), &[exited(1)]), "Failed");
        assert_eq!(phase(&pod("OnFailure"), &[exited(1)]), "Running");
        assert_eq!(phase(&pod("Always"), &[exited(0)]), "Running");
        let mut failed = pod("Always");
        failed.failed = Some("no binary".into());
        assert_eq!(phase(&failed, &[]), "Failed");
    }

    #[test]
    fn ready_only_when_every_container_passed_its_probe() {
        let running = |ready| ContainerReport {
            name: "c".into(),
            image: "i".into(),
            restarts: 1,
            state: ContainerState::Running {
                started: t(),
                ready,
            },
        };
        let ready_of = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(
            ready_of(&pod_status(&pod("Always"), &[running(false)])),
            "False"
        );
        let status = pod_status(&pod("Always"), &[running(true)]);
        assert_eq!(ready_of(&status), "True");
        assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.10"));
        assert_eq!(
            status.container_statuses.clone().unwrap()[0].restart_count,
            1
        );
        // Ready moves when the probe passed, not when the pod started: a cold start is read
        // from it.
        let ready_at = Time(Timestamp::from_second(7).unwrap());
        let mut warmed = pod("Always");
        warmed.ready_since = Some(ready_at.clone());
        let conditions = pod_status(&warmed, &[running(true)]).conditions.unwrap();
        let since = |type_: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == type_)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(since("Ready"), Some(ready_at));
        assert_eq!(since("PodScheduled"), Some(t()));
    }

    #[test]
    fn terminated_containers_carry_code_and_message() {
        let status = pod_status(&pod("Never"), &[exited(3)]);
        let term = status.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));
        assert_eq!(term.message.as_deref(), Some("summary"));
    }
}
