//! How one container of a Pod becomes one local process: which binary (from the image name),
//! which argv and environment (env values, downward-API field references, keys of Secrets and
//! ConfigMaps, and `$(VAR)` expansion as the kubelet does them), and where container paths
//! live on this machine (a volume's mount path is its directory under the pod's, also where it
//! appears inside an argument, such as a JSON run spec).
//!
//! Pure: everything here is decided from the Pod, the harness settings and the pod's address,
//! so it is tested without processes or an apiserver.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::objects::PodObjects;

/// The default path of a container's termination message.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// What the harness knows about this machine.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Image repository basename (`model-server` for `ghcr.io/loadgate/model-server:0.1.0`) →
    /// the local binary that plays it.
    pub images: BTreeMap<String, PathBuf>,
    /// Container path prefix → local path (`/models` → `./models`): what the image bakes in or
    /// a volume would mount.
    pub paths: Vec<(String, PathBuf)>,
    /// Extra environment given to every container (the harness' service addresses).
    pub env: Vec<(String, String)>,
}

/// One process to start.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// The binary.
    pub program: PathBuf,
    /// Its arguments (without argv[0]).
    pub args: Vec<String>,
    /// Its whole environment (the process starts with an empty one plus `PATH`).
    pub env: Vec<(String, String)>,
    /// Where the container's termination message file is on this machine.
    pub termination_log: PathBuf,
}

/// The repository basename of an image reference: `ghcr.io/x/model-server:1@sha256:…` →
/// `model-server`.
pub fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Plans `container` of `pod`, which runs at `pod_ip` with its files under `pod_dir`, reading
/// the keys it references from `objects`.
pub fn launch(
    settings: &Settings,
    pod: &Pod,
    container: &Container,
    pod_ip: Ipv4Addr,
    pod_dir: &Path,
    objects: &PodObjects,
) -> Result<Launch, String> {
    let image = container.image.as_deref().unwrap_or_default();
    let program = settings
        .images
        .get(image_name(image))
        .cloned()
        .ok_or_else(|| {
            format!(
                "image {image:?}: no local binary plays {:?} (known: {})",
                image_name(image),
                settings
                    .images
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    if container.command.is_some() {
        return Err(format!(
            "container {:?}: `command` is not supported; the image's entrypoint is the mapped binary",
            container.name
        ));
    }

    let mut paths = settings.paths.clone();
    // Volume mounts, also rewritten where they appear inside an argument.
    let mut mounted = Vec::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for mount in container.volume_mounts.iter().flatten() {
        let per_pod = volumes.into_iter().flatten().any(|v| {
            v.name == mount.name
                && (v.empty_dir.is_some() || v.secret.is_some() || v.config_map.is_some())
        });
        // emptyDir, secret and configMap volumes are per-pod directories; other volumes fall
        // back to the path map.
        if per_pod {
            let local = pod_dir.join("volumes").join(&mount.name);
            mounted.push((
                format!("{}/", mount.mount_path.trim_end_matches('/')),
                format!("{}/", local.display()),
            ));
            paths.push((mount.mount_path.clone(), local));
        }
    }
    let termination_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| TERMINATION_LOG.to_owned());
    let termination_log = pod_dir.join(format!("{}.termination-log", container.name));
    paths.push((termination_path, termination_log.clone()));
    // Longest prefix first, so `/models/x` wins over `/models`.
    paths.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));

    let localise = |value: String| -> String {
        // 0.0.0.0 is "every interface of the pod"; here the pod's only interface is its address.
        let value = if value == "0.0.0.0" {
            pod_ip.to_string()
        } else {
            value
        };
        map_path(&paths, &value).unwrap_or(value)
    };

    let mut env: Vec<(String, String)> = vec![("HOSTNAME".to_owned(), pod_name(pod))];
    env.extend(settings.env.iter().cloned());
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => expand(value, &env),
            (None, Some(source)) => {
                let key = |secret: bool, name: &str, key: &str| {
                    let bytes = objects.value(secret, name, key)?;
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| format!("env {:?}: {name}/{key} is not text", var.name))
                };
                match (
                    &source.field_ref,
                    &source.secret_key_ref,
                    &source.config_map_key_ref,
                ) {
                    (Some(field), _, _) => field_value(pod, &field.field_path, pod_ip)?,
                    (None, Some(r), _) => key(true, &r.name, &r.key)?,
                    (None, None, Some(r)) => key(false, &r.name, &r.key)?,
                    _ => {
                        return Err(format!(
                            "env {:?}: only value, fieldRef, secretKeyRef and configMapKeyRef \
                             are supported",
                            var.name
                        ));
                    }
                }
            }
            (None, None) => String::new(),
        };
        env.retain(|(name, _)| name != &var.name);
        env.push((var.name.clone(), localise(value)));
    }
    let args = container
        .args
        .iter()
        .flatten()
        .map(|arg| {
            // An argument that is a mapped path is rewritten once: rewriting the local path
            // again would send a repository under /tmp into a pod's /tmp emptyDir. Mounts are
            // replaced inside the other arguments (a path in a JSON spec, `--flag=/path`).
            let arg = expand(arg, &env);
            let local = localise(arg.clone());
            if local != arg {
                return local;
            }
            mounted
                .iter()
                .fold(arg, |arg, (mount, local)| arg.replace(mount, local))
        })
        .collect();
    Ok(Launch {
        program,
        args,
        env,
        termination_log,
    })
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The local path for a container path under one of the mapped prefixes.
fn map_path(paths: &[(String, PathBuf)], value: &str) -> Option<String> {
    paths.iter().find_map(|(prefix, local)| {
        let rest = value.strip_prefix(prefix.as_str())?;
        if rest.is_empty() {
            Some(local.display().to_string())
        } else {
            rest.strip_prefix('/')
                .map(|rest| local.join(rest).display().to_string())
        }
    })
}

