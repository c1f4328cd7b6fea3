//! `loadgate local` end to end: the real model-server (started as a child process, waited on as
//! the readiness probe waits), the real runner, a short two-profile LoadTest (a ramp and a spike),
//! a verdict, the ramp's capacity, reports.
//! Needs the model from scripts/fetch-model.sh, as the golden tests do; fails loudly without it.

use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadPhase, ProfilePhase, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = r#"
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: minilm}
spec:
  model: /models/all-MiniLM-L6-v2
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: NAME}
spec:
  target: {endpointRef: {name: minilm}}
  profiles:
    - {name: warm, users: 4, spawnRate: 1, duration: 8s}
    - {name: spike, users: 4, spawnRate: 4, duration: 3s}
  thresholds: {p95Ms: P95, maxErrorRate: 0.01}
  pricing: {cpuCoreHour: 0.04}
"#;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `loadgate local -f FILE` with results under `results`, models from `models` and the
/// workspace's own model-server.
fn local(file: &Path, results: &Path, models: &Path) -> std::process::Output {
    let loadgate = PathBuf::from(env!("CARGO_BIN_EXE_loadgate"));
    Command::new(&loadgate)
        .args(["local", "-f"])
        .arg(file)
        .arg("--results")
        .arg(results)
        .arg("--models-dir")
        .arg(models)
        .arg("--model-server-bin")
        .arg(loadgate.with_file_name("model-server"))
        .output()
        .unwrap()
}

fn run(name: &str, p95: &str) -> (i32, LoadTest, PathBuf) {
    run_manifest(name, &MANIFEST.replace("NAME", name).replace("P95", p95))
}

fn run_manifest(name: &str, manifest: &str) -> (i32, LoadTest, PathBuf) {
    let models = root().join("models");
    assert!(
        models.join("all-MiniLM-L6-v2").is_dir(),
        "run scripts/fetch-model.sh first"
    );
    run_manifest_with(name, manifest, &models)
}

