//! The Node object: registration and heartbeats (node status and the Lease in kube-node-lease),
//! which is what the scheduler and the node-lifecycle controller look at.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::Config;
use crate::Error;

const MANAGER: &str = "recommender-node-agent";
const LEASE_SECONDS: i32 = 40;

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn conditions(transition: &str) -> serde_json::Value {
    let heartbeat = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition,
        })
    };
    json!([
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "recommender test node agent is running"
        ),
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "ok"
        ),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
    ])
}

fn status(config: &Config, transition: &str) -> serde_json::Value {
    let resources = json!({
        "cpu": config.cpu, "memory": config.memory, "pods": config.max_pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions(transition),
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "recommender-test-node", "systemUUID": "recommender-test-node",
            "bootID": config.boot_id, "kernelVersion": "", "osImage": "local processes",
            "containerRuntimeVersion": "local://0", "kubeletVersion": "v1.34.0-recommender-node-agent",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    })
}

/// Creates or updates the Node, Ready and without taints, so the scheduler binds pods to it.
pub async fn register(client: &Client, config: &Config) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &config.node_name;
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": std::env::consts::ARCH, "recommender.local/node-agent": "true",
        }},
    });
    let apply = PatchParams::apply(MANAGER).force();
    nodes
        .patch(name, &apply, &Patch::Apply(&node))
        .await
        .map_err(Error::kube(format!("registering Node {name}")))?;
    // Taints the node-lifecycle controller put on while no agent was heartbeating; they clear
    // themselves once Ready, but removing them now makes the node usable at once.
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await
        .map_err(Error::kube(format!("clearing taints of Node {name}")))?;
    heartbeat(client, config, &now()).await
}

/// One heartbeat: node status and lease renewal.
pub async fn heartbeat(client: &Client, config: &Config, since: &str) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &config.node_name;
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status(config, since)})),
        )
        .await
        .map_err(Error::kube(format!("updating status of Node {name}")))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
    });
    leases
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .map_err(Error::kube(format!(
            "renewing Lease kube-node-lease/{name}"
        )))?;
    Ok(())
}

/// Heartbeats forever; errors (an API server restart) are logged and retried on the next beat.
pub async fn heartbeat_loop(client: Client, config: Config, since: String) {
    let mut failing = false;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        match heartbeat(&client, &config, &since).await {
            Ok(()) if failing => {
                tracing::info!("heartbeats succeed again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                failing = true;
            }
        }
    }
}
