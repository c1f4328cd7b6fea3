//! Reading a local-mode manifest: one or more files of YAML documents holding one LoadTest, the
//! ModelEndpoint it names when it targets an `endpointRef`, and the Secrets and ConfigMaps it
//! references (an API key, a CA bundle, a dataset). Errors name the file, the document and the
//! field, as the apiserver would.

use loadgate_api::load_test::LoadTest;
use loadgate_api::model_endpoint::ModelEndpoint;
use loadgate_api::validate::{FieldError, validate_endpoint_name, validate_load_test_name};
use std::path::Path;

/// The objects local mode runs.
#[derive(Debug)]
pub struct Manifest {
    /// The test.
    pub test: LoadTest,
    /// Its target, when it names a ModelEndpoint.
    pub endpoint: Option<ModelEndpoint>,
    /// The Secrets and ConfigMaps of the files.
    pub objects: super::references::Objects,
}

/// A manifest that cannot be run; the message names file, document and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// Largest manifest file read.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Reads and checks `paths` together.
///
/// # Errors
/// [`ManifestError`] when a file is unreadable, a document does not parse into its kind, or
/// the objects do not fit together.
pub fn read(paths: &[std::path::PathBuf]) -> Result<Manifest, ManifestError> {
    let file = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut tests = Vec::new();
    let mut endpoints = Vec::new();
    let mut objects = super::references::Objects::default();
    for path in paths {
        read_one(path, &mut tests, &mut endpoints, &mut objects)?;
    }
    let test = match tests.len() {
        1 => tests.remove(0),
        n => {
            return Err(ManifestError(format!(
                "{file}: holds {n} LoadTests; local mode runs exactly one"
            )));
        }
    };
    validate(&test).map_err(|e| {
        ManifestError(format!(
            "{file}: LoadTest {}: {e}",
            name(&test.metadata.name)
        ))
    })?;
    let endpoint = match (&test.spec.target.endpoint_ref, &test.spec.target.url) {
        (Some(reference), None) => {
            let found = endpoints
                .into_iter()
                .find(|e| e.metadata.name.as_deref() == Some(reference.name.as_str()));
            let found = found.ok_or_else(|| {
                ManifestError(format!(
                    "{file}: spec.target.endpointRef names ModelEndpoint {:?}, which the file does not hold",
                    reference.name
                ))
            })?;
            validate_endpoint_name(&reference.name)
                .and_then(|()| found.spec.validate())
                .and_then(|()| runs_here(&found))
                .map_err(|e| {
                    ManifestError(format!("{file}: ModelEndpoint {}: {e}", reference.name))
                })?;
            Some(found)
        }
        _ => None,
    };
    objects.check(&test).map_err(|e| {
        ManifestError(format!(
            "{file}: LoadTest {}: {e}",
            name(&test.metadata.name)
        ))
    })?;
    Ok(Manifest {
        test,
        endpoint,
        objects,
    })
}

/// The documents of one file, each into its kind's list.
fn read_one(
    path: &Path,
    tests: &mut Vec<LoadTest>,
    endpoints: &mut Vec<ModelEndpoint>,
    objects: &mut super::references::Objects,
) -> Result<(), ManifestError> {
    let file = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| ManifestError(format!("{file}: {e}")))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(ManifestError(format!(
            "{file}: {size} bytes; a manifest holds at most 4 MiB"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError(format!("{file}: {e}")))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| ManifestError(format!("{file}: not YAML: {e}")))?;
    for (i, doc) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        // serde's messages never quote a value of a Secret: they name types and fields.
        let at = |e: serde_json::Error| {
            ManifestError(format!("{file}: document {} ({kind}): {e}", i + 1))
        };
        match kind.as_str() {
            "LoadTest" => tests.push(serde_json::from_value::<LoadTest>(doc).map_err(at)?),
            "ModelEndpoint" => {
                endpoints.push(serde_json::from_value::<ModelEndpoint>(doc).map_err(at)?)
            }
            "Secret" => objects.add_secret(serde_json::from_value(doc).map_err(at)?),
            "ConfigMap" => objects.add_config_map(serde_json::from_value(doc).map_err(at)?),
            other => {
                return Err(ManifestError(format!(
                    "{file}: document {}: kind {other:?} is not LoadTest, ModelEndpoint, Secret \
                     or ConfigMap",
                    i + 1
                )));
            }
        }
    }
    Ok(())
}

fn name(n: &Option<String>) -> &str {
    n.as_deref().unwrap_or("(unnamed)")
}

