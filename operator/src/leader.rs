//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas are safe: only
//! the holder runs the controllers. kube-rs has none built in; this is client-go's
//! `leaderelection` in small, with its rules on clocks and deadlines:
//!
//! - A follower reads the Lease every [`RETRY_EVERY`] and takes it when it has no holder, or when
//!   the record (holder, `renewTime`, `resourceVersion`, ...) has not changed for the Lease's
//!   `leaseDurationSeconds` of the follower's OWN monotonic clock ([`Observed`]). `renewTime` and
//!   `acquireTime` are written as wall-clock times for humans but never compared with another
//!   machine's clock, so clock skew cannot steal a healthy Lease (nor keep a dead one).
//! - The holder renews every [`RENEW_EVERY`]; a failed renewal is retried every [`RETRY_EVERY`],
//!   each attempt (read and write together) cut at [`ATTEMPT_TIMEOUT`], and leadership is lost
//!   ([`Elector::hold`] returns `false`) when no renewal has succeeded for [`RENEW_DEADLINE`],
//!   counted from the start of the last attempt that did. That is shorter than
//!   [`LEASE_DURATION`], so a holder cut off from the apiserver has stepped down before any
//!   follower may take over; the caller then stops its controllers at once and exits.
//! - On shutdown [`Elector::hold`] returns `true` without releasing; the caller stops its
//!   controllers, waits for the reconciles in flight, and only then calls [`Elector::release`]
//!   (client-go's `ReleaseOnCancel`), so a standby takes over at once but never alongside them.
//!
//! Writes carry the Lease's `resourceVersion`, so two candidates can never both win a round: the
//! apiserver refuses the second write with 409. The decision of each round ([`decide`]) is pure,
//! with both clocks passed in, and tested.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How long a Lease stays held without a renewal, on a follower's own clock.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long the holder keeps leading while renewals fail, then steps down.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a follower tries to acquire, and the holder retries a failed renewal.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);
/// The most one attempt (the read and the write) may take; a slower one counts as failed.
/// kube's client alone would wait minutes for an apiserver that does not answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

// The holder must have stepped down before a follower may take over (client-go checks the
// same: RenewDeadline < LeaseDuration), and must get more than one attempt in between.
const _: () = assert!(RENEW_DEADLINE.as_millis() < LEASE_DURATION.as_millis());
const _: () = assert!(RENEW_EVERY.as_millis() < RENEW_DEADLINE.as_millis());
const _: () = assert!(ATTEMPT_TIMEOUT.as_millis() < RENEW_DEADLINE.as_millis());
const _: () = assert!(RETRY_EVERY.as_millis() <= ATTEMPT_TIMEOUT.as_millis());

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

/// What a candidate last saw of the Lease, and when on its own monotonic clock (client-go's
/// `observedRecord` and `observedTime`). A follower judges expiry by this alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    spec: Option<LeaseSpec>,
    version: Option<String>,
    at: Instant,
}

impl Observed {
    /// `lease` as read at `now`.
    pub fn new(lease: &Lease, now: Instant) -> Self {
        Self {
            spec: lease.spec.clone(),
            version: lease.metadata.resource_version.clone(),
            at: now,
        }
    }

    /// When this record was first seen, on the local clock.
    pub fn at(&self) -> Instant {
        self.at
    }

    fn same_record(&self, lease: &Lease) -> bool {
        self.spec == lease.spec && self.version == lease.metadata.resource_version
    }

