//! `status.online` on the local cluster: feedback sent to each of two predictor replicas is summed
//! by the operator's collector into one status, and the figures match what this test computes
//! from the same requests; a model below `promotion.minAccuracy` never serves, and says why.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use recommender_e2e::*;
use recommender_operator::crd::{OnlineStatus, RunOutcome};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const TRAIN: Duration = Duration::from_secs(240);
/// The collector's interval in these tests (the default is 30 s).
const INTERVAL: &str = "--online-interval=3";
const COLLECTED: Duration = Duration::from_secs(60);
/// The predictors' default `--accept-threshold`.
const ACCEPT: f64 = 4.0;

/// What this test sent and what it expects the collector to report.
#[derive(Default)]
struct Expected {
    squared: f64,
    absolute: f64,
    within_one: u64,
    predicted: f64,
    actual: f64,
    n: u64,
    shown: u64,
    rated: u64,
    accepted: u64,
    active: BTreeSet<String>,
    engaged: BTreeSet<String>,
}

impl Expected {
    fn feedback(&mut self, user: &str, answer: &Value, actual: f64, suggested: bool) {
        let predicted = answer["predicted"]
            .as_f64()
            .unwrap_or_else(|| panic!("feedback answer without `predicted`: {answer}"));
        let error = actual - predicted;
        self.squared += error * error;
        self.absolute += error.abs();
        self.within_one += u64::from(error.abs() <= 1.0);
        self.predicted += predicted;
        self.actual += actual;
        self.n += 1;
        self.active.insert(user.into());
        if suggested {
            self.rated += 1;
            self.accepted += u64::from(actual >= ACCEPT);
            self.engaged.insert(user.into());
        }
    }
}

async fn ok(what: &str, answer: Result<(u16, Value), String>) -> Value {
    match answer {
        Ok((200, body)) => body,
        other => panic!("{what}: {other:?}"),
    }
}

/// Users 1–8 reach both replicas (so each is counted once, not twice); users 100+r reach only
/// replica r. Each asks for suggestions, rates three of them and one item found on its own.
async fn send_traffic(replicas: &[String]) -> Expected {
    let mut want = Expected::default();
    for (r, base) in replicas.iter().enumerate() {
        let users: Vec<String> = (1..=8).chain([100 + r]).map(|u| u.to_string()).collect();
        for user in &users {
            let suggestions = ok(
                "suggestions",
                get_json(&format!("{base}/v1/users/{user}/recommendations?n=5")).await,
            )
            .await;
            let items: Vec<String> = suggestions["items"]
                .as_array()
                .unwrap_or_else(|| panic!("suggestions: {suggestions}"))
                .iter()
                .filter_map(|i| i["item"].as_str().map(String::from))
                .collect();
            want.shown += items.len() as u64;
            for (k, item) in items.iter().take(3).enumerate() {
                // 5, 3 and 1 stars: accepted, rated but not accepted, far off.
                let rating = [5.0, 3.0, 1.0][k];
                let body = json!({"user": user, "item": item, "rating": rating, "suggested": true});
                let answer = ok(
                    "feedback",
                    post_json(&format!("{base}/v1/feedback"), &body).await,
                )
                .await;
                want.feedback(user, &answer, rating, true);
            }
            let body = json!({"user": user, "item": "50", "rating": 4});
            let answer = ok(
                "feedback",
                post_json(&format!("{base}/v1/feedback"), &body).await,
            )
            .await;
            want.feedback(user, &answer, 4.0, false);
        }
    }
    want
}

/// The status rounds to 4 decimals.
fn close(what: &str, got: Option<f64>, want: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: absent"));
    assert!(
        (got - want).abs() <= 5e-5 + 1e-9,
        "{what}: status {got}, computed {want}"
    );
}

/// Distinct users are counted with a HyperLogLog++ sketch; the status states its relative error.
fn users(what: &str, got: u64, want: usize, online: &OnlineStatus) {
    let bound = (3.0 * online.user_count_relative_error * want as f64).max(1.0);
    assert!(
        (got as f64 - want as f64).abs() <= bound,
        "{what}: status {got}, sent {want} (±{bound})"
    );
}

