//! The workspace's layering, checked from its sources:
//! - the contract crate (`operator/api`) and the results crate (`loadgate-results`) are each a
//!   stack of layers: a module imports only modules listed below it (spec and measured types at
//!   the bottom, judgement above, rendering on top), so no import cycle can form;
//! - the results crate reaches for no runtime, network or Kubernetes;
//! - the operator's controllers and pure status layer judge with the results crate and never
//!   reach into the load engine; only local mode (which runs the engine in process) may.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// loadgate-results, bottom to top.
const RESULTS: &[&str] = &[
    // measured
    "sample",
    "codec",
    "checked",
    "llm",
    "entry",
    "dials",
    // judgement
    "capacity",
    "gate",
    "failures",
    "stats",
    "progress",
    "summary",
    "merge",
    "history",
    "results_frame",
    // rendering
    "report",
    "html",
];

/// loadgate-api, bottom to top.
const API: &[&str] = &[
    // shared vocabulary
    "duration",
    "conditions",
    "efficiency",
    "embed",
    // the spec
    "llm_request",
    "load",
    "rules",
    "target",
    "run_spec",
    // the outcome
    "stats",
    "capacity",
    "failures",
    "progress",
    "summary",
    "results",
    "report",
    // the custom resources, their checks and schemas
    "model_endpoint",
    "load_test_status",
    "load_test",
    "validate",
    "crd",
];

/// Crates the results layer must not depend on.
const NOT_IN_RESULTS: &[&str] = &[
    "tokio",
    "hyper",
    "kube",
    "k8s_openapi",
    "axum",
    "loadrunner",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The code of a file without comments (doc links to other modules are not imports).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `m` in `crate::m` and `crate::{m, ..}` of some code.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(inner.split(',').map(ident).filter(|m| !m.is_empty()));
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// What breaks `order` in the crate whose sources are `src`: a module missing from it, or an
/// import of a module not below the importer.
fn layering_faults(src: &Path, order: &[&str]) -> Vec<String> {
    let mut faults = Vec::new();
    let mut on_disk: Vec<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = order.iter().map(|m| m.to_string()).collect();
    listed.sort();
    if on_disk != listed {
        faults.push(format!("modules {on_disk:?} are not the layers {listed:?}"));
    }
    for (rank, module) in order.iter().enumerate() {
        for import in crate_imports(&code(&src.join(format!("{module}.rs")))) {
            match order.iter().position(|m| *m == import) {
                Some(other) if other < rank => {}
                Some(_) => faults.push(format!("{module} imports {import}, which is not below it")),
                None => faults.push(format!("{module} imports crate::{import}, not a module")),
            }
        }
    }
    faults
}

#[test]
fn the_results_crate_is_layered() {
    let faults = layering_faults(&workspace().join("loadgate-results/src"), RESULTS);
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_contract_crate_is_layered() {
    let faults = layering_faults(&workspace().join("operator/api/src"), API);
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_results_crate_has_no_runtime_network_or_kubernetes() {
    let dir = workspace().join("loadgate-results");
    let mut wrong = Vec::new();
    for file in sources(&dir.join("src")) {
        let code = code(&file);
        for name in NOT_IN_RESULTS {
            if code.contains(&format!("{name}::")) {
                wrong.push(format!("{} uses {name}", file.display()));
            }
        }
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    for name in NOT_IN_RESULTS {
        let dep = name.replace('_', "-");
        let declared =
            |l: &str| l.starts_with(&format!("{dep}.")) || l.starts_with(&format!("{dep} ="));
        if manifest.lines().any(declared) {
            wrong.push(format!("its Cargo.toml depends on {dep}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn status_and_controllers_import_nothing_from_the_engine() {
    let src = workspace().join("operator/src");
    let mut wrong = Vec::new();
    for dir in ["status", "controllers"] {
        for file in sources(&src.join(dir)) {
            for (n, line) in code(&file).lines().enumerate() {
                if line.contains("loadrunner::") {
                    wrong.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the engine is used outside local/:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_import_scan_sees_single_and_grouped_imports_and_skips_comments() {
    let seen = crate_imports(
        "use crate::codec;\nuse crate::{gate, stats::Stats};\nx = crate::entry::Entry::new();",
    );
    let expected: BTreeSet<String> = ["codec", "gate", "stats", "entry"].map(String::from).into();
    assert_eq!(seen, expected);
    let dir = std::env::temp_dir().join(format!("loadgate-architecture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("low.rs"),
        "use crate::high; // and [`crate::nothing`]\n",
    )
    .unwrap();
    std::fs::write(dir.join("high.rs"), "use crate::low;\n").unwrap();
    let faults = layering_faults(&dir, &["low", "high"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        faults,
        vec!["low imports high, which is not below it".to_owned()]
    );
}