    /// `seen` brought up to `lease` read at `now`: the time moves only when the record changed.
    pub fn update(seen: &mut Option<Observed>, lease: &Lease, now: Instant) {
        if !seen.as_ref().is_some_and(|s| s.same_record(lease)) {
            *seen = Some(Self::new(lease, now));
        }
    }
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// The round for `me`, given the Lease as read (`None`: it does not exist) and what was seen of
/// it before (`seen`, updated here). `now` is the local monotonic clock, the only one expiry is
/// judged by; `wall` is only written into `acquireTime`/`renewTime`, for humans.
pub fn decide(
    lease: Option<&Lease>,
    seen: &mut Option<Observed>,
    name: &str,
    namespace: &str,
    me: &str,
    now: Instant,
    wall: Timestamp,
) -> Round {
    let duration = seconds(LEASE_DURATION);
    let Some(lease) = lease else {
        *seen = None;
        return Round::Create(Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(me.to_owned()),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(micro(wall)),
                renew_time: Some(micro(wall)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        });
    };
    Observed::update(seen, lease, now);
    let observed_at = seen.as_ref().map_or(now, Observed::at);
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mut next = lease.clone();
    let mut new_spec = spec.clone();
    new_spec.renew_time = Some(micro(wall));
    new_spec.lease_duration_seconds = Some(duration);
    if holder.as_deref() == Some(me) {
        next.spec = Some(new_spec);
        return Round::Update(next);
    }
    // As the holder wrote it, but on this candidate's clock: unchanged for that long.
    let held_for = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(LEASE_DURATION, Duration::from_secs);
    let expired = observed_at + held_for < now;
    match holder {
        Some(holder) if !expired => Round::Wait { holder },
        _ => {
            new_spec.holder_identity = Some(me.to_owned());
            new_spec.acquire_time = Some(micro(wall));
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            next.spec = Some(new_spec);
            Round::Update(next)
        }
    }
}

/// How one round ended for this candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// `me` holds the Lease now (created, acquired or renewed).
    Leading,
    /// Another candidate holds a live Lease.
    Waiting {
        /// Its holder.
        holder: String,
    },
    /// The write lost a race: the Lease changed since it was read (409).
    Conflict,
}

#[derive(Default)]
struct State {
    /// The Lease as last read or written.
    seen: Option<Observed>,
    /// The start of the last attempt that wrote the Lease as `me`.
    renewed: Option<Instant>,
}

/// One candidate for the Lease `name` in `namespace`.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    me: String,
    state: Mutex<State>,
}

