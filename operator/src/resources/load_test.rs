//! A LoadTest's children: one runner Job per profile and run. The Job is Indexed with
//! `parallelism` pods; each gets the profile's [`RunSpec`] as one JSON value, runs share i of it
//! (`loadrunner run --spec JSON --shard i/N`), leaves its compact summary in its termination
//! message and prints its full results at the end of its log for the operator to merge.
//!
//! What the target needs from the namespace reaches the pods by reference, never by value: a
//! header from a Secret as an environment variable from that Secret (`LOADGATE_HEADER_<i>`),
//! the CA bundle and the dataset as read-only files mounted from their Secret and ConfigMap.
//! The run spec names only the variable or the file. [`references`] lists those objects, for
//! the controller to check before it creates a Job ([`missing_key`]).

use super::{bounded_name, hardened, labels};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, KeyToPath,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Secret, SecretKeySelector, SecretVolumeSource,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use loadgate_api::load_test::{LoadTest, ProfileSpec, RUN_ANNOTATION};
use loadgate_api::run_spec::RunSpec;
use loadgate_api::target::{RunDataset, RunHeader, RunTls};
use std::collections::{BTreeMap, BTreeSet};

/// Container and label name of the runner.
pub const APP: &str = "loadrunner";
/// Label: the LoadTest a Job belongs to.
pub const LOADTEST_LABEL: &str = "loadgate.dev/loadtest";
/// Label: the profile a Job runs.
pub const PROFILE_LABEL: &str = "loadgate.dev/profile";
/// Label: a short hash of the run (its name and the spec generation it runs; annotation values
/// are not valid label values).
pub const RUN_LABEL: &str = "loadgate.dev/run-hash";
/// Label: the LoadTest's `metadata.generation` a Job runs. A spec edit is a new generation, so
/// a new run: a Job of another generation is never adopted.
pub const GENERATION_LABEL: &str = "loadgate.dev/generation";
/// Annotation on a Job: the run name it belongs to (the `loadgate.dev/run` value, or `initial`).
pub const JOB_RUN_ANNOTATION: &str = "loadgate.dev/run";
/// Label the Job controller puts on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The run name when the `loadgate.dev/run` annotation is absent.
pub const INITIAL_RUN: &str = "initial";
/// Seconds a runner waits for the target to answer its readiness path before giving up.
const RUNNER_READY_TIMEOUT_SECS: u64 = 60;
/// Where a runner pod finds the target's CA bundle (`spec.target.tls.caSecretRef`), mounted
/// read-only from the Secret ...
pub const TARGET_CA_DIR: &str = "/etc/loadgate/target-ca";
/// ... as this file.
pub const TARGET_CA_FILE: &str = "ca.pem";
/// Where a runner pod finds the dataset (`spec.dataset.configMapRef`), mounted read-only from
/// the ConfigMap ...
pub const DATASET_DIR: &str = "/etc/loadgate/dataset";
/// ... as this file.
pub const DATASET_FILE: &str = "dataset.txt";
/// The volume of the CA bundle.
const TARGET_CA_VOLUME: &str = "target-ca";
/// The volume of the dataset.
const DATASET_VOLUME: &str = "dataset";
/// Mode of the mounted files: read-only for everyone (the runner runs as a non-root user).
const MOUNTED_FILE_MODE: i32 = 0o444;

/// The environment variable a runner pod reads header `index` of `spec.target.headers` from,
/// when its value comes from a Secret.
pub fn header_env(index: usize) -> String {
    format!("LOADGATE_HEADER_{index}")
}

/// What kind of object a run reads a key of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefKind {
    /// A Secret: its `data` or `stringData`.
    Secret,
    /// A ConfigMap: its `data` or `binaryData`.
    ConfigMap,
}

impl std::fmt::Display for RefKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        })
    }
}

/// A key of an object in the test's namespace that its runner pods read, and the field of the
/// spec that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// Secret or ConfigMap.
    pub kind: RefKind,
    /// The object's name.
    pub name: &'a str,
    /// The key in it.
    pub key: &'a str,
    /// Where the spec names it (`spec.target.headers[0].valueFrom.secretKeyRef`).
    pub field: String,
}

