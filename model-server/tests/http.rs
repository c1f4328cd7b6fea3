//! HTTP behaviour with a fake backend: every status code, error bodies, order preservation,
//! batching, 429 under a full queue, request timeouts, readiness and graceful shutdown.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use model_server::http::{AppState, app};
use model_server::infer::{EmbedOptions, Limits, l2_normalize};
use model_server::metrics::Metrics;
use model_server::testing::{
    FakeBackend, fake_model, ready_state, test_http_config, test_limits, tiny_tokenizer,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().unwrap().contains("json"))
    {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// The normalised fake vector of `text` as the tiny tokenizer tokenizes it.
fn expected(text: &str) -> Vec<f32> {
    let ids = tiny_tokenizer(16).encode(0, text, true).unwrap();
    let mut v = FakeBackend::vector_for(&ids);
    l2_normalize(&mut v);
    v
}

fn as_vectors(value: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(value.clone()).unwrap()
}

fn assert_error(answer: &Answer, status: StatusCode, error_type: &str, mentions: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["error_type"], error_type, "{:?}", answer.body);
    let message = answer.body["error"].as_str().unwrap();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

fn ready_app(backend: FakeBackend, limits: Limits) -> Router {
    let (state, _tasks) = ready_state(Arc::new(backend), limits);
    app(state)
}

#[tokio::test]
async fn not_ready_answers_503_then_ready_answers_200() {
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(test_http_config(test_limits()), metrics.clone());
    let router = app(state.clone());

    let health = send(&router, get("/health")).await;
    assert_eq!(
        (health.status, health.body.clone()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready"})
        )
    );
    let embed = send(&router, post("/embed", r#"{"texts":["the cat"]}"#)).await;
    assert_error(
        &embed,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "/health",
    );
    assert_eq!(embed.headers[header::RETRY_AFTER], "1");
    assert_eq!(send(&router, get("/info")).await.body["ready"], false);

    let (model, _tasks) = fake_model(Arc::new(FakeBackend::default()), test_limits(), metrics);
    state.set_ready(model);
    let health = send(&router, get("/health")).await;
    assert_eq!(
        (health.status, health.body),
        (StatusCode::OK, json!({"status": "ready"}))
    );
    let info = send(&router, get("/info")).await.body;
    assert_eq!(
        (
            info["ready"].clone(),
            info["dimensions"].clone(),
            info["max_input_length"].clone()
        ),
        (json!(true), json!(8), json!(16))
    );
    assert_eq!(info["max_client_batch_size"], 16);
}

#[tokio::test]
async fn embed_answers_every_shape_in_input_order() {
    let router = ready_app(FakeBackend::default(), test_limits());
    let texts = [
        "the cat sat",
        "a dog",
        "load the mat on the cat",
        "",
        "unknown words here",
    ];

    let tutorial = send(
        &router,
        post("/embed", &json!({"texts": texts}).to_string()),
    )
    .await;
    assert_eq!(tutorial.status, StatusCode::OK);
    assert_eq!(tutorial.body["model"], "fake-model");
    assert_eq!(tutorial.body["dimensions"], 8);
    let want: Vec<Vec<f32>> = texts.iter().map(|t| expected(t)).collect();
    assert_eq!(as_vectors(&tutorial.body["embeddings"]), want);

    let tei = send(
        &router,
        post("/embed", &json!({"inputs": texts}).to_string()),
    )
    .await;
    assert_eq!(
        as_vectors(&tei.body),
        want,
        "TEI shape answers a bare array"
    );
    let one = send(&router, post("/embed", r#"{"inputs":"a dog"}"#)).await;
    assert_eq!(as_vectors(&one.body), vec![expected("a dog")]);

    let raw = send(
        &router,
        post("/embed", r#"{"inputs":["a dog"],"normalize":false}"#),
    )
    .await;
    let ids = tiny_tokenizer(16).encode(0, "a dog", true).unwrap();
    assert_eq!(as_vectors(&raw.body), vec![FakeBackend::vector_for(&ids)]);
}

#[tokio::test]
async fn openai_endpoint_answers_float_and_base64() {
    let router = ready_app(FakeBackend::default(), test_limits());
    let float = send(
        &router,
        post(
            "/v1/embeddings",
            r#"{"input":["the cat","a dog"],"model":"x"}"#,
        ),
    )
    .await;
    assert_eq!(float.status, StatusCode::OK);
    assert_eq!(float.body["object"], "list");
    assert_eq!(float.body["data"][1]["index"], 1);
    assert_eq!(
        float.body["usage"],
        json!({"prompt_tokens": 8, "total_tokens": 8})
    );
    let first: Vec<f32> =
        serde_json::from_value(float.body["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(first, expected("the cat"));

    let b64 = send(
        &router,
        post(
            "/v1/embeddings",
            r#"{"input":"the cat","encoding_format":"base64"}"#,
        ),
    )
    .await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, expected("the cat"));

    let dims = send(
        &router,
        post("/v1/embeddings", r#"{"input":"x","dimensions":256}"#),
    )
    .await;
    assert_error(
        &dims,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "8-dimensional",
    );
    let tokens = send(&router, post("/v1/embeddings", r#"{"input":[[1,2,3]]}"#)).await;
    assert_error(
        &tokens,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "token-id inputs are not supported",
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors_that_say_what_is_wrong() {
    let router = ready_app(FakeBackend::default(), test_limits());
    let cases: &[(&str, StatusCode, &str)] = &[
        (
            r#"{"texts":[]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no texts",
        ),
        (
            r#"{"inputs":[]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no texts",
        ),
        (
            r#"{"texts":["a", 3]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "texts[1]",
        ),
        (
            r#"{"inputs":["a", {"x":1}]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected a string",
        ),
        (
            r#"{"texts":"not a list"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "texts",
        ),
        (
            r#"{"texts":["a"],"inputs":"b"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "not both",
        ),
        (r#"{}"#, StatusCode::UNPROCESSABLE_ENTITY, "missing `texts`"),
        (
            r#"{"text":["a"]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `text`",
        ),
        (
            r#"{"texts":["a"]"#,
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        ("not json", StatusCode::BAD_REQUEST, "malformed JSON"),
    ];
    for (body, status, mentions) in cases {
        let answer = send(&router, post("/embed", body)).await;
        assert_error(&answer, *status, "validation", mentions);
    }

    let no_type = Request::post("/embed")
        .body(Body::from(r#"{"texts":["a"]}"#))
        .unwrap();
    assert_error(
        &send(&router, no_type).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "validation",
        "Content-Type",
    );

    let too_many = json!({"texts": vec!["a"; 17]}).to_string();
    assert_error(
        &send(&router, post("/embed", &too_many)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "validation",
        "limit of 16",
    );

    // Counted before parsing: the scan stops at text 17, so what follows is never read.
    let cut_short = format!(r#"{{"inputs":[{}"a", and no end"#, r#""a","#.repeat(16));
    assert_error(
        &send(&router, post("/embed", &cut_short)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "validation",
        "more than 16 texts",
    );
    let openai = json!({"input": vec!["a"; 17], "model": "m"}).to_string();
    assert_error(
        &send(&router, post("/v1/embeddings", &openai)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "validation",
        "--max-client-batch-size",
    );

    let huge = json!({"texts": ["a ".repeat(40_000)]}).to_string();
    assert_error(
        &send(&router, post("/embed", &huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "validation",
        "--payload-limit",
    );

    let long = "the cat sat on the mat ".repeat(3);
    let refused = json!({"inputs": ["ok", long], "truncate": false}).to_string();
    assert_error(
        &send(&router, post("/embed", &refused)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "validation",
        "texts[1]",
    );
    let truncated = send(
        &router,
        post("/embed", &json!({"inputs": [long]}).to_string()),
    )
    .await;
    assert_eq!(
        truncated.status,
        StatusCode::OK,
        "over-long texts are truncated by default"
    );

    assert_error(
        &send(&router, get("/nope")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "POST /embed",
    );
    assert_error(
        &send(&router, get("/embed")).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "not_found",
        "POST",
    );
}

#[tokio::test]
async fn backend_failure_is_a_500_with_a_json_error() {
    let backend = FakeBackend::default();
    backend.fail.store(true, Ordering::SeqCst);
    let router = ready_app(backend, test_limits());
    let answer = send(&router, post("/embed", r#"{"texts":["a"]}"#)).await;
    assert_error(
        &answer,
        StatusCode::INTERNAL_SERVER_ERROR,
        "backend",
        "injected failure",
    );
}

#[tokio::test]
async fn full_queue_answers_429_at_once_with_retry_after() {
    let limits = Limits {
        max_concurrent_requests: 2,
        inference_workers: 1,
        ..test_limits()
    };
    let backend = Arc::new(FakeBackend::with_delay(Duration::from_millis(400)));
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(test_http_config(limits), metrics.clone());
    let (model, _tasks) = fake_model(backend.clone(), limits, metrics.clone());
    state.set_ready(model);
    let router = app(state);
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                send(&router, post("/embed", r#"{"texts":["a"]}"#))
                    .await
                    .status
            })
        })
        .collect();
    // Both permits taken: both requests in the worker's pass (batched together), or one in it
    // and the other queued behind it.
    until("both requests to be admitted", || {
        let in_passes: usize = backend.passes.lock().unwrap().iter().sum();
        in_passes >= 2 || metrics.queue_depth.get() > 0
    })
    .await;
    let rejected = send(&router, post("/embed", r#"{"texts":["a"]}"#)).await;
    assert_error(
        &rejected,
        StatusCode::TOO_MANY_REQUESTS,
        "overloaded",
        "--max-concurrent-requests",
    );
    assert_eq!(rejected.headers[header::RETRY_AFTER], "1");
    assert!(
        busy.iter().all(|task| !task.is_finished()),
        "429 must not wait for the queue: it came while both requests held their permits"
    );
    // Health never waits behind inference.
    assert_eq!(send(&router, get("/health")).await.status, StatusCode::OK);
    for task in busy {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        send(&router, post("/embed", r#"{"texts":["a"]}"#))
            .await
            .status,
        StatusCode::OK,
        "permits come back"
    );
}

/// Waits until `condition` holds (checked every millisecond), or fails the test after 10 s
/// naming `what`: a readiness signal, never a guess at how long something takes.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 10 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn slow_requests_time_out_with_408_and_leave_the_queue() {
    let limits = Limits {
        inference_workers: 1,
        ..test_limits()
    };
    let backend = Arc::new(FakeBackend::with_delay(Duration::from_millis(300)));
    let metrics = Arc::new(Metrics::new());
    let mut config = test_http_config(limits);
    config.request_timeout = Duration::from_millis(100);
    let state = AppState::new(config, metrics.clone());
    let (model, _tasks) = fake_model(backend.clone(), limits, metrics.clone());
    state.set_ready(model);
    let router = app(state);
    let (first, second) =
        tokio::join!(send(&router, post("/embed", r#"{"texts":["a"]}"#)), async {
            // Queued behind the first, which is already in the worker's pass.
            backend.passes_started(1).await;
            send(&router, post("/embed", r#"{"texts":["the"]}"#)).await
        });
    assert_error(
        &first,
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        "--request-timeout-secs",
    );
    assert_error(
        &second,
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        "--request-timeout-secs",
    );
    // The first was already running; the second was still queued and is dropped, never run:
    // once the worker is through the first pass, it counts the second as cancelled.
    until("the queued request to be dropped", || {
        metrics.cancelled.get() == 1
    })
    .await;
    assert_eq!(backend.passes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_requests_share_forward_passes_and_keep_their_vectors() {
    let limits = Limits {
        inference_workers: 1,
        ..test_limits()
    };
    let backend = Arc::new(FakeBackend::with_delay(Duration::from_millis(150)));
    let metrics = Arc::new(Metrics::new());
    let (model, _tasks) = fake_model(backend.clone(), limits, metrics.clone());
    let infer = model.infer;
    // Occupy the only worker, then send five requests while it is busy.
    let blocker = tokio::spawn({
        let infer = infer.clone();
        async move {
            infer
                .embed(&["the".to_owned()], EmbedOptions::default())
                .await
        }
    });
    backend.passes_started(1).await;
    let texts = [
        "the cat",
        "a dog sat",
        "on the mat",
        "load",
        "cat dog cat dog",
    ];
    let requests: Vec<Vec<String>> = texts.iter().map(|t| vec![t.to_string()]).collect();
    let answers = futures::future::join_all(
        requests
            .iter()
            .map(|r| infer.embed(r.as_slice(), EmbedOptions::default())),
    )
    .await;
    blocker.await.unwrap().unwrap();
    for (text, answer) in texts.iter().zip(answers) {
        assert_eq!(
            answer.unwrap().vectors,
            vec![expected(text)],
            "batched vector of {text:?}"
        );
    }
    let passes = backend.passes.lock().unwrap().clone();
    assert_eq!(passes.iter().sum::<usize>(), 6);
    assert!(
        passes.len() <= 3,
        "five waiting requests must be coalesced, got passes {passes:?}"
    );
    assert_eq!(metrics.embeddings.get(), 6);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let router = ready_app(FakeBackend::default(), test_limits());
    send(&router, post("/embed", r#"{"texts":["a","the"]}"#)).await;
    send(&router, post("/embed", r#"{"texts":[]}"#)).await;
    send(&router, get("/health")).await;
    let text = send(&router, get("/metrics"))
        .await
        .body
        .as_str()
        .unwrap()
        .to_owned();
    for line in [
        r#"model_server_requests_total{route="/embed",status="200"} 1"#,
        r#"model_server_requests_total{route="/embed",status="422"} 1"#,
        r#"model_server_requests_total{route="/health",status="200"} 1"#,
        "model_server_embeddings_total 2",
        "model_server_tokens_total 6",
        // Two idle workers share the request's two texts: two passes.
        "model_server_batch_size_count 2",
        "# TYPE model_server_queue_duration_seconds histogram",
        "# TYPE model_server_inference_duration_seconds histogram",
        "# TYPE model_server_batch_tokens histogram",
        "# TYPE model_server_queue_depth gauge",
        "# TYPE model_server_model_load_seconds gauge",
    ] {
        assert!(text.contains(line), "metrics lack {line:?}:\n{text}");
    }
}

/// TEI's root route and options, as `huggingface_hub`'s `feature_extraction` sends them:
/// `{"inputs", "normalize", "truncate", "truncation_direction", "dimensions"}` at the top level.
#[tokio::test]
async fn tei_clients_post_to_the_root_with_teis_options() {
    let router = ready_app(FakeBackend::default(), test_limits());
    let answer = send(
        &router,
        post(
            "/",
            r#"{"inputs":"hello world","normalize":true,"truncate":true,"truncation_direction":"Right"}"#,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(as_vectors(&answer.body), vec![expected("hello world")]);
    for (body, mentions) in [
        (
            r#"{"inputs":"a","truncation_direction":"Left"}"#,
            "truncation_direction",
        ),
        (r#"{"inputs":"a","prompt_name":"query"}"#, "prompt_name"),
        (r#"{"inputs":"a","dimensions":7}"#, "dimensions"),
    ] {
        let refused = send(&router, post("/", body)).await;
        assert_error(
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            mentions,
        );
    }
}

/// Bodies in memory are bounded by count as well as size: while as many bodies as allowed are
/// being read, the next request is answered 429 (JSON) before its body is read.
#[tokio::test]
async fn bodies_read_at_once_are_bounded_and_the_rest_get_429() {
    let limits = Limits {
        max_concurrent_requests: 1,
        ..test_limits()
    };
    let (state, _tasks) = ready_state(Arc::new(FakeBackend::default()), limits);
    let router = app(state.clone());
    // A body that arrives slowly: its read holds the only body-read permit.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<axum::body::Bytes, std::io::Error>>();
    tx.unbounded_send(Ok(axum::body::Bytes::from_static(b"{\"texts\":[\"a")))
        .unwrap();
    let slow = Request::post("/embed")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(rx))
        .unwrap();
    let reading = tokio::spawn({
        let router = router.clone();
        async move { send(&router, slow).await.status }
    });
    until("the slow body's read to hold its permit", || {
        state.body_reads_in_progress() == 1
    })
    .await;
    let refused = send(&router, post("/embed", r#"{"texts":["b"]}"#)).await;
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "overloaded",
        "request bodies are being read",
    );
    assert_eq!(refused.headers[header::RETRY_AFTER], "1");
    // /health reads no body and is never refused.
    assert_eq!(send(&router, get("/health")).await.status, StatusCode::OK);
    tx.unbounded_send(Ok(axum::body::Bytes::from_static(b"\"]}")))
        .unwrap();
    drop(tx);
    assert_eq!(reading.await.unwrap(), StatusCode::OK);
    let after = send(&router, post("/embed", r#"{"texts":["b"]}"#)).await;
    assert_eq!(
        after.status,
        StatusCode::OK,
        "the permit comes back: {:?}",
        after.body
    );
}