impl Elector {
    /// A candidate named `me` (the pod name, or host and process id).
    pub fn new(client: kube::Client, namespace: &str, name: &str, me: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            me: me.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round, unbounded in time (callers cut it at [`ATTEMPT_TIMEOUT`]).
    ///
    /// # Errors
    /// API errors other than losing a race (409, which is [`Attempt::Conflict`]).
    pub async fn try_once(&self) -> Result<Attempt, kube::Error> {
        let started = Instant::now();
        let current = self.api.get_opt(&self.name).await?;
        let round = decide(
            current.as_ref(),
            &mut self.state().seen,
            &self.name,
            &self.namespace,
            &self.me,
            Instant::now(),
            Timestamp::now(),
        );
        let written = match round {
            Round::Wait { holder } => return Ok(Attempt::Waiting { holder }),
            Round::Create(lease) => self.api.create(&PostParams::default(), &lease).await,
            Round::Update(lease) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                let mut state = self.state();
                state.seen = Some(Observed::new(&lease, Instant::now()));
                state.renewed = Some(started);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Waits until `me` holds the Lease (or `cancel` resolves: then `false`).
    pub async fn acquire(&self, cancel: impl Future<Output = ()>) -> bool {
        tokio::pin!(cancel);
        let mut announced = false;
        loop {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.try_once()).await {
                Ok(Ok(Attempt::Leading)) => {
                    tracing::info!(lease = self.name, identity = self.me, "leading");
                    return true;
                }
                Ok(Ok(Attempt::Waiting { holder })) if !announced => {
                    tracing::info!(lease = self.name, holder, "another replica leads; waiting");
                    announced = true;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = &e as &dyn std::error::Error, "lease"),
                Err(_) => tracing::warn!(
                    lease = self.name,
                    "the apiserver did not answer within {ATTEMPT_TIMEOUT:?}"
                ),
            }
            tokio::select! {
                () = &mut cancel => return false,
                () = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    }

    /// Renews the Lease until leadership is lost (`false`: another replica took it over, or no
    /// renewal succeeded for [`RENEW_DEADLINE`]; stop the controllers at once) or `cancel`
    /// resolves (`true`). It never releases the Lease: on shutdown, stop the controllers, wait
    /// for them, then call [`Elector::release`].
    pub async fn hold(&self, cancel: impl Future<Output = ()>) -> bool {
        tokio::pin!(cancel);
        // Acquire's write, just before (or now, for a caller that did not acquire).
        let mut renewed = self.state().renewed.unwrap_or_else(Instant::now);
        let mut next = renewed + RENEW_EVERY;
        loop {
            tokio::select! {
                () = &mut cancel => return true,
                () = tokio::time::sleep_until(next) => {}
            }
            let deadline = renewed + RENEW_DEADLINE;
            let started = Instant::now();
            if started >= deadline {
                tracing::error!(
                    lease = self.name,
                    "no renewal succeeded for {RENEW_DEADLINE:?}: stepping down"
                );
                return false;
            }
            let cut = deadline.min(started + ATTEMPT_TIMEOUT);
            let attempt = tokio::select! {
                () = &mut cancel => return true,
                attempt = tokio::time::timeout_at(cut, self.try_once()) => attempt,
            };
            match attempt {
                Ok(Ok(Attempt::Leading)) => {
                    renewed = started;
                    next = started + RENEW_EVERY;
                    continue;
                }
                Ok(Ok(Attempt::Waiting { holder })) => {
                    tracing::error!(lease = self.name, holder, "the Lease was taken over");
                    return false;
                }
                Ok(Ok(Attempt::Conflict)) => {
                    tracing::warn!(lease = self.name, "the Lease changed under a renewal");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "lease renewal failed");
                }
                Err(_) => tracing::warn!(
                    lease = self.name,
                    "lease renewal cut after {:?}",
                    cut - started
                ),
            }
            next = deadline.min(started + RETRY_EVERY);
        }
    }

    /// Gives the Lease up if `me` holds it, as client-go's `ReleaseOnCancel` does: no holder,
    /// a 1 s duration, so a standby takes over at its next try. Call it only once the controllers
    /// have stopped. Bounded by [`ATTEMPT_TIMEOUT`]; a failure only logs (the Lease then expires).
    pub async fn release(&self) {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.release_once()).await {
            Ok(Ok(true)) => tracing::info!(lease = self.name, "Lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                "cannot release the Lease"
            ),
            Err(_) => tracing::warn!(
                lease = self.name,
                "cannot release the Lease: no answer within {ATTEMPT_TIMEOUT:?}"
            ),
        }
    }

    async fn release_once(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(false);
        }
        let wall = micro(Timestamp::now());
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(wall.clone());
        spec.renew_time = Some(wall);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        *self.state() = State::default();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::apiserver::{self, Expect, expect};
    use http::{Method, Request, Response};
    use kube::client::Body;
    use std::sync::Arc;

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/loadgate";

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn held_by(holder: &str, renewed: Timestamp, version: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("loadgate".into()),
                namespace: Some("ops".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    fn json(lease: &Lease) -> serde_json::Value {
        serde_json::to_value(lease).unwrap()
    }

    fn too_many_requests() -> Expect {
        Expect {
            method: Method::GET,
            path: PATH.into(),
            code: 429,
            answer: serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                       "reason": "TooManyRequests", "code": 429,
                                       "message": "too many requests"}),
        }
    }

    /// `decide` for candidate `a` of `loadgate` in `ops`, `secs` after `start` on its clock.
    fn round(
        lease: Option<&Lease>,
        seen: &mut Option<Observed>,
        start: Instant,
        secs: u64,
    ) -> Round {
        let now = start + Duration::from_secs(secs);
        decide(lease, seen, "loadgate", "ops", "a", now, at(1_000_000))
    }

    /// Holders' clocks far behind (1970) and far ahead (year 2381) of this machine's.
    const SKEWED: [i64; 2] = [100, 13_000_000_000];

    #[test]
    fn a_missing_lease_is_created_held_by_me() {
        let mut seen = None;
        let Round::Create(lease) = round(None, &mut seen, Instant::now(), 0) else {
            panic!("not a create")
        };
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.renew_time, Some(MicroTime(at(1_000_000))));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("ops"));
    }

