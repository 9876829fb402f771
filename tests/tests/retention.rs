//! Artifact retention on the model store (issue 14): a rejected candidate is deleted by a cleanup
//! Job, the window keeps `keep` promoted versions and the serving one, and pinning works inside
//! the window and is refused outside it (the store listed before and after).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use recommender_e2e::*;
use recommender_operator::crd::{RecommenderModelSpec, RunOutcome};
use std::time::Duration;

/// The model's artifacts on the model store's folder, sorted.
fn store(ns: &TestNamespace) -> Vec<String> {
    let dir = ns.store.join("movies");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".model"));
    names.sort();
    names
}

async fn store_holds(ns: &TestNamespace, want: &[&str], what: &str) {
    wait_until(Duration::from_secs(120), what, || async {
        store(ns) == want
    })
    .await;
    println!("model store after {what}: {:?}", store(ns));
}

async fn retrain(client: &Client, ns: &str, token: &str, outcome: RunOutcome, run: u32) {
    request_retrain(client, ns, "movies", token).await;
    let what = format!("run {run} {outcome:?}");
    wait_status(&models(client, ns), "movies", TRAIN_TIMEOUT, &what, |s| {
        s.history
            .iter()
            .any(|r| r.run == run && r.outcome == outcome)
    })
    .await;
}

/// The logs of every pod of Job `name` once it has succeeded, each with its pod's name and, for
/// a pod that did not succeed, how it ended. A retry may find the work already done, so what a
/// Job did is in all its pods' logs, not only in the last one's.
async fn finished_job_logs(client: &Client, ns: &str, name: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    wait_until(
        Duration::from_secs(120),
        &format!("{name} succeeded"),
        || async {
            jobs.get(name)
                .await
                .ok()
                .and_then(|j| j.status?.succeeded)
                .is_some_and(|n| n >= 1)
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("job-name={name}");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    let mut all = String::new();
    for pod in list.items {
        let pod_name = pod.name_any();
        let status = pod.status.unwrap_or_default();
        if status.phase.as_deref() != Some("Succeeded") {
            let ended = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.state?.terminated)
                .map(|t| format!("exit {} {:?} {:?}", t.exit_code, t.reason, t.message))
                .collect::<Vec<_>>();
            println!("{pod_name}: phase {:?}, ended {ended:?}", status.phase);
        }
        let (_, logs) = kubectl(&["logs", "-n", ns, &pod_name]);
        all.push_str(&format!("--- {pod_name}\n{logs}\n"));
    }
    all
}

#[tokio::test]
async fn retention_keeps_the_serving_model_and_the_window_and_nothing_else() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-retention").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let keep_two = |s: &mut RecommenderModelSpec| s.model_store.keep = 2;
    apply_model(&client, &postgres_model(&env, &ns, "movies", keep_two)).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;
    store_holds(&ns, &["v1.model"], "v1 promoted").await;

    // A candidate the gate rejects is written, then deleted by a cleanup Job.
    update_spec(&client, &ns.name, "movies", |s| s.promotion.max_rmse = 0.5).await;
    retrain(&client, &ns.name, "r2", RunOutcome::Rejected, 2).await;
    store_holds(&ns, &["v1.model"], "v2 rejected").await;
    let logs = finished_job_logs(&client, &ns.name, "movies-cleanup-2").await;
    assert!(logs.contains("deleted v2.model"), "{logs}");

    update_spec(&client, &ns.name, "movies", |s| s.promotion.max_rmse = 1.0).await;
    retrain(&client, &ns.name, "r3", RunOutcome::Succeeded, 3).await;
    wait_serving(&client, &ns.name, "movies", "v3").await;
    store_holds(
        &ns,
        &["v1.model", "v3.model"],
        "v3 promoted (the window holds two)",
    )
    .await;

    retrain(&client, &ns.name, "r4", RunOutcome::Succeeded, 4).await;
    wait_serving(&client, &ns.name, "movies", "v4").await;
    store_holds(
        &ns,
        &["v3.model", "v4.model"],
        "v4 promoted (v1 superseded)",
    )
    .await;
    let status = model_status(&client, &ns.name, "movies").await;
    let window: Vec<&str> = status.models.iter().map(|m| m.version.as_str()).collect();
    assert_eq!(window, ["v3", "v4"], "what pinnedVersion can name");

    // Pinning: inside the window rolls back; outside it is refused and nothing is deleted.
    update_spec(&client, &ns.name, "movies", |s| {
        s.pinned_version = Some("v1".into())
    })
    .await;
    wait_status(
        &models(&client, &ns.name),
        "movies",
        Duration::from_secs(60),
        "v1 refused",
        |s| condition(s, "Serving").is_some_and(|c| c.reason == "PinnedVersionUnknown"),
    )
    .await;
    update_spec(&client, &ns.name, "movies", |s| {
        s.pinned_version = Some("v3".into())
    })
    .await;
    wait_serving(&client, &ns.name, "movies", "v3").await;
    assert_served_by(&client, &ns.name, "movies", "v3").await;
    assert_eq!(store(&ns), ["v3.model", "v4.model"]);
}
