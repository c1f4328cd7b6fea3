//! LLM tasks against an in-test streaming server whose timings are known by construction: it
//! sends the first token `ttft` ms after a request arrives, then one every `itl` ms, `tokens` in
//! all, then `usage` and `[DONE]`, and writes down when it sent each chunk. The runner's TTFT and
//! ITL percentiles must match the server's own record within 2% (or 0.5 ms); broken, failed and
//! empty streams must be failures with their reason; a server of a few slots must break a TTFT
//! budget where its slots run out.

mod common;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::serve::ListenerExt;
use common::plan;
use loadgate_api::llm_request::LlmRequest;
use loadgate_api::load::{Task, TaskRequest, Thresholds};
use loadrunner::engine;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server sent, as it sent it: each answer's TTFT and the gaps between its chunks.
#[derive(Default)]
struct Record {
    ttft: Vec<Duration>,
    gaps: Vec<Duration>,
}

struct Server {
    record: Mutex<Record>,
    /// `/slots/…`: at most this many answers stream at once; the rest wait for a slot.
    slots: Arc<tokio::sync::Semaphore>,
}

/// Slots of `/slots/…`.
const SLOTS: usize = 2;

fn chunk(text: &str) -> String {
    let c = serde_json::json!({"choices":[{"index":0,"delta":{"content":text}}]});
    format!("data: {c}\n\n")
}

/// How an answer ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// `usage`, then `[DONE]`.
    Done,
    /// The connection's body just ends, mid-answer.
    Broken,
    /// An error event.
    Error,
}

/// The streamed answer: first chunk `ttft` after `arrived`, then one every `itl`.
fn answer(
    server: Arc<Server>,
    arrived: Instant,
    ttft: u64,
    itl: u64,
    tokens: u64,
    ending: Ending,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    tokio::spawn(async move {
        let _slot = slot;
        let first = arrived.max(Instant::now()) + Duration::from_millis(ttft);
        tokio::time::sleep_until(first.into()).await;
        let mut sent = Vec::with_capacity(tokens as usize);
        for i in 0..tokens {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(itl)).await;
            }
            if ending == Ending::Broken && i == tokens / 2 {
                return;
            }
            sent.push(Instant::now());
            if tx.send(Ok(chunk(&format!(" t{i}")))).await.is_err() {
                return;
            }
        }
        let end = match ending {
            Ending::Done => {
                let usage = serde_json::json!({"choices":[],"usage":{"prompt_tokens":17,"completion_tokens":tokens}});
                format!("data: {usage}\n\ndata: [DONE]\n\n")
            }
            Ending::Error => "data: {\"error\":{\"message\":\"out of KV cache\"}}\n\n".to_owned(),
            Ending::Broken => unreachable!(),
        };
        let _ = tx.send(Ok(end)).await;
        if ending == Ending::Done && !sent.is_empty() {
            let mut record = server.record.lock().unwrap();
            record.ttft.push(sent[0] - arrived);
            record.gaps.extend(sent.windows(2).map(|w| w[1] - w[0]));
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

async fn start_server() -> (SocketAddr, Arc<Server>) {
    let server = Arc::new(Server {
        record: Mutex::new(Record::default()),
        slots: Arc::new(tokio::sync::Semaphore::new(SLOTS)),
    });
    let stream = |ending: Ending, limited: bool| {
        move |State(s): State<Arc<Server>>, Path((ttft, itl, tokens)): Path<(u64, u64, u64)>| async move {
            // With slots, the first token comes `ttft` after a slot was free.
            let slot = if limited {
                Some(s.slots.clone().acquire_owned().await.unwrap())
            } else {
                None
            };
            let body = answer(s.clone(), Instant::now(), ttft, itl, tokens, ending, slot);
            ([("content-type", "text/event-stream")], body)
        }
    };
    let app = Router::new()
        .route(
            "/ok/{ttft}/{itl}/{tokens}/v1/chat/completions",
            post(stream(Ending::Done, false)),
        )
        .route(
            "/broken/{ttft}/{itl}/{tokens}/v1/chat/completions",
            post(stream(Ending::Broken, false)),
        )
        .route(
            "/error/{ttft}/{itl}/{tokens}/v1/chat/completions",
            post(stream(Ending::Error, false)),
        )
        .route(
            "/slots/{ttft}/{itl}/{tokens}/v1/chat/completions",
            post(stream(Ending::Done, true)),
        )
        .route(
            "/empty/v1/chat/completions",
            post(|| async { ([("content-type", "text/event-stream")], "data: [DONE]\n\n") }),
        )
        .route(
            "/whole/v1/chat/completions",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                axum::Json(serde_json::json!({
                    "choices":[{"message":{"role":"assistant","content":"a whole answer"}}],
                    "usage":{"prompt_tokens":9,"completion_tokens":3}
                }))
            }),
        )
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, server)
}

