//! One validation: every invalid LoadTest in `test/e2e/invalid/` is refused by
//! `LoadTestSpec::validate()` (through local mode's manifest reader, as `loadgate local` and the
//! reconciler call it) naming the field its `# field:` line names. `test/e2e/run.sh` applies the
//! same files to a real apiserver and wants its `# apiserver:` text, so the CRD's schema and CEL
//! and their Rust twin refuse the same specs.

use std::path::Path;

#[test]
fn each_invalid_example_is_refused_naming_its_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test/e2e/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let field = text
            .lines()
            .find_map(|l| l.strip_prefix("# field: "))
            .unwrap_or_else(|| panic!("{} has no `# field:` line", path.display()));
        assert!(
            text.lines().any(|l| l.starts_with("# apiserver: ")),
            "{} has no `# apiserver:` line",
            path.display()
        );
        let test: loadgate_api::load_test::LoadTest = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let error = loadgate::local::manifest::validate(&test)
            .expect_err(&format!("{} was accepted", path.display()));
        assert_eq!(error.field, field, "{}: {error}", path.display());
        let read = loadgate::local::manifest::read(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(read.contains(&format!("{field}: ")), "{read}");
        seen += 1;
    }
    assert!(
        seen >= 8,
        "only {seen} invalid examples in {}",
        dir.display()
    );
}