#[tokio::test]
async fn online_status_sums_two_replicas_as_the_feedback_says() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-online").await;
    let interval = format!("extraArgs={{{INTERVAL}}}");
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[&interval]).await;
    let model = postgres_model(&env, &ns, "movies", |s| s.predictor.replicas = 2);
    apply_model(&client, &model).await;
    wait_status(
        &models(&client, &ns.name),
        "movies",
        TRAIN,
        "v1 served",
        |s| serves(s, "v1"),
    )
    .await;
    let replicas = wait_for(
        Duration::from_secs(120),
        "two ready predictor replicas",
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let urls = predictor_pod_urls(&client, &ns, "movies", Some("v1")).await;
                (urls.len() == 2).then_some(urls)
            }
        },
    )
    .await;

    let want = send_traffic(&replicas).await;
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        COLLECTED,
        "status.online with every feedback sent",
        |s| {
            s.online
                .as_ref()
                .is_some_and(|o| o.feedback == want.n && o.replicas == 2)
        },
    )
    .await;
    let online = status.online.as_ref().unwrap();
    println!("{}", serde_json::to_string_pretty(online).unwrap());
    let n = want.n as f64;
    assert_eq!(online.version, "v1");
    close("rmse", online.rmse, (want.squared / n).sqrt());
    close("mae", online.mae, want.absolute / n);
    close("accuracy", online.accuracy, want.within_one as f64 / n);
    close(
        "average predicted",
        online.average_predicted,
        want.predicted / n,
    );
    close("average actual", online.average_actual, want.actual / n);
    close(
        "average difference",
        online.average_difference,
        (want.predicted - want.actual) / n,
    );
    assert_eq!(
        (
            online.suggestions_shown,
            online.suggestions_rated,
            online.suggestions_accepted
        ),
        (want.shown, want.rated, want.accepted)
    );
    close(
        "acceptance rate",
        online.acceptance_rate,
        want.rated as f64 / want.shown as f64,
    );
    close(
        "accepted of rated",
        online.accepted_of_rated,
        want.accepted as f64 / want.rated as f64,
    );
    users(
        "active users",
        online.active_users,
        want.active.len(),
        online,
    );
    users(
        "engaged users",
        online.engaged_users,
        want.engaged.len(),
        online,
    );
    // 8 shared users + one of each replica's own: a sum of per-replica counts would say 18.
    assert_eq!(want.active.len(), 10);
    close(
        "engagement rate",
        online.engagement_rate,
        online.engaged_users as f64 / online.active_users as f64,
    );

    // Request rate and latency cover the last interval: keep predictions going until the
    // collector has seen a whole interval of them.
    let traffic = {
        let replicas = replicas.clone();
        tokio::spawn(async move {
            loop {
                for base in &replicas {
                    let _ = get_json(&format!("{base}/v1/predict?user=1&item=50")).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // The collector writes `status.online` and the reconcile it wakes then writes the Serving
    // condition from it: the two are read together once that reconcile has happened (its reason
    // names the target these figures miss, and an RMSE reason their RMSE, not that of an earlier
    // collection that saw part of the feedback), which on a busy node can be a few seconds after
    // the figures.
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        COLLECTED,
        "request rate and latency in status.online, and the Serving condition written from them",
        |s| {
            let Some(o) = s.online.as_ref() else {
                return false;
            };
            o.requests_per_second.is_some_and(|r| r > 1.0)
                && o.latency_p99_seconds.is_some()
                && condition(s, "Serving").is_some_and(|c| match c.reason.as_str() {
                    "LatencyObjectiveMissed" => o.latency_p99_seconds > Some(0.005),
                    "OnlineRmseOverGate" => {
                        o.latency_p99_seconds <= Some(0.005)
                            && o.rmse
                                .is_some_and(|rmse| c.message.contains(&format!("{rmse:.4}")))
                    }
                    _ => false,
                })
        },
    )
    .await;
    traffic.abort();
    let online = status.online.clone().unwrap();
    let (p50, p99) = (
        online.latency_p50_seconds.unwrap(),
        online.latency_p99_seconds.unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "p50 {p50}, p99 {p99}");
    // Serving stays True and its reason says which inference target the live figures miss: the
    // one-star ratings above put the online RMSE far over maxRmse 1.0 (on more than 50 ratings).
    let rmse = online.rmse.unwrap();
    assert!(rmse > 1.0 && online.feedback >= 50, "{online:?}");
    let want = if p99 > 0.005 {
        "LatencyObjectiveMissed"
    } else {
        "OnlineRmseOverGate"
    };
    let serving = condition(&status, "Serving").expect("a Serving condition");
    assert_eq!(
        (serving.status.as_str(), serving.reason.as_str()),
        ("True", want),
        "{serving:?}"
    );
    if want == "OnlineRmseOverGate" {
        assert!(
            serving.message.contains(&format!("{rmse:.4}")),
            "{serving:?}"
        );
    }
}

#[tokio::test]
async fn a_model_below_min_accuracy_is_kept_out_with_the_reason() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-accuracy").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let model = postgres_model(&env, &ns, "movies", |s| s.promotion.min_accuracy = 0.99);
    apply_model(&client, &model).await;
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        TRAIN,
        "the first run rejected",
        |s| s.history.iter().any(|r| r.outcome == RunOutcome::Rejected),
    )
    .await;
    let run = status
        .history
        .iter()
        .find(|r| r.outcome == RunOutcome::Rejected)
        .unwrap();
    assert!(
        run.message.contains("accuracy") && run.message.contains("0.99"),
        "{run:?}"
    );
    let accuracy = run
        .metrics
        .as_ref()
        .expect("the rejected run's metrics")
        .accuracy;
    assert!(accuracy < 0.99, "{run:?}");
    assert!(serving_version(&status).is_none(), "{status:?}");
    let ready = condition(&status, "Ready").expect("a Ready condition");
    assert_eq!(ready.status, "False", "{ready:?}");
    let (ok, table) = kubectl(&["get", "recommendermodels", "-n", &ns.name]);
    assert!(ok, "{table}");
    println!("{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| !row.contains("Serving")),
        "{table}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let predictors = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=predictor"))
        .await
        .unwrap()
        .items;
    assert!(
        predictors.is_empty(),
        "no predictor for a rejected model: {:?}",
        predictors.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
}
