//! Reading a local-mode manifest: one file of YAML documents holding one LoadTest and, when it
//! targets an `endpointRef`, the ModelEndpoint it names. Errors name the file, the document and
//! the field, as the apiserver would.

use loadgate_api::load_test::LoadTest;
use loadgate_api::model_endpoint::ModelEndpoint;
use std::path::Path;

/// The objects local mode runs.
#[derive(Debug)]
pub struct Manifest {
    /// The test.
    pub test: LoadTest,
    /// Its target, when it names a ModelEndpoint.
    pub endpoint: Option<ModelEndpoint>,
}

/// A manifest that cannot be run; the message names file, document and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// Reads and checks `path`.
///
/// # Errors
/// [`ManifestError`] when the file is unreadable, a document does not parse into its kind, or
/// the objects do not fit together.
pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError(format!("{file}: {e}")))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| ManifestError(format!("{file}: not YAML: {e}")))?;
    let mut tests = Vec::new();
    let mut endpoints = Vec::new();
    for (i, doc) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let at = |e: serde_json::Error| {
            ManifestError(format!("{file}: document {} ({kind}): {e}", i + 1))
        };
        match kind.as_str() {
            "LoadTest" => tests.push(serde_json::from_value::<LoadTest>(doc).map_err(at)?),
            "ModelEndpoint" => {
                endpoints.push(serde_json::from_value::<ModelEndpoint>(doc).map_err(at)?)
            }
            other => {
                return Err(ManifestError(format!(
                    "{file}: document {}: kind {other:?} is not LoadTest or ModelEndpoint",
                    i + 1
                )));
            }
        }
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
            Some(found.ok_or_else(|| {
                ManifestError(format!(
                    "{file}: spec.target.endpointRef names ModelEndpoint {:?}, which the file does not hold",
                    reference.name
                ))
            })?)
        }
        _ => None,
    };
    Ok(Manifest { test, endpoint })
}

fn name(n: &Option<String>) -> &str {
    n.as_deref().unwrap_or("(unnamed)")
}

/// The checks the CRD's schema and CEL rules make on the apiserver, for a file that never meets
/// one. Messages name the field.
///
/// # Errors
/// The first rule the spec breaks.
pub fn validate(test: &LoadTest) -> Result<(), String> {
    let spec = &test.spec;
    let target = &spec.target;
    if target.endpoint_ref.is_some() == target.url.is_some() {
        return Err("spec.target: set exactly one of target.endpointRef and target.url".into());
    }
    if let Some(url) = &target.url
        && !url.starts_with("http://")
    {
        return Err(format!("spec.target.url: {url:?} must start with http://"));
    }
    if spec.profiles.is_empty() {
        return Err("spec.profiles: at least one profile is needed".into());
    }
    if spec.parallelism < 1 {
        return Err("spec.parallelism: must be ≥ 1".into());
    }
    for (i, p) in spec.profiles.iter().enumerate() {
        let at = format!("spec.profiles[{i}] ({})", p.name);
        if p.users < 1 {
            return Err(format!("{at}.users: must be ≥ 1"));
        }
        if p.spawn_rate.is_nan() || p.spawn_rate <= 0.0 {
            return Err(format!("{at}.spawnRate: must be > 0"));
        }
        if p.arrival_rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err(format!("{at}.arrivalRate: must be > 0"));
        }
        if p.load_profile().run_time().is_zero() {
            return Err(format!("{at}.duration: must be above 0s"));
        }
        if spec.profiles[..i].iter().any(|q| q.name == p.name) {
            return Err(format!("{at}.name: profile names must be unique"));
        }
    }
    if !spec.tasks.is_empty() && spec.tasks.iter().all(|t| t.weight == 0) {
        return Err("spec.tasks: at least one task needs a weight > 0".into());
    }
    for (where_, t) in std::iter::once(("spec.thresholds".to_owned(), spec.thresholds)).chain(
        spec.profiles.iter().enumerate().filter_map(|(i, p)| {
            p.thresholds
                .map(|t| (format!("spec.profiles[{i}].thresholds"), t))
        }),
    ) {
        if t.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err(format!(
                "{where_}.maxErrorRate: must be between 0 and 1 (1% is 0.01)"
            ));
        }
        for (field, v) in [
            ("p95Ms", t.p95_ms),
            ("p99Ms", t.p99_ms),
            ("minRps", t.min_rps),
        ] {
            if v.is_some_and(|v| v.is_nan() || v < 0.0) {
                return Err(format!("{where_}.{field}: must be ≥ 0"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::load_test;

    #[test]
    fn broken_rules_name_the_field() {
        let mut t = load_test("x");
        t.spec.profiles[1].spawn_rate = 0.0;
        assert!(
            validate(&t)
                .unwrap_err()
                .starts_with("spec.profiles[1] (spike).spawnRate")
        );
        let mut t = load_test("x");
        t.spec.target.url = Some("http://a:1".into());
        assert!(validate(&t).unwrap_err().contains("exactly one"));
        let mut t = load_test("x");
        t.spec.thresholds.max_error_rate = Some(5.0);
        assert!(
            validate(&t)
                .unwrap_err()
                .starts_with("spec.thresholds.maxErrorRate")
        );
        assert!(validate(&load_test("x")).is_ok());
    }

    #[test]
    fn unknown_fields_and_missing_endpoints_name_file_and_document() {
        let dir = std::env::temp_dir().join(format!("loadgate-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "kind: LoadTest\napiVersion: loadgate.dev/v1alpha1\nmetadata: {name: t}\nspec:\n  target: {endpointRef: {name: nope}}\n  profiles: [{name: p, users: 1, spawnRate: 1, duration: 1s, userz: 3}]\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.yaml") && err.contains("document 1") && err.contains("userz"),
            "{err}"
        );
        std::fs::write(&path, "kind: LoadTest\napiVersion: loadgate.dev/v1alpha1\nmetadata: {name: t}\nspec:\n  target: {endpointRef: {name: nope}}\n  profiles: [{name: p, users: 1, spawnRate: 1, duration: 1s}]\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("endpointRef") && err.contains("nope"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
