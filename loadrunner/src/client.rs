//! One user's keep-alive connection (HTTP/1.1, or HTTP/2 where https agrees it), opened by
//! [`crate::connect`] when first needed and again after it breaks, with a per-request timeout;
//! every outcome is classified as success or a failure with its reason. A redirect is a failure
//! unless its task follows it (same origin only), and a response body is read up to its task's
//! limit (default [`MAX_RESPONSE_BYTES`]). The time a request spent opening its connection is
//! handed back apart ([`Connection::take_dial`]), so it stays out of the request's latency.

use crate::connect::{Endpoint, Sender};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use loadgate_results::sample::{Dial, Outcome};
use std::sync::Arc;
use std::time::Duration;

/// A lazily (re)connected connection to the target.
pub struct Connection {
    endpoint: Arc<Endpoint>,
    timeout: Duration,
    sender: Option<Sender>,
    /// The opening of this connection since the last [`Connection::take_dial`].
    dial: Option<Dial>,
}

impl Connection {
    /// A connection to `endpoint`, opened on the first request.
    pub fn new(endpoint: Arc<Endpoint>, timeout: Duration) -> Self {
        Self {
            endpoint,
            timeout,
            sender: None,
            dial: None,
        }
    }

    /// The opening the last request made (connect, TLS, protocol), if it opened one.
    pub fn take_dial(&mut self) -> Option<Dial> {
        self.dial.take()
    }

    async fn connect(&mut self) -> Result<&mut Sender, String> {
        if self.sender.as_ref().is_none_or(Sender::is_closed) {
            self.sender = None;
            // Boxed: opening (DNS, TCP, TLS, the HTTP/2 handshake) is a large future that runs
            // once per connection; held inline it would make every request's future that large,
            // and moving it cost ~14% of the runner's requests per CPU-second (measured).
            let (sender, dial) = Box::pin(self.endpoint.open()).await?;
            self.dial = Some(dial);
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
        self.send_with(method, path, body, Limits::default())
            .await
            .0
    }

    /// [`Self::send`], also handing back a successful response's body (to check its content).
    pub async fn send_keeping_body(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> (Outcome, Option<Bytes>) {
        self.send_with(method, path, body, Limits::default()).await
    }

    /// Sends one request (following same-origin redirects when `limits` says so) and reads
    /// the whole response, up to `limits`' size, every hop within the one timeout; hands back a
    /// successful response's body.
    pub async fn send_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        limits: Limits,
    ) -> (Outcome, Option<Bytes>) {
        let timeout = self.timeout;
        let answer =
            tokio::time::timeout(timeout, self.exchange_following(method, path, body, limits))
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
        limits: Limits,
    ) -> Result<Answer, String> {
        let (mut method, mut path, mut body) = (method.to_owned(), path.to_owned(), body);
        let mut hops = 0;
        loop {
            let (status, location, answer) = self
                .exchange(&method, &path, body.clone(), limits.max_bytes)
                .await?;
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
            if limits.redirects == Redirects::Fail {
                return refuse("");
            }
            let origin = self.endpoint.url();
            let Some(next) = location
                .as_deref()
                .and_then(|l| same_origin_path(l, &origin))
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
        max_bytes: usize,
    ) -> Result<(u16, Option<String>, Bytes), String> {
        let response = self.start(method, path, body).await?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| l.chars().take(200).collect());
        let body = read_bounded(response, max_bytes).await?;
        Ok((status, location, body))
    }

    /// Sends one request and reads its answer as it streams: each piece of body goes to
    /// `reader` with the time it arrived, within the timeout and `max_bytes` in all. A 2xx
    /// hands back `Ok(bytes read)`; another status is a failure `HTTPError n` (the body read,
    /// bounded, and dropped); a 3xx is never followed.
    pub async fn stream(
        &mut self,
        path: &str,
        body: Bytes,
        max_bytes: usize,
        reader: &mut crate::llm_wire::StreamReader,
    ) -> Outcome {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.stream_within(path, body, max_bytes, reader)).await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(reason)) => {
                self.sender = None;
                Outcome::Failed { reason, bytes: 0 }
            }
            Err(_) => {
                self.sender = None;
                let reason = format!(
                    "Timeout: the answer did not end within {} ms",
                    timeout.as_millis()
                );
                Outcome::Failed { reason, bytes: 0 }
            }
        }
    }

    async fn stream_within(
        &mut self,
        path: &str,
        body: Bytes,
        max_bytes: usize,
        reader: &mut crate::llm_wire::StreamReader,
    ) -> Result<Outcome, String> {
        let response = self.start("POST", path, Some(body)).await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = read_bounded(response, max_bytes).await?;
            return Ok(Outcome::Failed {
                reason: format!("HTTPError {status}"),
                bytes: body.len(),
            });
        }
        let mut body = response.into_body();
        let mut bytes = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("ConnectionError: reading body: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            bytes += data.len();
            if bytes > max_bytes {
                return Err(format!(
                    "ResponseTooLarge: body over {}",
                    bytes_text(max_bytes)
                ));
            }
            if let Err(reason) = reader.feed(&data, std::time::Instant::now()) {
                // The rest of the answer is not read: this connection cannot be reused.
                self.sender = None;
                return Ok(Outcome::Failed { reason, bytes });
            }
        }
        Ok(Outcome::Ok { bytes })
    }

    /// Opens (or reuses) the connection and sends one request; hands back the response, its
    /// body not read yet.
    async fn start(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let endpoint = self.endpoint.clone();
        let sender = self.connect().await?;
        let mut builder = hyper::Request::builder().method(method);
        builder = match sender {
            // HTTP/2 carries the authority and scheme as pseudo-headers, from an absolute URI.
            Sender::Http2(_) => builder.uri(format!("{}{path}", endpoint.url())),
            Sender::Http1(_) => builder
                .uri(path)
                .header(hyper::header::HOST, &endpoint.authority),
        };
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in endpoint.headers.iter() {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| format!("InvalidRequest: {e}"))?;
        match sender {
            Sender::Http1(s) => {
                s.ready()
                    .await
                    .map_err(|e| format!("ConnectionError: {e}"))?;
                s.send_request(request).await
            }
            // Boxed, as opening is: HTTP/2's futures would otherwise enlarge (and slow) every
            // HTTP/1.1 request's future too; on https the box is noise beside TLS.
            Sender::Http2(s) => {
                Box::pin(async {
                    s.ready()
                        .await
                        .map_err(|e| format!("ConnectionError: {e}"))?;
                    Ok::<_, String>(s.send_request(request).await)
                })
                .await?
            }
        }
        .map_err(|e| format!("ConnectionError: {e}"))
    }
}

