//! Pod settings that put training on a dedicated node pool (issue 14): node selector,
//! tolerations, ServiceAccount, PriorityClass, pull secrets, labels, annotations and variables
//! reach both the trainer's and the predictor's pods, and the schema refuses labels the operator
//! sets itself.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use recommender_e2e::*;
use recommender_operator::crd::RecommenderModelSpec;
use serde_json::json;

/// The labels, taint, PriorityClass and pods of a node pool made for one test, removed when it
/// ends, even by a panic (the node serves the tests after it).
struct NodePool {
    node: String,
}

const POOL_KEY: &str = "e2e.recommender.dev/pool";

impl NodePool {
    fn create(node: &str) -> Self {
        let pool = Self { node: node.into() };
        let label = format!("{POOL_KEY}=highmem");
        let taint = format!("{POOL_KEY}=highmem:NoSchedule");
        for args in [
            ["label", "node", node, &label, "--overwrite"],
            ["taint", "node", node, &taint, "--overwrite"],
        ] {
            let (ok, out) = kubectl(&args);
            assert!(ok, "kubectl {args:?}: {out}");
        }
        let (ok, out) = kubectl(&["create", "priorityclass", "e2e-batch-low", "--value=100"]);
        assert!(ok || out.contains("AlreadyExists"), "{out}");
        pool
    }
}

impl Drop for NodePool {
    fn drop(&mut self) {
        let _ = kubectl(&["taint", "node", &self.node, &format!("{POOL_KEY}-")]);
        let _ = kubectl(&["label", "node", &self.node, &format!("{POOL_KEY}-")]);
        let _ = kubectl(&["delete", "priorityclass", "e2e-batch-low", "--wait=false"]);
    }
}

/// Trainer and predictor settings for the pool, and for the pods' identity and metadata.
fn on_the_pool(spec: &mut RecommenderModelSpec) {
    let settings = json!({
        "nodeSelector": {POOL_KEY: "highmem"},
        "tolerations": [{"key": POOL_KEY, "operator": "Equal", "value": "highmem", "effect": "NoSchedule"}],
        "serviceAccountName": "recommender-workloads",
        "priorityClassName": "e2e-batch-low",
        "imagePullSecrets": [{"name": "registry-login"}],
        "labels": {"team": "recs"},
        "annotations": {"cost-center": "ml-42"},
        "env": [{"name": "E2E_MARK", "value": "from-the-spec"}],
    });
    spec.trainer.pod = serde_json::from_value(settings.clone()).unwrap();
    spec.predictor.pod = serde_json::from_value(settings).unwrap();
}

fn assert_pod_settings(pod: &Pod, node: &str) {
    let spec = pod.spec.as_ref().unwrap();
    let name = pod.name_any();
    assert_eq!(spec.node_name.as_deref(), Some(node), "{name} scheduled");
    assert_eq!(
        spec.node_selector.as_ref().unwrap()[POOL_KEY],
        "highmem",
        "{name}"
    );
    assert!(
        spec.tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some(POOL_KEY)),
        "{name}"
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("recommender-workloads"),
        "{name}"
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("e2e-batch-low"),
        "{name}"
    );
    assert_eq!(
        spec.priority,
        Some(100),
        "{name}: the PriorityClass applied"
    );
    assert_eq!(
        spec.image_pull_secrets.as_ref().unwrap()[0].name,
        "registry-login"
    );
    assert_eq!(spec.automount_service_account_token, Some(false), "{name}");
    assert_eq!(pod.labels()["team"], "recs", "{name}");
    assert_eq!(pod.annotations()["cost-center"], "ml-42", "{name}");
    let env = spec.containers[0].env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "E2E_MARK" && e.value.as_deref() == Some("from-the-spec")),
        "{name}: {env:?}"
    );
}

/// Runs alone (`cluster_wide_`, tests/nextest.toml): it taints a node, the one its model store's
/// volume is on, where the volumes of other tests may be too, whose pods could not start there
/// meanwhile.
#[tokio::test]
async fn cluster_wide_pod_settings_put_training_on_a_tainted_node_pool_and_reach_both_pods() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-pool").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    for manifest in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "recommender-workloads", "namespace": ns.name}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "registry-login", "namespace": ns.name},
            "stringData": {".dockerconfigjson": "{\"auths\": {}}"}}),
    ] {
        apply_json(&client, &manifest).await;
    }
    // Only pods that tolerate the taint may start on the node from now on. The pool is the
    // node of the model store's volume, where trainer and predictor must run anyway.
    let _pool = NodePool::create(&ns.store_node);

    // The schema refuses what the operator sets, naming the field.
    let mut reserved = postgres_model(&env, &ns, "reserved", on_the_pool);
    reserved
        .spec
        .trainer
        .pod
        .labels
        .insert("recommender.dev/run".into(), "7".into());
    let refused = models(&client, &ns.name)
        .create(&Default::default(), &reserved)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("labels: keys under recommender.dev/"),
        "{refused}"
    );

    apply_model(&client, &postgres_model(&env, &ns, "movies", on_the_pool)).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    for component in ["trainer", "predictor"] {
        let selector = format!("app.kubernetes.io/component={component}");
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        assert!(!list.items.is_empty(), "a {component} pod");
        for pod in &list.items {
            assert_pod_settings(pod, &ns.store_node);
        }
    }
    let trainer = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=trainer"))
        .await
        .unwrap();
    let env_names: Vec<String> = trainer.items[0].spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(
        env_names,
        ["PGPASSWORD", "E2E_MARK"],
        "the operator's own variable first"
    );
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}