/// Whether local mode can serve `endpoint`: it starts loadgate's model-server binary as a child
/// process (`--model-server-bin`) and runs no container images, so a team's own server
/// (`spec.runtime`) is refused rather than silently replaced by model-server.
///
/// # Errors
/// For an endpoint with a runtime, naming `spec.runtime`.
pub fn runs_here(endpoint: &ModelEndpoint) -> Result<(), FieldError> {
    match &endpoint.spec.runtime {
        None => Ok(()),
        Some(_) => Err(FieldError {
            field: "spec.runtime".to_owned(),
            message: "loadgate local runs loadgate's model-server only; spec.runtime needs a \
                      cluster — point the LoadTest's target at a running server instead"
                .to_owned(),
        }),
    }
}

/// The checks the CRD's schema and CEL rules make on the apiserver, for a file that never meets
/// one: [`LoadTestSpec::validate`](loadgate_api::load_test::LoadTestSpec::validate), the one
/// Rust twin of those rules, and the name rules of the object's root.
///
/// # Errors
/// The first rule the test breaks, naming the field.
pub fn validate(test: &LoadTest) -> Result<(), FieldError> {
    validate_load_test_name(name(&test.metadata.name))?;
    test.spec.validate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::load_test;

    #[test]
    fn broken_rules_name_the_field() {
        let mut t = load_test("x");
        t.spec.profiles[1].spawn_rate = 0.0;
        assert_eq!(
            validate(&t).unwrap_err().field,
            "spec.profiles[1].spawnRate"
        );
        let mut t = load_test("x");
        t.spec.target.url = Some("http://a:1".into());
        assert!(
            validate(&t)
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        let mut t = load_test("x");
        t.spec.thresholds.max_error_rate = Some(5.0);
        assert_eq!(
            validate(&t).unwrap_err().field,
            "spec.thresholds.maxErrorRate"
        );
        assert!(validate(&load_test("x")).is_ok());
    }

    /// A team's own server image cannot run here: the file is refused naming `spec.runtime`,
    /// and the same test against a URL runs.
    #[test]
    fn an_endpoint_with_a_runtime_is_refused_naming_spec_runtime() {
        let dir = std::env::temp_dir().join(format!("loadgate-runtime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tei.yaml");
        let endpoint = "apiVersion: loadgate.dev/v1alpha1\nkind: ModelEndpoint\nmetadata: {name: tei}\nspec:\n  model: bge-small\n  runtime: {image: 'ghcr.io/huggingface/text-embeddings-inference:cpu-1.8', args: [--model-id, /models/bge-small]}\n";
        let test = |target: &str| {
            format!(
                "---\napiVersion: loadgate.dev/v1alpha1\nkind: LoadTest\nmetadata: {{name: t}}\nspec:\n  target: {target}\n  profiles: [{{name: p, users: 1, spawnRate: 1, duration: 1s}}]\n"
            )
        };
        std::fs::write(
            &path,
            format!("{endpoint}{}", test("{endpointRef: {name: tei}}")),
        )
        .unwrap();
        let err = read(std::slice::from_ref(&path)).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "tei.yaml: ModelEndpoint tei: spec.runtime: loadgate local runs loadgate's \
                 model-server only; spec.runtime needs a cluster — point the LoadTest's target \
                 at a running server instead"
            ),
            "{err}"
        );
        std::fs::write(
            &path,
            format!("{endpoint}{}", test("{url: 'http://127.0.0.1:8080'}")),
        )
        .unwrap();
        let read = read(std::slice::from_ref(&path)).unwrap();
        assert!(read.endpoint.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_fields_and_missing_endpoints_name_file_and_document() {
        let dir = std::env::temp_dir().join(format!("loadgate-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "kind: LoadTest\napiVersion: loadgate.dev/v1alpha1\nmetadata: {name: t}\nspec:\n  target: {endpointRef: {name: nope}}\n  profiles: [{name: p, users: 1, spawnRate: 1, duration: 1s, userz: 3}]\n").unwrap();
        let err = read(std::slice::from_ref(&path)).unwrap_err().to_string();
        assert!(
            err.contains("bad.yaml") && err.contains("document 1") && err.contains("userz"),
            "{err}"
        );
        std::fs::write(&path, "kind: LoadTest\napiVersion: loadgate.dev/v1alpha1\nmetadata: {name: t}\nspec:\n  target: {endpointRef: {name: nope}}\n  profiles: [{name: p, users: 1, spawnRate: 1, duration: 1s}]\n").unwrap();
        let err = read(std::slice::from_ref(&path)).unwrap_err().to_string();
        assert!(err.contains("endpointRef") && err.contains("nope"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
