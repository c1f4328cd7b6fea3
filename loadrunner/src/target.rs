//! Finding the target: a run spec's `http(s)://host[:port]` parsed ([`parse_url`]), its
//! `--resolve HOST:PORT:ADDR` pin, TLS trust and headers (secrets read from the environment
//! variable or file the spec names: [`resolve_headers`]) made into an [`Endpoint`]
//! ([`locate`]), and waited on until its readiness path answers ([`wait_ready`]).

use crate::UsageError;
use crate::client;
use crate::connect::{Endpoint, Trust};
use loadgate_api::run_spec::RunSpec;
use loadgate_api::target::{MAX_CA_BYTES, MAX_HEADER_VALUE_BYTES, RunHeader, header_value_ok};
use loadgate_results::sample::Outcome;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Parses `http(s)://host[:port]` into (https, host, port).
///
/// # Errors
/// [`UsageError`] naming `--host` when the URL is not http or https with no path.
pub fn parse_url(url: &str) -> Result<(bool, String, u16), UsageError> {
    let bad = |why: &str| {
        UsageError(format!(
            "--host {url:?}: {why} (write e.g. http://127.0.0.1:8080 or https://embed.example.com)"
        ))
    };
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(bad("must start with http:// or https://")),
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(bad("must not have a path; task paths are absolute"));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            if h.starts_with('[') && !h.ends_with(']') {
                (authority, default_port)
            } else {
                (h, p.parse().map_err(|_| bad("bad port"))?)
            }
        }
        _ => (authority, default_port),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((
        https,
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

/// Parses `http://host[:port]` or `https://…` into (host, port).
///
/// # Errors
/// As [`parse_url`].
pub fn parse_host(url: &str) -> Result<(String, u16), UsageError> {
    parse_url(url).map(|(_, host, port)| (host, port))
}

/// The headers `spec` names, each value read now: a plain one, an environment variable's (the
/// operator sets it from a Secret) or a file's (a mounted Secret key, one trailing newline
/// dropped). Errors name the header and where its value was to come from, never a value.
///
/// # Errors
/// [`UsageError`] for a variable not set, a file not readable, or a value that is not header
/// text.
pub fn resolve_headers(headers: &[RunHeader]) -> Result<Vec<(String, String)>, UsageError> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let at = format!("headers[{i}] ({})", h.name);
            let value = match (&h.value, &h.value_from_env, &h.value_from_file) {
                (Some(v), _, _) => v.clone(),
                (_, Some(var), _) => std::env::var(var).map_err(|_| {
                    UsageError(format!("{at}: environment variable {var} is not set"))
                })?,
                (_, _, Some(path)) => read_bounded(path, MAX_HEADER_VALUE_BYTES)
                    .map_err(|e| UsageError(format!("{at}: {path}: {e}")))
                    .and_then(|bytes| {
                        String::from_utf8(bytes)
                            .map_err(|_| UsageError(format!("{at}: {path} is not UTF-8 text")))
                    })?,
                _ => return Err(UsageError(format!("{at}: no value"))),
            };
            let value = value
                .strip_suffix('\n')
                .map(|v| v.strip_suffix('\r').unwrap_or(v))
                .unwrap_or(&value)
                .to_owned();
            if !header_value_ok(&value) {
                return Err(UsageError(format!(
                    "{at}: the value is not header text (line breaks, or over 8 KiB)"
                )));
            }
            Ok((h.name.clone(), value))
        })
        .collect()
}

/// Reads at most `limit` bytes of `path`: a larger file is an error, before it is read whole.
pub(crate) fn read_bounded(path: &str, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            limit >> 10
        )));
    }
    Ok(bytes)
}

/// The `--resolve HOST:PORT:ADDR` entry that pins `host:port`, if any.
fn pinned(host: &str, port: u16, overrides: &[String]) -> Result<Option<SocketAddr>, UsageError> {
    for entry in overrides {
        let mut parts = entry.splitn(3, ':');
        let (Some(h), Some(p), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(UsageError(format!(
                "--resolve {entry:?}: write HOST:PORT:ADDR"
            )));
        };
        if h == host && p.parse::<u16>().ok() == Some(port) {
            let ip = addr
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .map_err(|_| {
                    UsageError(format!(
                        "--resolve {entry:?}: {addr:?} is not an IP address"
                    ))
                })?;
            return Ok(Some(SocketAddr::new(ip, port)));
        }
    }
    Ok(None)
}

