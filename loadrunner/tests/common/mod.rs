//! What the engine's integration tests share: a closed-model run plan against a loopback
//! server.

use loadgate_api::duration::Duration as SpecDuration;
use loadgate_api::load::{LoadProfile, Task, WaitTime};
use loadrunner::connect::{Endpoint, Trust};
use loadrunner::engine::RunPlan;
use loadrunner::scenario::Scenario;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A closed-model profile named `test`: `users` at `spawn_rate` for `secs`, running `tasks`
/// against `addr` (5 s request timeout, seed 42, no budgets the engine watches).
pub fn plan(addr: SocketAddr, tasks: Vec<Task>, users: u32, spawn_rate: f64, secs: u64) -> RunPlan {
    let profile = LoadProfile {
        name: "test".into(),
        users,
        spawn_rate,
        duration: SpecDuration::from_secs(secs),
        arrival_rate: None,
        stages: Vec::new(),
        search: None,
        warmup: SpecDuration::default(),
    };
    RunPlan {
        whole: profile.clone(),
        first_window: 0,
        profile,
        scenario: Arc::new(Scenario::new(tasks, 1).unwrap()),
        wait: WaitTime::default(),
        target: endpoint(addr),
        request_timeout: Duration::from_secs(5),
        seed: 42,
        search_budgets: None,
        abort_budgets: None,
        slo: Default::default(),
    }
}

/// The plain-http endpoint at `addr`.
pub fn endpoint(addr: SocketAddr) -> Arc<Endpoint> {
    Arc::new(
        Endpoint::new(
            &format!("http://{addr}"),
            None,
            &Trust::default(),
            Vec::new(),
        )
        .unwrap(),
    )
}
