//! Cluster DNS for processes: each Service name and port → the address of one ready endpoint,
//! read from the EndpointSlices the real endpointslice controller writes, written as
//! `HOST:PORT:ADDR` entries for the runner's `--resolve` (env `LOADRUNNER_RESOLVE`).
//!
//! A pod here has no network namespace, so the Service's port must equal its target port: the
//! entry only swaps the address. Services whose ports differ are skipped with a log line.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `HOST:PORT:ADDR` entries for every Service with a ready endpoint, under each name a pod may
/// use: `svc.ns.svc.cluster.local`, `svc.ns.svc` and `svc.ns`.
pub fn resolve_entries(services: &[Service], slices: &[EndpointSlice]) -> Vec<String> {
    let mut entries = Vec::new();
    for slice in slices {
        let Some(service_name) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let namespace = slice.metadata.namespace.as_deref().unwrap_or("default");
        let Some(service) = services.iter().find(|s| {
            s.metadata.name.as_deref() == Some(service_name.as_str())
                && s.metadata.namespace.as_deref() == Some(namespace)
        }) else {
            continue;
        };
        let ready_address = slice
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .find_map(|e| e.addresses.first());
        let Some(address) = ready_address else {
            continue;
        };
        for slice_port in slice.ports.iter().flatten() {
            let Some(target) = slice_port.port else {
                continue;
            };
            let service_port = service
                .spec
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .find(|p| p.name == slice_port.name);
            let Some(service_port) = service_port else {
                continue;
            };
            if service_port.port != target {
                tracing::warn!(
                    service = %service_name, port = service_port.port, target,
                    "skipped: a process pod cannot remap ports"
                );
                continue;
            }
            for host in [
                format!("{service_name}.{namespace}.svc.cluster.local"),
                format!("{service_name}.{namespace}.svc"),
                format!("{service_name}.{namespace}"),
            ] {
                entries.push(format!("{host}:{target}:{address}"));
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
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn service(port: i32) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("minilm".into()),
                namespace: Some("ml".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn slice(ready: &[(&str, bool)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some("minilm-x1".into()),
                namespace: Some("ml".into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_owned(),
                    "minilm".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(
                ready
                .iter()
                .map(|(addr, ready)| Endpoint {
                    addresses: vec![(*addr).into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..EndpointPort::default()
            }]),
        }
    }

    #[test]
    fn each_service_name_maps_to_a_ready_endpoint() {
        let entries = resolve_entries(
            &[service(8080)],
            &[slice(&[("127.0.0.10", false), ("127.0.0.11", true)])],
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
        assert!(resolve_entries(&[service(8080)], &[slice(&[("127.0.0.10", false)])]).is_empty());
        assert!(resolve_entries(&[service(80)], &[slice(&[("127.0.0.10", true)])]).is_empty());
    }
}
