//! Upgrades (issue 14): from the previous chart release (its CRD and templates, a model stored
//! under its schema) by the documented path, the new CRD first and then `helm upgrade`; and a
//! rolling update of two operators with a run in flight hands the Lease over without a second
//! Job.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use recommender_e2e::*;
use recommender_operator::crd::RunOutcome;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The upgrade path of the chart README: the previous release's CRD and templates installed and a
/// model stored under its schema, then the new CRD applied over it, then `helm upgrade` of that
/// release to this chart. The previous operator binary is not built here (only its chart is
/// kept), so the old release runs with `replicaCount=0`; what the old operator needs between the
/// two steps, a new CRD that only adds optional fields, is checked on the two schemas.
/// Runs alone (`cluster_wide_`, tests/nextest.toml): it installs the previous release's CRD over
/// the one every other test's models and operators use.
#[tokio::test]
async fn cluster_wide_upgrading_from_the_previous_chart_applies_the_crd_first_and_models_keep_working()
 {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-upgrade").await;
    let work = std::env::temp_dir().join(format!("e2e-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (version, old_chart) = previous_chart(&env.repo, &work);
    println!("previous chart: {version:?}");
    let crd_file = |chart: &Path| chart.join("crds/recommendermodels.yaml");
    let new_chart = env.repo.join("charts/recommender-operator");

    // The new schema only adds: every old path is still there with its type, and nothing the
    // old operator or an old manifest leaves out became required.
    let (old_schema, new_schema) = (
        crd_schema(&crd_file(&old_chart)),
        crd_schema(&crd_file(&new_chart)),
    );
    let (mut old_paths, mut new_paths) = (Vec::new(), Vec::new());
    schema_paths(&old_schema, "", &mut old_paths);
    schema_paths(&new_schema, "", &mut new_paths);
    let lost: Vec<_> = old_paths
        .iter()
        .filter(|p| !new_paths.contains(p))
        .collect();
    assert!(
        lost.is_empty(),
        "paths the new CRD dropped or retyped: {lost:?}"
    );
    assert!(
        new_paths.len() > old_paths.len(),
        "the CRD changed between the versions"
    );
    let (mut old_required, mut new_required) = (Vec::new(), Vec::new());
    required_fields(&old_schema, "", &mut old_required);
    required_fields(&new_schema, "", &mut new_required);
    let newly: Vec<_> = new_required
        .iter()
        .filter(|r| {
            // A field required inside an object the old schema had: an old manifest lacks it.
            let parent = &r[..r.rfind('.').unwrap()];
            !old_required.contains(r) && old_paths.iter().any(|(p, _)| p == parent)
        })
        .collect();
    assert!(newly.is_empty(), "fields that became required: {newly:?}");

    // The previous version as it was installed: its CRD and its templates.
    let (ok, out) = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd_file(&old_chart).to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(!crd_has_scale(), "the previous CRD is installed");
    Operator::install_chart(&client, &old_chart, &ns.name, &ns.name, &["replicaCount=0"]).await;
    // A manifest written for the previous version: today's spec less every field its schema
    // did not declare yet; the API server stores it under the old schema.
    let mut manifest = serde_json::to_value(postgres_model(&env, &ns, "movies", |_| {})).unwrap();
    manifest.as_object_mut().unwrap().remove("status");
    let old_spec = &old_schema["properties"]["spec"];
    let dropped = prune_to_schema(&mut manifest["spec"], old_spec, ".spec");
    println!("fields the previous CRD does not declare: {dropped:?}");
    assert!(!dropped.is_empty(), "the CRD changed between the versions");
    apply_json(&client, &manifest).await;

    // The documented path (charts/recommender-operator/README.md, "Upgrading"): the new CRD
    // first ...
    let (ok, out) = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd_file(&new_chart).to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(crd_has_scale(), "the new CRD is installed");
    // ... then `helm upgrade` of the old release, which replaces the operator's Deployment and
    // RBAC (never crds/).
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let (ok, values) = helm(&["get", "manifest", "rec", "-n", &ns.name]);
    assert!(
        ok && values.contains("horizontalpodautoscalers"),
        "the new RBAC: {values}"
    );
    let (ok, history) = helm(&["history", "rec", "-n", &ns.name, "-o", "json"]);
    let history: Value = serde_json::from_str(&history).unwrap_or(Value::Null);
    let charts: Vec<&str> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["chart"].as_str())
        .collect();
    assert!(
        ok && charts.len() == 2 && charts[0] != charts[1],
        "helm history: {history}"
    );

    // The model stored under the old schema is trained, served and gets the new status fields;
    // a retrain after the upgrade works and runs one Job.
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        TRAIN_TIMEOUT,
        "v1 served with status.url",
        |s| s.url.is_some() && serves(s, "v1"),
    )
    .await;
    assert_eq!(status.runs.last, 1);
    assert_served_by(&client, &ns.name, "movies", "v1").await;
    request_retrain(&client, &ns.name, "movies", "after-upgrade").await;
    wait_serving(&client, &ns.name, "movies", "v2").await;
    assert_eq!(
        job_names(&client, &ns.name).await.len(),
        2,
        "one Job per run"
    );
    let _ = std::fs::remove_dir_all(&work);
}

async fn lease_holder(client: &Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases
        .get_opt("rec-recommender-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test]
async fn a_rolling_update_of_two_operators_hands_the_lease_over_without_a_second_job() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-rolling").await;
    let two = ["replicaCount=2"];
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &two).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let operator_pods = || async {
        let lp = ListParams::default().labels("app.kubernetes.io/instance=rec");
        pods.list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.name_any())
            .collect::<Vec<_>>()
    };
    let before = operator_pods().await;
    let leader = wait_for(Duration::from_secs(60), "a Lease holder", || {
        lease_holder(&client, &ns.name)
    })
    .await;
    assert!(before.contains(&leader), "{leader} among {before:?}");

    apply_model(&client, &postgres_model(&env, &ns, "movies", slow_training)).await;
    wait_status(
        &models(&client, &ns.name),
        "movies",
        Duration::from_secs(90),
        "run 1 in flight",
        |s| s.runs.active.is_some(),
    )
    .await;

    // A new pod template (as an upgrade makes): the Deployment replaces both pods one by one.
    Operator::install(
        &client,
        &env.repo,
        &ns.name,
        &ns.name,
        &["replicaCount=2", "podAnnotations.rolled=yes"],
    )
    .await;
    let after = wait_for(
        Duration::from_secs(180),
        "two new operator pods",
        || async {
            let now = operator_pods().await;
            (now.len() == 2 && now.iter().all(|p| !before.contains(p))).then_some(now)
        },
    )
    .await;
    let new_leader = wait_for(Duration::from_secs(60), "a new Lease holder", || async {
        lease_holder(&client, &ns.name)
            .await
            .filter(|h| after.contains(h))
    })
    .await;
    println!("Lease: {leader} -> {new_leader}");

    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        Duration::from_secs(600),
        "run 1 recorded",
        |s| s.runs.last_completed >= 1 && s.runs.active.is_none(),
    )
    .await;
    assert_eq!(
        job_names(&client, &ns.name).await,
        ["movies-train-1"],
        "exactly one Job"
    );
    assert_eq!(status.runs.last, 1, "{status:?}");
    let runs: Vec<_> = status.history.iter().filter(|r| r.run == 1).collect();
    assert_eq!(runs.len(), 1, "recorded once: {:?}", status.history);
    assert_eq!(runs[0].outcome, RunOutcome::Succeeded);
    wait_serving(&client, &ns.name, "movies", "v1").await;
}
