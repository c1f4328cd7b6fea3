//! `ModelEndpoint` (short name `mep`): an embedding model served by model-server pods behind a
//! Service, or by the team's own server image ([`Runtime`]). The operator turns it into a
//! Deployment + Service and reports readiness here.

use crate::conditions::Condition;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired model endpoint.
// Each printcolumn repeats `type_`/`name` keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "loadgate.dev",
    version = "v1alpha1",
    kind = "ModelEndpoint",
    namespaced,
    status = "ModelEndpointStatus",
    shortname = "mep",
    category = "loadgate",
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "An embedding model served by model-server pods behind a Service",
    validation = kube::core::Rule::new(
        "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    )
    .message("metadata.name must be a DNS-1035 label of at most 63 characters (it names the Service)")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.runtime) || !has(self.image)", "message": "spec.image and spec.runtime are exclusive: spec.image replaces loadgate's model-server image, spec.runtime.image names your own server"},
    {"rule": "!has(self.runtime) || !has(self.server) || !(has(self.server.maxBatchSize) || has(self.server.maxBatchTokens) || has(self.server.maxConcurrentRequests) || has(self.server.maxClientBatchSize) || has(self.server.inferenceWorkers) || has(self.server.requestTimeoutSecs) || has(self.server.dtype) || has(self.server.defaultPromptName))", "message": "spec.server applies to loadgate's model-server only; with spec.runtime pass your server's own flags in spec.runtime.args"},
]))]
pub struct ModelEndpointSpec {
    /// The model: a directory inside the image or on the mounted `modelVolumeClaim` (e.g.
    /// `/models/all-MiniLM-L6-v2`), or a Hugging Face hub id
    /// (`sentence-transformers/all-MiniLM-L6-v2`) where the cluster can reach the hub. With
    /// `runtime` it is recorded (the `Model` column) but not passed to the server: the
    /// runtime's `args` say which model it serves.
    #[schemars(length(min = 1))]
    pub model: String,
    /// model-server image; default: the operator's `--model-server-image`. Not with `runtime`
    /// (whose `image` names the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Run the team's own server image (Text Embeddings Inference, vLLM, ...) instead of
    /// loadgate's model-server, with exactly its `args` and `env`. The pod keeps everything
    /// else: `replicas`, `resources` (set them: the default is sized for model-server), the
    /// `modelVolumeClaim`, the `readiness` settings on `runtime.readinessPath`, the Service on
    /// `port`, and the hardened pod (non-root uid 65532, read-only root filesystem, no
    /// capabilities, RuntimeDefault seccomp). The root filesystem being read-only, an emptyDir
    /// is mounted at `/tmp`: point the server's caches and downloads there (`HF_HOME=/tmp/hf`,
    /// `HOME=/tmp`). `server` settings and `image` are refused with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// Pods serving the model.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Port model-server listens on, and the Service's port (which forwards to `runtime.port`
    /// when a runtime sets one).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// CPU and memory of each pod. Inference workers default to the CPU limit (or request),
    /// rounded down, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A PersistentVolumeClaim holding model directories, mounted read-only at `/models` (or
    /// at `runtime.modelMountPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_volume_claim: Option<String>,
    /// Batching and admission limits of model-server (its flags of the same names); refused
    /// with `runtime`, whose `args` carry the server's own flags.
    #[serde(default)]
    pub server: ServerSettings,
    /// How the readiness probe on `/health` (or `runtime.readinessPath`) runs.
    #[serde(default)]
    pub readiness: ReadinessSettings,
}

/// The team's own server: an image the operator runs in place of model-server, with exactly
/// these arguments and environment (none of model-server's flags, no `spec.model`).
///
/// ## Warning
/// The root filesystem stays read-only: an emptyDir is mounted at `/tmp` for the scratch files
/// servers write. Point caches and downloads there (`HF_HOME=/tmp/hf`, `HOME=/tmp`), or mount
/// the models from `modelVolumeClaim`; a server that writes elsewhere fails to start.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Runtime {
    /// The server image, e.g. `ghcr.io/huggingface/text-embeddings-inference:cpu-1.8`. It must
    /// be one of the operator's allowed model-server images (`--allowed-model-server-images`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// The container's arguments, passed verbatim (the image's entrypoint runs them), e.g.
    /// `["--model-id", "/models/bge-small", "--port", "8080"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The container's environment, as in a pod: `value`, or `valueFrom` a Secret
    /// (`secretKeyRef`) for tokens, which never belong in `args`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// The port the server listens on, which the Service targets; default `spec.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Path of the HTTP readiness (and start-up and liveness) probe: 200 once the server can
    /// answer. A LoadTest's runners wait on it too before loading, unless the LoadTest names
    /// its own `target.readinessPath`.
    #[serde(default = "default_readiness_path")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/"))]
    pub readiness_path: String,
    /// Where `modelVolumeClaim` is mounted, read-only: an absolute path, not `/` or `/tmp`.
    #[serde(default = "default_model_mount_path")]
    #[schemars(length(min = 2, max = 256), regex(pattern = r"^/[^/]"))]
    pub model_mount_path: String,
}

