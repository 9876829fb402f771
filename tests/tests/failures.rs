//! Things going wrong on a real node, and the operator saying so while what serves keeps
//! serving: a trainer that fails, one the kernel kills for memory, one whose image is missing, a
//! predictor that crashes, a database that goes away.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, ListParams};
use recommender_e2e::*;
use recommender_operator::crd::{RecommenderModelSpec, RecommenderModelStatus, RunOutcome};
use recommender_operator::decide::BACKOFF_BASE;
use std::time::Duration;

const TRAIN: Duration = Duration::from_secs(240);

async fn serving_v1(
    env: &Env,
    ns: &TestNamespace,
    customize: impl FnOnce(&mut RecommenderModelSpec),
) {
    apply_model(&ns.client, &postgres_model(env, ns, "movies", customize)).await;
    wait_status(
        &models(&ns.client, &ns.name),
        "movies",
        TRAIN,
        "v1 promoted and served",
        |s| serves(s, "v1"),
    )
    .await;
}

async fn setup(prefix: &str) -> (Env, Client, TestNamespace) {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, prefix).await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    serving_v1(&env, &ns, |_| {}).await;
    (env, client, ns)
}

/// Warning events about `movies` with `reason`, their messages.
async fn warnings(client: &Client, ns: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

fn failed_runs(status: &RecommenderModelStatus) -> usize {
    status
        .history
        .iter()
        .filter(|r| r.outcome == RunOutcome::Failed)
        .count()
}

#[tokio::test]
async fn failing_trainer_is_recorded_and_retried_after_its_backoff_while_v1_serves() {
    let (_env, client, ns) = setup("e2e-fail").await;
    let api = models(&client, &ns.name);
    update_spec(&client, &ns.name, "movies", |s| {
        s.source.postgres.as_mut().unwrap().query =
            "SELECT no_such_column FROM ratings_rating".into();
    })
    .await;
    let status = wait_status(&api, "movies", TRAIN, "two failed runs (a retry)", |s| {
        failed_runs(s) >= 2
    })
    .await;
    let failed: Vec<_> = status
        .history
        .iter()
        .filter(|r| r.outcome == RunOutcome::Failed)
        .collect();
    assert!(
        failed[0].message.contains("no_such_column"),
        "the failure says why: {:?}",
        failed[0]
    );
    // The retry waits out the backoff after the failure, and then does not wait much longer.
    let waited = failed[1].started_at.duration_since(failed[0].finished_at);
    let base = jiff::SignedDuration::try_from(BACKOFF_BASE).unwrap();
    assert!(
        waited >= base && waited < base + jiff::SignedDuration::from_secs(15),
        "retry {waited:?} after the failure; backoff is {base:?}"
    );
    let promoted = condition(&status, "Promoted").unwrap();
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_str()),
        ("False", "TrainingFailed")
    );
    let events = warnings(&client, &ns.name, "TrainingFailed").await;
    assert!(
        events.iter().any(|m| m.contains("no_such_column")),
        "a TrainingFailed warning naming the column: {events:?}"
    );
    assert_eq!(serving_version(&status), Some("v1"));
    assert!(condition_is(&status, "Serving", "True"));
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

