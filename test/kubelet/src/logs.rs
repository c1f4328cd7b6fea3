//! The kubelet's log endpoint: `GET /containerLogs/{namespace}/{pod}/{container}` over HTTPS,
//! the path the apiserver proxies `pods/log` to (so `kubectl logs` and the operator's log reads
//! work in the test cluster as on a real node). It serves the files the runtime writes
//! (`pods/{namespace}_{pod}_{uid}/{container}.log` under the state dir), newest pod of that name
//! first, with the query parameters the apiserver forwards: `tailLines` and `limitBytes`
//! (`follow` returns what is there and ends; `timestamps` is not supported).
//!
//! Like a real kubelet it authenticates the apiserver by client certificate: only a client
//! whose certificate the cluster CA signed is served.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// Most bytes of a log read into memory for one answer (the tail kept when the file is larger).
const MAX_READ: u64 = 64 << 20;

/// Where the endpoint's certificate and the CA of its clients are.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Serving certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// CA that signs the clients' certificates (PEM): the apiserver's kubelet client.
    pub client_ca: PathBuf,
}

/// Serves the log endpoint on `listener` until the process ends.
///
/// # Errors
/// When the certificates cannot be read.
pub async fn serve(listener: TcpListener, tls: &Tls, state_dir: PathBuf) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(tls)?));
    let state_dir = Arc::new(state_dir);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "log endpoint: accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state_dir = state_dir.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "log endpoint: TLS handshake refused");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let state_dir = state_dir.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&state_dir, &request)) }
                });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "log endpoint: connection ended");
            }
        });
    }
}

fn server_config(tls: &Tls) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.client_ca)
        .with_context(|| format!("{}", tls.client_ca.display()))?
    {
        roots.add(cert?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .with_context(|| format!("{}", tls.cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key =
        PrivateKeyDer::from_pem_file(&tls.key).with_context(|| format!("{}", tls.key.display()))?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn answer<B>(state_dir: &Path, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let path = request.uri().path();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["containerLogs", namespace, pod, container] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n"));
    };
    let query = match Query::parse(request.uri().query().unwrap_or("")) {
        Ok(query) => query,
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    match read_log(state_dir, namespace, pod, container, &query) {
        Ok(Some(bytes)) => text(StatusCode::OK, bytes),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!("no log for container {container} of pod {namespace}/{pod}\n"),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// The query parameters served.
#[derive(Debug, Default, PartialEq)]
struct Query {
    tail_lines: Option<u64>,
    limit_bytes: Option<u64>,
}

impl Query {
    fn parse(query: &str) -> Result<Self, String> {
        let mut parsed = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}={value}: not a count"))
            };
            match key {
                "tailLines" => parsed.tail_lines = Some(number()?),
                "limitBytes" => parsed.limit_bytes = Some(number()?),
                "timestamps" if value == "true" => {
                    return Err("timestamps=true is not supported by the process kubelet".into());
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// The newest log file of `container` in a pod named `namespace/pod`.
fn log_file(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
    // Namespaces and pod names hold no `_`, so the prefix names exactly this pod's directories.
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(state_dir.join("pods"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path().join(format!("{container}.log")))
        .filter_map(|path| {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
            Some((modified, path))
        })
        .max()
        .map(|(_, path)| path)
}

fn read_log(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &Query,
) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Read, Seek, SeekFrom};
    let Some(path) = log_file(state_dir, namespace, pod, container) else {
        return Ok(None);
    };
    let mut file = std::fs::File::open(&path)?;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(MAX_READ);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len - from).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(Some(select(bytes, query)))
}

/// The lines and bytes a query asks for, in the kubelet's order: the last `tailLines` lines,
/// then at most `limitBytes` from their start.
fn select(mut bytes: Vec<u8>, query: &Query) -> Vec<u8> {
    if let Some(tail) = query.tail_lines {
        // Lines end in `\n`; the last may not. Keep what follows the tail-th newline from the
        // end, not counting a final one.
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let start = match usize::try_from(tail).unwrap_or(usize::MAX) {
            0 => bytes.len(),
            n => body
                .iter()
                .enumerate()
                .rev()
                .filter(|&(_, &b)| b == b'\n')
                .nth(n - 1)
                .map_or(0, |(at, _)| at + 1),
        };
        bytes.drain(..start);
    }
    if let Some(limit) = query.limit_bytes {
        bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_then_limit_bytes() {
        let log = b"one\ntwo\nthree\nfour\n".to_vec();
        let q = |tail, limit| Query {
            tail_lines: tail,
            limit_bytes: limit,
        };
        assert_eq!(select(log.clone(), &q(None, None)), log);
        assert_eq!(select(log.clone(), &q(Some(2), None)), b"three\nfour\n");
        assert_eq!(select(log.clone(), &q(Some(1), None)), b"four\n");
        assert_eq!(select(log.clone(), &q(Some(9), None)), log);
        assert_eq!(select(log.clone(), &q(Some(0), None)), b"");
        assert_eq!(select(log.clone(), &q(Some(2), Some(4))), b"thre");
        assert_eq!(
            select(b"no newline".to_vec(), &q(Some(1), None)),
            b"no newline"
        );
        assert_eq!(
            Query::parse("container=c&tailLines=5&limitBytes=100&follow=true").unwrap(),
            q(Some(5), Some(100))
        );
        assert!(Query::parse("tailLines=-1").is_err());
    }

    #[test]
    fn the_newest_pod_of_a_name_is_served() {
        let dir = std::env::temp_dir().join(format!("kubelet-logs-{}", std::process::id()));
        for (uid, text) in [("a", "old\n"), ("b", "new\n")] {
            let pod = dir.join("pods").join(format!("ns_runner-0_{uid}"));
            std::fs::create_dir_all(&pod).unwrap();
            std::fs::write(pod.join("c.log"), text).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let got = read_log(&dir, "ns", "runner-0", "c", &Query::default()).unwrap();
        assert_eq!(got.as_deref(), Some(&b"new\n"[..]));
        assert!(
            read_log(&dir, "ns", "runner-1", "c", &Query::default())
                .unwrap()
                .is_none()
        );
        assert!(
            read_log(&dir, "ns", "runner", "c", &Query::default())
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
