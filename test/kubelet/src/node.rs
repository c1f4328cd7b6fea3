//! The harness' Node: registered Ready with loopback addresses, so the endpointslice controller
//! and the Job and Deployment controllers treat its pods as they would a real node's.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Creates the Node if it is missing and marks it Ready; `log_port` is its kubelet endpoint
/// (where the apiserver reaches the pods' logs), when served.
pub async fn register(
    client: &kube::Client,
    name: &str,
    log_port: Option<u16>,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "loadgate.dev/process-kubelet": "true",
            },
        },
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    heartbeat(client, name, log_port).await
}

/// Writes the Node's status: Ready, its addresses, capacity and kubelet endpoint.
pub async fn heartbeat(
    client: &kube::Client,
    name: &str,
    log_port: Option<u16>,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let capacity = json!({"cpu": "16", "memory": "64Gi", "pods": "110"});
    let status = json!({
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "process-kubelet runs pods as local processes",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": capacity,
            "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": log_port.unwrap_or(0)}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "local processes",
                "containerRuntimeVersion": "process://", "kubeletVersion": "process-kubelet",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            },
        }
    });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}