/// Polls `path` until it answers 2xx (or 401/403: up, refusing the credentials), or fails
/// after `timeout` with the last reason.
pub async fn wait_ready(
    target: &Arc<Endpoint>,
    path: &str,
    timeout: Duration,
) -> Result<Duration, crate::RunError> {
    let started = Instant::now();
    let mut conn = client::Connection::new(target.clone(), Duration::from_secs(5));
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        match conn.send("GET", path, None).await {
            Outcome::Ok { .. } => return Ok(started.elapsed()),
            // Up, and refusing the credentials: the load runs, and each refused request is a
            // failure named by its status, rather than the run ending with no verdict.
            Outcome::Failed { reason, .. }
                if reason == "HTTPError 401" || reason == "HTTPError 403" =>
            {
                tracing::warn!(
                    path,
                    "the target answers the readiness path with {reason}: its credentials \
                     (target.headers) are refused, and requests will fail the same way"
                );
                return Ok(started.elapsed());
            }
            Outcome::Failed { reason, .. } => last = reason,
            Outcome::NotSent(why) => last = why.reason().to_owned(),
        }
        tokio::time::sleep(
            Duration::from_millis(200).min(timeout.saturating_sub(started.elapsed())),
        )
        .await;
    }
    Err(crate::RunError::NotReady {
        url: format!("{}{path}", target.url()),
        seconds: timeout.as_secs_f64(),
        last,
    })
}

/// The endpoint `spec` targets: its URL (pinned by a matching `--resolve` entry), TLS trust
/// (the CA bundle read from its file) and headers (secrets read from the environment or files).
///
/// # Errors
/// [`UsageError`] for a URL, CA bundle, header or override that cannot be used.
pub fn locate(spec: &RunSpec, overrides: &[String]) -> Result<Arc<Endpoint>, UsageError> {
    let (_, host, port) = parse_url(&spec.target)?;
    let pin = pinned(&host, port, overrides)?;
    let tls = spec.tls.clone().unwrap_or_default();
    let ca_pem = match (&tls.ca_file, &tls.ca_pem) {
        (Some(path), _) => Some(
            read_bounded(path, MAX_CA_BYTES)
                .map_err(|e| UsageError(format!("tls.caFile {path}: {e}")))?,
        ),
        (None, Some(pem)) => Some(pem.as_bytes().to_vec()),
        (None, None) => None,
    };
    let trust = Trust {
        ca_pem,
        insecure_skip_verify: tls.insecure_skip_verify,
        server_name: tls.server_name.clone(),
    };
    let headers = resolve_headers(&spec.headers)?;
    Endpoint::new(&spec.target, pin, &trust, headers)
        .map(Arc::new)
        .map_err(|e| UsageError(format!("target {}: {e}", spec.target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_host("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(parse_host("http://svc.ns/").unwrap(), ("svc.ns".into(), 80));
        assert_eq!(
            parse_url("https://embed.example.com").unwrap(),
            (true, "embed.example.com".into(), 443)
        );
        assert_eq!(
            parse_url("https://[::1]:8443/").unwrap(),
            (true, "::1".into(), 8443)
        );
        assert_eq!(
            parse_url("http://[::1]").unwrap(),
            (false, "::1".into(), 80)
        );
        assert!(
            parse_host("127.0.0.1:80")
                .unwrap_err()
                .to_string()
                .contains("https://")
        );
        assert!(
            parse_host("http://x/embed")
                .unwrap_err()
                .to_string()
                .contains("path")
        );
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    fn header(name: &str) -> RunHeader {
        RunHeader {
            name: name.into(),
            value: None,
            value_from_env: None,
            value_from_file: None,
        }
    }

    #[test]
    fn secret_headers_are_read_from_their_file_and_errors_never_hold_a_value() {
        let dir = std::env::temp_dir().join(format!("lr-headers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "Bearer s3cr3t\n").unwrap();
        let mut from_file = header("Authorization");
        from_file.value_from_file = Some(file.display().to_string());
        let mut plain = header("X-Tenant");
        plain.value = Some("blue".into());
        assert_eq!(
            resolve_headers(&[from_file, plain]).unwrap(),
            vec![
                ("Authorization".into(), "Bearer s3cr3t".into()),
                ("X-Tenant".into(), "blue".into())
            ]
        );
        let mut unset = header("X-Api-Key");
        unset.value_from_env = Some("LOADGATE_TEST_UNSET_HEADER_VAR".into());
        let e = resolve_headers(&[unset]).unwrap_err().0;
        assert!(
            e.contains("headers[0] (X-Api-Key)") && e.contains("not set"),
            "{e}"
        );
        std::fs::write(&file, "a\nb").unwrap();
        let mut broken = header("Authorization");
        broken.value_from_file = Some(file.display().to_string());
        let e = resolve_headers(&[broken]).unwrap_err().0;
        assert!(e.contains("not header text") && !e.contains("a\nb"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
