//! End-to-end: the real operator against the local control plane, trainer Jobs that really train
//! on PostgreSQL, predictor Deployments that really serve. Run by `tests/all.sh` (one at a time:
//! some tests stop the database or the API server that the others use).

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use support::*;

const TRAIN: Duration = Duration::from_secs(180);

async fn serving_v1(env: &Env, ns: &TestNamespace, name: &str, extra: serde_json::Value) {
    apply_yaml(&ns.client, &postgres_model(env, &ns.name, name, extra)).await;
    let api = models(&ns.client, &ns.name);
    wait_status(&api, name, TRAIN, "v1 promoted and served", |s| {
        serves(s, "v1")
    })
    .await;
}

#[tokio::test]
async fn postgres_model_is_trained_promoted_and_served() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-main").await;
    let _operator = Operator::start(&env, &ns.name);
    serving_v1(&env, &ns, "movies", json!({})).await;

    let api = models(&client, &ns.name);
    let status = api.get("movies").await.unwrap().data["status"].clone();
    let rmse = status["serving"]["metrics"]["rmse"].as_f64().unwrap();
    let mae = status["serving"]["metrics"]["mae"].as_f64().unwrap();
    assert!(rmse > 0.5 && rmse < 1.0, "rmse {rmse}");
    assert!(mae > 0.4 && mae < 0.8, "mae {mae}");
    assert_eq!(status["serving"]["fingerprint"]["rows"], 100_000);
    assert_eq!(status["phase"], "Serving");
    assert!(condition_is(&status, "Ready", "True"), "{status:#}");
    assert!(condition_is(&status, "DatabaseReachable", "True"));
    assert!(condition_is(&status, "Stale", "False"));

    let (code, body) =
        predictor_get(&client, &ns.name, "movies", "/v1/predict?user=196&item=242").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["model_version"], "v1", "{body}");
    let rating = body["rating"].as_f64().unwrap();
    assert!((1.0..=5.0).contains(&rating), "{body}");

    let (ok, table) = kubectl(&["get", "recommendermodels", "-n", &ns.name]);
    assert!(ok, "{table}");
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "PHASE", "VERSION", "RMSE", "MAE", "STALE", "AGE"] {
        assert!(header.contains(column), "missing {column} in:\n{table}");
    }
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("movies") && row.contains("Serving") && row.contains("v1"),
        "{table}"
    );
    assert!(
        row.contains(&format!("{rmse:.4}")[..4]),
        "rmse in row: {table}"
    );
    println!("{table}");
}

#[tokio::test]
async fn candidate_failing_the_gate_is_kept_out_and_v1_keeps_serving() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-gate").await;
    let _operator = Operator::start(&env, &ns.name);
    serving_v1(&env, &ns, "movies", json!({})).await;
    let api = models(&client, &ns.name);

    patch_spec(&api, "movies", json!({"promotion": {"maxRmse": 0.5}})).await;
    request_retrain(&api, "movies", "gate-1").await;
    let status = wait_status(&api, "movies", TRAIN, "v2 rejected by the gate", |s| {
        s["history"].as_array().is_some_and(|h| {
            h.iter()
                .any(|r| r["version"] == "v2" && r["outcome"] == "Rejected")
        })
    })
    .await;
    let (st, reason, message) = condition(&status, "Promoted").expect("Promoted condition");
    assert_eq!(
        (st.as_str(), reason.as_str()),
        ("False", "GateFailed"),
        "{message}"
    );
    assert!(
        message.contains("rmse") && message.contains("0.5"),
        "{message}"
    );
    assert_eq!(serving_version(&status), Some("v1"));

    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("GateFailed")
                && e.message.as_deref().is_some_and(|m| m.contains("rmse"))
        }),
        "a GateFailed event naming the metric: {:?}",
        list.items
            .iter()
            .map(|e| (&e.reason, &e.message))
            .collect::<Vec<_>>()
    );
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

#[tokio::test]
async fn failing_trainer_is_recorded_retried_and_serving_is_untouched() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-fail").await;
    let _operator = Operator::start(&env, &ns.name);
    serving_v1(&env, &ns, "movies", json!({})).await;
    let api = models(&client, &ns.name);

    let bad_query =
        json!({"source": {"postgres": {"query": "SELECT no_such_column FROM ratings_rating"}}});
    patch_spec(&api, "movies", bad_query).await;
    let status = wait_status(&api, "movies", TRAIN, "two failed runs (a retry)", |s| {
        s["history"]
            .as_array()
            .map(|h| h.iter().filter(|r| r["outcome"] == "Failed").count() >= 2)
            .unwrap_or(false)
    })
    .await;
    let failed: Vec<_> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "Failed")
        .collect();
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no_such_column"),
        "the failure says why: {:#}",
        failed[0]
    );
    let t1: jiff::Timestamp = failed[0]["finishedAt"].as_str().unwrap().parse().unwrap();
    let t2: jiff::Timestamp = failed[1]["startedAt"].as_str().unwrap().parse().unwrap();
    assert!(t2 > t1, "the retry starts after the failure");
    assert_eq!(serving_version(&status), Some("v1"));
    assert!(condition_is(&status, "Serving", "True"));
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

