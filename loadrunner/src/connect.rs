//! Opening one connection to the target ([`Endpoint::open`]): the host resolved afresh for each
//! connection (a rolling Service's new address is picked up; a `--resolve` entry pins it), TCP
//! with `TCP_NODELAY`, on `https` a rustls handshake offering `h2` and `http/1.1` by ALPN, then
//! hyper's handshake for the protocol agreed. Each opening reports how long it took ([`Dial`]):
//! that time is reported on its own (like k6's `http_req_connecting` and
//! `http_req_tls_handshaking`), never inside a request's latency.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgate_results::sample::{Dial, Protocol};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Where requests go and how: scheme, authority, the TLS setup and the headers every request
/// carries. One per run, shared by every user.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port` as the URL names it: the `Host` header (HTTP/1.1) or `:authority` (HTTP/2).
    pub authority: String,
    host: String,
    port: u16,
    /// A `--resolve` address: connect there instead of resolving the host.
    pinned: Option<SocketAddr>,
    tls: Option<Tls>,
    /// Sent on every request, after `Host` and `Content-Type`.
    pub headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl std::fmt::Debug for Endpoint {
    // Header values stay out of every echo: a credential's among them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url())
            .field("pinned", &self.pinned)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Tls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

/// How a target is trusted on https.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// PEM CA certificates trusted beside the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Trust any certificate.
    pub insecure_skip_verify: bool,
    /// SNI and the name checked, when not the URL's host.
    pub server_name: Option<String>,
}

/// A connection's request sender, for the protocol it speaks.
pub enum Sender {
    /// HTTP/1.1: one request at a time.
    Http1(http1::SendRequest<Full<Bytes>>),
    /// HTTP/2: this user's requests, one at a time, on its own connection.
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}

impl Endpoint {
    /// The endpoint `url` (`http(s)://host[:port]`) names, reached through `pinned` when given,
    /// trusted by `trust` on https, sending `headers` on every request.
    ///
    /// # Errors
    /// A URL that is not http(s), a CA bundle that holds no certificate, a bad server name or
    /// header.
    pub fn new(
        url: &str,
        pinned: Option<SocketAddr>,
        trust: &Trust,
        headers: Vec<(String, String)>,
    ) -> Result<Self, String> {
        let (https, host, port) = crate::target::parse_url(url).map_err(|e| e.0)?;
        let tls = if https {
            let name = trust.server_name.clone().unwrap_or_else(|| host.clone());
            let server_name = ServerName::try_from(name.clone())
                .map_err(|_| format!("{name:?} is not a server name TLS can check"))?;
            Some(Tls {
                connector: tokio_rustls::TlsConnector::from(Arc::new(client_config(trust)?)),
                server_name,
            })
        } else {
            None
        };
        let headers = headers
            .into_iter()
            .map(|(name, value)| {
                let n = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                let mut v = HeaderValue::from_str(&value)
                    .map_err(|_| format!("the value of header {name} is not valid header text"))?;
                v.set_sensitive(loadgate_api::target::is_credential(&name));
                Ok((n, v))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            authority: if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            },
            host,
            port,
            pinned,
            tls,
            headers: Arc::new(headers),
        })
    }

    /// The URL it names.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// True on https.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection: resolve, connect, TLS, HTTP handshake.
    ///
    /// # Errors
    /// A Locust-style reason: `ConnectionError: …`, `SSLError: …`.
    pub async fn open(&self) -> Result<(Sender, Dial), String> {
        let started = Instant::now();
        let addr = match self.pinned {
            Some(addr) => addr,
            None => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("ConnectionError: cannot resolve {}: {e}", self.host))?
                .next()
                .ok_or_else(|| format!("ConnectionError: {} resolves to no address", self.host))?,
        };
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("ConnectionError: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("ConnectionError: {e}"))?;
        let connect = started.elapsed();
        let Some(tls) = &self.tls else {
            let sender = handshake_http1(TokioIo::new(stream)).await?;
            return Ok((
                sender,
                Dial {
                    connect,
                    tls: None,
                    protocol: Protocol::Http1,
                },
            ));
        };
        let tls_started = Instant::now();
        let stream = tls
            .connector
            .connect(tls.server_name.clone(), stream)
            .await
            .map_err(|e| format!("SSLError: {e}"))?;
        let handshake = tls_started.elapsed();
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let (sender, protocol) = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("ConnectionError: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            (Sender::Http2(sender), Protocol::Http2)
        } else {
            (handshake_http1(io).await?, Protocol::Http1)
        };
        Ok((
            sender,
            Dial {
                connect,
                tls: Some(handshake),
                protocol,
            },
        ))
    }
}

async fn handshake_http1<T>(io: TokioIo<T>) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| format!("ConnectionError: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Sender::Http1(sender))
}

/// rustls' client setup: the system roots plus `trust`'s CA bundle (or no check at all), ALPN
/// `h2` then `http/1.1`.
fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if trust.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        // The system's roots: any that do not parse are skipped, as browsers and curl do.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &trust.ca_pem {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the CA bundle is not PEM: {e}"))?;
            if certs.is_empty() {
                return Err("the CA bundle holds no certificate".to_owned());
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("a CA certificate of the bundle is refused: {e}"))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `insecureSkipVerify`: any certificate is taken; signatures are still checked, so the
/// handshake itself is real.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