impl Runtime {
    /// The port the server listens on: its own, else the endpoint's.
    pub fn port_or(&self, endpoint_port: i32) -> i32 {
        self.port.unwrap_or(endpoint_port)
    }
}

/// The writable emptyDir of a runtime's pod, whose root filesystem is read-only.
pub const RUNTIME_TMP: &str = "/tmp";

fn default_readiness_path() -> String {
    "/health".to_owned()
}

fn default_model_mount_path() -> String {
    "/models".to_owned()
}

fn default_replicas() -> i32 {
    1
}

fn default_port() -> i32 {
    8080
}

/// model-server tuning; each unset field keeps model-server's own default.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSettings {
    /// Most texts in one forward pass (`--max-batch-size`, default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_batch_size: Option<i32>,
    /// Most tokens in one forward pass (`--max-batch-tokens`, default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_batch_tokens: Option<i32>,
    /// Requests admitted at once; the next gets 429 (`--max-concurrent-requests`, default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_requests: Option<i32>,
    /// Most texts in one request; more gets 413 (`--max-client-batch-size`, default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_client_batch_size: Option<i32>,
    /// Inference threads (`--inference-workers`); default from the pod's CPU resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub inference_workers: Option<i32>,
    /// A request waiting longer than this is answered 408 (`--request-timeout-secs`, default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub request_timeout_secs: Option<i32>,
    /// Precision of the dense layers (`--dtype`): `f32` (default, exact to
    /// sentence-transformers) or `int8` (about 2x the throughput on CPUs with AVX512-VNNI, cosine
    /// ≥ 0.999 to f32; a pod on a CPU without VNNI exits with an error naming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<crate::embed::Dtype>,
    /// The prompt (from the model's `config_sentence_transformers.json`, e.g. `query` for an E5
    /// or BGE model) prefixed to every text a request names none for (`--default-prompt-name`);
    /// default: the model's own `default_prompt_name`, else none. A name the model lacks stops
    /// the pod at start-up, naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub default_prompt_name: Option<String>,
}

impl ServerSettings {
    /// The fields set, as the CRD spells them (`maxBatchSize`, …): what `spec.runtime` refuses.
    pub fn fields_set(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// The readiness probe on `/health` (503 while the model loads, 200 when ready).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessSettings {
    /// Seconds between probes.
    #[serde(default = "default_period")]
    #[schemars(range(min = 1))]
    pub period_seconds: i32,
    /// Seconds before one probe times out.
    #[serde(default = "default_probe_timeout")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: i32,
    /// Failed probes in a row before the pod is taken out of the Service.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1))]
    pub failure_threshold: i32,
}

impl Default for ReadinessSettings {
    fn default() -> Self {
        Self {
            period_seconds: default_period(),
            timeout_seconds: default_probe_timeout(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

fn default_period() -> i32 {
    2
}

fn default_probe_timeout() -> i32 {
    1
}

fn default_failure_threshold() -> i32 {
    3
}

/// What the operator observed of the endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEndpointStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the current Deployment.
    #[serde(default)]
    pub replicas: i32,
    /// Pods passing the readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// In-cluster URL of the Service, e.g. `http://NAME.NAMESPACE.svc:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Cold start of the latest rollout: the slowest of its pods from creation to Ready (the
    /// pods' own `creationTimestamp` and Ready condition), seconds; absent until one is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start_seconds: Option<f64>,
    /// Each serving pod's cold start, by pod UID, taken once: the first time the pod is seen
    /// Ready with no container restarted. A restart or a readiness flap later moves the pod's
    /// Ready time, never its cold start.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cold_start_by_pod: std::collections::BTreeMap<String, f64>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crds_runtime_rule_refuses_every_server_setting() {
        let every = ServerSettings {
            max_batch_size: Some(1),
            max_batch_tokens: Some(1),
            max_concurrent_requests: Some(1),
            max_client_batch_size: Some(1),
            inference_workers: Some(1),
            request_timeout_secs: Some(1),
            dtype: Some(crate::embed::Dtype::Int8),
            default_prompt_name: Some("query".into()),
        };
        let fields = every.fields_set();
        assert_eq!(fields.len(), 8, "{fields:?}");
        let crd =
            serde_json::to_string(&<ModelEndpoint as kube::CustomResourceExt>::crd()).unwrap();
        for field in fields {
            assert!(
                crd.contains(&format!("has(self.server.{field})")),
                "the CEL rule on spec.runtime misses spec.server.{field}"
            );
        }
        assert!(ServerSettings::default().fields_set().is_empty());
    }
}
