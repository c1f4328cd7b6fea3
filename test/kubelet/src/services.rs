//! Cluster DNS for processes: each Service name and port → the address of one ready pod it
//! selects, written as `HOST:PORT:ADDR` entries for the runner's `--resolve` (env
//! `LOADRUNNER_RESOLVE`).
//!
//! The pods are the ones this kubelet runs: it knows their labels, readiness and ports first
//! hand. (EndpointSlices cannot carry them: the apiserver rejects loopback endpoint addresses.)
//! A pod here has no network namespace, so the Service's port must equal its target port: the
//! entry only swaps the address. Services whose ports differ are skipped with a log line.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What a Service needs to know of a pod.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The pod's namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Whether every container is ready.
    pub ready: bool,
    /// Named container ports.
    pub ports: BTreeMap<String, i32>,
}

/// `HOST:PORT:ADDR` entries for every Service with a ready backend, under each name a pod may
/// use: `svc.ns.svc.cluster.local`, `svc.ns.svc` and `svc.ns`.
pub fn resolve_entries(services: &[Service], backends: &[Backend]) -> Vec<String> {
    let mut entries = Vec::new();
    for service in services {
        let (Some(name), Some(spec)) = (service.metadata.name.as_deref(), &service.spec) else {
            continue;
        };
        let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let Some(backend) = backends.iter().find(|b| {
            b.ready
                && b.namespace == namespace
                && selector.iter().all(|(k, v)| b.labels.get(k) == Some(v))
        }) else {
            continue;
        };
        for port in spec.ports.iter().flatten() {
            let target = match &port.target_port {
                None => Some(port.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(named)) => backend.ports.get(named).copied(),
            };
            if target != Some(port.port) {
                tracing::warn!(
                    service = %name, port = port.port, ?target,
                    "skipped: a process pod cannot remap ports"
                );
                continue;
            }
            for host in [
                format!("{name}.{namespace}.svc.cluster.local"),
                format!("{name}.{namespace}.svc"),
                format!("{name}.{namespace}"),
            ] {
                entries.push(format!("{host}:{}:{}", port.port, backend.ip));
            }
        }
    }
    entries.sort();
    entries.dedup();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(port: i32) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("minilm".into()),
                namespace: Some("ml".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "minilm".into())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port,
                    target_port: Some(IntOrString::String("http".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn backend(ip: u8, ready: bool, app: &str) -> Backend {
        Backend {
            namespace: "ml".into(),
            labels: BTreeMap::from([("app".into(), app.into())]),
            ip: Ipv4Addr::new(127, 0, 0, ip),
            ready,
            ports: BTreeMap::from([("http".into(), 8080)]),
        }
    }

    #[test]
    fn each_service_name_maps_to_a_ready_selected_pod() {
        let entries = resolve_entries(
            &[service(8080)],
            &[
                backend(9, true, "other"),
                backend(10, false, "minilm"),
                backend(11, true, "minilm"),
            ],
        );
        assert_eq!(
            entries,
            [
                "minilm.ml.svc.cluster.local:8080:127.0.0.11",
                "minilm.ml.svc:8080:127.0.0.11",
                "minilm.ml:8080:127.0.0.11",
            ]
        );
    }

    #[test]
    fn unready_services_and_remapped_ports_give_nothing() {
        assert!(resolve_entries(&[service(8080)], &[backend(10, false, "minilm")]).is_empty());
        assert!(resolve_entries(&[service(80)], &[backend(10, true, "minilm")]).is_empty());
    }
}
