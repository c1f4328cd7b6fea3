//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas are safe: only
//! the holder runs the controllers. kube-rs has none built in; this is the client-go algorithm
//! in small: acquire when the Lease is free or its holder stopped renewing for
//! `leaseDurationSeconds`, renew every [`RENEW_EVERY`], and give up (exit, so the kubelet
//! restarts the pod as a follower) when renewals fail for [`RENEW_DEADLINE`]. Updates carry the
//! Lease's `resourceVersion`, so two candidates can never both win a round: the apiserver
//! refuses the second write with 409.
//!
//! The decision of each round ([`decide`]) is pure and tested with a fixed clock.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use std::time::Duration;

/// How long a Lease stays held without a renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long the holder keeps leading while renewals fail, then steps down.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a follower tries to acquire.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);

/// What one round does with the Lease as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Round {
    /// Create the Lease (there is none).
    Create(Lease),
    /// Write this Lease (acquire or renew), guarded by its resourceVersion.
    Update(Lease),
    /// Someone else holds it and renews it: wait.
    Wait {
        /// Its holder.
        holder: String,
    },
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

/// The round for `me` at `now`, given the Lease as read (`None`: it does not exist).
pub fn decide(
    lease: Option<&Lease>,
    name: &str,
    namespace: &str,
    me: &str,
    now: Timestamp,
) -> Round {
    let duration = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(15);
    let Some(lease) = lease else {
        return Round::Create(Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(me.to_owned()),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(micro(now)),
                renew_time: Some(micro(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        });
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mut next = lease.clone();
    let mut new_spec = spec.clone();
    new_spec.renew_time = Some(micro(now));
    new_spec.lease_duration_seconds = Some(duration);
    if holder.as_deref() == Some(me) {
        next.spec = Some(new_spec);
        return Round::Update(next);
    }
    let held_for =
        SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(duration)));
    let expired = spec
        .renew_time
        .as_ref()
        .is_none_or(|renewed| renewed.0 + held_for < now);
    match holder {
        Some(holder) if !expired => Round::Wait { holder },
        _ => {
            new_spec.holder_identity = Some(me.to_owned());
            new_spec.acquire_time = Some(micro(now));
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            next.spec = Some(new_spec);
            Round::Update(next)
        }
    }
}

/// One candidate for the Lease `name` in `namespace`.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    me: String,
}

impl Elector {
    /// A candidate named `me` (the pod name, or host and process id).
    pub fn new(client: kube::Client, namespace: &str, name: &str, me: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            me: me.to_owned(),
        }
    }

    /// One round: true when `me` holds the Lease after it.
    ///
    /// # Errors
    /// API errors other than losing a race (409, which is a lost round).
    pub async fn try_once(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let round = decide(
            current.as_ref(),
            &self.name,
            &self.namespace,
            &self.me,
            Timestamp::now(),
        );
        let written = match round {
            Round::Wait { .. } => return Ok(false),
            Round::Create(lease) => self.api.create(&PostParams::default(), &lease).await,
            Round::Update(lease) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until `me` holds the Lease (or `cancel` resolves: then `false`).
    pub async fn acquire(&self, cancel: impl Future<Output = ()>) -> bool {
        tokio::pin!(cancel);
        let mut announced = false;
        loop {
            match self.try_once().await {
                Ok(true) => {
                    tracing::info!(lease = self.name, identity = self.me, "leading");
                    return true;
                }
                Ok(false) if !announced => {
                    tracing::info!(lease = self.name, "another replica leads; waiting");
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = &e as &dyn std::error::Error, "lease"),
            }
            tokio::select! {
                () = &mut cancel => return false,
                () = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    }

    /// Renews until a renewal has failed for [`RENEW_DEADLINE`] (leadership lost: returns) or
    /// `cancel` resolves (then the Lease is released, so a standby takes over at once).
    pub async fn hold(&self, cancel: impl Future<Output = ()>) -> bool {
        tokio::pin!(cancel);
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = &mut cancel => {
                    self.release().await;
                    return true;
                }
                () = tokio::time::sleep(RENEW_EVERY) => {}
            }
            match self.try_once().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = self.name, "the Lease was taken over");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "lease renewal failed");
                    if last_renewed.elapsed() > RENEW_DEADLINE {
                        return false;
                    }
                }
            }
        }
    }

    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = self.name, "Lease released"),
            Err(e) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                "cannot release the Lease"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("loadgate".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(at(renewed))),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_missing_lease_is_created_held_by_me() {
        let Round::Create(lease) = decide(None, "loadgate", "ops", "a", at(100)) else {
            panic!("not a create")
        };
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("ops"));
    }

    #[test]
    fn a_live_holder_is_waited_for_and_a_silent_one_replaced() {
        let lease = held_by("b", 100);
        assert_eq!(
            decide(Some(&lease), "loadgate", "ops", "a", at(110)),
            Round::Wait { holder: "b".into() }
        );
        let Round::Update(taken) = decide(Some(&lease), "loadgate", "ops", "a", at(116)) else {
            panic!("an expired lease is taken over")
        };
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(
            taken.metadata.resource_version.as_deref(),
            Some("7"),
            "guarded by the version read"
        );
    }

    #[test]
    fn the_holder_renews_and_a_released_lease_is_free() {
        let Round::Update(renewed) =
            decide(Some(&held_by("a", 100)), "loadgate", "ops", "a", at(105))
        else {
            panic!("the holder renews")
        };
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(at(105))));
        assert_eq!(
            spec.lease_transitions,
            Some(2),
            "a renewal is no transition"
        );
        let mut released = held_by("b", 100);
        released.spec.as_mut().unwrap().holder_identity = None;
        assert!(matches!(
            decide(Some(&released), "loadgate", "ops", "a", at(101)),
            Round::Update(_)
        ));
    }
}