/// Every Secret and ConfigMap key the test's runner pods read: headers from Secrets, the CA
/// bundle, the dataset. The pods could not start without them.
pub fn references(test: &LoadTest) -> Vec<KeyRef<'_>> {
    let spec = &test.spec;
    let headers = spec.target.headers.iter().enumerate().filter_map(|(i, h)| {
        let r = &h.value_from.as_ref()?.secret_key_ref;
        Some(KeyRef {
            kind: RefKind::Secret,
            name: &r.name,
            key: &r.key,
            field: format!("spec.target.headers[{i}].valueFrom.secretKeyRef"),
        })
    });
    let ca = spec
        .target
        .tls
        .as_ref()
        .and_then(|t| t.ca_secret_ref.as_ref())
        .map(|r| KeyRef {
            kind: RefKind::Secret,
            name: &r.name,
            key: &r.key,
            field: "spec.target.tls.caSecretRef".to_owned(),
        });
    let dataset = spec
        .dataset
        .as_ref()
        .and_then(|d| d.config_map_ref.as_ref())
        .map(|r| KeyRef {
            kind: RefKind::ConfigMap,
            name: &r.name,
            key: &r.key,
            field: "spec.dataset.configMapRef".to_owned(),
        });
    headers.chain(ca).chain(dataset).collect()
}

/// The keys of a Secret (`data`, and `stringData` when a client hands one over); its values
/// are dropped here.
pub fn secret_keys(secret: Secret) -> BTreeSet<String> {
    let data = secret.data.into_iter().flat_map(BTreeMap::into_keys);
    let string_data = secret.string_data.into_iter().flat_map(BTreeMap::into_keys);
    data.chain(string_data).collect()
}

/// The keys of a ConfigMap (`data` and `binaryData`).
pub fn config_map_keys(config_map: ConfigMap) -> BTreeSet<String> {
    let data = config_map.data.into_iter().flat_map(BTreeMap::into_keys);
    let binary = config_map
        .binary_data
        .into_iter()
        .flat_map(BTreeMap::into_keys);
    data.chain(binary).collect()
}

/// Why `reference` cannot be read, given the keys its object holds (`None`: the object is not
/// there): `Secret api-key has no key "token" (spec.target.headers[0].valueFrom.secretKeyRef)`.
/// Only names and keys: never a value.
pub fn missing_key<'k>(
    reference: &KeyRef<'_>,
    keys: Option<impl IntoIterator<Item = &'k str>>,
) -> Option<String> {
    let KeyRef {
        kind,
        name,
        key,
        field,
    } = reference;
    let Some(mut keys) = keys.map(IntoIterator::into_iter) else {
        return Some(format!("{kind} {name} not found ({field})"));
    };
    (!keys.any(|k| k == *key)).then(|| format!("{kind} {name} has no key {key:?} ({field})"))
}

/// The run the LoadTest asks for: its `loadgate.dev/run` annotation, or `initial`.
pub fn requested_run(test: &LoadTest) -> String {
    test.annotations()
        .get(RUN_ANNOTATION)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| INITIAL_RUN.to_owned())
}

/// The spec generation a run of `test` runs (0 for an object the apiserver never saw).
pub fn generation(test: &LoadTest) -> i64 {
    test.metadata.generation.unwrap_or(0)
}

/// 8 hex digits of FNV-1a over the run name and the generation: stable across processes and
/// releases, and different for every spec edit, so a new generation never finds the previous
/// generation's Jobs under its names.
pub fn run_hash(run: &str, generation: i64) -> String {
    fnv_hex(&format!("{run}@{generation}"))
}

/// The longest runner Job name. An Indexed Job's pods take `<job>-<index>` as their hostname,
/// a DNS label of at most 63 characters, so the apiserver refuses a Job whose name leaves no
/// room for `-<completions - 1>`: with at most 100 runner pods (`spec.parallelism`), three.
pub const MAX_JOB_NAME: usize = 60;

/// FNV-1a, 32 bits of it as 8 hex digits: stable across processes and releases.
fn fnv_hex(key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}", hash as u32)
}

/// The Job name of one profile in one run of the test's current generation:
/// `<test>-<profile>` cut to fit, then 8 hex digits of a hash of the namespace, the test, the
/// profile, the run and the generation, at most [`MAX_JOB_NAME`] characters. The hash keeps
/// apart what the readable part cannot: LoadTest `web` with profile `api-load` and LoadTest
/// `web-api` with profile `load`, or two long names cut to the same prefix.
pub fn job_name(test: &LoadTest, profile: &str, run: &str) -> String {
    let key = format!(
        "{}/{}/{profile}/{run}@{}",
        test.namespace().unwrap_or_default(),
        test.name_any(),
        generation(test)
    );
    // A LoadTest's name may hold dots (a DNS subdomain); a pod's hostname may not.
    let readable = format!("{}-{profile}", test.name_any()).replace('.', "-");
    bounded_name(&readable, &fnv_hex(&key), MAX_JOB_NAME)
}

