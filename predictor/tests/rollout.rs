//! A rollout in one predictor: the stable version `v1` (seed 1) and the candidate `v2` (seed 2)
//! of a directory store, a rollout config file read again when it changes, each user answered
//! by their arm's model, and the per-arm and paired figures of `/v1/stats`.

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use clap::Parser;
use common::*;
use recommender_predictor::{AppState, Config, reload, rollout, router};
use recommender_rollout::{Arm, Share, arm};
use recommender_store::Sha256;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Replica {
    state: Arc<AppState>,
    router: Router,
}

struct Rollout {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Rollout {
    /// A store holding v1 and v2, and no rollout config yet.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("v1.model"), "v1", 1);
        write(&dir.path().join("v2.model"), "v2", 2);
        let config = dir.path().join("rollout.json");
        Rollout { dir, config }
    }

    fn sha(&self, version: &str) -> Sha256 {
        Sha256::of(&std::fs::read(self.dir.path().join(format!("{version}.model"))).unwrap())
    }

    /// A replica started as the operator starts one, both models loaded.
    async fn replica(&self, candidate_sha256: Sha256) -> Replica {
        let store = self.dir.path().display().to_string();
        let config = Config::try_parse_from([
            "recommender-predictor",
            "--store",
            &store,
            "--model-version",
            "v1",
            "--model-sha256",
            &self.sha("v1").to_string(),
            "--candidate-version",
            "v2",
            "--candidate-sha256",
            &candidate_sha256.to_string(),
            "--rollout-config",
            &self.config.display().to_string(),
        ])
        .unwrap();
        let state = AppState::new(&config).unwrap();
        reload::load_candidate(&state).await;
        reload::reload(&state).await.unwrap();
        Replica {
            router: router(Arc::clone(&state)),
            state,
        }
    }

    fn write(&self, rollout_id: &str, stage: &str, share: f64) {
        let text = json!({
            "rolloutId": rollout_id,
            "stage": stage,
            "candidateVersion": "v2",
            "candidateShare": share,
        });
        write_atomically(&self.config, &text.to_string());
    }
}

/// As a ConfigMap update does: a new file renamed over the old one.
fn write_atomically(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn users() -> impl Iterator<Item = String> {
    (0..USERS).map(|u| format!("u{u}"))
}

/// The version that answered, from the body and from the header (which must agree), and the
/// arm header.
async fn predict(replica: &Replica, user: &str, item: &str) -> (String, f64, Option<String>) {
    let uri = format!("/v1/predict?user={user}&item={item}");
    let response = replica
        .router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (version, arm) = (header("x-model-version").unwrap(), header("x-rollout-arm"));
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body["model_version"],
        version.as_str(),
        "body and header agree"
    );
    (version, body["rating"].as_f64().unwrap(), arm)
}