fn chat(name: &str, weight: u32, path: &str, stream: bool) -> Task {
    let mut request = LlmRequest::streaming(64);
    request.path = Some(path.to_owned());
    request.stream = stream;
    request.model = Some("known-timings".into());
    Task {
        name: name.into(),
        weight,
        request: TaskRequest::Chat(request),
        follow_redirects: false,
        max_response_bytes: None,
    }
}

/// The value at quantile `q` of `values`, ms (nearest rank, as HDR reads it).
fn quantile_ms(values: &[Duration], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn close(measured: f64, truth: f64) -> bool {
    (measured - truth).abs() <= (truth * 0.02).max(0.5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_itl_and_tokens_agree_with_a_server_of_known_timings() {
    let (addr, server) = start_server().await;
    let tasks = vec![chat("chat", 1, "/ok/150/10/40/v1/chat/completions", true)];
    let outcome = engine::run(
        plan(addr, tasks, 4, 100.0, 3),
        std::future::pending(),
        |_, _| {},
    )
    .await;
    let llm = outcome.stats.total.llm.as_deref().expect("LLM figures");
    let summary = llm.summary(outcome.elapsed.as_secs_f64());
    let record = server.record.lock().unwrap();
    assert_eq!(
        outcome.stats.total.failures, 0,
        "{:?}",
        outcome.stats.failures
    );
    assert!(summary.answered >= 8, "{summary:?}");
    assert_eq!(
        summary.answered,
        record.ttft.len() as u64,
        "each answer counted once"
    );
    // The server's own record is the construction's truth: 150 ms and 10 ms, plus its timers'
    // slack (checked loosely here), and the runner must read what the server sent.
    let (ttft50, itl50) = (
        quantile_ms(&record.ttft, 0.5),
        quantile_ms(&record.gaps, 0.5),
    );
    assert!((150.0..160.0).contains(&ttft50) && (10.0..12.0).contains(&itl50));
    for (what, q, measured, truth) in [
        ("TTFT p50", 0.5, summary.ttft.p50_ms, &record.ttft),
        ("TTFT p95", 0.95, summary.ttft.p95_ms, &record.ttft),
        ("ITL p50", 0.5, summary.itl.p50_ms, &record.gaps),
        ("ITL p95", 0.95, summary.itl.p95_ms, &record.gaps),
    ] {
        let truth = quantile_ms(truth, q);
        assert!(
            close(measured, truth),
            "{what}: {measured} ms, server {truth} ms"
        );
    }
    assert_eq!(summary.output_tokens, 40 * summary.answered);
    assert_eq!(summary.input_tokens, 17 * summary.answered);
    assert_eq!(summary.tokens_from_usage, summary.answered);
    assert_eq!(summary.itl.count, 39 * summary.answered);
    // TPOT = (latency − TTFT) / 39 ≈ the mean gap.
    assert!((10.0..12.5).contains(&summary.tpot.p50_ms), "{summary:?}");
    assert_eq!(
        summary.good, summary.answered,
        "no SLO set: every answer is good"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_failed_and_empty_streams_are_failures_with_their_reason() {
    let (addr, _) = start_server().await;
    let tasks = vec![
        chat("broken", 1, "/broken/5/2/10/v1/chat/completions", true),
        chat("error", 1, "/error/5/2/4/v1/chat/completions", true),
        chat("empty", 1, "/empty/v1/chat/completions", true),
        chat("whole", 1, "/whole/v1/chat/completions", false),
    ];
    let outcome = engine::run(
        plan(addr, tasks, 2, 100.0, 2),
        std::future::pending(),
        |_, _| {},
    )
    .await;
    let stats = &outcome.stats;
    let reasons: Vec<(&str, &str)> = stats
        .failures
        .keys()
        .map(|(_, task, reason)| (task.as_str(), reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "broken",
                "bad response: the stream ended before [DONE] after 5 content chunks"
            ),
            ("empty", "bad response: empty answer (no content token)"),
            ("error", "stream error: out of KV cache"),
        ]
    );
    for task in 0..3 {
        assert_eq!(stats.tasks[task].failures, stats.tasks[task].requests);
        assert!(stats.tasks[task].requests > 0);
    }
    // The whole answer: TTFT is its latency, no gaps; its tokens from usage.
    let whole = stats.tasks[3].llm.as_deref().unwrap().summary(1.0);
    assert_eq!(stats.tasks[3].failures, 0);
    assert_eq!(
        (whole.streamed, whole.itl.count, whole.tpot.count),
        (0, 0, 0)
    );
    assert_eq!(whole.output_tokens, 3 * whole.answered);
    assert!((30.0..60.0).contains(&whole.ttft.p50_ms), "{whole:?}");
    let total = stats.total.llm.as_deref().unwrap();
    assert_eq!(
        total.requests, stats.total.requests,
        "every task is an LLM one"
    );
    assert_eq!(total.answered, whole.answered);
}

/// A server of 2 slots, each answer 100 ms to its first token and 9 × 5 ms after (145 ms, so
/// 13.8 answers a second): with no think time, 1–2 users never wait (TTFT ~100 ms), while u ≥ 3
/// users share the slots in cycles of u × 145 / 2 ms, waiting 72 ms on average at 3 users (so
/// a TTFT p95 of at least ~172 ms, 245 ms when the waits fall unevenly) and more beyond. A ramp
/// to 6 users against a TTFT budget of 150 ms (50 ms above the unqueued TTFT, for CI's busy
/// cores) holds at 2 users at most and breaks at 3 or more, limited by `ttftP95Ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_breaks_the_ttft_budget_where_the_servers_slots_run_out() {
    let (addr, _) = start_server().await;
    let budget = Thresholds {
        ttft_p95_ms: Some(150.0),
        ..Thresholds::default()
    };
    let tasks = vec![chat("chat", 1, "/slots/100/5/10/v1/chat/completions", true)];
    let ramp = plan(addr, tasks, 6, 0.5, 12);
    let outcome = engine::run(ramp.clone(), std::future::pending(), |_, _| {}).await;
    let summary = loadgate_results::summary::summarize(&ramp.profile, &outcome, &budget, &[]);
    let capacity = summary
        .capacity
        .clone()
        .expect("a ramp with a TTFT budget has a capacity");
    assert_eq!(
        capacity.limited_by.as_deref(),
        Some("ttftP95Ms"),
        "{summary:?}"
    );
    assert!(
        (1..=2).contains(&capacity.max_users_within_budget),
        "{capacity:?}"
    );
    let broke = capacity.broke_at.clone().unwrap();
    assert!((3..=5).contains(&broke.users), "{broke:?}");
    assert!(broke.measured > 150.0);
    let sentence = capacity.sentence(&budget);
    assert!(
        sentence.starts_with("holds TTFT p95 < 150 ms up to ")
            && sentence.contains("output tokens/s")
            && sentence.contains("TTFT p95"),
        "{sentence}"
    );
    // The whole run broke the budget too, and says so in its words.
    let messages: Vec<&str> = summary
        .violations
        .iter()
        .map(|v| v.message.as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("TTFT p95 ") && m.ends_with("> budget 150 ms in profile test")),
        "{messages:?}"
    );
}

/// `abortOnFail` watches TTFT too: a server 300 ms to its first token against a 100 ms budget
/// stops the profile after two windows over it, long before its 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_fail_stops_a_profile_whose_ttft_stays_over_budget() {
    let (addr, _) = start_server().await;
    let budget = Thresholds {
        ttft_p95_ms: Some(100.0),
        abort_on_fail: Some(true),
        abort_after: Some(2),
        ..Thresholds::default()
    };
    let tasks = vec![chat("chat", 1, "/ok/300/5/4/v1/chat/completions", true)];
    let mut run = plan(addr, tasks, 4, 100.0, 20);
    run.abort_budgets = Some(budget);
    let outcome = engine::run(run, std::future::pending(), |_, _| {}).await;
    let (why, after) = outcome
        .stats
        .aborted
        .clone()
        .expect("the profile was stopped");
    assert!(
        why.contains("TTFT p95") && why.contains("> budget 100 ms"),
        "{why}"
    );
    assert!(after < Duration::from_secs(8), "stopped after {after:?}");
}
