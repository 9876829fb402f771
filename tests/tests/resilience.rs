//! The operator losing its pod or its API server in the middle of a training run: the run is
//! adopted, recorded once, with the right outcome.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use recommender_e2e::*;
use recommender_operator::crd::RunOutcome;
use std::time::Duration;

/// Waits until a trainer container of `ns` is running.
async fn trainer_running(client: &kube::Client, ns: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until(
        Duration::from_secs(90),
        "a running trainer container",
        || async {
            pods.list(&ListParams::default().labels("app.kubernetes.io/component=trainer"))
                .await
                .unwrap()
                .items
                .iter()
                .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        },
    )
    .await;
}

#[tokio::test]
async fn operator_killed_during_training_adopts_the_same_job() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-adopt").await;
    let operator = Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", slow_training)).await;
    trainer_running(&client, &ns.name).await;
    let before = job_names(&client, &ns.name).await;
    assert_eq!(before.len(), 1, "{before:?}");

    operator.kill().await;
    let api = models(&client, &ns.name);
    let status = wait_status(&api, "movies", Duration::from_secs(400), "v1 served", |s| {
        serves(s, "v1")
    })
    .await;
    assert_eq!(
        job_names(&client, &ns.name).await,
        before,
        "no second Job was started"
    );
    assert_eq!(status.runs.last, 1, "{status:?}");
    assert_eq!(
        status.history.len(),
        1,
        "run 1 recorded once: {:?}",
        status.history
    );
}

/// Runs alone (`cluster_wide_`, tests/nextest.toml): it stops the API server all tests talk to.
#[tokio::test]
async fn cluster_wide_a_run_in_flight_while_the_api_server_is_down_is_recorded_once() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-apiserver").await;
    let operator = Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    let api = models(&client, &ns.name);
    wait_status(&api, "movies", Duration::from_secs(240), "v1 served", |s| {
        serves(s, "v1")
    })
    .await;

    update_spec(&client, &ns.name, "movies", slow_training).await;
    wait_status(
        &api,
        "movies",
        Duration::from_secs(60),
        "run 2 started",
        |s| s.runs.active.as_ref().is_some_and(|r| r.run == 2),
    )
    .await;
    trainer_running(&client, &ns.name).await;

    let cluster = |verb: &str| cluster_sh(&env, &[verb, "kube-apiserver"]).unwrap();
    cluster("stop");
    // The trainer keeps training on the node while nobody can ask about it.
    tokio::time::sleep(Duration::from_secs(15)).await;
    cluster("start");
    wait_until(Duration::from_secs(60), "the API server back", || async {
        client.apiserver_version().await.is_ok()
    })
    .await;

    let status = wait_status(
        &api,
        "movies",
        Duration::from_secs(400),
        "run 2 recorded",
        |s| s.runs.last_completed >= 2 && s.runs.active.is_none(),
    )
    .await;
    let runs: Vec<_> = status.history.iter().filter(|r| r.run == 2).collect();
    assert_eq!(runs.len(), 1, "run 2 recorded once: {:?}", status.history);
    assert_eq!(runs[0].outcome, RunOutcome::Succeeded, "{:?}", runs[0]);
    assert_eq!(status.run_counts.succeeded, 2);
    assert_eq!(
        job_names(&client, &ns.name).await.len(),
        2,
        "one Job per run"
    );
    assert_eq!(operator.restarts().await, 0, "the operator kept running");
    wait_status(&api, "movies", Duration::from_secs(120), "v2 served", |s| {
        serves(s, "v2")
    })
    .await;
}
