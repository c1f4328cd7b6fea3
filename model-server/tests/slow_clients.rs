//! Slow and surplus clients against the real TCP server (loopback, fake model): bodies that
//! trickle in get 408 after `--body-read-timeout-secs` and give their body-read slot back, headers
//! that never end are cut off after `--header-read-timeout-secs`, connections past
//! `--max-connections` get a fast 503, and through all of it `/health` and well-behaved clients
//! are answered. Raw sockets, so each test controls exactly which bytes arrive and when.

use model_server::http::{AppState, HttpConfig};
use model_server::infer::Limits;
use model_server::metrics::Metrics;
use model_server::testing::{FakeBackend, fake_model, test_http_config, test_limits};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous bound on anything that should be quick: a 2-core CI machine under load stays well
/// inside it, and a hang does not.
const QUICK: Duration = Duration::from_secs(2);

/// A server on 127.0.0.1 with the fake model, ready to serve.
struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(config: HttpConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let limits = config.limits;
        let state = AppState::new(config, metrics.clone());
        let loader = {
            let metrics = metrics.clone();
            async move {
                Ok(fake_model(
                    Arc::new(FakeBackend::default()),
                    limits,
                    metrics,
                ))
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(model_server::serve(listener, state, loader, async {
            let _ = stopped.await;
        }));
        let server = Self {
            addr,
            metrics,
            stop: Some(stop),
            task,
        };
        let deadline = Instant::now() + QUICK;
        while server.call("GET", "/health", "").await.status != 200 {
            assert!(
                Instant::now() < deadline,
                "the fake model never turned ready"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.wait_for_open_connections(0).await;
        server
    }

    /// Waits until the server counts `n` open connections (closes are noticed asynchronously).
    async fn wait_for_open_connections(&self, n: i64) {
        let deadline = Instant::now() + QUICK;
        while self.metrics.open_connections.get() != n {
            assert!(
                Instant::now() < deadline,
                "{} connections open, not {n}",
                self.metrics.open_connections.get()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One request on a fresh connection (`Connection: close`), answered within [`QUICK`].
    async fn call(&self, method: &str, path: &str, body: &str) -> Answer {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(request(method, path, body, "close").as_bytes())
            .await
            .unwrap();
        tokio::time::timeout(QUICK, read_answer(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("{method} {path} was not answered within {QUICK:?}"))
    }

    /// Stops the server and checks it drains and exits cleanly.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the server stops after draining")
            .unwrap()
            .expect("a drained shutdown is a clean exit");
    }
}

/// A parsed HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header lines, lower-cased names.
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

fn request(method: &str, path: &str, body: &str, connection: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one answer: the head, then `Content-Length` bytes of body. Panics on a connection closed
/// before a full answer.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    let length: usize = answer
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    answer.body = String::from_utf8(body).unwrap();
    answer
}

/// Whether the server closed `stream` (EOF or reset) within [`QUICK`], with nothing more sent.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match tokio::time::timeout(QUICK, stream.read_to_end(&mut rest)).await {
        Ok(Ok(_)) => rest.is_empty(),
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}

/// A client that sends a POST's headers and the start of its body, then one more byte every
/// 100 ms, never reaching its Content-Length; returns what the server answered, if anything,
/// within 10 s.
async fn slow_body(addr: SocketAddr) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /embed HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"texts\":[\"";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"a").await.is_err() {
                break;
            }
        }
        writer
    });
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut bytes)).await;
    trickle.abort();
    let text = String::from_utf8_lossy(&bytes);
    if read.is_err() || !text.starts_with("HTTP/1.1 ") {
        return None;
    }
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some(Answer {
        status: head[9..12].parse().ok()?,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// Test settings: `limits`, with generous timeouts unless a test shortens one.
fn config(limits: Limits) -> HttpConfig {
    HttpConfig {
        body_read_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(5),
        ..test_http_config(limits)
    }
}

/// The defect of issue 26 (item 12): 32 bodies trickling in held every body-read slot, so every
/// other POST got 429 for as long as the slow clients cared to keep sending. Now each slow body
/// is answered 408 after the body timeout and its slot is free again: `/health` answers
/// throughout, and a client that honours `Retry-After` is served on its next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_do_not_starve_health_or_other_clients() {
    let limits = Limits {
        // 32 body-read slots (`max_body_reads` caps them at 32).
        max_concurrent_requests: 64,
        ..test_limits()
    };
    let server = Server::start(HttpConfig {
        body_read_timeout: Duration::from_millis(800),
        ..config(limits)
    })
    .await;
    let started = Instant::now();
    let slow: Vec<_> = (0..40)
        .map(|_| tokio::spawn(slow_body(server.addr)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The slow clients hold every body-read slot now: another POST is refused at once...
    let refused = server
        .call("POST", "/embed", r#"{"texts":["the cat"]}"#)
        .await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // ...while /health, which reads no body, answers.
    let health = server.call("GET", "/health", "").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "the health check must land while the slots are still held, to test anything"
    );

    // A normal client honouring Retry-After is served once the slow bodies time out.
    let deadline = started + Duration::from_secs(5);
    let served = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let answer = server
            .call("POST", "/embed", r#"{"texts":["the cat"]}"#)
            .await;
        if answer.status != 429 || Instant::now() > deadline {
            break answer;
        }
    };
    assert_eq!(
        served.status, 200,
        "slow bodies still starve other clients: {served:?}"
    );
    assert!(served.json()["embeddings"].is_array());

    // Every slow client got an answer: 408 for those that held a slot, 429 for the rest.
    let mut timed_out = 0;
    for client in slow {
        let answer = client
            .await
            .unwrap()
            .expect("every slow client is answered");
        match answer.status {
            408 => {
                timed_out += 1;
                assert_eq!(answer.json()["error_type"], "timeout");
            }
            429 => {}
            other => panic!("slow client answered {other}: {answer:?}"),
        }
    }
    assert!(timed_out >= 32, "{timed_out} slow bodies timed out");
    assert!(server.metrics.body_read_timeouts.get() >= 32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_body_timeout_gets_408_and_frees_its_slot() {
    let limits = Limits {
        // One body-read slot: the slow body holds it until the timeout.
        max_concurrent_requests: 1,
        ..test_limits()
    };
    let server = Server::start(HttpConfig {
        body_read_timeout: Duration::from_millis(500),
        ..config(limits)
    })
    .await;
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(3), slow_body(server.addr))
        .await
        .expect("the slow body is answered")
        .expect("with an HTTP answer");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("connection: close")
    );
    let error = answer.json();
    assert_eq!(error["error_type"], "timeout");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("--body-read-timeout-secs"),
        "{error}"
    );
    // The slot came back with the answer.
    let after = server.call("POST", "/embed", r#"{"texts":["a"]}"#).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(server.metrics.body_read_timeouts.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_not_finished_in_time_are_cut_off() {
    let server = Server::start(HttpConfig {
        header_read_timeout: Duration::from_millis(500),
        ..config(test_limits())
    })
    .await;

    // Half a request head, then nothing: 408 (JSON), then the connection closes.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"POST /embed HTTP/1.1\r\nHost: test\r\nContent-Ty")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(QUICK, partial.read_to_end(&mut bytes))
        .await
        .expect("a connection with unfinished headers is closed")
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("--header-read-timeout-secs"), "{text}");
    assert!(text.contains(r#""error_type":"timeout""#), "{text}");

    // A connection that sends nothing at all is closed too (no answer: there was no request).
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await);

    // The timeout is also how long a kept-alive connection may idle between requests.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(request("GET", "/health", "", "keep-alive").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut kept).await.status, 200);
    assert!(closed_by_server(&mut kept).await);

    assert_eq!(server.metrics.header_read_timeouts.get(), 1);
    assert_eq!(
        server.call("GET", "/health", "").await.status,
        200,
        "the server is unaffected"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_a_fast_503_but_health_answers() {
    let server = Server::start(HttpConfig {
        max_connections: 4,
        ..config(test_limits())
    })
    .await;
    // Four kept-alive connections fill the cap (each answered once, so each is surely accepted).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(request("GET", "/health", "", "keep-alive").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_answer(&mut stream).await.status, 200);
        held.push(stream);
    }
    server.wait_for_open_connections(4).await;

    let started = Instant::now();
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    over.write_all(request("POST", "/embed", r#"{"texts":["a"]}"#, "keep-alive").as_bytes())
        .await
        .unwrap();
    let refused = tokio::time::timeout(QUICK, read_answer(&mut over))
        .await
        .expect("a connection past the cap is answered at once");
    assert!(started.elapsed() < QUICK);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let error = refused.json();
    assert_eq!(error["error_type"], "overloaded");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("--max-connections"),
        "{error}"
    );
    assert!(
        closed_by_server(&mut over).await,
        "and closed after its answer"
    );

    // A probe past the cap is still answered: a flood of connections must not fail liveness.
    assert_eq!(server.call("GET", "/health", "").await.status, 200);

    // A connection closed frees its place.
    drop(held.pop());
    server.wait_for_open_connections(3).await;
    let served = server.call("POST", "/embed", r#"{"texts":["a"]}"#).await;
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(server.metrics.connections_over_limit.get(), 2);
    server.stop().await;
}
