//! The chart's alerts, live: a real Prometheus (tests/cluster/prometheus.sh) discovers the
//! operator and its predictors as the chart's ServiceMonitor and PodMonitor select them, scrapes
//! them from the host and evaluates the chart's rules (every `for:` shortened to 10 s). A database
//! outage fires its alert and the restart resolves it; a trainer whose image does not exist fires
//! the trainer alert (and a model with nothing promoted is not mistaken for a serving outage); a
//! progressive rollout held inconclusive fires its alert, and aborted, the abort's; and every
//! metric an alert or a dashboard panel reads is in the live scrape. The tests share the one
//! Prometheus, so they run one at a time (tests/nextest.toml).

use kube::Client;
use recommender_e2e::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TRAIN: Duration = Duration::from_secs(240);
/// Condition change → scrape (2 s) → evaluation (2 s) → pending → firing after `for:` (10 s).
const ALERT: Duration = Duration::from_secs(90);

async fn setup(prefix: &str) -> (Env, Client, TestNamespace, Prometheus) {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, prefix).await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let prometheus = Prometheus::start(&env, &ns.name, &ns.name);
    // The ServiceMonitor's selection found the operator's metrics Service, and the job name is the
    // one the operator alerts select on.
    prometheus
        .wait_query(
            &format!(
                r#"up{{job="recommender-operator", namespace="{}"}} == 1"#,
                ns.name
            ),
            Duration::from_secs(60),
        )
        .await;
    (env, client, ns, prometheus)
}

async fn serving_v1(client: &Client, ns: &str, name: &str) {
    wait_status(
        &models(client, ns),
        name,
        TRAIN,
        "v1 promoted and served",
        |s| serves(s, "v1"),
    )
    .await;
}

fn postgres_sh(env: &Env, verb: &str) {
    let ok = std::process::Command::new("bash")
        .arg(env.repo.join("tests/cluster/postgres.sh"))
        .arg(verb)
        .status()
        .expect("run postgres.sh");
    assert!(ok.success(), "postgres.sh {verb}");
}