async fn feedback(
    replica: &Replica,
    user: &str,
    item: &str,
    rating: f64,
    suggested: bool,
) -> Value {
    let body = json!({"user": user, "item": item, "rating": rating, "suggested": suggested});
    let (status, json) = post_json(&replica.router, "/v1/feedback", body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

async fn rollout_stats(replica: &Replica) -> Value {
    let (status, stats) = get(&replica.router, "/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    stats["rollout"].clone()
}

fn expected_arm(user: &str, share: f64) -> Arm {
    arm(user, "r1", Share::from_fraction(share).unwrap())
}

/// Half the users on the candidate: each user gets the same arm and version on every request
/// and from every replica, the arm the hash says, and the candidate's own predictions.
#[tokio::test]
async fn a_user_gets_the_same_arm_and_version_from_every_replica() {
    let r = Rollout::new();
    r.write("r1", "canary", 0.5);
    let (a, b) = (r.replica(r.sha("v2")).await, r.replica(r.sha("v2")).await);
    for replica in [&a, &b] {
        assert_eq!(rollout::refresh(&replica.state, &r.config).await, Ok(true));
    }
    let (stable, candidate) = (model(1), model(2));
    let mut seen = Vec::new();
    for user in users() {
        let on = expected_arm(&user, 0.5);
        let (version, rating, arm) = predict(&a, &user, "i3").await;
        assert_eq!(
            predict(&a, &user, "i3").await.0,
            version,
            "{user}: same replica"
        );
        assert_eq!(
            predict(&b, &user, "i3").await.0,
            version,
            "{user}: other replica"
        );
        let (expected_version, by) = match on {
            Arm::Stable => ("v1", &stable),
            Arm::Candidate => ("v2", &candidate),
        };
        assert_eq!(version, expected_version, "{user}");
        assert_eq!(arm.as_deref(), Some(on.as_str()));
        assert!(
            close(rating, by.predict(&user, "i3").rating),
            "{user}: {rating}"
        );
        let (_, recommended) =
            get(&a.router, &format!("/v1/users/{user}/recommendations?n=3")).await;
        assert_eq!(recommended["model_version"], expected_version, "{user}");
        seen.push(on);
    }
    assert!(
        seen.contains(&Arm::Stable) && seen.contains(&Arm::Candidate),
        "{seen:?}"
    );

    // A batch names each prediction's version; the top level names the stable one.
    let pairs: Vec<Value> = users().map(|u| json!({"user": u, "item": "i3"})).collect();
    let (status, batch) = post_json(
        &a.router,
        "/v1/predict/batch",
        json!({"pairs": pairs}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(batch["model_version"], "v1");
    for (p, user) in batch["predictions"].as_array().unwrap().iter().zip(users()) {
        let expected = if expected_arm(&user, 0.5) == Arm::Candidate {
            "v2"
        } else {
            "v1"
        };
        assert_eq!(p["model_version"], expected, "{user}");
    }
}

/// A share of 0 puts nobody on the candidate, and in the shadow stage nobody sees it whatever
/// the share; without a config nobody does either, and answers carry no arm.
#[tokio::test]
async fn share_zero_and_shadow_answer_everyone_from_the_stable_model() {
    let r = Rollout::new();
    let replica = r.replica(r.sha("v2")).await;
    let (version, _, arm) = predict(&replica, "u1", "i1").await;
    assert_eq!((version.as_str(), arm), ("v1", None), "no config yet");
    for (stage, share) in [("canary", 0.0), ("shadow", 1.0)] {
        r.write("r1", stage, share);
        assert!(rollout::refresh(&replica.state, &r.config).await.is_ok());
        for user in users() {
            let (version, _, arm) = predict(&replica, &user, "i1").await;
            assert_eq!(version, "v1", "{stage} {share}: {user}");
            assert_eq!(arm.as_deref(), Some("stable"));
        }
        assert_eq!(rollout_stats(&replica).await["candidateShare"], 0.0);
    }
}

/// The config is read again when it changes, by the watcher as in a pod; a file that does not
/// read is refused, counted and reported, and the last good config stays in force.
#[tokio::test]
async fn config_changes_apply_and_bad_ones_are_kept_out() {
    let r = Rollout::new();
    let replica = r.replica(r.sha("v2")).await;
    r.write("r1", "canary", 0.0);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(rollout::watch_config(
        Arc::clone(&replica.state),
        r.config.clone(),
        Duration::from_millis(20),
        stopped,
    ));
    let on_candidate = |replica: &Replica| {
        let state = Arc::clone(&replica.state);
        async move {
            let mut n = 0;
            for user in users() {
                let routed = rollout::route(&state, &user);
                n += usize::from(routed.arm == Arm::Candidate);
            }
            n
        }
    };
    let wait_for = |share: f64| {
        let state = Arc::clone(&replica.state);
        async move {
            for _ in 0..500 {
                if state.rollout.load().as_deref().map(|a| a.share.fraction()) == Some(share) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("share {share} never applied");
        }
    };
    wait_for(0.0).await;
    assert_eq!(on_candidate(&replica).await, 0);
    r.write("r1", "canary", 1.0);
    wait_for(1.0).await;
    assert_eq!(on_candidate(&replica).await, USERS);

    let metrics = |state: &AppState| String::from_utf8(state.metrics.encode().unwrap()).unwrap();
    let bad = [
        ("{\"rolloutId\": \"r1\", ", "line 1 column"),
        (
            r#"{"rolloutId": "r1", "stage": "canary", "candidateVersion": "v9", "candidateShare": 0}"#,
            "candidateVersion \"v9\" is not the candidate this predictor holds (v2)",
        ),
        (
            r#"{"rolloutId": "r1", "stage": "canary", "candidateVersion": "v2", "candidateShare": 2}"#,
            "candidateShare must be between 0 and 1",
        ),
    ];
    for (i, (text, expected)) in bad.iter().enumerate() {
        write_atomically(&r.config, text);
        let failures = format!(
            "recommender_predictor_rollout_config_failures_total {}",
            i + 1
        );
        for _ in 0..500 {
            if metrics(&replica.state).contains(&failures) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(metrics(&replica.state).contains(&failures), "{text}");
        assert_eq!(
            on_candidate(&replica).await,
            USERS,
            "the last good config stays: {text}"
        );
        let (_, summary) = get(&replica.router, "/v1/summary").await;
        let error = summary["rollout"]["config_error"].as_str().unwrap();
        assert!(
            error.contains(expected) && error.contains("rollout.json"),
            "{error}"
        );
    }
    std::fs::write(&r.config, vec![b' '; 5000]).unwrap();
    let err = rollout::refresh(&replica.state, &r.config)
        .await
        .unwrap_err();
    assert!(err.contains("at most 4096"), "{err}");
    std::fs::remove_file(&r.config).unwrap();
    assert!(rollout::refresh(&replica.state, &r.config).await.is_err());
    assert_eq!(on_candidate(&replica).await, USERS);
    r.write("r1", "canary", 1.0);
    assert_eq!(
        rollout::refresh(&replica.state, &r.config).await,
        Ok(false),
        "already in force"
    );
    let (_, summary) = get(&replica.router, "/v1/summary").await;
    assert_eq!(
        summary["rollout"]["config_error"],
        Value::Null,
        "a good file clears the error"
    );
    stop.send(true).unwrap();
    watcher.await.unwrap();
}

/// In the shadow stage every feedback rating is answered by the stable model and predicted by
/// the candidate too: the paired sums are both models' errors on exactly those ratings.
#[tokio::test]
async fn shadow_pairs_both_models_errors_on_each_rating() {
    let r = Rollout::new();
    r.write("r1", "shadow", 0.0);
    let replica = r.replica(r.sha("v2")).await;
    rollout::refresh(&replica.state, &r.config).await.unwrap();
    let (stable, candidate) = (model(1), model(2));
    let mut expected = recommender_contract::stats::PairedSums::default();
    for (user, item, rating) in ratings().into_iter().take(40) {
        let answer = feedback(&replica, &user, &item, rating, false).await;
        assert_eq!(answer["model_version"], "v1");
        let s = stable.predict(&user, &item).rating;
        let c = candidate.predict(&user, &item).rating;
        assert!(close(answer["predicted"].as_f64().unwrap(), s));
        expected.record(rating - s, rating - c);
    }
    let stats = rollout_stats(&replica).await;
    let paired = &stats["paired"];
    assert_eq!(paired["n"], 40);
    for (field, value) in [
        ("sumDifference", expected.sum_difference),
        ("sumSquaredDifference", expected.sum_squared_difference),
        ("stableSumSquaredError", expected.stable_sum_squared_error),
        (
            "candidateSumSquaredError",
            expected.candidate_sum_squared_error,
        ),
    ] {
        assert!(
            close(paired[field].as_f64().unwrap(), value),
            "{field}: {paired}"
        );
    }
    assert!(
        expected.sum_difference.abs() > 1e-6,
        "the two models differ"
    );
    assert_eq!(stats["stage"], "shadow");
    assert_eq!(
        (
            stats["stable"]["feedback"]["n"].as_u64(),
            stats["candidate"]["feedback"]["n"].as_u64()
        ),
        (Some(40), Some(0))
    );
    assert_eq!(
        (
            stats["stableVersion"].as_str(),
            stats["candidateVersion"].as_str()
        ),
        (Some("v1"), Some("v2"))
    );
}

/// In a canary each arm gets its users' requests, suggestions and feedback; every rating is
/// still paired; a new rollout id starts the figures over.
#[tokio::test]
async fn canary_figures_are_per_arm() {
    let r = Rollout::new();
    r.write("r1", "canary", 0.5);
    let replica = r.replica(r.sha("v2")).await;
    rollout::refresh(&replica.state, &r.config).await.unwrap();
    let mut requests = [0u64; 2];
    let mut rated = [0u64; 2];
    let mut shown = [0u64; 2];
    for user in users() {
        let slot = usize::from(expected_arm(&user, 0.5) == Arm::Candidate);
        predict(&replica, &user, "i1").await;
        let (_, recommended) = get(
            &replica.router,
            &format!("/v1/users/{user}/recommendations?n=2"),
        )
        .await;
        let items = recommended["items"].as_array().unwrap();
        requests[slot] += 2;
        shown[slot] += items.len() as u64;
        let item = items[0]["item"].as_str().unwrap();
        let answer = feedback(&replica, &user, item, 5.0, true).await;
        assert_eq!(
            answer["model_version"],
            if slot == 1 { "v2" } else { "v1" },
            "{user}"
        );
        rated[slot] += 1;
    }
    let stats = rollout_stats(&replica).await;
    for (slot, name) in ["stable", "candidate"].iter().enumerate() {
        let arm = &stats[*name];
        assert_eq!(
            arm["requests"]["count"].as_u64(),
            Some(requests[slot]),
            "{name}"
        );
        assert_eq!(arm["feedback"]["n"].as_u64(), Some(rated[slot]), "{name}");
        assert_eq!(
            arm["suggestions"]["rated"].as_u64(),
            Some(rated[slot]),
            "{name}"
        );
        assert_eq!(
            arm["suggestions"]["accepted"].as_u64(),
            Some(rated[slot]),
            "{name}"
        );
        assert_eq!(
            arm["suggestions"]["shown"].as_u64(),
            Some(shown[slot]),
            "{name}"
        );
    }
    assert_eq!(stats["candidate"]["feedback"]["modelVersion"], "v2");
    assert_eq!(stats["paired"]["n"].as_u64(), Some(USERS as u64));
    assert_eq!(stats["candidateShare"], 0.5);

    r.write("r2", "canary", 0.5);
    rollout::refresh(&replica.state, &r.config).await.unwrap();
    let stats = rollout_stats(&replica).await;
    assert_eq!(
        (stats["rolloutId"].as_str(), stats["paired"]["n"].as_u64()),
        (Some("r2"), Some(0))
    );
    assert_eq!(stats["candidate"]["suggestions"]["shown"].as_u64(), Some(0));
}

/// A candidate whose bytes are not the recorded ones is refused and counted, and the stable
/// model serves everyone whatever the config says; the replica still serves.
#[tokio::test]
async fn a_refused_candidate_leaves_everyone_on_the_stable_model() {
    let r = Rollout::new();
    r.write("r1", "canary", 1.0);
    let replica = r.replica(r.sha("v1")).await;
    rollout::refresh(&replica.state, &r.config).await.unwrap();
    for user in users() {
        assert_eq!(predict(&replica, &user, "i1").await.0, "v1", "{user}");
    }
    let stats = rollout_stats(&replica).await;
    assert_eq!(
        (
            stats["candidateVersion"].clone(),
            stats["candidateShare"].clone()
        ),
        (Value::Null, json!(0.0))
    );
    let (_, summary) = get(&replica.router, "/v1/summary").await;
    let error = summary["rollout"]["candidate_error"].as_str().unwrap();
    assert!(error.contains("v2.model"), "{error}");
    let metrics = String::from_utf8(replica.state.metrics.encode().unwrap()).unwrap();
    assert!(
        metrics.contains(r#"recommender_predictor_model_load_failures_total{reason="Corrupt"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("recommender_predictor_rollout_candidate_loaded 0"));
}
