//! A pod that sees the network as the operator's pods do: the network tools image
//! (`tests/cluster/images.sh --test-tools`: getent, nc and sleep on the project's base image),
//! hardened as the operator hardens its pods, and commands run in it with `kubectl exec`.

use crate::command::kubectl;
use crate::env::Env;
use crate::namespace::apply_json;
use crate::operator::is_ready;
use crate::wait::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use std::time::Duration;

pub const NETTOOLS_IMAGE: &str = "local/recommender-nettools:dev";
/// The port every nettools pod listens on (TCP), so that other pods can reach it.
pub const NETTOOLS_PORT: u16 = 8080;
/// The label every nettools pod carries, `app=nettools`: a Service may select them.
pub const NETTOOLS_LABEL: (&str, &str) = ("app", "nettools");

pub struct NetTools {
    namespace: String,
    pub name: String,
    /// The pod's address.
    pub ip: String,
}

impl NetTools {
    /// Starts the pod `nettools` in `namespace`, on any node, and waits until it is ready.
    pub async fn start(client: &Client, namespace: &str) -> Self {
        Self::start_on(client, namespace, None).await
    }

    /// As [`NetTools::start`], on that node (the pod `nettools-<node>`).
    pub async fn start_on(client: &Client, namespace: &str, node: Option<&str>) -> Self {
        let name = node.map_or("nettools".to_string(), |n| format!("nettools-{n}"));
        let hardened = json!({"readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                "labels": {NETTOOLS_LABEL.0: NETTOOLS_LABEL.1}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                    "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "tools", "image": NETTOOLS_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"limits": {"memory": "32Mi"}},
                    "securityContext": hardened,
                }, {
                    // Accepts connections and discards what they send: what other pods reach.
                    "name": "listen", "image": NETTOOLS_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/usr/bin/nc", "-dlk", NETTOOLS_PORT.to_string()],
                    "ports": [{"containerPort": NETTOOLS_PORT}],
                    "readinessProbe": {"tcpSocket": {"port": NETTOOLS_PORT}, "periodSeconds": 2},
                    "resources": {"limits": {"memory": "32Mi"}},
                    "securityContext": hardened,
                }],
            },
        });
        if let Some(node) = node {
            pod["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node});
        }
        apply_json(client, &pod).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let ip = wait_for(
            Duration::from_secs(120),
            &format!("the {name} pod ready"),
            || async {
                let pod = pods.get(&name).await.ok().filter(is_ready)?;
                pod.status?.pod_ip
            },
        )
        .await;
        Self {
            namespace: namespace.into(),
            name,
            ip,
        }
    }

    /// One on each node, started together, in the order of `env.nodes`.
    pub async fn start_on_every_node(client: &Client, namespace: &str, env: &Env) -> Vec<Self> {
        futures::future::join_all(
            env.nodes
                .iter()
                .map(|node| Self::start_on(client, namespace, Some(&node.name))),
        )
        .await
    }

    /// Runs `args` in the pod: `(succeeded, stdout + stderr)`.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let mut argv = vec![
            "exec",
            "-n",
            &self.namespace,
            &self.name,
            "-c",
            "tools",
            "--",
        ];
        argv.extend_from_slice(args);
        kubectl(&argv)
    }

    /// The address `name` resolves to in the pod (its resolver, the cluster's DNS), or why not.
    pub fn resolve(&self, name: &str) -> Result<String, String> {
        match self.exec(&["/usr/bin/getent", "hosts", name]) {
            (true, out) => out
                .split_whitespace()
                .next()
                .map(str::to_string)
                .ok_or_else(|| format!("getent hosts {name} printed nothing")),
            (false, out) => Err(format!("getent hosts {name}: {out}")),
        }
    }

    /// Whether a TCP connection from the pod to `host:port` opens within 3 s.
    pub fn connects(&self, host: &str, port: u16) -> bool {
        let port = port.to_string();
        self.exec(&["/usr/bin/nc", "-z", "-w", "3", host, &port]).0
    }
}