#[tokio::test]
async fn a_trainer_over_its_memory_limit_is_oom_killed_and_backs_off() {
    let (_env, client, ns) = setup("e2e-oom").await;
    let api = models(&client, &ns.name);
    // 1,000 factors need about 80 MiB on MovieLens 100k: far over a 32 MiB limit.
    update_spec(&client, &ns.name, "movies", |s| {
        s.hyperparameters.factors = 1000;
        s.hyperparameters.epochs = Some(2);
        s.trainer.resources = Some(
            serde_json::from_value(serde_json::json!({
                "requests": {"cpu": "100m", "memory": "32Mi"},
                "limits": {"memory": "32Mi"},
            }))
            .unwrap(),
        );
    })
    .await;
    let status = wait_status(&api, "movies", TRAIN, "run 2 recorded as failed", |s| {
        s.history.iter().any(|r| r.run == 2)
    })
    .await;
    let run = status.history.iter().find(|r| r.run == 2).unwrap();
    assert_eq!(
        (run.outcome, run.reason.as_str()),
        (RunOutcome::Failed, "OOMKilled"),
        "{run:?}"
    );
    assert!(run.message.contains("memory limit 32Mi"), "{}", run.message);
    let training = condition(&status, "Training").unwrap();
    assert_eq!(training.reason, "BackingOff", "{training:?}");
    assert!(
        training.message.contains("OOMKilled"),
        "{}",
        training.message
    );
    let retry_after = status.runs.retry_after.expect("a backoff");
    assert!(retry_after >= run.finished_at + jiff::SignedDuration::try_from(BACKOFF_BASE).unwrap());
    let events = warnings(&client, &ns.name, "TrainingFailed").await;
    assert!(events.iter().any(|m| m.contains("OOMKilled")), "{events:?}");
    assert_eq!(serving_version(&status), Some("v1"));
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

#[tokio::test]
async fn a_trainer_image_that_is_not_there_makes_workers_unhealthy_until_it_is() {
    let (env, client, ns) = setup("e2e-image").await;
    let api = models(&client, &ns.name);
    // A registry on loopback that does not exist: the pull fails here, nothing leaves the machine.
    let missing = format!("127.0.0.1:1/recommender-trainer:{}", ns.name);
    update_spec(&client, &ns.name, "movies", |s| {
        s.trainer.image = Some(missing.clone())
    })
    .await;
    request_retrain(&client, &ns.name, "movies", "image").await;
    let status = wait_status(
        &api,
        "movies",
        Duration::from_secs(120),
        "WorkersHealthy=False",
        |s| condition_is(s, "WorkersHealthy", "False"),
    )
    .await;
    let workers = condition(&status, "WorkersHealthy").unwrap();
    assert_eq!(workers.reason, "TrainerPodStuck");
    assert!(
        workers.message.contains("ErrImagePull") || workers.message.contains("ImagePullBackOff"),
        "{}",
        workers.message
    );
    assert!(condition_is(&status, "Ready", "False"));
    assert_eq!(serving_version(&status), Some("v1"), "serving is untouched");

    // Fixed the way an operator of the cluster would: the image now exists on the node.
    tag_image(&env, TRAINER_IMAGE, &missing);
    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "v2 trained and WorkersHealthy again",
        |s| serves(s, "v2") && condition_is(s, "WorkersHealthy", "True"),
    )
    .await;
    assert!(condition_is(&status, "Ready", "True"));
}

#[tokio::test]
async fn a_crashed_predictor_is_restarted_and_the_conditions_follow() {
    let (env, client, ns) = setup("e2e-crash").await;
    let api = models(&client, &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let (predictor, process) = predictor_process(&env, &client, &ns.name).await;
    process.kill();

    let status = wait_status(
        &api,
        "movies",
        Duration::from_secs(60),
        "the crash in the conditions",
        |s| condition_is(s, "WorkersHealthy", "False"),
    )
    .await;
    assert_eq!(
        condition(&status, "WorkersHealthy").unwrap().reason,
        "PredictorReplicasShort"
    );
    assert!(condition_is(&status, "Ready", "False"));
    wait_status(
        &api,
        "movies",
        Duration::from_secs(90),
        "healthy again after the restart",
        |s| condition_is(s, "WorkersHealthy", "True") && serves(s, "v1"),
    )
    .await;
    let restarted = pods
        .get(&kube::ResourceExt::name_any(&predictor))
        .await
        .unwrap();
    let restarts = restarted
        .status
        .and_then(|s| s.container_statuses)
        .map(|c| c[0].restart_count)
        .unwrap_or_default();
    assert_eq!(
        restarts, 1,
        "the kubelet restarted the same pod's container"
    );
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

/// Runs alone (`cluster_wide_`, tests/nextest.toml): it stops the PostgreSQL all tests train from.
#[tokio::test]
async fn cluster_wide_database_outage_shows_in_conditions_within_seconds() {
    let (env, client, ns) = setup("e2e-db").await;
    let api = models(&client, &ns.name);
    let script = env.repo.join("tests/cluster/postgres.sh");
    let run = |verb: &str| {
        let ok = std::process::Command::new("bash")
            .arg(&script)
            .arg(verb)
            .status()
            .unwrap();
        assert!(ok.success(), "postgres.sh {verb}");
    };
    run("stop");
    let outage = std::panic::AssertUnwindSafe(wait_status(
        &api,
        "movies",
        Duration::from_secs(20),
        "DatabaseReachable=False",
        |s| condition_is(s, "DatabaseReachable", "False") && condition_is(s, "Ready", "False"),
    ));
    let result = futures::FutureExt::catch_unwind(outage).await;
    run("start");
    let status = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(
        serving_version(&status),
        Some("v1"),
        "the outage does not touch serving"
    );
    assert_served_by(&client, &ns.name, "movies", "v1").await;

    wait_status(
        &api,
        "movies",
        Duration::from_secs(30),
        "DatabaseReachable=True",
        |s| condition_is(s, "DatabaseReachable", "True") && condition_is(s, "Ready", "True"),
    )
    .await;
}