#[tokio::test]
async fn stale_turns_true_on_time_and_retraining_promotes_a_new_version() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-stale").await;
    let _operator = Operator::start(&env, &ns.name);
    let freshness = json!({"freshness": {"maxAge": "20s", "retrainWhenStale": false}});
    serving_v1(&env, &ns, "movies", freshness).await;
    let api = models(&client, &ns.name);

    let status = wait_status(&api, "movies", Duration::from_secs(60), "Stale", |s| {
        condition_is(s, "Stale", "True")
    })
    .await;
    let trained: jiff::Timestamp = status["serving"]["trainedAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let turned: jiff::Timestamp = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Stale")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let after = turned.duration_since(trained).as_secs_f64();
    assert!(
        (20.0..26.0).contains(&after),
        "Stale turned {after:.1}s after training; want 20s"
    );
    assert_eq!(status["stale"], true);

    patch_spec(
        &api,
        "movies",
        json!({"freshness": {"retrainWhenStale": true}}),
    )
    .await;
    wait_status(&api, "movies", TRAIN, "v2 promoted after staleness", |s| {
        serves(s, "v2")
    })
    .await;
}

#[tokio::test]
async fn invalid_manifests_are_rejected_naming_the_field() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-invalid").await;

    let mut bad_range = postgres_model(&env, &ns.name, "bad-folds", json!({"folds": 1}));
    let err = create_raw(&client, &ns.name, &bad_range).await.unwrap_err();
    assert!(err.to_string().contains("spec.folds"), "{err}");

    bad_range = postgres_model(
        &env,
        &ns.name,
        "bad-rmse",
        json!({"promotion": {"maxRmse": -1}}),
    );
    let err = create_raw(&client, &ns.name, &bad_range).await.unwrap_err();
    assert!(err.to_string().contains("maxRmse"), "{err}");

    let mut no_source = postgres_model(&env, &ns.name, "no-source", json!({}));
    no_source["spec"].as_object_mut().unwrap().remove("source");
    let err = create_raw(&client, &ns.name, &no_source).await.unwrap_err();
    assert!(err.to_string().contains("spec.source"), "{err}");

    let two_sources = postgres_model(
        &env,
        &ns.name,
        "two-sources",
        json!({"source": {"file": {"path": "ratings/u.data"}}}),
    );
    let err = create_raw(&client, &ns.name, &two_sources)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.source"), "{err}");
}

#[tokio::test]
async fn pinning_an_earlier_version_rolls_the_predictor_back() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-pin").await;
    let _operator = Operator::start(&env, &ns.name);
    serving_v1(&env, &ns, "movies", json!({})).await;
    let api = models(&client, &ns.name);
    request_retrain(&api, "movies", "second").await;
    wait_status(&api, "movies", TRAIN, "v2 served", |s| serves(s, "v2")).await;
    assert_served_by(&client, &ns.name, "movies", "v2").await;

    patch_spec(&api, "movies", json!({"pinnedVersion": "v1"})).await;
    wait_status(&api, "movies", TRAIN, "pinned v1 served", |s| {
        serves(s, "v1")
    })
    .await;
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

#[tokio::test]
async fn operator_killed_during_training_adopts_the_same_job() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-adopt").await;
    let mut operator = Operator::start(&env, &ns.name);
    // Long enough (tens of seconds) to still be training when the operator comes back; the gate
    // is not what this test is about, and this many epochs overfit.
    let slow = json!({
        "hyperparameters": {"factors": 50, "epochs": 1000},
        "promotion": {"maxRmse": 3.0, "maxMae": 3.0},
    });
    apply_yaml(&client, &postgres_model(&env, &ns.name, "movies", slow)).await;
    wait_until(Duration::from_secs(60), "the first trainer Job", || async {
        !job_names(&client, &ns.name).await.is_empty()
    })
    .await;
    let before = job_names(&client, &ns.name).await;
    operator.kill();
    let mut operator = Operator::start(&env, &ns.name);
    let api = models(&client, &ns.name);
    wait_status(&api, "movies", Duration::from_secs(400), "v1 served", |s| {
        serves(s, "v1")
    })
    .await;
    assert!(operator.is_running());
    assert_eq!(
        job_names(&client, &ns.name).await,
        before,
        "no second Job was started"
    );
    let status = api.get("movies").await.unwrap().data["status"].clone();
    assert_eq!(status["lastRun"], 1, "{status:#}");
}

