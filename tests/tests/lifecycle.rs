//! A model's life on the local cluster: the operator installed by its chart, trainer Jobs that
//! train on PostgreSQL through the namespace's Service, predictors that serve through theirs.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Service};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use recommender_e2e::*;
use recommender_operator::crd::{RecommenderModelStatus, RunOutcome};
use std::time::Duration;

const TRAIN: Duration = Duration::from_secs(240);

async fn serving_v1(
    env: &Env,
    ns: &TestNamespace,
    name: &str,
    customize: impl FnOnce(&mut recommender_operator::crd::RecommenderModelSpec),
) -> RecommenderModelStatus {
    apply_model(&ns.client, &postgres_model(env, ns, name, customize)).await;
    wait_status(
        &models(&ns.client, &ns.name),
        name,
        TRAIN,
        "v1 promoted and served",
        |s| serves(s, "v1"),
    )
    .await
}

/// What `kubectl get` prints for a number column: the value with Go's shortest formatting.
fn printed(value: f64) -> String {
    format!("{value}")
}

#[tokio::test]
async fn postgres_model_is_trained_promoted_and_served() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-main").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let status = serving_v1(&env, &ns, "movies", |_| {}).await;

    let serving = status.serving.as_ref().unwrap();
    let m = &serving.metrics;
    assert!(m.rmse > 0.5 && m.rmse < 1.0, "rmse {}", m.rmse);
    assert!(m.mae > 0.4 && m.mae < 0.8, "mae {}", m.mae);
    assert!(
        m.accuracy > 0.7 && m.accuracy < 1.0,
        "accuracy {}",
        m.accuracy
    );
    assert_eq!(serving.fingerprint.as_ref().unwrap().rows, 100_000);
    assert_eq!(format!("{:?}", status.phase), "Serving");
    assert!(condition_is(&status, "Ready", "True"), "{status:?}");
    assert!(condition_is(&status, "DatabaseReachable", "True"));
    assert!(condition_is(&status, "Stale", "False"));
    assert_eq!(status.run_counts.succeeded, 1);

    let (code, body) =
        predictor_get(&client, &ns.name, "movies", "/v1/predict?user=196&item=242").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["model_version"], "v1", "{body}");
    let rating = body["rating"].as_f64().unwrap();
    assert!((1.0..=5.0).contains(&rating), "{body}");

    // Every column kubectl prints is the status as it stands.
    let (ok, table) = kubectl(&["get", "recommendermodels", "-n", &ns.name]);
    assert!(ok, "{table}");
    let mut lines = table.lines();
    let header_line = lines.next().unwrap_or_default();
    let header: Vec<&str> = header_line.split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "PHASE", "READY", "VERSION", "ROLLOUT", "RMSE", "MAE", "ACCURACY", "STALE",
            "AGE"
        ],
        "{table}"
    );
    let row_line = lines.next().unwrap_or_default();
    // No progressive rollout ever ran: kubectl leaves the stage column blank.
    let rollout_column = header_line.find("ROLLOUT").expect("the ROLLOUT column");
    assert!(
        row_line
            .get(rollout_column..rollout_column + "ROLLOUT".len())
            .is_some_and(|cell| cell.trim().is_empty()),
        "{table}"
    );
    let row: Vec<&str> = row_line.split_whitespace().collect();
    let expected = [
        "movies".to_string(),
        "Serving".into(),
        "True".into(),
        "v1".into(),
        printed(m.rmse),
        printed(m.mae),
        printed(m.accuracy),
        status.stale.to_string(),
    ];
    assert_eq!(row[..8], expected[..], "{table}");
    assert!(
        m.rmse
            .to_string()
            .split('.')
            .nth(1)
            .is_some_and(|d| d.len() <= 4),
        "RMSE printed to at most 4 decimals: {table}"
    );
    println!("{table}");
}

#[tokio::test]
async fn candidate_failing_the_gate_is_kept_out_and_v1_keeps_serving() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-gate").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    serving_v1(&env, &ns, "movies", |_| {}).await;
    let api = models(&client, &ns.name);

    update_spec(&client, &ns.name, "movies", |s| s.promotion.max_rmse = 0.5).await;
    request_retrain(&client, &ns.name, "movies", "gate-1").await;
    let status = wait_status(&api, "movies", TRAIN, "v2 rejected by the gate", |s| {
        s.history
            .iter()
            .any(|r| r.version == "v2" && r.outcome == RunOutcome::Rejected)
    })
    .await;
    let promoted = condition(&status, "Promoted").expect("Promoted condition");
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_str()),
        ("False", "GateFailed")
    );
    assert!(
        promoted.message.contains("rmse") && promoted.message.contains("maxRmse 0.5"),
        "{}",
        promoted.message
    );
    assert_eq!(serving_version(&status), Some("v1"));
    assert_eq!(status.run_counts.rejected, 1);

    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("GateFailed")
                && e.type_.as_deref() == Some("Warning")
                && e.message.as_deref().is_some_and(|m| m.contains("rmse"))),
        "a GateFailed warning naming the metric: {:?}",
        list.items
            .iter()
            .map(|e| (&e.reason, &e.message))
            .collect::<Vec<_>>()
    );
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

