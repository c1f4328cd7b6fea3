//! Finding the target: a run spec's `http://host[:port]` parsed ([`parse_host`]), resolved
//! (a `--resolve HOST:PORT:ADDR` override, else DNS: [`locate`]), and waited on until its
//! readiness path answers ([`wait_ready`]).

use crate::UsageError;
use crate::client;
use crate::engine::Target;
use anyhow::Context;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Parses `http://host[:port]` into (host, port).
///
/// # Errors
/// [`UsageError`] naming `--host` when the URL is not plain http.
pub fn parse_host(url: &str) -> Result<(String, u16), UsageError> {
    let bad = |why: &str| {
        UsageError(format!(
            "--host {url:?}: {why} (write e.g. http://127.0.0.1:8080)"
        ))
    };
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            bad("https is not supported yet")
        } else {
            bad("must start with http://")
        }
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(bad("must not have a path; task paths are absolute"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| bad("bad port"))?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

/// Resolves the target: a matching `--resolve HOST:PORT:ADDR` entry, else DNS.
async fn resolve(host: &str, port: u16, overrides: &[String]) -> anyhow::Result<SocketAddr> {
    for entry in overrides {
        let mut parts = entry.splitn(3, ':');
        let (Some(h), Some(p), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(UsageError(format!("--resolve {entry:?}: write HOST:PORT:ADDR")).into());
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
            return Ok(SocketAddr::new(ip, port));
        }
    }
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to no address"))
}

/// Polls `path` until it answers 2xx, or fails after `timeout` with the last reason.
pub async fn wait_ready(
    target: &Target,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut conn = client::Connection::new(
        target.addr,
        target.host_header.clone(),
        Duration::from_secs(5),
    );
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        match conn.send("GET", path, None).await {
            client::Outcome::Ok { .. } => return Ok(started.elapsed()),
            client::Outcome::Failed { reason, .. } => last = reason,
            client::Outcome::NotSent(why) => last = why.reason().to_owned(),
        }
        tokio::time::sleep(
            Duration::from_millis(200).min(timeout.saturating_sub(started.elapsed())),
        )
        .await;
    }
    anyhow::bail!(
        "target http://{}{path} not ready after {:.0}s: {last}",
        target.host_header,
        timeout.as_secs_f64()
    )
}

/// The address `url` is reached at, and the `Host` header its requests carry.
///
/// # Errors
/// [`UsageError`] for a URL that is not plain http or a malformed override; other errors when
/// the host does not resolve.
pub async fn locate(url: &str, overrides: &[String]) -> anyhow::Result<Target> {
    let (host, port) = parse_host(url)?;
    Ok(Target {
        addr: resolve(&host, port, overrides).await?,
        host_header: format!("{host}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_host;

    #[test]
    fn hosts_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_host("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(parse_host("http://svc.ns/").unwrap(), ("svc.ns".into(), 80));
        assert!(
            parse_host("https://x")
                .unwrap_err()
                .to_string()
                .contains("https is not supported")
        );
        assert!(
            parse_host("127.0.0.1:80")
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        assert!(
            parse_host("http://x/embed")
                .unwrap_err()
                .to_string()
                .contains("path")
        );
    }
}