/// [`run_manifest`] with `/models/…` read from `models`.
fn run_manifest_with(name: &str, manifest: &str, models: &Path) -> (i32, LoadTest, PathBuf) {
    let dir = std::env::temp_dir().join(format!("loadgate-local-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("test.yaml");
    std::fs::write(&file, manifest).unwrap();
    let loadgate = PathBuf::from(env!("CARGO_BIN_EXE_loadgate"));
    let server = loadgate.with_file_name("model-server");
    assert!(
        server.is_file(),
        "{} is not built (cargo test --workspace builds it)",
        server.display()
    );
    let output = local(&file, &dir.join("results"), models);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let out = dir.join("results").join(name);
    let status = std::fs::read_to_string(out.join("status.yaml"))
        .unwrap_or_else(|e| panic!("no status.yaml ({e}); stderr:\n{stderr}"));
    let test: LoadTest = serde_saphyr::from_str(&status).unwrap();
    assert!(stderr.contains("200"), "readiness went to 200:\n{stderr}");
    (output.status.code().unwrap_or(-1), test, out)
}

#[test]
fn a_short_test_passes_end_to_end_with_reports() {
    let (code, test, out) = run("smoke", "60000");
    let status = test.status.unwrap();
    assert_eq!(
        (code, status.phase, status.verdict),
        (0, Some(LoadPhase::Passed), Some(Verdict::Pass))
    );
    assert_eq!(status.profiles.len(), 2);
    for profile in &status.profiles {
        assert_eq!(profile.phase, ProfilePhase::Passed, "{}", profile.name);
        let results = profile.results.as_ref().unwrap();
        assert!(
            results.requests > 0 && results.failures == 0,
            "{}: {results:?}",
            profile.name
        );
        for file in ["_stats.csv", "_stats_history.csv", ".html", ".json"] {
            assert!(
                out.join(format!("{}{file}", profile.name)).is_file(),
                "{}{file}",
                profile.name
            );
        }
    }
    // One page for the whole test, from the same merged report the operator keeps.
    let page = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(
        page.contains("<h2>Profile warm</h2>") && page.contains("<h2>Profile spike</h2>"),
        "the test's page has both profiles"
    );
    let report: loadgate_api::report::TestReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.profiles.len(), 2);
    // The child server's cold start (spawn to its first 200 on /health), in status and report.
    let cold = status.cold_start_seconds.expect("cold start recorded");
    assert!(cold > 0.0 && cold < 60.0, "{cold}");
    // report.json is read back with serde_json's default float parsing, which may land one
    // ulp away: to 1e-12 relative.
    let in_report = report.cold_start_seconds.expect("cold start in the report");
    assert!(
        (in_report - cold).abs() <= 1e-12 * cold,
        "{in_report} vs {cold}"
    );
    // Efficiency: the child runs unlimited, so on this machine's cores; the price per 1,000
    // embeddings follows from them and the throughput.
    let efficiency = status.profiles[0].efficiency.expect("efficiency");
    let cores = status.target_resources.expect("target resources").cpu_cores;
    let per_core = efficiency.embeddings_per_core_second.unwrap();
    assert!((per_core * cores - efficiency.embeddings_per_second).abs() < 1e-6);
    let cost = efficiency.cost_per_1k_embeddings.unwrap();
    let expected = cores * 0.04 / 3600.0 / efficiency.embeddings_per_second * 1000.0;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    // The same figures, to 1e-12 relative as above.
    let in_report = report.profiles[0]
        .efficiency
        .expect("efficiency in the report");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
    let close_opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (a, b) => a == b,
    };
    assert!(
        close(
            in_report.embeddings_per_second,
            efficiency.embeddings_per_second
        ) && close_opt(
            in_report.embeddings_per_core_second,
            efficiency.embeddings_per_core_second
        ) && close_opt(
            in_report.cost_per_1k_embeddings,
            efficiency.cost_per_1k_embeddings
        ),
        "{in_report:?} vs {efficiency:?}"
    );
    assert!(
        report.profiles.iter().all(|p| !p.history.is_empty()),
        "each profile's seconds are in its report"
    );
    // Each profile has its own numbers (a runner's outcome is never reused for the next one).
    assert_ne!(status.profiles[0].results, status.profiles[1].results);
    // The ramp (+1 user/s to 4) has a curve in two steps of 2 users (the first ends on a
    // one-second window at 1 or 2) and held to its peak (5 s at 4 users, so the step has the
    // requests to be judged even on a slow machine); the spike starts its users at once, so it
    // has neither.
    let warm = &status.profiles[0];
    let users: Vec<u32> = warm.curve.iter().map(|p| p.users).collect();
    assert!(users.len() == 2 && users[1] == 4, "{:?}", warm.curve);
    let capacity = status
        .capacity
        .as_ref()
        .unwrap_or_else(|| panic!("the ramp's capacity on top: {:?}", warm.curve));
    assert_eq!(
        (capacity.profile.as_str(), capacity.max_users_within_budget),
        ("warm", 4)
    );
    assert!(capacity.limited_by.is_none(), "{capacity:?}");
    assert!(
        capacity.message.ends_with("no budget broke"),
        "{}",
        capacity.message
    );
    assert!(status.profiles[1].capacity.is_none() && status.profiles[1].curve.is_empty());
    let _ = std::fs::remove_dir_all(out.parent().unwrap().parent().unwrap());
}

#[test]
fn an_impossible_budget_fails_naming_value_and_budget() {
    let (code, test, out) = run("strict", "0.001");
    let status = test.status.unwrap();
    assert_eq!((code, status.phase), (1, Some(LoadPhase::Failed)));
    let passed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Passed")
        .unwrap();
    assert_eq!(passed.status, "False");
    assert!(
        passed.message.contains("budget 0.001") || passed.message.contains("budget 0"),
        "{}",
        passed.message
    );
    // The answer leads the message: the ramp broke its budget at its first step.
    assert!(
        passed
            .message
            .starts_with("warm: breaks at the first step already ("),
        "{}",
        passed.message
    );
    assert_eq!(status.capacity.unwrap().max_users_within_budget, 0);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
    let _ = std::fs::remove_dir_all(out.parent().unwrap().parent().unwrap());
}