#[tokio::test]
async fn stale_turns_true_on_time_and_retraining_promotes_a_new_version() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-stale").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    serving_v1(&env, &ns, "movies", |s| {
        s.freshness.max_age = "30s".into();
        s.freshness.retrain_when_stale = false;
    })
    .await;
    let api = models(&client, &ns.name);

    let status = wait_status(&api, "movies", Duration::from_secs(90), "Stale", |s| {
        condition_is(s, "Stale", "True")
    })
    .await;
    let trained = status.serving.as_ref().unwrap().trained_at;
    let turned = condition(&status, "Stale").unwrap().last_transition_time.0;
    let after = turned.duration_since(trained).as_secs_f64();
    assert!(
        (30.0..36.0).contains(&after),
        "Stale turned {after:.1}s after training; want 30s"
    );
    assert!(status.stale);

    update_spec(&client, &ns.name, "movies", |s| {
        s.freshness.retrain_when_stale = true
    })
    .await;
    let status = wait_status(&api, "movies", TRAIN, "v2 promoted after staleness", |s| {
        serves(s, "v2")
    })
    .await;
    let run = status.history.iter().find(|r| r.version == "v2").unwrap();
    assert_eq!(run.trigger.as_str(), "Stale");
}

#[tokio::test]
async fn pinning_an_earlier_version_rolls_the_predictor_back() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-pin").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    serving_v1(&env, &ns, "movies", |_| {}).await;
    let api = models(&client, &ns.name);
    request_retrain(&client, &ns.name, "movies", "second").await;
    wait_status(&api, "movies", TRAIN, "v2 served", |s| serves(s, "v2")).await;
    assert_served_by(&client, &ns.name, "movies", "v2").await;

    update_spec(&client, &ns.name, "movies", |s| {
        s.pinned_version = Some("v1".into())
    })
    .await;
    wait_status(&api, "movies", TRAIN, "pinned v1 served", |s| {
        serves(s, "v1")
    })
    .await;
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

/// What the operator applied in `ns`, as uids and resource versions of its children.
async fn children(client: &Client, ns: &str) -> Vec<(String, String)> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=recommender-operator");
    let mut seen = Vec::new();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    for j in jobs.list(&lp).await.unwrap().items {
        seen.push((format!("job/{}", j.name_any()), j.uid().unwrap_or_default()));
    }
    for d in deployments.list(&lp).await.unwrap().items {
        seen.push((
            format!("deployment/{}", d.name_any()),
            d.uid().unwrap_or_default(),
        ));
    }
    for s in services.list(&lp).await.unwrap().items {
        seen.push((
            format!("service/{}", s.name_any()),
            s.uid().unwrap_or_default(),
        ));
    }
    seen.sort();
    seen
}

#[tokio::test]
async fn deleting_the_resource_removes_its_children_and_the_operator_recreates_none() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-delete").await;
    let operator_ns = TestNamespace::create(&client, &env, "e2e-delete-op").await;
    Operator::install(&client, &env.repo, &operator_ns.name, &ns.name, &[]).await;
    serving_v1(&env, &ns, "movies", |_| {}).await;
    let before = children(&client, &ns.name).await;
    assert_eq!(
        before.len(),
        3,
        "a Job, the Deployment and the Service: {before:?}"
    );

    let deleted_at = jiff::Timestamp::now();
    models(&client, &ns.name)
        .delete("movies", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(120),
        "the model and its children gone",
        || async {
            children(&client, &ns.name).await.is_empty()
                && models(&client, &ns.name)
                    .get_opt("movies")
                    .await
                    .unwrap()
                    .is_none()
        },
    )
    .await;

    // While the garbage collector worked, the operator (its own ServiceAccount, so the audit log
    // tells its requests apart) wrote nothing in that namespace.
    let user = format!(
        "system:serviceaccount:{}:rec-recommender-operator",
        operator_ns.name
    );
    let writes: Vec<String> = audit_events_of(&env, &user)
        .iter()
        .filter(|e| e["objectRef"]["namespace"] == ns.name.as_str())
        .filter(|e| matches!(e["verb"].as_str(), Some("create" | "patch" | "update")))
        .filter(|e| {
            matches!(
                e["objectRef"]["resource"].as_str(),
                Some("jobs" | "deployments" | "services")
            )
        })
        // A reconcile already under way when the delete arrived may finish its writes.
        .filter(|e| {
            e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t > deleted_at + jiff::SignedDuration::from_secs(1))
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        writes.is_empty(),
        "the operator wrote during deletion: {writes:#?}"
    );
}