/// Why an existing Job under one of this run's names is not this run's profile `profile` (and
/// must not be adopted): another owner, another profile, another run, another generation.
/// `None` when it is ours.
pub fn foreign_job(test: &LoadTest, profile: &str, run: &str, job: &Job) -> Option<String> {
    let name = job.name_any();
    if !super::controlled_by(job, test.meta().uid.as_deref()) {
        return Some(format!(
            "Job {name} exists but is not controlled by this LoadTest"
        ));
    }
    let labels = job.labels();
    let job_profile = labels.get(PROFILE_LABEL).map(String::as_str);
    if job_profile != Some(profile) {
        return Some(format!(
            "Job {name} runs profile {}, not {profile}",
            job_profile.unwrap_or("(none)")
        ));
    }
    let job_generation = labels.get(GENERATION_LABEL).map(String::as_str);
    let want = generation(test).to_string();
    if job_generation != Some(want.as_str()) {
        return Some(format!(
            "Job {name} belongs to generation {}, not {want}",
            job_generation.unwrap_or("(none)")
        ));
    }
    let job_run = job
        .annotations()
        .get(JOB_RUN_ANNOTATION)
        .map(String::as_str);
    if job_run != Some(run) {
        return Some(format!(
            "Job {name} belongs to run {}, not {run}",
            job_run.unwrap_or("(none)")
        ));
    }
    None
}

/// True when `job` is a runner Job this test controls that still loads its target for another
/// run or generation than `run` of the test's current generation: not being deleted, and with
/// no `Complete` or `Failed` condition. A new run stops such Jobs before it creates its own.
pub fn superseded(test: &LoadTest, run: &str, job: &Job) -> bool {
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        });
    let current = job.labels().get(GENERATION_LABEL) == Some(&generation(test).to_string())
        && job
            .annotations()
            .get(JOB_RUN_ANNOTATION)
            .map(String::as_str)
            == Some(run);
    super::controlled_by(job, test.meta().uid.as_deref())
        && job.metadata.deletion_timestamp.is_none()
        && !finished
        && !current
}

/// The runner container's live metrics port (named `metrics`: the chart's PodMonitor scrapes
/// it).
pub const RUNNER_METRICS_PORT: i32 = 9090;

/// What the runner Job needs besides the spec.
pub struct RunnerJob<'a> {
    /// The profile to run.
    pub profile: &'a ProfileSpec,
    /// The run name.
    pub run: &'a str,
    /// Base URL the runners load.
    pub target_url: &'a str,
    /// The endpoint's own readiness path (`spec.runtime.readinessPath`), where it runs the
    /// team's server image.
    pub endpoint_readiness: Option<&'a str>,
    /// Image when the spec names none.
    pub default_image: &'a str,
    /// Seconds the pods keep serving `/metrics` after their results.
    pub metrics_linger_seconds: u64,
    /// Several runner pods: when they all begin their load, unix ms ([`start_at`]).
    pub start_at_ms: Option<u64>,
}

/// How long after its Job is created the runner pods of a sharded profile begin their load
/// together: time for the pods to be scheduled and started, and the target's readiness checked.
/// A pod not running by then begins at once; the status's `startSkewMs` shows it.
pub const SHARD_START_LEAD: std::time::Duration = std::time::Duration::from_secs(10);