/// Expands `$(NAME)` from the variables defined so far, as the kubelet does: `$$` escapes, and an
/// unknown name stays as written.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(after_dollar) = after.strip_prefix('$') {
            out.push('$');
            rest = after_dollar;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&rest[at..at + 2 + end + 1]),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A downward-API field of the pod.
fn field_value(pod: &Pod, path: &str, pod_ip: Ipv4Addr) -> Result<String, String> {
    let meta = &pod.metadata;
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "status.podIP" | "status.hostIP" => pod_ip.to_string(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        _ => keyed("metadata.annotations", &meta.annotations)
            .or_else(|| keyed("metadata.labels", &meta.labels))
            .ok_or_else(|| format!("fieldRef {path:?} is not supported"))?,
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, Volume,
        VolumeMount,
    };

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..EnvVar::default()
        }
    }

    fn settings() -> Settings {
        Settings {
            images: BTreeMap::from([
                ("model-server".into(), PathBuf::from("/bin/ms")),
                ("loadrunner".into(), PathBuf::from("/bin/lr")),
            ]),
            paths: vec![("/models".into(), PathBuf::from("/repo/models"))],
            env: vec![("LOADRUNNER_RESOLVE".into(), "a.b.svc:80:127.0.0.9".into())],
        }
    }

    #[test]
    fn secret_keys_reach_the_env_and_mounted_paths_inside_arguments_are_local() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "runner-0", "namespace": "ml"},
            "spec": {
                "containers": [{
                    "name": "loadrunner", "image": "ghcr.io/loadgate/loadrunner:0.1.0",
                    "args": ["run", "--spec", "{\"tls\":{\"caFile\":\"/etc/loadgate/target-ca/ca.pem\"}}"],
                    "env": [{"name": "LOADGATE_HEADER_0",
                             "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}],
                    "volumeMounts": [{"name": "target-ca", "mountPath": "/etc/loadgate/target-ca"}]
                }],
                "volumes": [{"name": "target-ca", "secret": {"secretName": "ca"}}]
            }
        }))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        let mut objects = PodObjects::default();
        let plan = |objects: &PodObjects| {
            launch(
                &settings(),
                &pod,
                &container,
                Ipv4Addr::new(127, 0, 0, 20),
                Path::new("/state/r"),
                objects,
            )
        };
        assert_eq!(plan(&objects).unwrap_err(), "secret \"api\" not found");
        objects.secrets.insert(
            "api".into(),
            BTreeMap::from([("token".into(), b"Bearer k".to_vec())]),
        );
        let launched = plan(&objects).unwrap();
        assert!(
            launched
                .env
                .contains(&("LOADGATE_HEADER_0".into(), "Bearer k".into()))
        );
        assert_eq!(
            launched.args[2],
            "{\"tls\":{\"caFile\":\"/state/r/volumes/target-ca/ca.pem\"}}"
        );
    }

    /// A team server's pod has an emptyDir at /tmp; its `--model /models/x` is the repository's
    /// models folder, wherever the repository is (a clone under /tmp included), never the pod's
    /// /tmp volume.
    #[test]
    fn a_mapped_path_argument_is_rewritten_once() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "team-0", "namespace": "ml"},
            "spec": {
                "containers": [{
                    "name": "model-server", "image": "localhost/loadgate/team-server:e2e",
                    "args": ["--model", "/models/all-MiniLM-L6-v2", "--model-cache-dir", "/tmp/cache"],
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
                }],
                "volumes": [{"name": "tmp", "emptyDir": {}}]
            }
        }))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        let mut settings = settings();
        settings
            .images
            .insert("team-server".into(), PathBuf::from("/bin/ms"));
        settings.paths = vec![("/models".into(), PathBuf::from("/tmp/clone/models"))];
        let launched = launch(
            &settings,
            &pod,
            &container,
            Ipv4Addr::new(127, 0, 0, 21),
            Path::new("/state/t"),
            &PodObjects::default(),
        )
        .unwrap();
        assert_eq!(
            launched.args,
            [
                "--model",
                "/tmp/clone/models/all-MiniLM-L6-v2",
                "--model-cache-dir",
                "/state/t/volumes/tmp/cache"
            ]
        );
    }

    #[test]
    fn image_names_drop_registry_tag_and_digest() {
        assert_eq!(
            image_name("ghcr.io/loadgate/model-server:0.1.0"),
            "model-server"
        );
        assert_eq!(image_name("loadrunner"), "loadrunner");
        assert_eq!(
            image_name("localhost:5000/x/loadrunner@sha256:ab"),
            "loadrunner"
        );
    }

    #[test]
    fn expansion_follows_the_kubelet_rules() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("$(A)/3", &env), "1/3");
        assert_eq!(expand("$$(A) $(B) $x", &env), "$(A) $(B) $x");
        assert_eq!(expand("tail$", &env), "tail$");
    }

    #[test]
    fn a_model_server_container_binds_its_pod_address_and_finds_its_model() {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("minilm-abc".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(vec![Volume {
                    name: "cache".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                }]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let container = Container {
            name: "model-server".into(),
            image: Some("ghcr.io/loadgate/model-server:0.1.0".into()),
            env: Some(vec![
                var("MODEL", "/models/all-MiniLM-L6-v2"),
                var("HOST", "0.0.0.0"),
                var("MODEL_CACHE_DIR", "/cache"),
            ]),
            volume_mounts: Some(vec![VolumeMount {
                name: "cache".into(),
                mount_path: "/cache".into(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        };
        let plan = launch(
            &settings(),
            &pod,
            &container,
            Ipv4Addr::new(127, 0, 0, 12),
            Path::new("/state/p"),
            &PodObjects::default(),
        )
        .unwrap();
        assert_eq!(plan.program, PathBuf::from("/bin/ms"));
        let get = |n: &str| plan.env.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("MODEL"), "/repo/models/all-MiniLM-L6-v2");
        assert_eq!(get("HOST"), "127.0.0.12");
        assert_eq!(get("MODEL_CACHE_DIR"), "/state/p/volumes/cache");
        assert_eq!(get("HOSTNAME"), "minilm-abc");
    }

    #[test]
    fn a_runner_container_gets_its_shard_index_and_termination_file() {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                annotations: Some(BTreeMap::from([(
                    "batch.kubernetes.io/job-completion-index".into(),
                    "2".into(),
                )])),
                ..Default::default()
            },
            ..Pod::default()
        };
        let container = Container {
            name: "loadrunner".into(),
            image: Some("loadrunner:dev".into()),
            args: Some(vec![
                "run".into(),
                "--shard".into(),
                "$(SHARD_INDEX)/3".into(),
                "--termination-summary".into(),
                "/dev/termination-log".into(),
            ]),
            env: Some(vec![EnvVar {
                name: "SHARD_INDEX".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path:
                            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                                .into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }]),
            ..Container::default()
        };
        let plan = launch(
            &settings(),
            &pod,
            &container,
            Ipv4Addr::new(127, 0, 0, 13),
            Path::new("/s"),
            &PodObjects::default(),
        )
        .unwrap();
        assert_eq!(
            plan.args,
            [
                "run",
                "--shard",
                "2/3",
                "--termination-summary",
                "/s/loadrunner.termination-log"
            ]
        );
        assert_eq!(
            plan.termination_log,
            PathBuf::from("/s/loadrunner.termination-log")
        );
        assert!(plan.env.contains(&(
            "LOADRUNNER_RESOLVE".to_owned(),
            "a.b.svc:80:127.0.0.9".to_owned()
        )));
    }

    #[test]
    fn unknown_images_and_fields_are_named() {
        let container = Container {
            name: "x".into(),
            image: Some("nginx:1".into()),
            ..Container::default()
        };
        let err = launch(
            &settings(),
            &Pod::default(),
            &container,
            Ipv4Addr::LOCALHOST,
            Path::new("/s"),
            &PodObjects::default(),
        )
        .unwrap_err();
        assert!(err.contains("\"nginx\""), "{err}");
        assert!(field_value(&Pod::default(), "status.phase", Ipv4Addr::LOCALHOST).is_err());
    }
}
