//! A ModelEndpoint's children: a Deployment of model-server pods (readiness on `/health`, which
//! answers 503 while the model loads), or of the team's own server (`spec.runtime`, on its own
//! readiness path), and a ClusterIP Service in front of them. Both pods are the same hardened,
//! probed, draining pod; only what runs in it differs.

use super::{hardened, labels};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, Lifecycle,
    LifecycleHandler, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use loadgate_api::efficiency::{self, TargetResources};
use loadgate_api::model_endpoint::{ModelEndpoint, ModelEndpointSpec, RUNTIME_TMP, Runtime};
use std::collections::BTreeMap;

/// Container and label name of the server.
pub const APP: &str = "model-server";

/// The Deployment (and Service) name: the ModelEndpoint's own.
pub fn child_name(endpoint: &ModelEndpoint) -> String {
    endpoint.name_any()
}

/// In-cluster URL of the endpoint's Service.
pub fn service_url(endpoint: &ModelEndpoint) -> String {
    format!(
        "http://{}.{}.svc:{}",
        child_name(endpoint),
        endpoint.namespace().unwrap_or_else(|| "default".to_owned()),
        endpoint.spec.port
    )
}

fn meta(endpoint: &ModelEndpoint) -> ObjectMeta {
    ObjectMeta {
        name: Some(child_name(endpoint)),
        namespace: endpoint.namespace(),
        labels: Some(labels(APP, &endpoint.name_any())),
        owner_references: endpoint.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

fn env(name: &str, value: impl ToString) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

/// How long a model-server may take to load its model (or download it) before the kubelet
/// restarts it.
pub const STARTUP_SECONDS: i32 = 300;
/// The pause before SIGTERM, while Service endpoints stop routing to the pod.
pub const PRE_STOP_SECONDS: i64 = 5;

/// Resources when the spec sets none: one core and room for the model (~100 MB of weights,
/// ~500 MB peak at large batches measured here), and a memory limit so a leak is an OOM kill of
/// one pod, not of the node.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("1".to_owned())),
            ("memory".to_owned(), Quantity("512Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("1Gi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// Inference workers for these resources: the CPU limit, else the request, rounded down, at
/// least 1.
pub fn inference_workers(resources: &ResourceRequirements) -> u32 {
    let cpu = |m: &Option<BTreeMap<String, Quantity>>| m.as_ref()?.get("cpu").and_then(cores);
    cpu(&resources.limits)
        .or_else(|| cpu(&resources.requests))
        .map_or(1, |c| (c.floor() as u32).max(1))
}

/// Cores in a CPU quantity ("2", "1500m", "0.5").
fn cores(q: &Quantity) -> Option<f64> {
    let s = q.0.trim();
    let value = match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => s.parse::<f64>().ok()?,
    };
    value.is_finite().then_some(value)
}

/// What a pod's one container serves, and what of it differs between loadgate's model-server
/// and a team's own runtime: the image, its arguments and environment, its port, the probe path,
/// and the volumes it needs.
struct Server {
    image: String,
    args: Option<Vec<String>>,
    env: Option<Vec<EnvVar>>,
    port: i32,
    probe_path: String,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

/// An emptyDir volume `name` and its mount at `path`.
fn scratch(name: &str, path: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            ..VolumeMount::default()
        },
    )
}

/// The `modelVolumeClaim`, if any, mounted read-only at `path`.
fn model_volume(spec: &ModelEndpointSpec, path: &str) -> Option<(Volume, VolumeMount)> {
    let claim = spec.model_volume_claim.as_ref()?;
    Some((
        Volume {
            name: "models".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: "models".to_owned(),
            mount_path: path.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ))
}

/// loadgate's model-server: `default_image` unless the spec names one, configured through the
/// environment variables of its flags.
fn model_server(
    spec: &ModelEndpointSpec,
    default_image: &str,
    resources: &ResourceRequirements,
) -> Server {
    let server = &spec.server;
    let mut env_vars = vec![
        env("MODEL", &spec.model),
        env("PORT", spec.port),
        env("HOST", "0.0.0.0"),
        env("LOG_FORMAT", "json"),
        // The root filesystem is read-only: hub downloads go to the writable cache volume.
        env("MODEL_CACHE_DIR", "/cache"),
    ];
    let optional = [
        ("MAX_BATCH_SIZE", server.max_batch_size),
        ("MAX_BATCH_TOKENS", server.max_batch_tokens),
        ("MAX_CONCURRENT_REQUESTS", server.max_concurrent_requests),
        ("MAX_CLIENT_BATCH_SIZE", server.max_client_batch_size),
        ("INFERENCE_WORKERS", server.inference_workers),
        ("REQUEST_TIMEOUT_SECS", server.request_timeout_secs),
    ];
    env_vars.extend(
        optional
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| env(name, v))),
    );
    if let Some(dtype) = server.dtype {
        env_vars.push(env("DTYPE", dtype.as_str()));
    }
    if let Some(prompt) = &server.default_prompt_name {
        env_vars.push(env("DEFAULT_PROMPT_NAME", prompt));
    }
    if server.inference_workers.is_none() {
        // As the CRD promises: one forward pass per core the pod may use (measured fastest on
        // 2 cores, ../shared/notes), not the node's core count model-server would see.
        env_vars.push(env("INFERENCE_WORKERS", inference_workers(resources)));
    }
    let (volumes, mounts) = std::iter::once(scratch("cache", "/cache"))
        .chain(model_volume(spec, "/models"))
        .unzip();
    Server {
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| default_image.to_owned()),
        args: None,
        env: Some(env_vars),
        port: spec.port,
        probe_path: "/health".to_owned(),
        volumes,
        mounts,
    }
}