fn assert_labels(alert: &Alert, ns: &str, model: &str, severity: &str) {
    let want: BTreeMap<String, String> = [
        ("alertname", alert.name.as_str()),
        ("namespace", ns),
        ("name", model),
        ("severity", severity),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(alert.labels, want, "labels of {alert:?}");
    let anchor = format!("#{}", alert.name.to_lowercase());
    assert!(
        alert.annotations["runbook_url"].ends_with(&anchor),
        "{alert:?}"
    );
    assert!(
        alert.annotations["summary"].contains(&format!("{ns}/{model}")),
        "{alert:?}"
    );
}

/// Runs alone (`cluster_wide_`, tests/nextest.toml): it stops the PostgreSQL all tests train from.
#[tokio::test]
async fn cluster_wide_a_database_outage_fires_its_alert_and_the_restart_resolves_it() {
    let (env, client, ns, prometheus) = setup("e2e-alert-db").await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    serving_v1(&client, &ns.name, "movies").await;
    // The model's gauges keep their own namespace label (honorLabels) and say the database is
    // reachable; nothing fires.
    prometheus
        .wait_query(
            &format!(
                r#"recommender_model_condition{{namespace="{}", name="movies", type="DatabaseReachable", status="True"}}"#,
                ns.name
            ),
            Duration::from_secs(30),
        )
        .await;
    // What was true while the first model trained (nothing promoted yet) clears at the first
    // rule evaluation after the scrape that saw it serve; after that, nothing may be pending.
    let healthy_since = Instant::now();
    let quiet = loop {
        let alerts: Vec<Alert> = prometheus
            .alerts()
            .await
            .into_iter()
            .filter(|a| a.labels.get("namespace") == Some(&ns.name))
            .collect();
        if alerts.is_empty() || healthy_since.elapsed() > Duration::from_secs(30) {
            break alerts;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(quiet.is_empty(), "alerts for a healthy model: {quiet:?}");

    postgres_sh(&env, "stop");
    let stopped = Instant::now();
    let outage = std::panic::AssertUnwindSafe(prometheus.wait_firing(
        "RecommenderModelDatabaseUnreachable",
        &ns.name,
        "movies",
        ALERT,
    ));
    let result = futures::FutureExt::catch_unwind(outage).await;
    let fired_after = stopped.elapsed();
    // Also while the outage lasts: serving is untouched, so the serving alerts stay quiet.
    let not_serving = prometheus
        .alert("RecommenderModelNotServing", &ns.name, "movies")
        .await;
    postgres_sh(&env, "start");
    let (alert, was_pending) = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    eprintln!("RecommenderModelDatabaseUnreachable fired {fired_after:?} after the stop");
    assert_labels(&alert, &ns.name, "movies", "warning");
    assert!(
        was_pending,
        "the alert went through pending (its for:) before firing"
    );
    assert!(not_serving.is_none(), "{not_serving:?}");

    let restarted = Instant::now();
    prometheus
        .wait_resolved(
            "RecommenderModelDatabaseUnreachable",
            &ns.name,
            "movies",
            ALERT,
        )
        .await;
    eprintln!(
        "RecommenderModelDatabaseUnreachable resolved {:?} after the restart",
        restarted.elapsed()
    );
    let firing = prometheus
        .query(&format!(
            r#"ALERTS{{alertname="RecommenderModelDatabaseUnreachable", namespace="{}"}}"#,
            ns.name
        ))
        .await;
    assert!(firing.is_empty(), "{firing:?}");
}

#[tokio::test]
async fn a_trainer_stuck_on_a_missing_image_fires_the_trainer_alert_until_the_image_exists() {
    let (env, client, ns, prometheus) = setup("e2e-alert-stuck").await;
    // A registry on loopback that does not exist: the pull fails here, nothing leaves the machine.
    let missing = format!("127.0.0.1:1/nothing:{}", ns.name);
    let model = postgres_model(&env, &ns, "movies", |s| {
        s.trainer.image = Some(missing.clone())
    });
    let applied = Instant::now();
    apply_model(&client, &model).await;

    let (alert, was_pending) = prometheus
        .wait_firing("RecommenderModelTrainerStuck", &ns.name, "movies", ALERT)
        .await;
    eprintln!(
        "RecommenderModelTrainerStuck fired {:?} after the model was applied",
        applied.elapsed()
    );
    assert_labels(&alert, &ns.name, "movies", "warning");
    assert!(was_pending, "pending (its for:) before firing");
    // Nothing has been promoted: that is its own alert, not a serving outage.
    let (alert, _) = prometheus
        .wait_firing("RecommenderModelNoPromotedModel", &ns.name, "movies", ALERT)
        .await;
    assert_labels(&alert, &ns.name, "movies", "warning");
    let no_model = prometheus
        .query(&format!(
            r#"recommender_model_condition{{namespace="{}", name="movies", type="Serving", status="False", reason="NoModel"}}"#,
            ns.name
        ))
        .await;
    assert_eq!(no_model.len(), 1, "Serving=False NoModel in the scrape");
    let not_serving = prometheus
        .alert("RecommenderModelNotServing", &ns.name, "movies")
        .await;
    assert!(not_serving.is_none(), "{not_serving:?}");

    // Fixed the way an operator of the cluster would: the image now exists on the node.
    tag_image(&env, TRAINER_IMAGE, &missing);
    serving_v1(&client, &ns.name, "movies").await;
    for name in [
        "RecommenderModelTrainerStuck",
        "RecommenderModelNoPromotedModel",
    ] {
        prometheus
            .wait_resolved(name, &ns.name, "movies", ALERT)
            .await;
    }
}

/// Starts a rollout of `movies` (serving v1) that its shadow stage cannot decide; checks that
/// RecommenderModelRolloutInconclusive fires once the stage's timeout (1 minute, the least the
/// schema allows) holds it, and RecommenderModelRolloutAborted (reason Inconclusive) once
/// `onInconclusive: Abort` ends it.
async fn inconclusive_then_aborted(client: &Client, ns: &str, prometheus: &Prometheus) {
    let shadow = |on_inconclusive: &str| json!({"minSamples": 1_000_000, "timeout": "1m", "onInconclusive": on_inconclusive});
    let rollout = json!({"strategy": "Progressive", "shadow": shadow("Hold")});
    start_rollout(client, ns, "movies", rollout, None, "v2").await;
    let held = wait_status_json(
        client,
        ns,
        "movies",
        Duration::from_secs(120),
        "the rollout held inconclusive",
        |s| s["rollout"]["verdict"] == "Inconclusive",
    )
    .await;
    let rolling = json_condition(&held, "RollingOut").expect("a RollingOut condition");
    assert_eq!(
        (rolling["status"].as_str(), rolling["reason"].as_str()),
        (Some("True"), Some("Inconclusive")),
        "{rolling}"
    );
    let (alert, was_pending) = prometheus
        .wait_firing("RecommenderModelRolloutInconclusive", ns, "movies", ALERT)
        .await;
    assert_labels(&alert, ns, "movies", "warning");
    assert!(was_pending, "pending (its for:) before firing");

    patch_model(
        client,
        ns,
        "movies",
        json!({"spec": {"rollout": {"shadow": shadow("Abort")}}}),
    )
    .await;
    let (alert, _) = prometheus
        .wait_firing("RecommenderModelRolloutAborted", ns, "movies", ALERT)
        .await;
    assert_eq!(
        alert.labels.get("reason").map(String::as_str),
        Some("Inconclusive"),
        "{alert:?}"
    );
    let mut labels = alert.clone();
    labels.labels.remove("reason");
    assert_labels(&labels, ns, "movies", "warning");
    assert!(
        alert.annotations["summary"].contains("Inconclusive"),
        "{alert:?}"
    );
    prometheus
        .wait_resolved("RecommenderModelRolloutInconclusive", ns, "movies", ALERT)
        .await;
}

/// Every metric the rules Prometheus loaded and the dashboard's queries read.
async fn selectors_in_use(env: &Env, prometheus: &Prometheus) -> BTreeMap<Selector, Vec<String>> {
    let mut used: BTreeMap<Selector, Vec<String>> = BTreeMap::new();
    let rules = prometheus.rule_queries().await;
    assert!(rules.len() >= 10, "rules loaded: {rules:?}");
    let path = env
        .repo
        .join("charts/recommender-operator/dashboards/recommender-operator.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard")).unwrap();
    let mut queries: Vec<(String, String)> = rules
        .into_iter()
        .map(|(name, q)| (format!("alert {name}"), q))
        .collect();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                format!("panel {}", panel["title"].as_str().unwrap_or("?")),
                target["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            queries.push((
                format!("variable {}", var["name"].as_str().unwrap_or("?")),
                var["query"]["query"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    for (who, query) in queries {
        let found = selectors(&query);
        assert!(!found.is_empty(), "{who} reads no metric: {query}");
        for selector in found {
            used.entry(selector).or_default().push(who.clone());
        }
    }
    used
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_read_is_in_the_live_scrape() {
    let (env, client, ns, prometheus) = setup("e2e-alert-series").await;
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 60.0;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    // A second model whose run stays in flight (its trainer image does not exist), so that the
    // gauges of a run in progress exist too.
    let stuck = postgres_model(&env, &ns, "stuck", |s| {
        s.trainer.image = Some(format!("127.0.0.1:1/nothing:{}", ns.name))
    });
    apply_model(&client, &stuck).await;
    serving_v1(&client, &ns.name, "movies").await;
    // The PodMonitor's selection found the predictor, with the labels the dashboard selects by.
    prometheus
        .wait_query(
            &format!(
                r#"up{{namespace="{}", pod=~"movies-predictor-.*"}} == 1"#,
                ns.name
            ),
            Duration::from_secs(60),
        )
        .await;

    // A progressive rollout of movies, so that the rollout's series exist too: its shadow stage
    // cannot decide (far more ratings needed than any traffic brings), so at its timeout it is
    // held inconclusive, and with onInconclusive switched to Abort it is aborted.
    inconclusive_then_aborted(&client, &ns.name, &prometheus).await;

    let used = selectors_in_use(&env, &prometheus).await;
    let metrics: BTreeSet<&str> = used.keys().map(|s| s.metric.as_str()).collect();
    eprintln!(
        "{} metrics read by the alerts and the dashboard",
        metrics.len()
    );
    // Keep the application's traffic going while waiting: the online gauges cover the last
    // collection interval and are absent without requests.
    let start = Instant::now();
    let mut problems = loop {
        predictor_traffic(&client, &ns.name, "movies", 5).await;
        let mut problems = Vec::new();
        for (selector, readers) in &used {
            let metric = &selector.metric;
            let series = prometheus
                .series(
                    &format!(r#"{{__name__="{metric}", namespace="{}"}}"#, ns.name),
                    since,
                )
                .await;
            if series.is_empty() {
                problems.push(format!(
                    "{metric}: no series (read by {})",
                    readers.join(", ")
                ));
                continue;
            }
            for label in &selector.labels {
                if !series.iter().any(|s| s.contains_key(label)) {
                    problems.push(format!(
                        "{metric}: no series has the label `{label}` (read by {})",
                        readers.join(", ")
                    ));
                }
            }
        }
        if problems.is_empty() || start.elapsed() > Duration::from_secs(120) {
            break problems;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "metrics the alerts or the dashboard read that the live scrape of {} lacks:\n  {}",
        ns.name,
        problems.join("\n  ")
    );
}
