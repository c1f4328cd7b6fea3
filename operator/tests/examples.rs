//! Every manifest under `examples/` parses into the CRD types (unknown fields are errors) and
//! keeps every rule of `validate()`, and a file with Secrets or ConfigMaps reads as local mode
//! reads it (every one its test references is in it), so the YAML the README and the
//! operator's users apply cannot drift from the code.

use loadgate_api::load_test::LoadTest;
use loadgate_api::model_endpoint::ModelEndpoint;
use std::path::Path;

#[test]
fn every_example_parses_into_the_crd_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let result = match kind.as_str() {
                "ModelEndpoint" => serde_json::from_value::<ModelEndpoint>(doc).map(|ep| {
                    ep.spec
                        .validate()
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }),
                "LoadTest" => serde_json::from_value::<LoadTest>(doc).map(|lt| {
                    loadgate::local::manifest::validate(&lt)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }),
                "Secret" => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::Secret>(doc).map(drop)
                }
                "ConfigMap" => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(doc).map(drop)
                }
                other => panic!("{}: unexpected kind {other:?}", path.display()),
            };
            result.unwrap_or_else(|e| panic!("{} ({kind}): {e}", path.display()));
            seen += 1;
        }
        // A file that brings its own Secrets or ConfigMaps holds everything its test references.
        if text.contains("\nkind: Secret") || text.contains("\nkind: ConfigMap") {
            loadgate::local::manifest::read(std::slice::from_ref(&path))
                .unwrap_or_else(|e| panic!("local mode cannot read {}: {e}", path.display()));
        }
    }
    assert!(seen >= 4, "found only {seen} objects under examples/");
}

#[test]
fn a_misspelt_field_is_rejected_by_name() {
    let text = "apiVersion: loadgate.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: x}\nspec:\n  target: {url: 'http://a:1'}\n  profiles: [{name: p, users: 1, spawnRate: 1, duration: 1s}]\n  treshold: {p95Ms: 5}\n";
    let err = serde_saphyr::from_str::<LoadTest>(text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("treshold"), "{err}");
}