#[tokio::test]
async fn database_outage_shows_in_conditions_within_seconds() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-db").await;
    let _operator = Operator::start(&env, &ns.name);
    serving_v1(&env, &ns, "movies", json!({})).await;
    let api = models(&client, &ns.name);

    let script = env.repo.join("tests/cluster/postgres.sh");
    let stop = std::process::Command::new("bash")
        .arg(&script)
        .arg("stop")
        .status()
        .unwrap();
    assert!(stop.success(), "postgres.sh stop");
    let outage = std::panic::AssertUnwindSafe(async {
        wait_status(
            &api,
            "movies",
            Duration::from_secs(20),
            "DatabaseReachable=False",
            |s| condition_is(s, "DatabaseReachable", "False") && condition_is(s, "Ready", "False"),
        )
        .await
    });
    let result = futures::FutureExt::catch_unwind(outage).await;
    let start = std::process::Command::new("bash")
        .arg(&script)
        .arg("start")
        .status()
        .unwrap();
    assert!(start.success(), "postgres.sh start");
    let status = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(
        serving_version(&status),
        Some("v1"),
        "the outage does not touch serving"
    );

    wait_status(
        &api,
        "movies",
        Duration::from_secs(30),
        "DatabaseReachable=True",
        |s| condition_is(s, "DatabaseReachable", "True") && condition_is(s, "Ready", "True"),
    )
    .await;
}

#[tokio::test]
async fn deleting_the_resource_removes_its_children() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-delete").await;
    let _operator = Operator::start(&env, &ns.name);
    serving_v1(&env, &ns, "movies", json!({})).await;
    let api = models(&client, &ns.name);
    assert!(!job_names(&client, &ns.name).await.is_empty());

    api.delete("movies", &DeleteParams::foreground())
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    wait_until(
        Duration::from_secs(90),
        "Jobs, Deployment and Service gone",
        || async {
            job_names(&client, &ns.name).await.is_empty()
                && deployments
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty()
                && services
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty()
        },
    )
    .await;
}

#[tokio::test]
async fn operator_survives_an_api_server_restart() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-apiserver").await;
    let mut operator = Operator::start(&env, &ns.name);
    serving_v1(&env, &ns, "movies", json!({})).await;
    let api = models(&client, &ns.name);

    // Work is pending while the API server is away: it must complete once it is back.
    request_retrain(&api, "movies", "during-restart").await;
    let script = env.repo.join("tests/cluster/cluster.sh");
    let restart = std::process::Command::new("bash")
        .arg(&script)
        .args(["restart", "kube-apiserver"])
        .env("RECOMMENDER_STATE", &env.state)
        .status()
        .unwrap();
    assert!(restart.success(), "cluster.sh restart kube-apiserver");
    wait_until(Duration::from_secs(60), "the API server back", || async {
        client.apiserver_version().await.is_ok()
    })
    .await;

    wait_status(&api, "movies", TRAIN, "v2 served after the restart", |s| {
        serves(s, "v2")
    })
    .await;
    assert!(operator.is_running(), "the operator kept running");
    let jobs = job_names(&client, &ns.name).await;
    assert_eq!(
        jobs.len(),
        2,
        "one Job per run, nothing duplicated: {jobs:?}"
    );
}

/// The operator as users run it: installed by the chart, from its Deployment, with nothing but its
/// own ServiceAccount's token (the node agent hands the pod that token and no other credential).
/// It trains and serves a model in the namespace it watches; the audit log then shows that every
/// request it made was as that ServiceAccount, none was denied, and none left its two namespaces.
#[tokio::test]
async fn operator_installed_by_the_chart_serves_a_model_as_its_service_account() {
    let env = Env::load();
    let client = client().await;
    let models_ns = TestNamespace::create(&client, &env, "e2e-chart").await;
    let op_ns = TestNamespace::create(&client, &env, "e2e-chart-op").await;
    let chart = env.repo.join("charts/recommender-operator");
    let watch = format!("watchNamespaces={{{}}}", models_ns.name);
    let secrets = format!("rbac.secrets.resourceNames={{{DB_SECRET}}}");
    let (ok, out) = helm(&[
        "install",
        "rec",
        chart.to_str().unwrap(),
        "--namespace",
        &op_ns.name,
        "--set",
        &watch,
        "--set",
        &secrets,
        "--set",
        "leaderElection.enabled=true",
        // Pods share the node's network namespace here, each with its own loopback address.
        "--set",
        "metrics.bindAddress=$(POD_IP)",
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(ok, "helm install: {out}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &op_ns.name);
    let operator_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=rec"))
        .await
        .unwrap()
        .items;
    assert_eq!(operator_pods.len(), 1, "one operator pod");
    let pod_name = operator_pods[0].metadata.name.clone().unwrap();

    serving_v1(&env, &models_ns, "movies", json!({})).await;
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
