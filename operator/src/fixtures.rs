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
            runtime: None,
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
        search: None,
        warmup: Duration::default(),
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
                tls: None,
                headers: Vec::new(),
                readiness_path: None,
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
            baseline: None,
            pricing: None,
            quality: None,
            dataset: None,
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

/// A scripted apiserver for controller tests (kube-rs/controller-rs' `ApiServerVerifier`): each
/// expected request is checked (method and path) and answered; the bodies the controller sent
/// are returned for assertions. Too many calls show as a closed service, missing ones as a
/// timeout.
pub mod apiserver {
    use http::{Request, Response};
    use kube::client::Body;

    /// One expected call and its answer.
    #[derive(Clone)]
    pub struct Expect {
        /// HTTP method.
        pub method: http::Method,
        /// Path (without query) the request must have.
        pub path: String,
        /// Status code of the answer.
        pub code: u16,
        /// JSON body of the answer (a JSON string is sent as plain text: a log).
        pub answer: serde_json::Value,
    }

    /// Expects `method path`, answers 200 with `answer`.
    pub fn expect(
        method: http::Method,
        path: impl Into<String>,
        answer: serde_json::Value,
    ) -> Expect {
        Expect {
            method,
            path: path.into(),
            code: 200,
            answer,
        }
    }

    /// Expects `GET path`, answers 404 Not Found.
    pub fn not_found(path: impl Into<String>) -> Expect {
        Expect {
            method: http::Method::GET,
            path: path.into(),
            code: 404,
            answer: serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                       "reason": "NotFound", "code": 404, "message": "not found"}),
        }
    }

    /// A client wired to a verifier that walks `script`; await the handle for the request
    /// bodies (JSON, `Null` when empty).
    pub fn client(
        script: Vec<Expect>,
    ) -> (
        kube::Client,
        tokio::task::JoinHandle<Vec<serde_json::Value>>,
    ) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let verifier = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for step in script {
                let (request, send) = handle
                    .next_request()
                    .await
                    .expect("the controller stopped calling the apiserver");
                assert_eq!(
                    (request.method(), request.uri().path()),
                    (&step.method, step.path.as_str()),
                    "unexpected call (query: {:?})",
                    request.uri().query()
                );
                let bytes = request.into_body().collect_bytes().await.unwrap();
                bodies.push(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null));
                // A string answer is sent as it is (a pod's log is text, not JSON).
                let body = match &step.answer {
                    serde_json::Value::String(text) => text.clone().into_bytes(),
                    json => serde_json::to_vec(json).unwrap(),
                };
                let response = Response::builder()
                    .status(step.code)
                    .body(Body::from(body))
                    .unwrap();
                send.send_response(response);
            }
            bodies
        });
        (client, verifier)
    }

    /// The condition of `type_` in a status body the controller wrote.
    pub fn condition(status: &serde_json::Value, type_: &str) -> serde_json::Value {
        status["conditions"]
            .as_array()
            .expect("a status with conditions")
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
            .clone()
    }

    /// Expects an Event to be published in namespace `ml`, answered as the apiserver does.
    pub fn event_post() -> Expect {
        expect(
            http::Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ml/events",
            event_answer(),
        )
    }

    /// An Event as the apiserver echoes it back.
    pub fn event_answer() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ml"}, "eventTime": "2026-01-01T00:00:00.000000Z"
        })
    }
}

/// The time the controller tests' clock stands at ([`context`]): 2026-09-21, long after every
/// fixture's `at(0)` start.
pub const NOW: i64 = 1_790_000_000;

/// A context around `client` with fixed images, fresh metrics and its clock standing at [`NOW`].
pub fn context(client: kube::Client) -> std::sync::Arc<crate::context::Context> {
    let mut context = crate::context::Context::with_settings(
        client,
        crate::context::Settings {
            model_server_image: "example/model-server:test".into(),
            loadrunner_image: "example/loadrunner:test".into(),
            policy: crate::policy::Policy::defaults(
                "example/model-server:test",
                "example/loadrunner:test",
            ),
            runner_metrics_linger_seconds: 0,
        },
        std::sync::Arc::new(crate::metrics::Metrics::default()),
    );
    context.clock = crate::status::Clock::fixed(&at(NOW));
    std::sync::Arc::new(context)
}

/// Runs `f` but fails the test after 1 s.
pub async fn timeout_after_1s<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(1), f)
        .await
        .expect("timed out: the controller made fewer calls than expected")
}
