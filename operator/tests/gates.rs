//! `loadgate local` end to end on the gates beyond budgets, each against a loopback server that
//! shows it by construction: a server slow only in its first seconds (warm-up left out), one
//! always over budget (abort on budget, the next profile skipped), a second run against a
//! slower server than the first (a baseline regression naming both runs), and an embedding server
//! that bends its vectors only when more than two requests are in flight (quality under load;
//! embeddings per second).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use loadgate_api::load_test::LoadTest;
use loadgate_api::load_test_status::{LoadPhase, ProfilePhase};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How the server answers `GET /work`: `cold_ms` for `cold_for` after its first request, then
/// `warm_ms`.
#[derive(Clone, Copy)]
struct Behaviour {
    cold_for: Duration,
    cold_ms: u64,
    warm_ms: u64,
}

async fn serve(behaviour: Behaviour) -> SocketAddr {
    let first: OnceLock<Instant> = OnceLock::new();
    serve_latency(move || {
        let cold = first.get_or_init(Instant::now).elapsed() < behaviour.cold_for;
        if cold {
            behaviour.cold_ms
        } else {
            behaviour.warm_ms
        }
    })
    .await
}

/// A server whose `/work` takes `latency` ms, read at each request.
async fn serve_with_latency(latency: Arc<std::sync::atomic::AtomicU64>) -> SocketAddr {
    serve_latency(move || latency.load(std::sync::atomic::Ordering::SeqCst)).await
}