/// The common start of a profile's runner pods created now: `SHARD_START_LEAD` ahead, for
/// `parallelism` > 1 (a lone runner needs no common clock and starts as soon as it is ready).
pub fn start_at(parallelism: i32, now: std::time::SystemTime) -> Option<u64> {
    (parallelism > 1).then(|| {
        let at = now + SHARD_START_LEAD;
        at.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// The run one profile's runners carry out, as a Job's pods and local mode both run it: the
/// whole profile (each pod takes its share from its index), the task mix, the profile's
/// budgets and the test's task budgets. `caller_judges`: a broken budget is the profile's
/// verdict, given on the merged results, not a failed pod. The runners wait for the target on
/// `target.readinessPath`, else on `endpoint_readiness` (the ModelEndpoint's
/// `runtime.readinessPath`: the team's server answers there), else on `/v1/models` for an LLM
/// task, else on `/health`.
pub fn run_spec(
    test: &LoadTest,
    profile: &ProfileSpec,
    target_url: &str,
    endpoint_readiness: Option<&str>,
) -> RunSpec {
    let spec = &test.spec;
    let mut run = RunSpec::new(target_url, profile.load_profile());
    run.readiness.timeout = loadgate_api::duration::Duration::from_secs(RUNNER_READY_TIMEOUT_SECS);
    if !spec.tasks.is_empty() {
        run.tasks.clone_from(&spec.tasks);
    }
    if let Some(path) = spec.target.readiness_path.as_deref().or(endpoint_readiness) {
        path.clone_into(&mut run.readiness.path);
    } else if loadgate_api::rules::has_llm_task(&spec.tasks) {
        "/v1/models".clone_into(&mut run.readiness.path);
    }
    run.wait_time = spec.wait_time.unwrap_or_default();
    run.thresholds = profile.effective_thresholds(&spec.thresholds);
    run.task_thresholds.clone_from(&spec.task_thresholds);
    if let Some(timeout) = spec.runner.request_timeout {
        run.request_timeout = timeout;
    }
    // The schema holds it ≥ 0.
    if let Some(seed) = spec.runner.seed.and_then(|s| u64::try_from(s).ok()) {
        run.seed = seed;
    }
    run.caller_judges = true;
    run.quality = spec.quality;
    run.tls = run_tls(test);
    run.headers = run_headers(test);
    run.dataset = run_dataset(test);
    run
}

/// The target's TLS as a runner pod sees it: the CA bundle as the file [`job`] mounts.
fn run_tls(test: &LoadTest) -> Option<RunTls> {
    let tls = test.spec.target.tls.as_ref()?;
    Some(RunTls {
        ca_file: tls
            .ca_secret_ref
            .as_ref()
            .map(|_| format!("{TARGET_CA_DIR}/{TARGET_CA_FILE}")),
        ca_pem: None,
        insecure_skip_verify: tls.insecure_skip_verify,
        server_name: tls.server_name.clone(),
    })
}

/// The target's headers as a runner pod sees them: a Secret's value by the name of the
/// environment variable [`job`] sets from it.
fn run_headers(test: &LoadTest) -> Vec<RunHeader> {
    let headers = test.spec.target.headers.iter().enumerate();
    headers
        .map(|(i, h)| RunHeader {
            name: h.name.clone(),
            value: h.value.clone(),
            value_from_env: h.value_from.as_ref().map(|_| header_env(i)),
            value_from_file: None,
        })
        .collect()
}

/// The dataset as a runner pod sees it: the ConfigMap's key as the file [`job`] mounts.
fn run_dataset(test: &LoadTest) -> Option<RunDataset> {
    let dataset = test.spec.dataset.as_ref()?;
    Some(RunDataset {
        file: dataset
            .config_map_ref
            .as_ref()
            .map(|_| format!("{DATASET_DIR}/{DATASET_FILE}")),
        inline: dataset.inline.clone(),
    })
}

/// The runner's environment: its shard index, and each header from a Secret as a variable
/// from that Secret (the operator never holds the value).
fn runner_env(test: &LoadTest) -> Vec<EnvVar> {
    let shard_index = EnvVar {
        name: "SHARD_INDEX".to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                    .to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let headers = test.spec.target.headers.iter().enumerate();
    let secrets = headers.filter_map(|(i, h)| {
        let r = &h.value_from.as_ref()?.secret_key_ref;
        Some(EnvVar {
            name: header_env(i),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
    });
    std::iter::once(shard_index).chain(secrets).collect()
}

/// One key of a Secret or ConfigMap as a file named `file`.
fn one_key(key: &str, file: &str) -> Option<Vec<KeyToPath>> {
    Some(vec![KeyToPath {
        key: key.to_owned(),
        path: file.to_owned(),
        ..KeyToPath::default()
    }])
}

/// The runner pod's volumes and its container's mounts of them: the CA bundle from its Secret,
/// the dataset from its ConfigMap, each read-only; none when the test references neither.
fn runner_volumes(test: &LoadTest) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &test.spec;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mount = |name: &str, dir: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: dir.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    if let Some(ca) = spec
        .target
        .tls
        .as_ref()
        .and_then(|t| t.ca_secret_ref.as_ref())
    {
        volumes.push(Volume {
            name: TARGET_CA_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.name.clone()),
                items: one_key(&ca.key, TARGET_CA_FILE),
                default_mode: Some(MOUNTED_FILE_MODE),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(TARGET_CA_VOLUME, TARGET_CA_DIR));
    }
    if let Some(cm) = spec
        .dataset
        .as_ref()
        .and_then(|d| d.config_map_ref.as_ref())
    {
        volumes.push(Volume {
            name: DATASET_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.name.clone(),
                items: one_key(&cm.key, DATASET_FILE),
                default_mode: Some(MOUNTED_FILE_MODE),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(DATASET_VOLUME, DATASET_DIR));
    }
    (volumes, mounts)
}

/// The runner Job of one profile.
pub fn job(test: &LoadTest, runner: &RunnerJob<'_>) -> Job {
    let spec = &test.spec;
    let parallelism = spec.parallelism.max(1);
    let mut job_labels = labels(APP, &test.name_any());
    job_labels.extend(BTreeMap::from([
        (LOADTEST_LABEL.to_owned(), test.name_any()),
        (PROFILE_LABEL.to_owned(), runner.profile.name.clone()),
        (RUN_LABEL.to_owned(), run_hash(runner.run, generation(test))),
        (GENERATION_LABEL.to_owned(), generation(test).to_string()),
    ]));
    let mut run = run_spec(
        test,
        runner.profile,
        runner.target_url,
        runner.endpoint_readiness,
    );
    run.shard.count = u32::try_from(parallelism).unwrap_or(1);
    run.start_at_ms = runner.start_at_ms;
    // One JSON value holds the run; $(SHARD_INDEX), expanded by the kubelet from the env below,
    // picks the pod's share. The compact summary goes in the termination message, and the full
    // results, past its 4 KiB, are read back through the pod's log.
    let args = vec![
        "run".to_owned(),
        "--spec".to_owned(),
        run.to_container_arg(),
        "--shard".to_owned(),
        format!("$(SHARD_INDEX)/{parallelism}"),
        "--termination-summary".to_owned(),
        "/dev/termination-log".to_owned(),
        "--results-log".to_owned(),
        // Live metrics for the chart's PodMonitor: every interface of the pod, port `metrics`.
        "--metrics-host".to_owned(),
        "0.0.0.0".to_owned(),
        "--metrics-port".to_owned(),
        RUNNER_METRICS_PORT.to_string(),
        "--metrics-linger".to_owned(),
        runner.metrics_linger_seconds.to_string(),
    ];
    let (volumes, mounts) = runner_volumes(test);
    let container = Container {
        name: APP.to_owned(),
        image: Some(
            spec.runner
                .image
                .clone()
                .unwrap_or_else(|| runner.default_image.to_owned()),
        ),
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: RUNNER_METRICS_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(runner_env(test)),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        resources: spec.runner.resources.clone(),
        security_context: Some(hardened()),
        termination_message_path: Some("/dev/termination-log".to_owned()),
        // On an error exit the last log lines become the message: the operator shows them.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    // The Job may run its profile, the runner's readiness wait and a margin, then it is stopped.
    let deadline = runner.profile.load_profile().run_time().as_secs()
        + RUNNER_READY_TIMEOUT_SECS
        + SHARD_START_LEAD.as_secs()
        + 120;
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(test, &runner.profile.name, runner.run)),
            namespace: test.namespace(),
            labels: Some(job_labels.clone()),
            annotations: Some(BTreeMap::from([(
                JOB_RUN_ANNOTATION.to_owned(),
                runner.run.to_owned(),
            )])),
            owner_references: test.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            completions: Some(parallelism),
            parallelism: Some(parallelism),
            completion_mode: Some("Indexed".to_owned()),
            // A retried runner would measure a different load than asked: fail the profile.
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::try_from(deadline).unwrap_or(i64::MAX)),
            // No ttlSecondsAfterFinished here: it would count from this Job's end and could
            // delete the pods (and their summaries) before the operator reads them. The
            // operator deletes a run's Jobs `ttlSecondsAfterFinished` after the test's end.
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::load_test;
    use clap::Parser;

    #[test]
    fn only_shards_get_a_common_start_ahead_of_their_job() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        assert_eq!(start_at(1, now), None);
        assert_eq!(start_at(4, now), Some(1_000_000 + 10_000));
    }

    #[test]
    fn job_runs_each_shard_with_its_termination_summary() {
        let mut lt = load_test("gate");
        lt.spec.parallelism = 3;
        let profile = lt.spec.profiles[0].clone();
        let job = job(
            &lt,
            &RunnerJob {
                profile: &profile,
                run: "initial",
                target_url: "http://mini.ml.svc:8080",
                endpoint_readiness: None,
                default_image: "lr:1",
                metrics_linger_seconds: 0,
                start_at_ms: Some(1_700_000_000_000),
            },
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(
            (spec.completions, spec.parallelism, spec.backoff_limit),
            (Some(3), Some(3), Some(0))
        );
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        let args = c.args.as_ref().unwrap();
        assert!(
            args.windows(2)
                .any(|w| w == ["--termination-summary", "/dev/termination-log"])
                && args
                    .windows(2)
                    .any(|w| w == ["--shard", "$(SHARD_INDEX)/3"])
                && args.iter().any(|a| a == "--results-log")
        );
        // The real runner takes these arguments: one spec, the pod's share of it, and the
        // shards' common clock.
        let mut argv = vec!["loadrunner".to_owned()];
        argv.extend(args.iter().map(|a| a.replace("$(SHARD_INDEX)", "2")));
        let cli = loadrunner::config::Cli::try_parse_from(&argv).unwrap();
        let loadrunner::config::Command::Run(run) = cli.command else {
            panic!("not a run command")
        };
        let spec = run.run_spec().unwrap();
        assert_eq!(
            (spec.start_at_ms, spec.shard, run.results_log),
            (
                Some(1_700_000_000_000),
                loadgate_api::run_spec::Shard { index: 2, count: 3 },
                true
            )
        );
        assert_eq!(spec.profile, profile.load_profile());
        assert_eq!(
            job.metadata.name.as_deref(),
            Some(job_name(&lt, &profile.name, "initial").as_str())
        );
        assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "LoadTest");
    }

    /// The run the operator hands a runner means the LoadTest's profile: its load, tasks and
    /// budgets, and a verdict that is the status's to give, not the pod's.
    #[test]
    fn the_run_spec_is_the_profile_with_its_budgets_and_tasks() {
        let mut lt = load_test("gate");
        lt.spec.profiles[0].thresholds = Some(loadgate_api::load::Thresholds {
            min_rps: Some(15.0),
            ..Default::default()
        });
        let profile = &lt.spec.profiles[0];
        let run = run_spec(&lt, profile, "http://mini.ml.svc:8080", None);
        assert_eq!(run.profile, profile.load_profile());
        assert_eq!(run.tasks, lt.spec.tasks);
        assert_eq!(
            (run.thresholds.p95_ms, run.thresholds.min_rps),
            (lt.spec.thresholds.p95_ms, Some(15.0))
        );
        assert_eq!(run.task_thresholds, lt.spec.task_thresholds);
        assert!(run.caller_judges && run.readiness.wait);
        assert_eq!(run.validate(), Ok(()));
    }

    /// The runners wait on the path the target serves readiness on: the LoadTest's own
    /// `target.readinessPath`, else the endpoint's team server's (`runtime.readinessPath`), else
    /// `/health`.
    #[test]
    fn runners_wait_on_the_team_servers_readiness_path_unless_the_test_names_one() {
        let mut lt = load_test("gate");
        let url = "http://mini.ml.svc:8080";
        let path = |lt: &LoadTest, endpoint: Option<&str>| {
            run_spec(lt, &lt.spec.profiles[0], url, endpoint)
                .readiness
                .path
        };
        assert_eq!(path(&lt, None), "/health");
        assert_eq!(path(&lt, Some("/ready")), "/ready");
        lt.spec.target.readiness_path = Some("/v1/models".into());
        assert_eq!(path(&lt, Some("/ready")), "/v1/models");
    }

    /// A search profile's spec passes the runner's checks without the spawn rate it does not use.
    #[test]
    fn a_search_profile_runs_as_a_search_with_its_budgets() {
        let mut lt = load_test("gate");
        let search = loadgate_api::load::Search {
            start_rps: 2.5,
            step_rps: 5.0,
            step_duration: loadgate_api::duration::Duration::from_secs(20),
            max_rps: 100.0,
        };
        lt.spec.profiles[0].search = Some(search);
        lt.spec.profiles[0].spawn_rate = 0.0;
        let run = run_spec(&lt, &lt.spec.profiles[0], "http://mini.ml.svc:8080", None);
        assert_eq!(run.profile.search, Some(search));
        assert_eq!(run.validate(), Ok(()));
        let back = loadgate_api::run_spec::RunSpec::from_json(&run.to_container_arg()).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn run_hash_is_stable_short_and_generation_aware() {
        assert_eq!(run_hash("initial", 1), run_hash("initial", 1));
        assert_ne!(run_hash("initial", 1), run_hash("abc123", 1));
        assert_ne!(run_hash("initial", 1), run_hash("initial", 2));
        assert_eq!(run_hash("x", 7).len(), 8);
    }

    /// What a test's runner Job of `profile` needs, run `initial`, no common start.
    fn runner(profile: &ProfileSpec) -> RunnerJob<'_> {
        RunnerJob {
            profile,
            run: "initial",
            target_url: "http://mini.ml.svc:8080",
            endpoint_readiness: None,
            default_image: "lr:1",
            metrics_linger_seconds: 0,
            start_at_ms: None,
        }
    }

    /// A spec edit (users 2 → 6 in Git, annotation untouched) is a new generation: new Job
    /// names, and the old generation's Job is refused as foreign, never adopted.
    #[test]
    fn a_new_generation_never_adopts_the_previous_generations_job() {
        let mut lt = load_test("gate");
        let profile = lt.spec.profiles[0].clone();
        let old = job(&lt, &runner(&profile));
        assert_eq!(foreign_job(&lt, &profile.name, "initial", &old), None);
        lt.metadata.generation = Some(2);
        assert_ne!(
            job_name(&lt, &profile.name, "initial"),
            old.name_any(),
            "a new generation has new Job names"
        );
        let why = foreign_job(&lt, &profile.name, "initial", &old).unwrap();
        assert!(why.contains("generation 1, not 2"), "{why}");
        lt.metadata.generation = Some(1);
        assert!(
            foreign_job(&lt, &profile.name, "rerun", &old)
                .unwrap()
                .contains("run initial, not rerun")
        );
        let mut stranger = old.clone();
        stranger.metadata.owner_references = None;
        assert!(
            foreign_job(&lt, &profile.name, "initial", &stranger)
                .unwrap()
                .contains("not controlled by this LoadTest")
        );
    }

    /// A Job of another profile under this profile's name (forged, or a name that collided) is
    /// never adopted.
    #[test]
    fn a_job_of_another_profile_is_not_adopted() {
        let lt = load_test("gate");
        let profile = lt.spec.profiles[0].clone();
        let other = lt.spec.profiles[1].clone();
        let theirs = job(&lt, &runner(&other));
        let why = foreign_job(&lt, &profile.name, "initial", &theirs).unwrap();
        assert!(
            why.contains(&format!(
                "runs profile {}, not {}",
                other.name, profile.name
            )),
            "{why}"
        );
    }

    /// Before: LoadTest `web` / profile `api-load` and LoadTest `web-api` / profile `load` had
    /// one Job name (the hash covered only run@generation), and so did any two long names cut
    /// to one prefix.
    #[test]
    fn job_names_of_different_tests_and_profiles_never_collide() {
        let mut web = load_test("web");
        web.spec.profiles[0].name = "api-load".into();
        let mut web_api = load_test("web-api");
        web_api.spec.profiles[0].name = "load".into();
        assert_ne!(
            job_name(&web, "api-load", "initial"),
            job_name(&web_api, "load", "initial")
        );
        let long = load_test(&"t".repeat(40));
        let (a, b) = (
            format!("{}-a", "p".repeat(40)),
            format!("{}-b", "p".repeat(40)),
        );
        assert_ne!(
            job_name(&long, &a, "initial"),
            job_name(&long, &b, "initial")
        );
        let mut other_ns = load_test("web");
        other_ns.metadata.namespace = Some("other".into());
        assert_ne!(
            job_name(&web, "api-load", "initial"),
            job_name(&other_ns, "api-load", "initial")
        );
    }

    /// Before: a test and profile name of 60 characters gave a 63-character Job name, which
    /// the apiserver refuses for an Indexed Job (its pods' hostname `<job>-<index>` must be a
    /// DNS label), and the run ended `Rejected` although the LoadTest was accepted.
    #[test]
    fn the_longest_names_leave_room_for_the_pod_index() {
        let lt = load_test(&"t".repeat(loadgate_api::validate::MAX_LOAD_TEST_NAME));
        let profile = "p".repeat(40);
        let name = job_name(&lt, &profile, "a-very-long-run-name-from-a-commit-sha");
        let dotted = job_name(&load_test("web.v2"), "load", "initial");
        assert!(dotted.starts_with("web-v2-load-"), "{dotted}");
        assert_eq!(name.len(), MAX_JOB_NAME);
        // The highest index of the most runner pods a LoadTest may have.
        let hostname = format!("{name}-99");
        assert!(hostname.len() <= 63, "{hostname}");
        assert!(
            hostname
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }

    /// A test that reaches an https endpoint with a private CA, an API key from a Secret, a
    /// plain tenant header and a dataset from a ConfigMap.
    fn with_references() -> LoadTest {
        use loadgate_api::target::{
            ConfigMapKeyRef, Dataset, Header, HeaderSource, SecretKeyRef, TargetTls,
        };
        let mut lt = load_test("gate");
        lt.spec.target.endpoint_ref = None;
        lt.spec.target.url = Some("https://embed.example.com".into());
        lt.spec.target.tls = Some(TargetTls {
            ca_secret_ref: Some(SecretKeyRef {
                name: "private-ca".into(),
                key: "bundle.pem".into(),
            }),
            insecure_skip_verify: false,
            server_name: Some("embed.internal".into()),
        });
        lt.spec.target.headers = vec![
            Header {
                name: "X-Tenant".into(),
                value: Some("blue".into()),
                value_from: None,
            },
            Header {
                name: "Authorization".into(),
                value: None,
                value_from: Some(HeaderSource {
                    secret_key_ref: SecretKeyRef {
                        name: "embed-api-key".into(),
                        key: "token".into(),
                    },
                }),
            },
        ];
        lt.spec.dataset = Some(Dataset {
            config_map_ref: Some(ConfigMapKeyRef {
                name: "texts".into(),
                key: "lines.txt".into(),
            }),
            inline: Vec::new(),
        });
        lt
    }

    /// The container and pod spec of the test's first runner Job, and the run spec its
    /// arguments carry.
    fn built(lt: &LoadTest) -> (Container, PodSpec, String) {
        let profile = lt.spec.profiles[0].clone();
        let target_url = lt
            .spec
            .target
            .url
            .as_deref()
            .unwrap_or("http://mini.ml.svc:8080");
        let job = job(
            lt,
            &RunnerJob {
                target_url,
                ..runner(&profile)
            },
        );
        let pod = job.spec.unwrap().template.spec.unwrap();
        let container = pod.containers[0].clone();
        let args = container.args.clone().unwrap();
        let spec = args[args.iter().position(|a| a == "--spec").unwrap() + 1].clone();
        (container, pod, spec)
    }

    #[test]
    fn a_secret_header_reaches_the_pod_from_its_secret_and_the_spec_names_only_the_variable() {
        let lt = with_references();
        let (container, _, spec) = built(&lt);
        let env = container.env.unwrap();
        assert_eq!(
            env.len(),
            2,
            "the shard index and the one secret header: {env:?}"
        );
        let secret = env.iter().find(|e| e.name == "LOADGATE_HEADER_1").unwrap();
        assert_eq!(secret.value, None);
        assert_eq!(
            secret.value_from.as_ref().unwrap().secret_key_ref,
            Some(SecretKeySelector {
                name: "embed-api-key".into(),
                key: "token".into(),
                optional: Some(false),
            })
        );
        // The arguments name the variable, never the Secret (nor, of course, its value).
        assert!(!spec.contains("embed-api-key"), "{spec}");
        let run = RunSpec::from_json(&spec).unwrap();
        assert_eq!(run.validate(), Ok(()));
        let auth = &run.headers[1];
        assert_eq!(
            (
                auth.name.as_str(),
                auth.value.as_deref(),
                auth.value_from_env.as_deref()
            ),
            ("Authorization", None, Some("LOADGATE_HEADER_1"))
        );
        assert_eq!(run.headers[0].value.as_deref(), Some("blue"));
        assert_eq!(
            run.tls,
            Some(RunTls {
                ca_file: Some("/etc/loadgate/target-ca/ca.pem".into()),
                ca_pem: None,
                insecure_skip_verify: false,
                server_name: Some("embed.internal".into()),
            })
        );
        assert_eq!(
            run.dataset,
            Some(RunDataset {
                file: Some("/etc/loadgate/dataset/dataset.txt".into()),
                inline: Vec::new(),
            })
        );
    }

    #[test]
    fn the_ca_bundle_and_the_dataset_are_mounted_read_only_where_the_spec_says() {
        let lt = with_references();
        let (container, pod, _) = built(&lt);
        let volumes = pod.volumes.unwrap();
        let ca = volumes.iter().find(|v| v.name == "target-ca").unwrap();
        let ca = ca.secret.as_ref().unwrap();
        assert_eq!(ca.secret_name.as_deref(), Some("private-ca"));
        assert_eq!(ca.default_mode, Some(0o444));
        let items = ca.items.as_ref().unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("bundle.pem", "ca.pem")
        );
        let dataset = volumes.iter().find(|v| v.name == "dataset").unwrap();
        let dataset = dataset.config_map.as_ref().unwrap();
        assert_eq!(dataset.name, "texts");
        let items = dataset.items.as_ref().unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("lines.txt", "dataset.txt")
        );
        let mounts = container.volume_mounts.unwrap();
        let at = |name: &str| {
            let m = mounts.iter().find(|m| m.name == name).unwrap();
            (m.mount_path.as_str(), m.read_only)
        };
        assert_eq!(at("target-ca"), ("/etc/loadgate/target-ca", Some(true)));
        assert_eq!(at("dataset"), ("/etc/loadgate/dataset", Some(true)));
        assert_eq!(mounts.len(), 2);
    }

    #[test]
    fn a_test_that_references_nothing_mounts_nothing() {
        let mut lt = load_test("gate");
        lt.spec.dataset = Some(loadgate_api::target::Dataset {
            config_map_ref: None,
            inline: vec!["one".into(), "two".into()],
        });
        let (container, pod, spec) = built(&lt);
        assert_eq!((pod.volumes, container.volume_mounts), (None, None));
        assert_eq!(container.env.unwrap().len(), 1, "the shard index only");
        let run = RunSpec::from_json(&spec).unwrap();
        assert_eq!((run.tls, run.headers.len()), (None, 0));
        assert_eq!(
            run.dataset,
            Some(RunDataset {
                file: None,
                inline: vec!["one".into(), "two".into()],
            })
        );
        assert!(references(&lt).is_empty());
    }

    #[test]
    fn references_name_their_field_and_a_missing_key_never_a_value() {
        let lt = with_references();
        let refs = references(&lt);
        let fields: Vec<&str> = refs.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.target.headers[1].valueFrom.secretKeyRef",
                "spec.target.tls.caSecretRef",
                "spec.dataset.configMapRef"
            ]
        );
        assert_eq!(
            missing_key(&refs[0], Some(["other"])).as_deref(),
            Some(
                "Secret embed-api-key has no key \"token\" \
                 (spec.target.headers[1].valueFrom.secretKeyRef)"
            )
        );
        assert_eq!(
            missing_key(&refs[2], None::<[&str; 0]>).as_deref(),
            Some("ConfigMap texts not found (spec.dataset.configMapRef)")
        );
        assert_eq!(missing_key(&refs[1], Some(["x", "bundle.pem"])), None);
    }
}
