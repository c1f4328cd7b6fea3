//! The Secrets and ConfigMaps a pod references, read from the apiserver before its containers
//! start ([`fetch`]): their keys become env values (`secretKeyRef`, `configMapKeyRef`) and the
//! files of `secret` and `configMap` volumes ([`write_volumes`]), under the pod's directory.
//! A missing object or key stops the pod before it starts, as a kubelet's
//! `CreateContainerConfigError` does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, PodSpec, Secret};
use kube::Api;

/// Data of the objects one pod references, by name then key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodObjects {
    /// Secrets' `data`.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// ConfigMaps' `data` and `binaryData`.
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl PodObjects {
    /// The value of `key` of Secret `name` (`secret: true`) or ConfigMap `name`.
    pub fn value(&self, secret: bool, name: &str, key: &str) -> Result<&[u8], String> {
        let (kind, objects) = if secret {
            ("secret", &self.secrets)
        } else {
            ("configmap", &self.config_maps)
        };
        objects
            .get(name)
            .ok_or_else(|| format!("{kind} {name:?} not found"))?
            .get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("couldn't find key {key} in {kind} {name}"))
    }
}

/// The Secrets and ConfigMaps `pod` references: (secret names, config map names).
pub fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut secrets, mut config_maps) = (BTreeSet::new(), BTreeSet::new());
    let Some(spec) = pod.spec.as_ref() else {
        return (secrets, config_maps);
    };
    for var in spec.containers.iter().flat_map(|c| c.env.iter().flatten()) {
        if let Some(source) = &var.value_from {
            if let Some(r) = &source.secret_key_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &source.config_map_key_ref {
                config_maps.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(s) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        if let Some(c) = &volume.config_map {
            config_maps.insert(c.name.clone());
        }
    }
    (secrets, config_maps)
}

/// Reads what `pod` references from its namespace.
pub async fn fetch(client: &kube::Client, pod: &Pod) -> Result<PodObjects, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let (secret_names, config_map_names) = referenced(pod);
    let mut objects = PodObjects::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for name in secret_names {
        let secret = secrets
            .get_opt(&name)
            .await
            .map_err(|e| format!("secret {name:?}: {e}"))?
            .ok_or_else(|| format!("secret {name:?} not found"))?;
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        objects.secrets.insert(name, data);
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for name in config_map_names {
        let config_map = config_maps
            .get_opt(&name)
            .await
            .map_err(|e| format!("configmap {name:?}: {e}"))?
            .ok_or_else(|| format!("configmap {name:?} not found"))?;
        let mut data: BTreeMap<String, Vec<u8>> = config_map
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            config_map
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        objects.config_maps.insert(name, data);
    }
    Ok(objects)
}

/// Writes the files of `spec`'s `secret` and `configMap` volumes under `dir/volumes/<name>/`:
/// the listed `items` at their paths, else every key; read-only files.
pub fn write_volumes(dir: &Path, spec: &PodSpec, objects: &PodObjects) -> Result<(), String> {
    for volume in spec.volumes.iter().flatten() {
        let (secret, name, items) = match (&volume.secret, &volume.config_map) {
            (Some(s), _) => (true, s.secret_name.clone().unwrap_or_default(), &s.items),
            (None, Some(c)) => (false, c.name.clone(), &c.items),
            _ => continue,
        };
        let root = dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let items: Vec<KeyToPath> = match items {
            Some(items) => items.clone(),
            None => {
                let all = if secret {
                    objects.secrets.get(&name)
                } else {
                    objects.config_maps.get(&name)
                };
                all.into_iter()
                    .flat_map(BTreeMap::keys)
                    .map(|k| KeyToPath {
                        key: k.clone(),
                        path: k.clone(),
                        ..KeyToPath::default()
                    })
                    .collect()
            }
        };
        for item in items {
            if item.path.contains("..") || item.path.starts_with('/') {
                return Err(format!("volume {}: path {:?}", volume.name, item.path));
            }
            let value = objects.value(secret, &name, &item.key)?;
            let file = root.join(&item.path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::write(&file, value).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut permissions = std::fs::metadata(&file)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .permissions();
            permissions.set_readonly(true);
            std::fs::set_permissions(&file, permissions)
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [{"name": "c", "image": "loadrunner", "env": [
                    {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
                ]}],
                "volumes": [
                    {"name": "ca", "secret": {"secretName": "ca", "items": [{"key": "ca.crt", "path": "ca.pem"}]}},
                    {"name": "texts", "configMap": {"name": "texts"}}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn referenced_objects_are_found_and_their_volumes_written() {
        let pod = pod();
        let (secrets, config_maps) = referenced(&pod);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["api", "ca"]);
        assert_eq!(config_maps.into_iter().collect::<Vec<_>>(), ["texts"]);
        let mut objects = PodObjects::default();
        objects.secrets.insert(
            "ca".into(),
            BTreeMap::from([("ca.crt".into(), b"PEM".to_vec())]),
        );
        objects.config_maps.insert(
            "texts".into(),
            BTreeMap::from([("lines".into(), b"a\nb".to_vec())]),
        );
        let dir = std::env::temp_dir().join(format!("kubelet-objects-{}", std::process::id()));
        write_volumes(&dir, pod.spec.as_ref().unwrap(), &objects).unwrap();
        assert_eq!(
            std::fs::read(dir.join("volumes/ca/ca.pem")).unwrap(),
            b"PEM"
        );
        assert_eq!(
            std::fs::read(dir.join("volumes/texts/lines")).unwrap(),
            b"a\nb"
        );
        for f in ["volumes/ca/ca.pem", "volumes/texts/lines"] {
            let mut p = std::fs::metadata(dir.join(f)).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(dir.join(f), p).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            objects.value(true, "api", "token").unwrap_err(),
            "secret \"api\" not found"
        );
        assert_eq!(
            objects.value(true, "ca", "nope").unwrap_err(),
            "couldn't find key nope in secret ca"
        );
    }
}
