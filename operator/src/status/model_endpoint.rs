//! ModelEndpoint status from its Deployment: replica counts, the Service URL, and `Ready` /
//! `Progressing` / `Degraded` (plus kstatus' `Reconciling` / `Stalled`) from the Deployment's
//! real rollout state; the rollout's cold start from its pods ([`cold_start_seconds`]).

use crate::resources::model_endpoint::service_url;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use loadgate_api::conditions::{ConditionUpdate, Time, is_true, reasons, set_condition, types};
use loadgate_api::model_endpoint::{ModelEndpoint, ModelEndpointStatus};
use std::collections::BTreeMap;

/// The cold start of a rolled-out endpoint: the slowest of its serving pods from creation to
/// Ready, seconds, from the pods' own `creationTimestamp` and Ready condition (as the kubelet
/// set it), with each pod's figure by UID. A pod's figure is taken once, the first time it is
/// seen Ready with no container restarted, and kept from `recorded` after that: a restart or a
/// readiness flap moves Ready's `lastTransitionTime`, and would otherwise make the cold start
/// the pod's age. Pods being deleted, not yet measured and not measurable (not Ready, or
/// restarted before first seen) are left out; `None` when none is left.
pub fn cold_start_seconds(
    pods: &[Pod],
    recorded: &BTreeMap<String, f64>,
) -> (Option<f64>, BTreeMap<String, f64>) {
    let by_pod: BTreeMap<String, f64> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let uid = pod.metadata.uid.clone()?;
            if let Some(seconds) = recorded.get(&uid) {
                return Some((uid, *seconds));
            }
            let status = pod.status.as_ref()?;
            let restarted = status
                .container_statuses
                .iter()
                .flatten()
                .any(|c| c.restart_count > 0);
            if restarted {
                return None;
            }
            let created = pod.metadata.creation_timestamp.as_ref()?.0;
            let ready = status
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "True")?
                .last_transition_time
                .as_ref()?
                .0;
            let seconds = ready.duration_since(created).as_secs_f64();
            (seconds >= 0.0).then_some((uid, seconds))
        })
        .collect();
    (by_pod.values().copied().reduce(f64::max), by_pod)
}