    #[test]
    fn a_live_holder_is_waited_for_and_a_silent_one_replaced() {
        let start = Instant::now();
        let lease = held_by("b", at(100), "7");
        let mut seen = None;
        let wait = Round::Wait { holder: "b".into() };
        assert_eq!(round(Some(&lease), &mut seen, start, 0), wait);
        assert_eq!(
            round(Some(&lease), &mut seen, start, 15),
            wait,
            "unchanged for exactly the lease duration: still held"
        );
        let Round::Update(taken) = round(Some(&lease), &mut seen, start, 16) else {
            panic!("an expired lease is taken over")
        };
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(1_000_000))));
        assert_eq!(
            taken.metadata.resource_version.as_deref(),
            Some("7"),
            "guarded by the version read"
        );
    }

    #[test]
    fn the_holder_renews_and_a_released_lease_is_free() {
        let start = Instant::now();
        let mut seen = None;
        let Round::Update(renewed) = round(Some(&held_by("a", at(100), "7")), &mut seen, start, 0)
        else {
            panic!("the holder renews")
        };
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(at(1_000_000))));
        assert_eq!(
            spec.lease_transitions,
            Some(2),
            "a renewal is no transition"
        );
        let mut released = held_by("b", at(100), "8");
        released.spec.as_mut().unwrap().holder_identity = Some(String::new());
        assert!(matches!(
            round(Some(&released), &mut None, start, 0),
            Round::Update(_)
        ));
    }

    #[test]
    fn a_follower_judges_expiry_by_its_own_clock_never_by_the_holders_renew_time() {
        for holder_clock in SKEWED {
            let start = Instant::now();
            let mut seen = None;
            // The holder renews every 5 s for ten minutes: never taken, however far its clock is.
            for secs in (0..=600).step_by(2) {
                let renewals = secs / 5;
                let lease = held_by("b", at(holder_clock + 5 * renewals), &renewals.to_string());
                let secs = u64::try_from(secs).unwrap();
                assert_eq!(
                    round(Some(&lease), &mut seen, start, secs),
                    Round::Wait { holder: "b".into() },
                    "taken at {secs} s with the holder's clock at {holder_clock}"
                );
            }
            // Then it stops: last seen changing at 600 s, so free after 615 s of this clock.
            let last = held_by("b", at(holder_clock + 600), "120");
            assert!(matches!(
                round(Some(&last), &mut seen, start, 615),
                Round::Wait { .. }
            ));
            assert!(matches!(
                round(Some(&last), &mut seen, start, 616),
                Round::Update(_)
            ));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_skewed_follower_takes_over_only_after_a_lease_duration_without_change() {
        for holder_clock in SKEWED {
            // The holder renews every 5 s until 60 s, then dies; the follower reads every 2 s.
            let lease_at = |secs: i64| {
                let renewals = secs.min(60) / 5;
                held_by("b", at(holder_clock + 5 * renewals), &renewals.to_string())
            };
            // Last change seen at 60 s: the record is free after 75 s, taken at the read at 76 s.
            let mut script: Vec<_> = (0..=76)
                .step_by(2)
                .map(|secs| expect(Method::GET, PATH, json(&lease_at(secs))))
                .collect();
            script.push(expect(Method::PUT, PATH, json(&held_by("a", at(0), "13"))));
            let (client, verifier) = apiserver::client(script);
            let elector = Elector::new(client, "ops", "loadgate", "a");
            let start = Instant::now();
            let led = tokio::time::timeout(
                Duration::from_secs(300),
                elector.acquire(std::future::pending()),
            )
            .await
            .unwrap_or_else(|_| panic!("never took over (holder's clock at {holder_clock})"));
            assert!(led);
            assert_eq!(start.elapsed(), Duration::from_secs(76));
            let bodies = verifier.await.expect("each call as scripted");
            let put = bodies.last().unwrap();
            assert_eq!(put["spec"]["holderIdentity"], "a");
            assert_eq!(put["spec"]["leaseTransitions"], 3);
            assert_eq!(put["metadata"]["resourceVersion"], "12");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_apiserver_cuts_each_renewal_and_leadership_is_lost_by_the_renew_deadline() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let calls = calls.clone();
            async move {
                let mut unanswered = Vec::new();
                while let Some((request, send)) = handle.next_request().await {
                    calls
                        .lock()
                        .unwrap()
                        .push((request.method().clone(), Instant::now()));
                    unanswered.push(send);
                }
            }
        });
        let elector = Elector::new(
            kube::Client::new(service, "default"),
            "ops",
            "loadgate",
            "a",
        );
        let start = Instant::now();
        let kept = tokio::time::timeout(
            Duration::from_secs(60),
            elector.hold(std::future::pending()),
        )
        .await
        .expect("hold returns, not minutes later");
        assert!(!kept, "leadership lost");
        assert_eq!(start.elapsed(), RENEW_DEADLINE);
        let first = start + RENEW_EVERY;
        assert_eq!(
            *calls.lock().unwrap(),
            [(Method::GET, first), (Method::GET, first + ATTEMPT_TIMEOUT),],
            "the first attempt cut after ATTEMPT_TIMEOUT, the retry at the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_requests_on_renewal_are_retried_until_the_renew_deadline_then_lost() {
        let mut refused_write = expect(Method::PUT, PATH, too_many_requests().answer);
        refused_write.code = 429;
        let (client, verifier) = apiserver::client(vec![
            expect(Method::GET, PATH, json(&held_by("a", at(100), "7"))),
            refused_write,
            too_many_requests(),
            too_many_requests(),
        ]);
        let elector = Elector::new(client, "ops", "loadgate", "a");
        let start = Instant::now();
        let kept = tokio::time::timeout(
            Duration::from_secs(60),
            elector.hold(std::future::pending()),
        )
        .await
        .expect("hold returns");
        assert!(!kept, "leadership lost");
        assert_eq!(start.elapsed(), RENEW_DEADLINE);
        let bodies = tokio::time::timeout(Duration::from_secs(1), verifier)
            .await
            .expect("tried at 5 s (read and write), 7 s and 9 s")
            .unwrap();
        assert_eq!(bodies[1]["spec"]["holderIdentity"], "a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_retried_after_429_keeps_leadership() {
        let (client, verifier) = apiserver::client(vec![
            too_many_requests(),
            expect(Method::GET, PATH, json(&held_by("a", at(100), "7"))),
            expect(Method::PUT, PATH, json(&held_by("a", at(107), "8"))),
        ]);
        let elector = Elector::new(client, "ops", "loadgate", "a");
        // Refused at 5 s, renewed at 7 s; the next renewal would be at 12 s.
        let kept = elector
            .hold(tokio::time::sleep(Duration::from_secs(11)))
            .await;
        assert!(kept, "cancelled while leading");
        let bodies = verifier.await.unwrap();
        assert_eq!(bodies[2]["spec"]["holderIdentity"], "a");
        assert_eq!(bodies[2]["metadata"]["resourceVersion"], "7");
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_returns_without_releasing_and_release_then_clears_the_holder() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let elector = Elector::new(
            kube::Client::new(service, "default"),
            "ops",
            "loadgate",
            "a",
        );
        let kept =
            tokio::time::timeout(Duration::from_secs(1), elector.hold(std::future::ready(())))
                .await
                .expect("hold returns at once when cancelled");
        assert!(kept);
        assert!(
            tokio::time::timeout(Duration::from_secs(30), handle.next_request())
                .await
                .is_err(),
            "hold left the Lease alone: the controllers may still be draining"
        );
        let apiserver = async {
            let (request, send) = handle.next_request().await.expect("a read");
            assert_eq!(
                (request.method(), request.uri().path()),
                (&Method::GET, PATH)
            );
            let answer = serde_json::to_vec(&held_by("a", at(100), "7")).unwrap();
            send.send_response(Response::new(Body::from(answer)));
            let (request, send) = handle.next_request().await.expect("a write");
            assert_eq!(
                (request.method(), request.uri().path()),
                (&Method::PUT, PATH)
            );
            let body = request.into_body().collect_bytes().await.unwrap();
            send.send_response(Response::new(Body::from(body.to_vec())));
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        };
        let ((), put) = tokio::join!(elector.release(), apiserver);
        assert_eq!(put["spec"]["holderIdentity"], "");
        assert_eq!(put["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(put["spec"]["leaseTransitions"], 2);
        assert_eq!(put["metadata"]["resourceVersion"], "7", "guarded");
    }
}