/// The whole body of `response`, bounded before it is read: a huge (or endless) answer fails,
/// it never grows the runner.
async fn read_bounded(
    response: hyper::Response<hyper::body::Incoming>,
    max_bytes: usize,
) -> Result<Bytes, String> {
    let too_large = || format!("ResponseTooLarge: body over {}", bytes_text(max_bytes));
    let declared = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let body = http_body_util::Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                format!("ConnectionError: reading body: {e}")
            }
        })?;
    Ok(body.to_bytes())
}

/// `16 MiB`, `64 KiB` or `100 bytes`.
fn bytes_text(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// What one request may do: follow redirects, and how large an answer it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// What a 3xx does.
    pub redirects: Redirects,
    /// Largest body read; a larger one is a failure.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            redirects: Redirects::Fail,
            max_bytes: MAX_RESPONSE_BYTES,
        }
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
    /// Followed when it stays on the same scheme, host and port.
    Follow,
}

/// The end of one request.
enum Answer {
    /// A response that is not a redirect.
    Final { status: u16, body: Bytes },
    /// A redirect not followed, and why.
    Redirect { reason: String, bytes: usize },
}

/// The path a same-origin `location` leads to: a path (`/v2/embed`), or a URL on `origin`
/// (`http(s)://host:port`, the target's); `None` for another host, port or scheme.
fn same_origin_path(location: &str, origin: &str) -> Option<String> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(location.to_owned());
    }
    let (scheme, host) = origin.split_once("://")?;
    let rest = location
        .get(..scheme.len() + 3)
        .filter(|p| p.eq_ignore_ascii_case(&format!("{scheme}://")))
        .map(|p| &location[p.len()..])?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let same = authority.eq_ignore_ascii_case(host)
        || format!("{authority}{default_port}").eq_ignore_ascii_case(host);
    same.then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_redirects_are_followed() {
        let host = "http://mini.ml.svc:8080";
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
        let tls = "https://gw.example:443";
        assert_eq!(
            same_origin_path("https://gw.example/v1", tls).as_deref(),
            Some("/v1")
        );
        assert_eq!(same_origin_path("http://gw.example/v1", tls), None);
    }
}
