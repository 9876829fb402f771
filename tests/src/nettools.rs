//! A pod that sees the network as the operator's pods do: the network tools image
//! (`tests/cluster/images.sh --test-tools`: getent, nc and sleep on the project's base image),
//! hardened as the operator hardens its pods, and commands run in it with `kubectl exec`.

use crate::command::kubectl;
use crate::namespace::apply_json;
use crate::operator::is_ready;
use crate::wait::wait_until;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use std::time::Duration;

pub const NETTOOLS_IMAGE: &str = "local/recommender-nettools:dev";

pub struct NetTools {
    namespace: String,
    name: String,
}

impl NetTools {
    /// Starts the pod `nettools` in `namespace` and waits until it is ready.
    pub async fn start(client: &Client, namespace: &str) -> Self {
        let name = "nettools";
        apply_json(
            client,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                        "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "tools", "image": NETTOOLS_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {"limits": {"memory": "32Mi"}},
                        "securityContext": {"readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            }),
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        wait_until(
            Duration::from_secs(120),
            "the nettools pod ready",
            || async { pods.get(name).await.is_ok_and(|p| is_ready(&p)) },
        )
        .await;
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Runs `args` in the pod: `(succeeded, stdout + stderr)`.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let mut argv = vec!["exec", "-n", &self.namespace, &self.name, "--"];
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