/// The team's own server: its image with exactly its arguments and environment (no
/// model-server flags, no `spec.model`), a writable `/tmp` on the read-only root filesystem,
/// and the models at its mount path.
fn runtime_server(spec: &ModelEndpointSpec, runtime: &Runtime) -> Server {
    let (volumes, mounts) = std::iter::once(scratch("tmp", RUNTIME_TMP))
        .chain(model_volume(spec, &runtime.model_mount_path))
        .unzip();
    Server {
        image: runtime.image.clone(),
        args: (!runtime.args.is_empty()).then(|| runtime.args.clone()),
        env: (!runtime.env.is_empty()).then(|| runtime.env.clone()),
        port: runtime.port_or(spec.port),
        probe_path: runtime.readiness_path.clone(),
        volumes,
        mounts,
    }
}

/// The Deployment running model-server (`default_image` unless the spec names an image), or
/// the spec's `runtime`.
pub fn deployment(endpoint: &ModelEndpoint, default_image: &str) -> Deployment {
    let spec = &endpoint.spec;
    let resources = spec.resources.clone().unwrap_or_else(default_resources);
    let server = match &spec.runtime {
        None => model_server(spec, default_image, &resources),
        Some(runtime) => runtime_server(spec, runtime),
    };
    let probe = |period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(server.probe_path.clone()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(spec.readiness.timeout_seconds),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let container = Container {
        name: APP.to_owned(),
        image: Some(server.image.clone()),
        args: server.args.clone(),
        env: server.env.clone(),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: server.port,
            ..ContainerPort::default()
        }]),
        // Start-up: /health answers 503 until the model is loaded; a slow load or hub download
        // gets STARTUP_SECONDS before the kubelet gives up, and no liveness probe runs until
        // then, so a slow start never crash-loops.
        startup_probe: Some(probe(2, STARTUP_SECONDS / 2)),
        readiness_probe: Some(probe(
            spec.readiness.period_seconds,
            spec.readiness.failure_threshold,
        )),
        // /health never waits behind inference, so a loaded server stays live; liveness is
        // slower and more patient than readiness.
        liveness_probe: Some(probe(10, 3)),
        // Endpoints take a moment to drop a terminating pod: keep serving through it, then
        // SIGTERM drains what is in flight.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(resources),
        security_context: Some(hardened()),
        volume_mounts: Some(server.mounts),
        ..Container::default()
    };
    Deployment {
        metadata: meta(endpoint),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(endpoint)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(APP, &endpoint.name_any())),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(server.volumes),
                    automount_service_account_token: Some(false),
                    // The pre-stop pause plus model-server's own drain of in-flight requests.
                    termination_grace_period_seconds: Some(PRE_STOP_SECONDS + 30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn selector(endpoint: &ModelEndpoint) -> std::collections::BTreeMap<String, String> {
    let mut all = labels(APP, &endpoint.name_any());
    all.remove(super::MANAGED_BY_LABEL);
    all
}

/// What the endpoint runs on, all replicas together: each pod's CPU (and memory) limit, else its
/// request, times the replicas; `None` when its pods set no CPU.
pub fn target_resources(spec: &ModelEndpointSpec) -> Option<TargetResources> {
    let resources = spec.resources.as_ref()?;
    let pick = |name: &str| {
        resources
            .limits
            .as_ref()
            .and_then(|l| l.get(name))
            .or_else(|| resources.requests.as_ref().and_then(|r| r.get(name)))
            .map(|q| q.0.clone())
    };
    let replicas = f64::from(spec.replicas.max(1));
    let cpu = efficiency::cpu_cores(&pick("cpu")?)?;
    Some(TargetResources {
        cpu_cores: cpu * replicas,
        memory_gib: pick("memory")
            .and_then(|m| efficiency::memory_gib(&m))
            .map(|m| m * replicas),
    })
}

/// The endpoint's pod selector as a label query (`key=value,...`), for listing its pods.
pub fn selector_of(endpoint: &ModelEndpoint) -> String {
    selector(endpoint)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The ClusterIP Service on the endpoint's port.
pub fn service(endpoint: &ModelEndpoint) -> Service {
    Service {
        metadata: meta(endpoint),
        spec: Some(ServiceSpec {
            selector: Some(selector(endpoint)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: endpoint.spec.port,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::endpoint;

    #[test]
    fn deployment_runs_model_server_hardened_with_a_health_probe() {
        let mut ep = endpoint("mini");
        ep.spec.server.max_batch_size = Some(32);
        ep.spec.server.dtype = Some(loadgate_api::embed::Dtype::Int8);
        ep.spec.server.default_prompt_name = Some("query".into());
        let d = deployment(&ep, "example/model-server:1");
        let pod = d.spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("example/model-server:1"));
        let env: Vec<(String, String)> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap()))
            .collect();
        assert!(env.contains(&("MODEL".into(), "/models/all-MiniLM-L6-v2".into())));
        assert!(env.contains(&("MAX_BATCH_SIZE".into(), "32".into())));
        assert!(env.contains(&("DTYPE".into(), "int8".into())));
        assert!(env.contains(&("DEFAULT_PROMPT_NAME".into(), "query".into())));
        assert!(
            !env.iter().any(|(n, _)| n == "MAX_BATCH_TOKENS"),
            "unset tuning keeps the server default"
        );
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/health"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ModelEndpoint", Some(true))
        );
    }

    /// A production pod: a start-up probe gates liveness (a slow model load never crash-loops),
    /// a pre-stop pause lets endpoints drain, resources default, and workers follow the CPU.
    #[test]
    fn the_pod_starts_stops_and_sizes_like_a_production_pod() {
        let mut ep = endpoint("mini");
        let d = deployment(&ep, "img");
        let pod = d.spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let startup = c.startup_probe.as_ref().unwrap();
        assert!(
            startup.period_seconds.unwrap() * startup.failure_threshold.unwrap() >= STARTUP_SECONDS
        );
        assert_eq!(
            c.liveness_probe.as_ref().unwrap().initial_delay_seconds,
            None
        );
        let sleep = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(sleep.sleep.as_ref().unwrap().seconds, PRE_STOP_SECONDS);
        assert!(pod.termination_grace_period_seconds.unwrap() > PRE_STOP_SECONDS);
        assert_eq!(c.resources.as_ref(), Some(&default_resources()));
        let workers = |c: &Container| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == "INFERENCE_WORKERS")
                .and_then(|e| e.value.clone())
        };
        assert_eq!(
            workers(c).as_deref(),
            Some("1"),
            "the default request: 1 core"
        );
        ep.spec.resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("500m".into()))])),
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("2500m".into()))])),
            ..ResourceRequirements::default()
        });
        let d = deployment(&ep, "img");
        let c = &d.spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(workers(c).as_deref(), Some("2"), "the limit, rounded down");
        ep.spec.server.inference_workers = Some(3);
        let d = deployment(&ep, "img");
        let c = &d.spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(workers(c).as_deref(), Some("3"), "an explicit setting wins");
    }

    /// A runtime endpoint as examples/runtime-tei.yaml writes one.
    fn tei() -> ModelEndpoint {
        let mut ep = endpoint("bge");
        ep.spec.model_volume_claim = Some("models".into());
        ep.spec.runtime = Some(
            serde_json::from_value(serde_json::json!({
                "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
                "args": ["--model-id", "/data/bge-small", "--port", "9090", "--json-output"],
                "env": [
                    {"name": "HF_HOME", "value": "/tmp/hf"},
                    {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                ],
                "port": 9090,
                "readinessPath": "/ready",
                "modelMountPath": "/data",
            }))
            .unwrap(),
        );
        ep
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().unwrap()
    }

    #[test]
    fn a_runtime_runs_its_image_with_exactly_its_args_env_port_and_probe() {
        let ep = tei();
        let d = deployment(&ep, "example/model-server:1");
        let pod = pod(&d);
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/huggingface/text-embeddings-inference:cpu-1.8")
        );
        assert_eq!(
            c.args.as_deref(),
            Some(
                &[
                    "--model-id",
                    "/data/bge-small",
                    "--port",
                    "9090",
                    "--json-output"
                ]
                .map(String::from)[..]
            ),
            "args verbatim"
        );
        let runtime = ep.spec.runtime.as_ref().unwrap();
        assert_eq!(
            c.env.as_ref(),
            Some(&runtime.env),
            "env verbatim, no model-server flags"
        );
        let token = &c.env.as_ref().unwrap()[1];
        assert_eq!(token.value, None, "the token stays a Secret reference");
        assert_eq!(
            token
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "hf"
        );
        let ports = c.ports.as_ref().unwrap();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].container_port),
            (Some("http"), 9090)
        );
        for probe in [&c.startup_probe, &c.readiness_probe, &c.liveness_probe] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.path.as_deref(), Some("/ready"));
            assert_eq!(get.port, IntOrString::String("http".into()));
        }
        let mounts = c.volume_mounts.as_ref().unwrap();
        let models = mounts.iter().find(|m| m.name == "models").unwrap();
        assert_eq!(
            (models.mount_path.as_str(), models.read_only),
            ("/data", Some(true))
        );
        let tmp = mounts.iter().find(|m| m.mount_path == "/tmp").unwrap();
        let volumes = pod.volumes.as_ref().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v.name == tmp.name && v.empty_dir.is_some())
        );
        let claim = volumes.iter().find(|v| v.name == "models").unwrap();
        assert_eq!(
            claim.persistent_volume_claim.as_ref().unwrap().claim_name,
            "models"
        );
        assert_eq!(mounts.len(), 2, "no model-server cache volume: {mounts:?}");
        assert_eq!(c.security_context.as_ref(), Some(&hardened()));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (
                sc.run_as_non_root,
                sc.read_only_root_filesystem,
                sc.allow_privilege_escalation
            ),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.automount_service_account_token, Some(false));
        // The Service keeps the endpoint's port and forwards to the runtime's by name.
        let svc = service(&ep).spec.unwrap();
        let port = &svc.ports.unwrap()[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (8080, Some(IntOrString::String("http".into())))
        );
        assert_eq!(service_url(&ep), "http://bge.ml.svc:8080");
    }

    /// Only what runs differs: replicas, resources, probe timings, the pre-stop pause, the
    /// grace period, labels and the owner are the endpoint's either way.
    #[test]
    fn a_runtime_keeps_everything_else_a_model_endpoint_gives() {
        let mut ep = tei();
        ep.spec.replicas = 3;
        ep.spec.readiness.period_seconds = 7;
        ep.spec.readiness.failure_threshold = 5;
        let limits = ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("4".into()))])),
            ..ResourceRequirements::default()
        };
        ep.spec.resources = Some(limits.clone());
        let with = deployment(&ep, "img");
        let mut plain = ep.clone();
        plain.spec.runtime = None;
        let without = deployment(&plain, "img");
        let strip = |d: &Deployment| {
            let mut d = d.clone();
            let pod = d.spec.template.spec.as_mut().unwrap();
            pod.volumes = None;
            let c = &mut pod.containers[0];
            c.image = None;
            c.args = None;
            c.env = None;
            c.ports = None;
            c.volume_mounts = None;
            for probe in [
                &mut c.startup_probe,
                &mut c.readiness_probe,
                &mut c.liveness_probe,
            ] {
                probe.as_mut().unwrap().http_get = None;
            }
            d
        };
        assert_eq!(strip(&with), strip(&without));
        let c = &pod(&with).containers[0];
        assert_eq!(c.resources.as_ref(), Some(&limits));
        let ready = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            (ready.period_seconds, ready.failure_threshold),
            (Some(7), Some(5))
        );
        assert_eq!(with.spec.replicas, Some(3));
        assert_eq!(target_resources(&ep.spec).unwrap().cpu_cores, 12.0);
    }

    /// Without a runtime the pod is model-server's as before: no args, its flags as env, the
    /// cache volume and the models at /models, the probe on /health at `spec.port`.
    #[test]
    fn without_a_runtime_the_pod_is_model_servers() {
        let mut ep = endpoint("mini");
        ep.spec.model_volume_claim = Some("models".into());
        let d = deployment(&ep, "img");
        let pod = pod(&d);
        let c = &pod.containers[0];
        assert_eq!(c.args, None);
        assert_eq!(c.image.as_deref(), Some("img"));
        assert_eq!(
            c.env
                .iter()
                .flatten()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            [
                "MODEL",
                "PORT",
                "HOST",
                "LOG_FORMAT",
                "MODEL_CACHE_DIR",
                "INFERENCE_WORKERS"
            ]
        );
        let mounts: Vec<_> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [("cache", "/cache", None), ("models", "/models", Some(true))]
        );
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/health"));
    }

    #[test]
    fn service_selects_the_deployment_pods() {
        let ep = endpoint("mini");
        let svc = service(&ep);
        let d = deployment(&ep, "img");
        let pod_labels = d.spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in svc.spec.unwrap().selector.unwrap() {
            assert_eq!(pod_labels.get(&k), Some(&v));
        }
        assert_eq!(service_url(&ep), "http://mini.ml.svc:8080");
    }
}
