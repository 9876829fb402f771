//! The cluster client, and a namespace of each test's own holding what a platform team would
//! have set up before applying a model: the model store (a PersistentVolumeClaim bound to a real
//! PersistentVolume on one of the nodes), the database password Secret, and the database as a
//! Service.

use crate::command::kubectl;
use crate::env::Env;
use crate::wait::wait_until;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

pub const MODEL_STORE_CLAIM: &str = "model-store";
pub const DB_SECRET: &str = "ratings-db";
/// The selectorless Service in front of the host's PostgreSQL.
pub const DB_SERVICE: &str = "postgres";

/// A client from KUBECONFIG, with the CRD from `crds/` applied (what a user applies) and served.
pub async fn client() -> Client {
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot build a client from KUBECONFIG: {e}"));
    if let Err(e) = client.apiserver_version().await {
        panic!(
            "the local API server does not answer ({e}); is tests/cluster/cluster.sh up running?"
        );
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/recommendermodels.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let crd: Value = serde_yaml::from_str(&text).expect("CRD YAML");
    apply_json(&client, &crd).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_until(
        Duration::from_secs(30),
        "the CRD to be Established",
        || async {
            crds.get("recommendermodels.recommender.dev")
                .await
                .ok()
                .and_then(|c| c.status?.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await;
    client
}

/// Server-side apply of a manifest given as JSON, as `kubectl apply --server-side` does.
pub async fn apply_json(client: &Client, manifest: &Value) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(manifest.clone()).expect("manifest shape");
    let gvk = GroupVersionKind::try_from(obj.types.as_ref().expect("apiVersion and kind"))
        .expect("valid apiVersion");
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovering {gvk:?}: {e}"));
    let api: Api<DynamicObject> = match (caps.scope, obj.namespace()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("e2e-tests").force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {manifest}: {e}"))
}

pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    /// The model store's folder on the machine.
    pub store: PathBuf,
    /// The node the model store's volume is on. A `local` PersistentVolume is one node's disk,
    /// like block storage that attaches to one node at a time (`ReadWriteOnce`): every pod that
    /// mounts the claim (trainer, predictors) runs on this node.
    pub store_node: String,
}

impl TestNamespace {
    /// A namespace named `prefix-<pid>`, its model store on a node picked from that name, so that
    /// the suite's concurrent tests spread over the nodes.
    pub async fn create(client: &Client, env: &Env, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", std::process::id() % 100_000);
        let node = spread_over(env, &name);
        Self::create_on(client, env, &name, &node).await
    }

    /// A namespace of exactly this name: for what must know it in advance (a database
    /// certificate naming `postgres.<namespace>.svc.cluster.local`).
    pub async fn create_named(client: &Client, env: &Env, name: &str) -> Self {
        Self::create_on(client, env, name, &spread_over(env, name)).await
    }

    /// A namespace of exactly this name with its model store on `node`.
    pub async fn create_on(client: &Client, env: &Env, name: &str, node: &str) -> Self {
        let name = name.to_string();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let _ = namespaces
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        wait_until(
            Duration::from_secs(90),
            "an old namespace of that name to go",
            || async { namespaces.get_opt(&name).await.ok().flatten().is_none() },
        )
        .await;
        let ns = Self {
            store: env.volumes.join(&name).join(MODEL_STORE_CLAIM),
            store_node: env.node(node).name.clone(),
            name,
            client: client.clone(),
        };
        // An earlier namespace of this name (a fixed name, or a process id seen before) left its
        // artifacts; the store writes each key once, so a new model would find its v2 taken.
        match std::fs::remove_dir_all(&ns.store) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                panic!("emptying {}: {e}", ns.store.display())
            }
            _ => {}
        }
        for manifest in ns.manifests(env) {
            apply_json(client, &manifest).await;
        }
        ns
    }

    fn manifests(&self, env: &Env) -> Vec<Value> {
        let ns = &self.name;
        // The PersistentVolume's folder must exist before a pod mounts it; the kubelet then
        // gives it to the pod's fsGroup.
        std::fs::create_dir_all(&self.store)
            .unwrap_or_else(|e| panic!("creating {}: {e}", self.store.display()));
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                // Opted in: the operator uses only Secrets labelled so.
                "metadata": {"name": DB_SECRET, "namespace": ns,
                    "labels": {"recommender.dev/allow": "true"}},
                "stringData": {"password": env.pg.password},
            }),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": self.volume_name()},
                "spec": {
                    "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                    "claimRef": {"namespace": ns, "name": MODEL_STORE_CLAIM},
                    "local": {"path": self.store},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.store_node]}
                    ]}]}},
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": MODEL_STORE_CLAIM, "namespace": ns},
                "spec": {
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                    "volumeName": self.volume_name(),
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }),
            // An external database, the way a cluster reaches one: a Service without a selector
            // and an EndpointSlice naming the host's address.
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": DB_SERVICE, "namespace": ns},
                "spec": {"ports": [{"name": "postgres", "port": 5432}]},
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "postgres-host", "namespace": ns,
                    "labels": {"kubernetes.io/service-name": DB_SERVICE}},
                "addressType": "IPv4",
                "ports": [{"name": "postgres", "port": env.pg.pod_port}],
                "endpoints": [{"addresses": [env.pg.pod_host], "conditions": {"ready": true}}],
            }),
        ]
    }

    fn volume_name(&self) -> String {
        format!("{}-{MODEL_STORE_CLAIM}", self.name)
    }

    /// The database's in-cluster name, as a model's `spec.source.postgres.host`.
    pub fn db_host(&self) -> String {
        format!("{DB_SERVICE}.{}.svc.cluster.local", self.name)
    }
}

/// One of the nodes, the same for the same name (FNV-1a of it).
fn spread_over(env: &Env, name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    env.nodes[(hash % env.nodes.len() as u64) as usize]
        .name
        .clone()
}

/// Deleting the namespace stops the test's pods even when the test panicked; `kubectl` because
/// `Drop` cannot await. The PersistentVolume is cluster-scoped and retained, so it goes too.
impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
        let _ = kubectl(&["delete", "pv", &self.volume_name(), "--wait=false"]);
    }
}
