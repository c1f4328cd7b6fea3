//! One user's HTTP/1.1 keep-alive connection (hyper), with TCP_NODELAY and a per-request
//! timeout; every outcome is classified as success or a failure with its reason. A redirect is
//! a failure unless its task follows it (same origin only), and a response body is read up to
//! [`MAX_RESPONSE_BYTES`].

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx (a redirect followed to one, with `followRedirects`); body size in bytes.
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

    /// Sends one request and reads the whole response, within the timeout. A redirect is a
    /// failure.
    pub async fn send(&mut self, method: &str, path: &str, body: Option<Bytes>) -> Outcome {
        self.send_with(method, path, body, Redirects::Fail).await.0
    }

    /// [`Self::send`], also handing back a successful response's body (to check its content).
    pub async fn send_keeping_body(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> (Outcome, Option<Bytes>) {
        self.send_with(method, path, body, Redirects::Fail).await
    }

    /// Sends one request (following same-origin redirects when `redirects` says so) and reads
    /// the whole response, every hop within the one timeout; hands back a successful response's
    /// body.
    pub async fn send_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        redirects: Redirects,
    ) -> (Outcome, Option<Bytes>) {
        let timeout = self.timeout;
        let answer = tokio::time::timeout(
            timeout,
            self.exchange_following(method, path, body, redirects),
        )
        .await;
        match answer {
            Ok(Ok(Answer::Final { status, body })) if status < 300 => {
                (Outcome::Ok { bytes: body.len() }, Some(body))
            }
            Ok(Ok(Answer::Final { status, body })) => (
                Outcome::Failed {
                    reason: format!("HTTPError {status}"),
                    bytes: body.len(),
                },
                None,
            ),
            Ok(Ok(Answer::Redirect { reason, bytes })) => (Outcome::Failed { reason, bytes }, None),
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

    /// One exchange and, with [`Redirects::Follow`], the same-origin hops it leads to.
    async fn exchange_following(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        redirects: Redirects,
    ) -> Result<Answer, String> {
        let (mut method, mut path, mut body) = (method.to_owned(), path.to_owned(), body);
        let mut hops = 0;
        loop {
            let (status, location, answer) = self.exchange(&method, &path, body.clone()).await?;
            if !(300..400).contains(&status) {
                return Ok(Answer::Final {
                    status,
                    body: answer,
                });
            }
            let bytes = answer.len();
            let to = location.as_deref().unwrap_or("(no Location)");
            let refuse = |why: &str| {
                Ok(Answer::Redirect {
                    reason: format!("redirect {status} to {to}{why}"),
                    bytes,
                })
            };
            if redirects == Redirects::Fail {
                return refuse("");
            }
            let Some(next) = location
                .as_deref()
                .and_then(|l| same_origin_path(l, &self.host))
            else {
                return refuse(" (another origin: not followed)");
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return refuse(&format!(" (more than {MAX_REDIRECTS} redirects)"));
            }
            // 301, 302 and 303 turn a POST into a GET without its body, as browsers and curl
            // do; 307 and 308 repeat the request as it was.
            if matches!(status, 301..=303) && method != "GET" {
                method = "GET".to_owned();
                body = None;
            }
            path = next;
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Option<String>, Bytes), String> {
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
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| l.chars().take(200).collect());
        // Bounded before it is read: a huge (or endless) answer fails, it never grows the runner.
        let too_large = || {
            format!(
                "ResponseTooLarge: body over {} MiB",
                MAX_RESPONSE_BYTES >> 20
            )
        };
        let declared = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    format!("ConnectionError: reading body: {e}")
                }
            })?;
        Ok((status, location, body.to_bytes()))
    }
}

/// Largest response body read: far above any embedding answer (32 texts × 1,024 dimensions as
/// JSON is about 700 KiB), far below what could hurt a runner pod.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// What a request does with a 3xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// A failure with its reason (`redirect 301 to https://…`): the default, so a redirect
    /// never passes as a fast success.
    Fail,
    /// Followed when it stays on the same host and port over plain HTTP.
    Follow,
}

/// The end of one request.
enum Answer {
    /// A response that is not a redirect.
    Final { status: u16, body: Bytes },
    /// A redirect not followed, and why.
    Redirect { reason: String, bytes: usize },
}

/// The path a same-origin `location` leads to: a path (`/v2/embed`), or an `http://` URL on
/// `host` (the Host header sent); `None` for another host, port or scheme.
fn same_origin_path(location: &str, host: &str) -> Option<String> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(location.to_owned());
    }
    let rest = location.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    authority
        .eq_ignore_ascii_case(host)
        .then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_redirects_are_followed() {
        let host = "mini.ml.svc:8080";
        assert_eq!(
            same_origin_path("/v2/embed", host).as_deref(),
            Some("/v2/embed")
        );
        assert_eq!(
            same_origin_path("http://mini.ml.svc:8080/x?y=1", host).as_deref(),
            Some("/x?y=1")
        );
        assert_eq!(
            same_origin_path("http://MINI.ml.svc:8080", host).as_deref(),
            Some("/")
        );
        assert_eq!(same_origin_path("https://mini.ml.svc:8080/x", host), None);
        assert_eq!(same_origin_path("http://mini.ml.svc:9090/x", host), None);
        assert_eq!(same_origin_path("//evil.example/x", host), None);
    }
}
