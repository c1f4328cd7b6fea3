//! The results crate's layering, checked from its sources: each module imports only modules
//! listed before it in [`ORDER`] (measured types at the bottom, judgement above, rendering on
//! top), so no import cycle can form; and nothing here reaches for a runtime, the network or
//! Kubernetes.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom to top. A module may use `crate::m` only for an `m` before it here.
const ORDER: [&str; 14] = [
    // measured
    "sample",
    "codec",
    "checked",
    "entry",
    "dials",
    // judgement
    "capacity",
    "gate",
    "stats",
    "summary",
    "merge",
    "history",
    "results_frame",
    // rendering
    "report",
    "html",
];

/// Crates the results layer must not depend on.
const FORBIDDEN: [&str; 6] = [
    "tokio",
    "hyper",
    "kube",
    "k8s_openapi",
    "axum",
    "loadrunner",
];

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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

/// Every `m` in `crate::m` and `crate::{m, ..}` of a file's code.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
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

#[test]
fn every_module_is_placed_in_a_layer() {
    let mut on_disk: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = ORDER.iter().map(|m| m.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "a module of src/ is missing from ORDER (or gone)"
    );
}

#[test]
fn modules_import_only_from_the_layers_below() {
    let mut wrong = Vec::new();
    for (rank, module) in ORDER.iter().enumerate() {
        let imports = crate_imports(&code(&src().join(format!("{module}.rs"))));
        for import in imports {
            match ORDER.iter().position(|m| *m == import) {
                Some(other) if other < rank => {}
                Some(_) => wrong.push(format!("{module} imports {import}, which is not below it")),
                None => wrong.push(format!(
                    "{module} imports crate::{import}, not a module here"
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_runtime_network_or_kubernetes() {
    let mut wrong = Vec::new();
    for module in ORDER {
        let code = code(&src().join(format!("{module}.rs")));
        for name in FORBIDDEN {
            if code.contains(&format!("{name}::")) {
                wrong.push(format!("{module} uses {name}"));
            }
        }
    }
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    for name in FORBIDDEN {
        let dep = name.replace('_', "-");
        if manifest
            .lines()
            .any(|l| l.starts_with(&format!("{dep}.")) || l.starts_with(&format!("{dep} =")))
        {
            wrong.push(format!("Cargo.toml depends on {dep}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_import_scan_sees_single_and_grouped_imports() {
    let seen = crate_imports(
        "use crate::codec;\nuse crate::{gate, stats::Stats};\nx = crate::entry::Entry::new();",
    );
    let expected: BTreeSet<String> = ["codec", "gate", "stats", "entry"].map(String::from).into();
    assert_eq!(seen, expected);
}
