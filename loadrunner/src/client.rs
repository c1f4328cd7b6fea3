//! One user's HTTP/1.1 keep-alive connection (hyper), with TCP_NODELAY and a per-request
//! timeout; every outcome is classified as success or a failure with its reason.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx or 3xx; body size in bytes.
    Ok {
        /// Response body size.
        bytes: usize,
    },
    /// A failure, with Locust-style reason text ("HTTPError 503", "ConnectionError ...").
    Failed {
        /// Why.
        reason: String,
        /// Response body size (0 when there was no response).
        bytes: usize,
    },
    /// Open model: a scheduled request that was never sent. Counted as a failed request, so
    /// load the runner shed shows in the error rate.
    NotSent(NotSent),
}

/// Why an open-model request was never sent. [`NotSent::reason`] is its failure reason in
/// reports (Locust's `_failures.csv` "Error" column); the strings are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// Dropped at its start time: as many requests as allowed already waited for a free user.
    QueueFull,
    /// Still waiting for a free user when the run ended (deadline or stop signal).
    RunEnded,
}

impl NotSent {
    /// `NotSent: queue full` or `NotSent: run ended`.
    pub fn reason(self) -> &'static str {
        match self {
            NotSent::QueueFull => "NotSent: queue full",
            NotSent::RunEnded => "NotSent: run ended",
        }
    }
}

/// A lazily (re)connected HTTP/1.1 connection to one address.
pub struct Connection {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `addr`, sending `host` as the Host header.
    pub fn new(addr: SocketAddr, host: String, timeout: Duration) -> Self {
        Self {
            addr,
            host,
            timeout,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("ConnectionError: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("ConnectionError: {e}"))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("ConnectionError: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self
            .sender
            .as_mut()
            .expect("connected just above; this is a bug"))
    }

    /// Sends one request and reads the whole response, within the timeout.
    pub async fn send(&mut self, method: &str, path: &str, body: Option<Bytes>) -> Outcome {
        self.send_keeping_body(method, path, body).await.0
    }

    /// [`Self::send`], also handing back a successful response's body (to check its content).
    pub async fn send_keeping_body(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> (Outcome, Option<Bytes>) {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(method, path, body)).await {
            Ok(Ok((status, body))) if status < 400 => {
                (Outcome::Ok { bytes: body.len() }, Some(body))
            }
            Ok(Ok((status, body))) => (
                Outcome::Failed {
                    reason: format!("HTTPError {status}"),
                    bytes: body.len(),
                },
                None,
            ),
            Ok(Err(reason)) => {
                self.sender = None;
                (Outcome::Failed { reason, bytes: 0 }, None)
            }
            Err(_) => {
                // The response may still arrive on this connection: start a fresh one.
                self.sender = None;
                let reason = format!("Timeout: no response within {} ms", timeout.as_millis());
                (Outcome::Failed { reason, bytes: 0 }, None)
            }
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), String> {
        let host = self.host.clone();
        let sender = self.connect().await?;
        sender
            .ready()
            .await
            .map_err(|e| format!("ConnectionError: {e}"))?;
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| format!("InvalidRequest: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("ConnectionError: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("ConnectionError: reading body: {e}"))?;
        Ok((status, body.to_bytes()))
    }
}