/// The status `endpoint` should have, given its Deployment as the apiserver returned it.
pub fn endpoint_status(
    endpoint: &ModelEndpoint,
    deployment: Option<&Deployment>,
    now: &Time,
) -> ModelEndpointStatus {
    let wanted = endpoint.spec.replicas;
    let dep_status = deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let observed = deployment.is_some_and(|d| {
        dep_status.observed_generation.is_some()
            && dep_status.observed_generation >= d.metadata.generation
    });
    let ready = dep_status.ready_replicas.unwrap_or(0);
    let updated = dep_status.updated_replicas.unwrap_or(0);
    let total = dep_status.replicas.unwrap_or(0);
    let deadline_exceeded = dep_status.conditions.iter().flatten().any(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let previous = endpoint
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    // Every pod runs the current template (what `kubectl rollout status` waits for, with readiness).
    let updated_all = observed && updated >= wanted && total <= wanted;
    let available = updated_all && ready >= wanted && wanted > 0;
    // Pods lost after the endpoint was serving: Degraded, not a fresh rollout.
    let lost = updated_all
        && ready < wanted
        && (is_true(previous, types::READY) || is_true(previous, types::DEGRADED));

    let mut status = endpoint.status.clone().unwrap_or_default();
    let generation = endpoint.metadata.generation;
    status.observed_generation = generation;
    status.replicas = total;
    status.ready_replicas = ready;
    status.url = Some(service_url(endpoint));
    let counts = format!("{ready}/{wanted} replicas ready");
    let ready_condition = if available {
        ConditionUpdate::new(types::READY, Some(true), reasons::AVAILABLE, counts.clone())
    } else if wanted == 0 {
        ConditionUpdate::new(
            types::READY,
            Some(false),
            reasons::REPLICAS_UNAVAILABLE,
            "scaled to 0 replicas",
        )
    } else if lost {
        ConditionUpdate::new(
            types::READY,
            Some(false),
            reasons::REPLICAS_UNAVAILABLE,
            counts.clone(),
        )
    } else {
        ConditionUpdate::new(
            types::READY,
            Some(false),
            reasons::ROLLING_OUT,
            format!("rolling out: {counts}"),
        )
    };
    let progressing = if available || lost || deadline_exceeded || wanted == 0 {
        ConditionUpdate::new(
            types::PROGRESSING,
            Some(false),
            reasons::AVAILABLE,
            "no rollout in progress",
        )
    } else {
        ConditionUpdate::new(
            types::PROGRESSING,
            Some(true),
            reasons::ROLLING_OUT,
            format!("{updated}/{wanted} replicas updated, {ready} ready"),
        )
    };
    let degraded = if deadline_exceeded {
        ConditionUpdate::new(
            types::DEGRADED,
            Some(true),
            reasons::PROGRESS_DEADLINE_EXCEEDED,
            "the Deployment exceeded its progress deadline; see its pods' events",
        )
    } else if lost {
        ConditionUpdate::new(
            types::DEGRADED,
            Some(true),
            reasons::REPLICAS_UNAVAILABLE,
            counts,
        )
    } else {
        ConditionUpdate::new(types::DEGRADED, Some(false), reasons::AVAILABLE, "")
    };
    // kstatus (Flux, Argo CD's generic check): Reconciling while rolling out, Stalled when the
    // rollout will not finish without a change.
    let reconciling = ConditionUpdate {
        type_: types::RECONCILING,
        ..progressing.clone()
    };
    let stalled = if deadline_exceeded {
        ConditionUpdate {
            type_: types::STALLED,
            ..degraded.clone()
        }
    } else {
        ConditionUpdate::new(types::STALLED, Some(false), reasons::AVAILABLE, "")
    };
    for update in [ready_condition, progressing, degraded, reconciling, stalled] {
        set_condition(&mut status.conditions, update, generation, now);
    }
    status
}

/// The status of an endpoint the operator cannot act on until a person changes something: a
/// child it would write belongs to someone else (`NotOwned`), the apiserver refused a child it
/// built (`Rejected`), or the spec breaks a rule (`InvalidSpec`). Not Ready, Degraded and
/// Stalled, all with `message` naming the object and the cause; replica counts are kept.
pub fn blocked_status(
    endpoint: &ModelEndpoint,
    reason: &'static str,
    message: &str,
    now: &Time,
) -> ModelEndpointStatus {
    let mut status = endpoint.status.clone().unwrap_or_default();
    let generation = endpoint.metadata.generation;
    status.observed_generation = generation;
    for update in [
        ConditionUpdate::new(types::READY, Some(false), reason, message),
        ConditionUpdate::new(types::PROGRESSING, Some(false), reason, message),
        ConditionUpdate::new(types::DEGRADED, Some(true), reason, message),
        ConditionUpdate::new(types::RECONCILING, Some(false), reason, message),
        ConditionUpdate::new(types::STALLED, Some(true), reason, message),
    ] {
        set_condition(&mut status.conditions, update, generation, now);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, deployment_with, endpoint};
    use loadgate_api::conditions::find;

    fn pod(uid: &str, created: i64, ready: Option<i64>, deleting: bool) -> Pod {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        Pod {
            metadata: kube::api::ObjectMeta {
                uid: Some(uid.into()),
                creation_timestamp: Some(at(created)),
                deletion_timestamp: deleting.then(|| at(created + 100)),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready.is_some() { "True" } else { "False" }.into(),
                    last_transition_time: Some(at(ready.unwrap_or(created))),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn cold_start_is_the_slowest_serving_pod_from_creation_to_ready() {
        let pods = [
            pod("a", 100, Some(103), false),
            pod("b", 100, Some(107), false),
            // An old pod on its way out, and one not Ready: neither is the rollout's.
            pod("c", 0, Some(90), true),
            pod("d", 100, None, false),
        ];
        let none = BTreeMap::new();
        let (seconds, by_pod) = cold_start_seconds(&pods, &none);
        assert_eq!(seconds, Some(7.0));
        assert_eq!(by_pod.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(cold_start_seconds(&pods[2..], &none).0, None);
    }

    /// Before: a readiness flap or a container restart a day later moved Ready's
    /// `lastTransitionTime`, and the cold start became the pod's age.
    #[test]
    fn a_flap_or_restart_never_turns_the_cold_start_into_the_pods_age() {
        let first = [pod("a", 100, Some(103), false)];
        let (seconds, recorded) = cold_start_seconds(&first, &BTreeMap::new());
        assert_eq!(seconds, Some(3.0));
        // A day later the pod flapped: Ready again at +86,400 s. Its first Ready is kept.
        let flapped = [pod("a", 100, Some(86_500), false)];
        assert_eq!(cold_start_seconds(&flapped, &recorded).0, Some(3.0));
        // A pod first seen after a restart has no honest cold start: left out.
        let mut restarted = pod("b", 100, Some(86_500), false);
        restarted.status.as_mut().unwrap().container_statuses =
            Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                name: "model-server".into(),
                restart_count: 2,
                ..Default::default()
            }]);
        let (seconds, by_pod) = cold_start_seconds(&[flapped[0].clone(), restarted], &recorded);
        assert_eq!(seconds, Some(3.0));
        assert_eq!(by_pod.len(), 1);
        // A pod gone is forgotten.
        assert!(cold_start_seconds(&[], &recorded).1.is_empty());
    }

    #[test]
    fn ready_only_when_the_rollout_is_done_and_pods_are_ready() {
        let ep = endpoint("mini");
        let starting = endpoint_status(&ep, Some(&deployment_with(1, 1, 1, 0)), &at(10));
        assert!(!is_true(&starting.conditions, types::READY));
        assert!(is_true(&starting.conditions, types::PROGRESSING));
        assert!(is_true(&starting.conditions, types::RECONCILING));
        assert_eq!(
            find(&starting.conditions, types::READY).unwrap().reason,
            reasons::ROLLING_OUT
        );

        let ready = endpoint_status(&ep, Some(&deployment_with(1, 1, 1, 1)), &at(20));
        assert!(is_true(&ready.conditions, types::READY));
        assert!(!is_true(&ready.conditions, types::PROGRESSING));
        assert!(
            !is_true(&ready.conditions, types::RECONCILING)
                && !is_true(&ready.conditions, types::STALLED)
        );
        assert_eq!((ready.replicas, ready.ready_replicas), (1, 1));
        assert_eq!(ready.url.as_deref(), Some("http://mini.ml.svc:8080"));
        assert_eq!(ready.observed_generation, Some(1));
    }

    #[test]
    fn stale_deployment_status_is_not_ready() {
        let ep = endpoint("mini");
        let mut dep = deployment_with(1, 1, 1, 1);
        dep.metadata.generation = Some(2); // the controller has not seen the new spec yet
        let status = endpoint_status(&ep, Some(&dep), &at(10));
        assert!(!is_true(&status.conditions, types::READY));
    }

    #[test]
    fn pods_lost_after_serving_are_degraded_not_rolling_out() {
        let mut ep = endpoint("mini");
        ep.status = Some(endpoint_status(
            &ep,
            Some(&deployment_with(1, 1, 1, 1)),
            &at(10),
        ));
        for t in [20, 30] {
            ep.status = Some(endpoint_status(
                &ep,
                Some(&deployment_with(1, 1, 1, 0)),
                &at(t),
            ));
            let conditions = &ep.status.as_ref().unwrap().conditions;
            assert!(is_true(conditions, types::DEGRADED), "at {t}");
            assert!(!is_true(conditions, types::READY));
            assert!(!is_true(conditions, types::PROGRESSING));
            assert_eq!(
                find(conditions, types::DEGRADED)
                    .unwrap()
                    .last_transition_time,
                at(20)
            );
        }
    }

    #[test]
    fn a_blocked_endpoint_is_stalled_and_degraded_naming_the_cause() {
        let ep = endpoint("mini");
        let status = blocked_status(
            &ep,
            reasons::NOT_OWNED,
            "Deployment mini exists and is not controlled by this ModelEndpoint",
            &at(10),
        );
        for t in [types::STALLED, types::DEGRADED] {
            let c = find(&status.conditions, t).unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "NotOwned"));
            assert!(c.message.contains("Deployment mini"));
        }
        assert!(!is_true(&status.conditions, types::READY));
    }

    #[test]
    fn a_rollout_past_its_deadline_is_stalled() {
        let ep = endpoint("mini");
        let mut dep = deployment_with(1, 1, 1, 0);
        dep.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: Some("Progressing".into()),
                status: Some("False".into()),
                reason: Some("ProgressDeadlineExceeded".into()),
                ..Default::default()
            }]);
        let status = endpoint_status(&ep, Some(&dep), &at(10));
        assert!(
            is_true(&status.conditions, types::STALLED)
                && is_true(&status.conditions, types::DEGRADED)
        );
        assert!(!is_true(&status.conditions, types::RECONCILING));
    }
}
