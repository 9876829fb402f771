//! The operator installed by its chart into a namespace of its own, watching another: it trains
//! and serves as its own ServiceAccount, and the API server's audit log shows none of its
//! requests denied and none outside its two namespaces.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use recommender_e2e::*;
use std::time::Duration;

#[tokio::test]
async fn operator_installed_by_the_chart_serves_a_model_as_its_service_account() {
    let env = Env::load();
    let client = client().await;
    let models_ns = TestNamespace::create(&client, &env, "e2e-chart").await;
    let op_ns = TestNamespace::create(&client, &env, "e2e-chart-op").await;
    Operator::install(
        &client,
        &env.repo,
        &op_ns.name,
        &models_ns.name,
        &["leaderElection.enabled=true"],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &op_ns.name);
    let operator_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=rec"))
        .await
        .unwrap()
        .items;
    assert_eq!(operator_pods.len(), 1, "one operator pod");
    let pod_name = operator_pods[0].name_any();

    apply_model(&client, &postgres_model(&env, &models_ns, "movies", |_| {})).await;
    wait_status(
        &models(&client, &models_ns.name),
        "movies",
        Duration::from_secs(240),
        "v1 promoted and served",
        |s| serves(s, "v1"),
    )
    .await;
    assert_served_by(&client, &models_ns.name, "movies", "v1").await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), &op_ns.name);
    let lease = leases.get("rec-recommender-operator").await.unwrap();
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(pod_name.as_str()), "Lease holder");

    let user = format!(
        "system:serviceaccount:{}:rec-recommender-operator",
        op_ns.name
    );
    let events = audit_events_of(&env, &user);
    let made = |verb: &str, resource: &str, sub: &str, ns: &str| {
        events.iter().any(|e| {
            e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["subresource"].as_str().unwrap_or("") == sub
                && e["objectRef"]["namespace"] == ns
                && e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)
        })
    };
    let m = models_ns.name.as_str();
    // Server-side apply: creations are PATCH requests too.
    for (verb, resource, sub, what) in [
        ("patch", "jobs", "", "trainer Job applied"),
        ("patch", "deployments", "", "predictor applied"),
        ("patch", "recommendermodels", "status", "status written"),
        ("get", "secrets", "", "database password read"),
    ] {
        assert!(made(verb, resource, sub, m), "{what} as {user}");
    }
    assert!(
        made("create", "leases", "", &op_ns.name) || made("update", "leases", "", &op_ns.name),
        "Lease taken as {user}"
    );
    let denied: Vec<_> = events
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        denied.is_empty(),
        "requests the chart's RBAC denied: {denied:#?}"
    );
    let elsewhere: Vec<_> = events
        .iter()
        // Non-resource URLs such as /version carry no objectRef; cluster-scoped ones no namespace.
        .filter(|e| {
            let ns = e["objectRef"]["namespace"].as_str().unwrap_or("");
            e["objectRef"].is_object() && ns != m && ns != op_ns.name
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests outside its namespaces: {elsewhere:#?}"
    );

    let (ok, out) = helm(&["uninstall", "rec", "--namespace", &op_ns.name, "--wait"]);
    assert!(ok, "helm uninstall: {out}");
}