/// A server whose `/work` takes as many ms as `ms()` says at each request.
async fn serve_latency(ms: impl Fn() -> u64 + Send + Sync + 'static) -> SocketAddr {
    let ms = Arc::new(ms);
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/work",
            get(move || {
                let ms = ms();
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "done"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn results_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgate-gates-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A LoadTest `name` against `addr`: one GET task, `profiles` and `extra` spec lines as YAML.
fn manifest(name: &str, addr: SocketAddr, profiles: &str, extra: &str) -> String {
    format!(
        "apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {{name: {name}}}
spec:
  target: {{url: \"http://{addr}\"}}
  tasks: [{{name: work, weight: 1, request: {{get: {{path: /work}}}}}}]
  profiles:
{profiles}
{extra}
"
    )
}

/// `loadgate local` on `manifest` with results under `dir`: its exit code, the status it wrote,
/// its standard error, and how long it took.
async fn local(dir: &Path, manifest: String) -> (i32, LoadTest, String, Duration) {
    let file = dir.join(format!("test-{}.yaml", std::process::id()));
    std::fs::write(&file, &manifest).unwrap();
    let results = dir.join("results");
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loadgate"))
            .args(["local", "-f"])
            .arg(&file)
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let name = manifest
        .lines()
        .find_map(|l| l.strip_prefix("metadata: {name: "))
        .and_then(|l| l.strip_suffix('}'))
        .unwrap();
    let status = std::fs::read_to_string(dir.join("results").join(name).join("status.yaml"))
        .unwrap_or_else(|e| panic!("no status.yaml ({e}); stderr:\n{stderr}"));
    let test: LoadTest = serde_saphyr::from_str(&status).unwrap();
    (output.status.code().unwrap_or(-1), test, stderr, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_up_leaves_a_cold_servers_first_seconds_out() {
    let addr = serve(Behaviour {
        cold_for: Duration::from_millis(1500),
        cold_ms: 400,
        warm_ms: 10,
    })
    .await;
    let dir = results_dir("warmup");
    let (code, test, stderr, _) = local(
        &dir,
        manifest(
            "warm",
            addr,
            "    - {name: steady, users: 2, spawnRate: 2, duration: 5s, warmup: 2s}",
            "  thresholds: {p99Ms: 200}",
        ),
    )
    .await;
    let status = test.status.unwrap();
    assert_eq!(
        (code, status.phase),
        (0, Some(LoadPhase::Passed)),
        "{stderr}"
    );
    let figures = status.profiles[0].results.as_ref().unwrap();
    assert!(
        figures.max_ms < 200.0,
        "no cold answer is counted: {figures:?}"
    );
    // The cold seconds are in the history CSV, marked in Locust's Type column.
    let history =
        std::fs::read_to_string(dir.join("results/warm/steady_stats_history.csv")).unwrap();
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        rows.iter().filter(|r| r[2] == "warm-up").count(),
        2,
        "{history}"
    );
    let cold_p95: f64 = rows[0][11].parse().unwrap();
    assert!(cold_p95 >= 400.0, "the first second was cold: {history}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_over_budget_is_aborted_and_the_next_one_skipped() {
    let addr = serve(Behaviour {
        cold_for: Duration::ZERO,
        cold_ms: 0,
        warm_ms: 60,
    })
    .await;
    let dir = results_dir("abort");
    let (code, test, stderr, took) = local(
        &dir,
        manifest(
            "abort",
            addr,
            "    - {name: first, users: 2, spawnRate: 2, duration: 30s}
    - {name: second, users: 2, spawnRate: 2, duration: 30s}",
            "  thresholds: {p95Ms: 20, abortOnFail: true, abortAfter: 2}",
        ),
    )
    .await;
    let status = test.status.unwrap();
    assert_eq!(
        (code, status.phase),
        (1, Some(LoadPhase::Failed)),
        "{stderr}"
    );
    assert!(
        took < Duration::from_secs(20),
        "{took:?} for 60 s of profiles"
    );
    assert_eq!(
        (status.profiles[0].phase, status.profiles[1].phase),
        (ProfilePhase::Failed, ProfilePhase::Skipped)
    );
    let aborted = status.aborted.unwrap();
    assert_eq!(aborted.skipped, ["second"]);
    assert!(aborted.saved_seconds > 50.0, "{aborted:?}");
    let passed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Passed")
        .unwrap();
    assert_eq!(passed.reason, "AbortedOnBudget");
    assert!(
        passed
            .message
            .contains("2 one-second windows in a row over budget"),
        "{}",
        passed.message
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_second_run_fails_against_the_first_as_its_baseline() {
    let dir = results_dir("baseline");
    let run = |addr| {
        manifest(
            "reg",
            addr,
            "    - {name: steady, users: 2, spawnRate: 2, duration: 3s}",
            "  thresholds: {p95Ms: 2000}
  baseline: {maxP95IncreasePercent: 50, maxRpsDecreasePercent: 30}",
        )
    };
    // One endpoint, one URL, as a rollout keeps it: 20 ms per request, then 80 ms.
    let latency = Arc::new(std::sync::atomic::AtomicU64::new(20));
    let addr = serve_with_latency(latency.clone()).await;
    let (code, first, stderr, _) = local(&dir, run(addr)).await;
    let first = first.status.unwrap();
    assert_eq!(code, 0, "{stderr}");
    let baseline = first.baseline.as_ref().unwrap();
    assert!(
        baseline.record.is_none() && baseline.message.contains("so this check passes"),
        "{baseline:?}"
    );
    latency.store(80, std::sync::atomic::Ordering::SeqCst);
    let (code, second, stderr, _) = local(&dir, run(addr)).await;
    let second = second.status.unwrap();
    assert_eq!(
        (code, second.phase),
        (1, Some(LoadPhase::Failed)),
        "{stderr}"
    );
    let first_run = first.run.unwrap();
    let record = second.baseline.as_ref().unwrap().record.as_ref().unwrap();
    assert_eq!(record.run, first_run, "compared with the first run");
    assert_eq!(
        second.previous.as_ref().map(|p| p.run.as_str()),
        Some(first_run.as_str())
    );
    let messages: Vec<&str> = second
        .violations
        .iter()
        .map(|v| v.message.as_str())
        .collect();
    let p95 = messages
        .iter()
        .find(|m| m.starts_with("p95 "))
        .unwrap_or_else(|| panic!("{messages:?}"));
    assert!(
        p95.contains("over the baseline's") && p95.contains(&format!("(run {first_run})")),
        "{p95}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("throughput ") && m.contains("under the baseline's")),
        "{messages:?}"
    );
    // A third run as slow compares with the first still: a failed run is never a baseline.
    let (_, third, _, _) = local(&dir, run(addr)).await;
    let third = third.status.unwrap();
    assert_eq!(
        third.baseline.unwrap().record.unwrap().run,
        first_run,
        "the latest passed run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fake embedding server: `POST /embed {"texts": [...]}` answers one unit vector per text,
/// fixed by the text, after 20 ms; with more than two requests in flight it bends each vector
/// (cosine ≈ 0.96 to the right one), as a batching bug would.
async fn serve_bending() -> SocketAddr {
    fn vector(text: &str, bent: bool) -> Vec<f32> {
        let mut v: Vec<f32> = (0..8u32)
            .map(|i| {
                let h = text.bytes().fold(u32::from(b'a') + i, |h, b| {
                    h.wrapping_mul(31).wrapping_add(u32::from(b))
                });
                (h % 1000) as f32 / 1000.0 + 0.01
            })
            .collect();
        if bent {
            v[0] += 0.3;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/embed",
            axum::routing::post(
                |State(in_flight): State<Arc<AtomicUsize>>, body: axum::body::Bytes| async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let busy = now > 2 || in_flight.load(Ordering::SeqCst) > 2;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let embeddings: Vec<Vec<f32>> = request["texts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| vector(t.as_str().unwrap(), busy))
                        .collect();
                    axum::Json(serde_json::json!({"embeddings": embeddings, "model": "fake", "dimensions": 8}))
                },
            ),
        )
        .with_state(in_flight);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_bent_only_under_concurrency_fail_the_quality_check() {
    let addr = serve_bending().await;
    let dir = results_dir("quality");
    let test = |users: u32| {
        format!(
            "apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {{name: quality}}
spec:
  target: {{url: \"http://{addr}\"}}
  tasks: [{{name: embed, weight: 1, request: {{embed: {{path: /embed, minTexts: 1, maxTexts: 4}}}}}}]
  profiles:
    - {{name: load, users: {users}, spawnRate: {users}, duration: 3s}}
  quality: {{sampleRate: 0.5}}
"
        )
    };
    // One user at a time: never busy, every sampled answer matches its reference vector.
    let (code, quiet, stderr, _) = local(&dir, test(1)).await;
    let quiet = quiet.status.unwrap();
    assert_eq!(code, 0, "{stderr}");
    let profile = &quiet.profiles[0];
    let quality = profile.quality.unwrap();
    assert!(quality.sampled > 10 && quality.bad == 0, "{quality:?}");
    assert!(quality.worst_cosine.unwrap() > 0.99999, "{quality:?}");
    // Embeddings per second: the texts of the successful requests (1 to 4 per request).
    let efficiency = profile.efficiency.unwrap();
    let rps = profile.results.as_ref().unwrap().rps;
    assert!(
        efficiency.embeddings_per_second >= rps && efficiency.embeddings_per_second <= 4.0 * rps,
        "{efficiency:?} at {rps} req/s"
    );
    assert_eq!(
        efficiency.embeddings_per_core_second, None,
        "a URL target has no known cores"
    );
    // Eight users: answers bent under concurrency fail the profile, counted and named.
    let (code, busy, stderr, _) = local(&dir, test(8)).await;
    let busy = busy.status.unwrap();
    assert_eq!((code, busy.phase), (1, Some(LoadPhase::Failed)), "{stderr}");
    let quality = busy.profiles[0].quality.unwrap();
    assert!(
        quality.bad > 0 && quality.worst_cosine.unwrap() < 0.99,
        "{quality:?}"
    );
    let violation = &busy.profiles[0].violations[0];
    assert_eq!(violation.metric, "quality");
    assert!(
        violation.message.starts_with(&format!(
            "{} of {} sampled responses below cosine 0.9999 (worst 0.9",
            quality.bad, quality.sampled
        )),
        "{}",
        violation.message
    );
    let _ = std::fs::remove_dir_all(&dir);
}
