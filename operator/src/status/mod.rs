//! Pure status computation: what the operator observed in, the status (and, for LoadTests, the
//! next step) out. No I/O and an explicit clock, so every branch is unit-tested.

pub mod gates;
pub mod load_test;
pub mod model_endpoint;
pub mod plan;
pub mod profile_results;
pub mod run_end;
pub mod runner_results;

use k8s_openapi::jiff::Timestamp;
use loadgate_api::conditions::Time;

/// `now` as a Kubernetes time (second precision, as the apiserver stores it).
pub fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}
