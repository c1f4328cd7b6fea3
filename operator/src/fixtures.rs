//! Test fixtures: objects as the apiserver would hand them to a reconcile, and a fixed clock.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use loadgate_api::conditions::Time;
use loadgate_api::duration::Duration;
use loadgate_api::load::{Thresholds, default_tasks};
use loadgate_api::load_test::{
    EndpointRef, LoadTest, LoadTestSpec, ProfileSpec, RunnerSettings, Target,
};
use loadgate_api::model_endpoint::{
    ModelEndpoint, ModelEndpointSpec, ReadinessSettings, ServerSettings,
};

/// A fixed point in time, `secs` after the epoch.
pub fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("a valid timestamp"))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some("ml".to_owned()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    }
}

/// A ModelEndpoint `name` in namespace `ml` serving all-MiniLM-L6-v2, 1 replica.
pub fn endpoint(name: &str) -> ModelEndpoint {
    ModelEndpoint {
        metadata: meta(name),
        spec: ModelEndpointSpec {
            model: "/models/all-MiniLM-L6-v2".to_owned(),
            image: None,
            replicas: 1,
            port: 8080,
            resources: None,
            model_volume_claim: None,
            server: ServerSettings::default(),
            readiness: ReadinessSettings::default(),
        },
        status: None,
    }
}

/// A LoadTest `name` in `ml` against ModelEndpoint `mini`: two profiles, p95 < 500 ms, < 1%.
pub fn load_test(name: &str) -> LoadTest {
    let profile = |name: &str, users| ProfileSpec {
        name: name.to_owned(),
        users,
        spawn_rate: 5.0,
        duration: Duration::from_secs(20),
        arrival_rate: None,
        stages: Vec::new(),
        thresholds: None,
    };
    LoadTest {
        metadata: meta(name),
        spec: LoadTestSpec {
            target: Target {
                endpoint_ref: Some(EndpointRef {
                    name: "mini".to_owned(),
                }),
                url: None,
            },
            tasks: default_tasks(),
            wait_time: None,
            profiles: vec![profile("ramp-up", 10), profile("spike", 20)],
            thresholds: Thresholds {
                p95_ms: Some(500.0),
                max_error_rate: Some(0.01),
                ..Thresholds::default()
            },
            task_thresholds: Vec::new(),
            parallelism: 1,
            timeout: Duration::from_secs(600),
            endpoint_timeout: Duration::from_secs(60),
            ttl_seconds_after_finished: None,
            runner: RunnerSettings::default(),
        },
        status: None,
    }
}

/// A Deployment at generation 1, observed, with the given counts.
pub fn deployment_with(wanted: i32, updated: i32, total: i32, ready: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(1),
            ..meta("mini")
        },
        spec: k8s_openapi::api::apps::v1::DeploymentSpec {
            replicas: Some(wanted),
            ..Default::default()
        },
        status: Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(total),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            ..DeploymentStatus::default()
        }),
    }
}
