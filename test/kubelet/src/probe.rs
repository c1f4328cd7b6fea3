//! The HTTP readiness probe, as the kubelet runs it: GET the path on the pod address and port;
//! a status from 200 to 399 passes, anything else (or no answer within the timeout) fails.
//! The harness probes every second whatever `periodSeconds` says, so tests do not wait on it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A resolved HTTP probe.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpProbe {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
    /// How long one try may take.
    pub timeout: Duration,
}

/// The container's readiness probe at `ip`, or `None` when it has none (ready once running).
pub fn readiness(container: &Container, ip: Ipv4Addr) -> Result<Option<HttpProbe>, String> {
    let Some(probe) = &container.readiness_probe else {
        return Ok(None);
    };
    http_probe(container, probe, ip).map(Some)
}

fn http_probe(container: &Container, probe: &Probe, ip: Ipv4Addr) -> Result<HttpProbe, String> {
    let get = probe.http_get.as_ref().ok_or_else(|| {
        format!(
            "container {:?}: only httpGet readiness probes are supported",
            container.name
        )
    })?;
    let port = match &get.port {
        IntOrString::Int(port) => *port,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("probe port {name:?} is not a port of the container"))?,
    };
    let port = u16::try_from(port).map_err(|_| format!("probe port {port} is out of range"))?;
    let seconds = |v: Option<i32>, default: i32| u64::try_from(v.unwrap_or(default)).unwrap_or(1);
    Ok(HttpProbe {
        addr: SocketAddr::from((ip, port)),
        path: get.path.clone().unwrap_or_else(|| "/".to_owned()),
        timeout: Duration::from_secs(seconds(probe.timeout_seconds, 1).max(1)),
    })
}

/// One try: true when the answer's status is 2xx or 3xx.
pub async fn passes(probe: &HttpProbe) -> bool {
    tokio::time::timeout(probe.timeout, get_status(probe))
        .await
        .ok()
        .flatten()
        .is_some_and(|status| (200..400).contains(&status))
}

async fn get_status(probe: &HttpProbe) -> Option<u16> {
    let mut stream = TcpStream::connect(probe.addr).await.ok()?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kube-probe/process-kubelet\r\nConnection: close\r\n\r\n",
        probe.path, probe.addr
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await.ok()?;
        if n == 0 {
            break;
        }
        read += n;
    }
    // "HTTP/1.1 200 OK"
    std::str::from_utf8(&head[..read])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
    use tokio::net::TcpListener;

    fn container(port: IntOrString) -> Container {
        Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/health".into()),
                    port,
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(5),
                ..Probe::default()
            }),
            ..Container::default()
        }
    }

    #[test]
    fn named_ports_resolve_to_the_container_port() {
        let probe = readiness(
            &container(IntOrString::String("http".into())),
            Ipv4Addr::new(127, 0, 0, 5),
        )
        .unwrap()
        .unwrap();
        assert_eq!(probe.addr, "127.0.0.5:8080".parse().unwrap());
        assert_eq!(probe.path, "/health");
        assert!(
            readiness(
                &container(IntOrString::String("grpc".into())),
                Ipv4Addr::LOCALHOST
            )
            .is_err()
        );
        assert_eq!(
            readiness(&Container::default(), Ipv4Addr::LOCALHOST),
            Ok(None)
        );
    }

    async fn answer_once(status_line: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(status_line.as_bytes()).await;
        });
        addr
    }

    #[tokio::test]
    async fn two_hundreds_pass_and_five_hundreds_fail() {
        let probe = |addr| HttpProbe {
            addr,
            path: "/health".into(),
            timeout: Duration::from_secs(1),
        };
        let ok = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert!(passes(&probe(ok)).await);
        let loading = answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert!(!passes(&probe(loading)).await);
        // Nothing listens: the connection is refused.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(!passes(&probe(closed)).await);
    }
}