#[test]
fn a_bad_manifest_exits_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("loadgate-local-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, "apiVersion: loadgate.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: t}\nspec:\n  target: {url: 'http://127.0.0.1:9'}\n  profiles: [{name: p, users: 0, spawnRate: 1, duration: 1s}]\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_loadgate"))
        .args(["local", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("spec.profiles[0].users"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run that reaches no verdict (here: the model directory is missing, so the endpoint never
/// becomes ready) exits 3, not 1: a CI gate can tell a broken setup from a slow endpoint.
#[test]
fn a_run_without_a_verdict_exits_3() {
    let dir = std::env::temp_dir().join(format!("loadgate-local-noverdict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("missing-model.yaml");
    std::fs::write(
        &file,
        MANIFEST
            .replace("NAME", "noverdict")
            .replace("P95", "60000")
            .replace("/models/all-MiniLM-L6-v2", "/models/no-such-model"),
    )
    .unwrap();
    let output = local(&file, &dir.join("results"), &dir.join("models"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A capacity search through local mode: the run spec carries the search and the budgets,
/// the runner climbs 20, 30, 40 req/s of health checks (cheap, so every step holds on any
/// machine), and the status has one curve point per step with its offered rate and a capacity
/// at the search's maximum.
#[test]
fn a_search_climbs_its_steps_into_the_curve_and_capacity() {
    // The same ModelEndpoint as MANIFEST's, then a search.
    let endpoint = MANIFEST.split("---").next().unwrap();
    let search = r#"
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: search}
spec:
  target: {endpointRef: {name: minilm}}
  tasks:
    - {name: health, weight: 1, request: {get: {path: /health}}}
  profiles:
    - name: find
      users: 20
      search: {startRps: 20, stepRps: 10, stepDuration: 2s, maxRps: 40}
  thresholds: {p95Ms: 60000, maxErrorRate: 0.01}
"#;
    let manifest = format!("{endpoint}---{search}");
    let (code, test, out) = run_manifest("search", &manifest);
    let status = test.status.unwrap();
    assert_eq!(
        (code, status.phase, status.verdict),
        (0, Some(LoadPhase::Passed), Some(Verdict::Pass)),
        "{status:?}"
    );
    let find = &status.profiles[0];
    let offered: Vec<Option<f64>> = find.curve.iter().map(|p| p.offered_rps).collect();
    assert_eq!(
        offered,
        [Some(20.0), Some(30.0), Some(40.0)],
        "{:?}",
        find.curve
    );
    let capacity = status
        .capacity
        .as_ref()
        .expect("the search's capacity on top");
    assert_eq!(capacity.profile, "find");
    assert!(
        capacity
            .message
            .ends_with("(40 req/s offered), the search's maximum: no budget broke"),
        "{}",
        capacity.message
    );
    assert!(out.join("find.html").is_file());
    let _ = std::fs::remove_dir_all(out.parent().unwrap().parent().unwrap());
}

/// A cross-encoder served by model-server (the tiny BERT reranker model-server's fidelity test
/// holds to sentence-transformers, from `target/tiny-models`, which scripts/test.sh makes) under
/// both rerank shapes the runner speaks: every answer scores every document, none fails.
#[test]
fn a_reranker_endpoint_answers_teis_and_cohere_rerank_tasks() {
    let models = std::env::var_os("LOADGATE_TINY_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/tiny-models"));
    assert!(
        models.join("bert-reranker/config.json").is_file(),
        "no tiny reranker in {}: scripts/test.sh makes it (model-server/tests/fidelity/make_tiny.py)",
        models.display()
    );
    let manifest = r#"
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: reranker}
spec:
  model: /models/bert-reranker
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: rerank}
spec:
  target: {endpointRef: {name: reranker}}
  tasks:
    - {name: tei, weight: 1, request: {rerank: {path: /rerank, api: tei, minDocuments: 4, maxDocuments: 16}}}
    - {name: cohere, weight: 1, request: {rerank: {path: /v1/rerank, api: cohere, model: tiny, minDocuments: 4, maxDocuments: 16, topN: 3}}}
  profiles:
    - {name: mix, users: 2, spawnRate: 2, duration: 4s}
  thresholds: {p95Ms: 60000, maxErrorRate: 0}
"#;
    let (code, test, out) = run_manifest_with("rerank", manifest, &models);
    let status = test.status.unwrap();
    assert_eq!(
        (code, status.phase, status.verdict),
        (0, Some(LoadPhase::Passed), Some(Verdict::Pass)),
        "{status:?}"
    );
    let results = status.profiles[0].results.as_ref().unwrap();
    assert!(results.requests > 0 && results.failures == 0, "{results:?}");
    let csv = std::fs::read_to_string(out.join("mix_stats.csv")).unwrap();
    for task in ["tei", "cohere"] {
        let row = csv
            .lines()
            .find(|line| line.split(',').nth(1) == Some(task))
            .unwrap_or_else(|| panic!("no {task} row in\n{csv}"));
        let fields: Vec<&str> = row.split(',').collect();
        let (requests, failures): (u64, u64) =
            (fields[2].parse().unwrap(), fields[3].parse().unwrap());
        assert!(requests > 0 && failures == 0, "{task}: {row}");
    }
    let _ = std::fs::remove_dir_all(out.parent().unwrap().parent().unwrap());
}

/// A task aimed at a wrong path: the status says why its requests failed (the reason, its task
/// and path, how many), the verdict names it, and the report lists it.
#[test]
fn a_wrong_path_fails_naming_why_requests_failed() {
    let endpoint = MANIFEST.split("---").next().unwrap();
    let wrong = r#"
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: wrong}
spec:
  target: {endpointRef: {name: minilm}}
  tasks:
    - {name: embed, weight: 1, request: {embed: {path: /embed, minTexts: 1, maxTexts: 1}}}
    - {name: wrong-path, weight: 1, request: {get: {path: /nope}}}
  profiles:
    - {name: steady, users: 2, spawnRate: 2, duration: 3s}
  thresholds: {p95Ms: 60000, maxErrorRate: 0.05}
"#;
    let (code, test, out) = run_manifest("wrong", &format!("{endpoint}---{wrong}"));
    let status = test.status.unwrap();
    assert_eq!((code, status.phase), (1, Some(LoadPhase::Failed)));
    let results = status.profiles[0].results.as_ref().unwrap();
    let top = &results.failure_reasons[0];
    assert_eq!(
        (
            top.task.as_str(),
            top.method.as_str(),
            top.path.as_deref(),
            top.reason.as_str()
        ),
        ("wrong-path", "GET", Some("/nope"), "HTTPError 404"),
        "{:?}",
        results.failure_reasons
    );
    assert_eq!(
        top.count,
        u64::try_from(results.failures).unwrap(),
        "every failure is the wrong path's"
    );
    let passed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Passed")
        .unwrap();
    assert!(
        passed
            .message
            .contains("; most failures: HTTPError 404 on GET /nope (wrong-path): "),
        "{}",
        passed.message
    );
    assert_eq!(
        status.summary.as_ref().unwrap().failure_reasons[0].reason,
        "HTTPError 404",
        "the test's figures name it too"
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains("<h3>Failures</h3>") && page.contains("<td>/nope</td>"),
        "the report lists the reason"
    );
    let _ = std::fs::remove_dir_all(out.parent().unwrap().parent().unwrap());
}
