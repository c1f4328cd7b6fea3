//! The real TCP server with a fake model: the port answers `not_ready` while the model loads,
//! turns ready when loading finishes, and on shutdown finishes in-flight requests before exiting.

use model_server::http::AppState;
use model_server::metrics::Metrics;
use model_server::testing::{FakeBackend, fake_model, test_http_config, test_limits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A blocking HTTP call on a worker thread: (status, body).
async fn call(
    addr: SocketAddr,
    method: &'static str,
    path: &'static str,
    body: &'static str,
) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let url = format!("http://{addr}{path}");
        let mut response = match method {
            "GET" => agent.get(&url).call(),
            _ => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body),
        }
        .expect("request reaches the server");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_not_ready_while_loading_and_drains_on_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(test_http_config(test_limits()), metrics.clone());
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let backend = Arc::new(FakeBackend::with_delay(Duration::from_millis(500)));
    let loader = {
        let metrics = metrics.clone();
        async move {
            release_rx.await.unwrap();
            Ok(fake_model(backend, test_limits(), metrics))
        }
    };
    let server = tokio::spawn(model_server::serve(listener, state, loader, async {
        let _ = stop_rx.await;
    }));

    // Loading: the port is open and says not_ready (a probe sees 503, not "connection refused").
    assert_eq!(
        call(addr, "GET", "/health", "").await,
        (503, r#"{"status":"not_ready"}"#.to_owned())
    );
    release_tx.send(()).unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if call(addr, "GET", "/health", "").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "health never turned 200 after loading");

    // A request in flight when shutdown starts still gets its answer.
    let in_flight = tokio::spawn(call(addr, "POST", "/embed", r#"{"texts":["the cat"]}"#));
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop_tx.send(()).unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("embeddings"));
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops after draining");
    result.unwrap().expect("a drained shutdown is a clean exit");
    // And the port is closed afterwards.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_stops_the_server_with_the_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = AppState::new(test_http_config(test_limits()), Arc::new(Metrics::new()));
    let loader = async { Err(anyhow::anyhow!("model directory missing")) };
    let result = model_server::serve(listener, state, loader, std::future::pending()).await;
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("model directory missing")
    );
}
