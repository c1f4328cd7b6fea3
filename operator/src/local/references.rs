//! The Secrets and ConfigMaps a local-mode manifest holds beside its LoadTest, and what the
//! runner gets from them ([`Objects::localize`]): the header values and CA bundle a cluster's
//! runner pod would read from its environment and mounted files, here handed to the engine in
//! memory (never in an argument, a file or a log), and the dataset's lines. A reference to an
//! object or key the files do not hold is an error naming it, before anything starts.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use loadgate_api::load_test::LoadTest;
use loadgate_api::run_spec::RunSpec;
use loadgate_api::target::{RunDataset, RunHeader, RunTls};
use std::collections::BTreeMap;

/// Secrets' and ConfigMaps' data by name.
#[derive(Default)]
pub struct Objects {
    secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

impl std::fmt::Debug for Objects {
    // Names and keys only: a Secret's values never reach an echo.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        f.debug_struct("Objects")
            .field(
                "secrets",
                &self
                    .secrets
                    .iter()
                    .map(|(n, d)| (n, keys(d)))
                    .collect::<Vec<_>>(),
            )
            .field("config_maps", &self.config_maps.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Objects {
    /// Adds a Secret (`data` decoded, `stringData` over it, as the apiserver merges them).
    pub fn add_secret(&mut self, secret: Secret) {
        let name = secret.metadata.name.unwrap_or_default();
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        self.secrets.insert(name, data);
    }

    /// Adds a ConfigMap's `data`.
    pub fn add_config_map(&mut self, config_map: ConfigMap) {
        let name = config_map.metadata.name.unwrap_or_default();
        self.config_maps
            .insert(name, config_map.data.unwrap_or_default());
    }

    fn secret(&self, name: &str, key: &str, field: &str) -> Result<&[u8], String> {
        let data = self
            .secrets
            .get(name)
            .ok_or_else(|| format!("{field}: Secret {name} is not in the files"))?;
        data.get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("{field}: Secret {name} has no key {key:?}"))
    }

    /// Checks that every Secret and ConfigMap `test` references is here with its key.
    ///
    /// # Errors
    /// The first missing one, named with the field that references it.
    pub fn check(&self, test: &LoadTest) -> Result<(), String> {
        let mut spec = RunSpec::new("http://unused", test.spec.profiles[0].load_profile());
        self.localize(test, &mut spec)
    }

    /// Sets `spec`'s headers, TLS and dataset from `test`'s, with the values of the Secrets
    /// and ConfigMaps they reference.
    ///
    /// # Errors
    /// A reference to an object or key the files do not hold, or a value that is not text.
    pub fn localize(&self, test: &LoadTest, spec: &mut RunSpec) -> Result<(), String> {
        let target = &test.spec.target;
        spec.headers = target
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let value = match (&h.value, &h.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(from)) => {
                        let r = &from.secret_key_ref;
                        let field = format!("spec.target.headers[{i}].valueFrom.secretKeyRef");
                        let bytes = self.secret(&r.name, &r.key, &field)?;
                        String::from_utf8(bytes.to_vec()).map_err(|_| {
                            format!("{field}: Secret {} key {:?} is not text", r.name, r.key)
                        })?
                    }
                    (None, None) => String::new(),
                };
                Ok(RunHeader {
                    name: h.name.clone(),
                    value: Some(value),
                    value_from_env: None,
                    value_from_file: None,
                })
            })
            .collect::<Result<_, String>>()?;
        spec.tls = match &target.tls {
            None => None,
            Some(tls) => Some(RunTls {
                ca_file: None,
                ca_pem: match &tls.ca_secret_ref {
                    Some(r) => {
                        let bytes = self.secret(&r.name, &r.key, "spec.target.tls.caSecretRef")?;
                        Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                            format!(
                                "spec.target.tls.caSecretRef: Secret {} key {:?} is not PEM text",
                                r.name, r.key
                            )
                        })?)
                    }
                    None => None,
                },
                insecure_skip_verify: tls.insecure_skip_verify,
                server_name: tls.server_name.clone(),
            }),
        };
        spec.dataset = match &test.spec.dataset {
            None => None,
            Some(d) => Some(RunDataset {
                file: None,
                inline: match &d.config_map_ref {
                    Some(r) => {
                        let field = "spec.dataset.configMapRef";
                        let data = self.config_maps.get(&r.name).ok_or_else(|| {
                            format!("{field}: ConfigMap {} is not in the files", r.name)
                        })?;
                        let text = data.get(&r.key).ok_or_else(|| {
                            format!("{field}: ConfigMap {} has no key {:?}", r.name, r.key)
                        })?;
                        text.lines().map(str::to_owned).collect()
                    }
                    None => d.inline.clone(),
                },
            }),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::load_test;
    use loadgate_api::target::{
        ConfigMapKeyRef, Dataset, Header, HeaderSource, SecretKeyRef, TargetTls,
    };

    fn secret(name: &str, key: &str, value: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {key: value}
        }))
        .unwrap()
    }

    fn referencing() -> LoadTest {
        let mut test = load_test("t");
        test.spec.target.endpoint_ref = None;
        test.spec.target.url = Some("https://gw.example:8443".into());
        test.spec.target.headers = vec![Header {
            name: "Authorization".into(),
            value: None,
            value_from: Some(HeaderSource {
                secret_key_ref: SecretKeyRef {
                    name: "api".into(),
                    key: "token".into(),
                },
            }),
        }];
        test.spec.target.tls = Some(TargetTls {
            ca_secret_ref: Some(SecretKeyRef {
                name: "ca".into(),
                key: "ca.crt".into(),
            }),
            ..TargetTls::default()
        });
        test.spec.dataset = Some(Dataset {
            config_map_ref: Some(ConfigMapKeyRef {
                name: "texts".into(),
                key: "lines".into(),
            }),
            inline: Vec::new(),
        });
        test
    }

    #[test]
    fn references_resolve_from_the_files_or_are_named_when_missing() {
        let test = referencing();
        let mut objects = Objects::default();
        assert_eq!(
            objects.check(&test).unwrap_err(),
            "spec.target.headers[0].valueFrom.secretKeyRef: Secret api is not in the files"
        );
        objects.add_secret(secret("api", "other", "x"));
        assert!(
            objects
                .check(&test)
                .unwrap_err()
                .contains("has no key \"token\"")
        );
        objects.add_secret(secret("api", "token", "Bearer s3cr3t"));
        objects.add_secret(secret("ca", "ca.crt", "-----BEGIN CERTIFICATE-----"));
        assert!(
            objects
                .check(&test)
                .unwrap_err()
                .starts_with("spec.dataset.configMapRef: ConfigMap texts")
        );
        objects.add_config_map(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "texts"},
                "data": {"lines": "one\ntwo\n"}
            }))
            .unwrap(),
        );
        let mut spec = RunSpec::new(
            "https://gw.example:8443",
            test.spec.profiles[0].load_profile(),
        );
        objects.localize(&test, &mut spec).unwrap();
        assert_eq!(spec.headers[0].value.as_deref(), Some("Bearer s3cr3t"));
        assert!(spec.tls.as_ref().unwrap().ca_pem.is_some());
        assert_eq!(spec.dataset.as_ref().unwrap().inline, ["one", "two"]);
        assert!(!format!("{objects:?}").contains("s3cr3t"));
        spec.validate().unwrap();
    }
}
