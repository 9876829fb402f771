//! Model changes while serving: atomic swaps under load, corrupt artifacts refused, the file
//! watcher; a store's version served only with the digest the operator recorded.

mod common;

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::http::StatusCode;
use common::*;
use recommender_model::artifact;
use recommender_predictor::reload::{reload, watch_model};
use recommender_store::Sha256;

/// Refused loads of `reason`.
async fn failures(app: &App, reason: &str) -> f64 {
    metric(
        app,
        &format!(r#"recommender_predictor_model_load_failures_total{{reason="{reason}"}}"#),
    )
    .await
}

async fn metric(app: &App, name: &str) -> f64 {
    let text = String::from_utf8(app.state.metrics.encode().unwrap()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in metrics"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_concurrent_requests_fails_no_request() {
    let app = loaded_app().await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let router = app.router.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let (user, item) = (format!("u{}", (w + k) % USERS), format!("i{}", k % ITEMS));
                    let (status, body) =
                        get(&router, &format!("/v1/predict?user={user}&item={item}")).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    let version = body["model_version"].as_str().unwrap().to_owned();
                    // The answer must come wholly from the version it names.
                    let seed: u64 = version[1..].parse().unwrap();
                    let expected = model(seed).predict(&user, &item).rating;
                    assert!(
                        close(body["rating"].as_f64().unwrap(), expected),
                        "{version}"
                    );
                    if k.is_multiple_of(7) {
                        let (status, body) =
                            get(&router, &format!("/v1/users/{user}/recommendations?n=5")).await;
                        assert_eq!(status, StatusCode::OK, "{body}");
                    }
                    seen.push(version);
                    // In-process requests never wait on I/O; let the reloading task run.
                    tokio::task::yield_now().await;
                }
                seen
            })
        })
        .collect();
    for round in 2..=6u64 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        write(&app.path, &format!("v{round}"), round);
        assert_eq!(reload(&app.state).await.unwrap(), format!("v{round}"));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    stop.store(true, Ordering::Relaxed);
    let mut versions = BTreeSet::new();
    let mut requests = 0;
    for worker in workers {
        // A failed assertion inside a worker surfaces here as a join error.
        let seen = worker.await.expect("a request failed during reload");
        requests += seen.len();
        versions.extend(seen);
    }
    assert!(requests > 200, "only {requests} requests ran");
    assert!(
        versions.contains("v1") && versions.contains("v6"),
        "{versions:?}"
    );
    let (_, body) = get(&app.router, "/v1/predict?user=u1&item=i1").await;
    assert_eq!(body["model_version"], "v6");
    assert_eq!(
        metric(&app, "recommender_predictor_model_reloads_total").await,
        6.0
    );
    assert_eq!(failures(&app, "InvalidArtifact").await, 0.0);
}

#[tokio::test]
async fn corrupt_artifacts_are_refused_and_the_old_model_keeps_serving() {
    let app = loaded_app().await;
    let good = artifact("v2", 2).to_bytes().unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let truncated = good[..good.len() - 10].to_vec();
    let garbage = b"definitely not a model".to_vec();
    for (bytes, expect) in [
        (flipped, "checksum"),
        (truncated, "truncated"),
        (garbage, "not a model artifact"),
    ] {
        std::fs::write(&app.path, &bytes).unwrap();
        let err = reload(&app.state).await.unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
        let (status, body) = get(&app.router, "/v1/predict?user=u1&item=i2").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["model_version"], "v1");
        assert_eq!(get(&app.router, "/readyz").await.0, StatusCode::OK);
    }
    assert_eq!(failures(&app, "InvalidArtifact").await, 3.0);
    let (_, summary) = get(&app.router, "/v1/summary").await;
    assert_eq!(summary["model_version"], "v1");
    assert_eq!(summary["loads"]["failed"], 3);
    assert!(
        summary["loads"]["last_error"]
            .as_str()
            .unwrap()
            .contains("not a model artifact")
    );

    std::fs::write(&app.path, &good).unwrap();
    assert_eq!(reload(&app.state).await.unwrap(), "v2");
    let (_, body) = get(&app.router, "/v1/predict?user=u1&item=i2").await;
    assert_eq!(body["model_version"], "v2");
}

async fn wait_for(app: &App, what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "timed out waiting for {what}; summary: {:?}",
        get(&app.router, "/v1/summary").await
    );
}

#[tokio::test]
async fn the_watcher_loads_replaced_files_and_counts_a_bad_one_once() {
    let app = app_with(|_| {});
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_model(
        app.state.clone(),
        Duration::from_millis(20),
        stopped,
    ));

    // Nothing there yet: not ready, one failure however many polls pass.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        get(&app.router, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(failures(&app, "NotFound").await, 1.0);

    write(&app.path, "v1", 1);
    wait_for(&app, "v1", async || {
        get(&app.router, "/readyz").await.0 == StatusCode::OK
    })
    .await;

    // Replaced (atomically, as the trainer does) by a corrupt file: refused once, v1 stays.
    let mut bad = artifact("v2", 2).to_bytes().unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let tmp = app.dir.path().join("incoming");
    std::fs::write(&tmp, &bad).unwrap();
    std::fs::rename(&tmp, &app.path).unwrap();
    wait_for(&app, "the failure", async || {
        failures(&app, "InvalidArtifact").await == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(failures(&app, "InvalidArtifact").await, 1.0);
    assert_eq!(get(&app.router, "/readyz").await.1["model_version"], "v1");

    artifact::save(&app.path, &artifact("v3", 3)).unwrap();
    wait_for(&app, "v3", async || {
        get(&app.router, "/readyz").await.1["model_version"] == "v3"
    })
    .await;

    stop.send(true).unwrap();
    watcher.await.unwrap().unwrap();
}

/// An app told to serve `version` from the directory store `dir`, with the digest `sha256`.
fn store_app(dir: &std::path::Path, version: &str, sha256: Option<Sha256>) -> App {
    let root = dir.display().to_string();
    app_with(|c| {
        c.model = None;
        c.store.store = Some(root);
        c.model_version = Some(version.into());
        c.model_sha256 = sha256;
    })
}

fn digest(a: &recommender_model::Artifact) -> Sha256 {
    Sha256::of(&a.to_bytes().unwrap())
}

#[tokio::test]
async fn a_store_version_is_served_only_with_the_recorded_digest() {
    let store = tempfile::tempdir().unwrap();
    let v1 = write(&store.path().join("v1.model"), "v1", 1);

    let app = store_app(store.path(), "v1", Some(digest(&v1)));
    assert_eq!(reload(&app.state).await.unwrap(), "v1");
    let (_, model) = get(&app.router, "/v1/model").await;
    assert_eq!(model["sha256"], digest(&v1).to_string());
    assert_eq!(
        model["path"],
        store.path().join("v1.model").display().to_string()
    );

    // The operator recorded other bytes for v1: refused with both digests, never served.
    let recorded = digest(&artifact("v1", 9));
    let app = store_app(store.path(), "v1", Some(recorded));
    let err = reload(&app.state).await.unwrap_err().to_string();
    assert!(
        err.contains(&recorded.to_string()) && err.contains(&digest(&v1).to_string()),
        "{err}"
    );
    assert!(err.contains("\"v1.model\""), "{err}");
    assert_eq!(failures(&app, "Corrupt").await, 1.0);
    assert_eq!(
        get(&app.router, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A version that is not there; one whose artifact says it is another version.
    let app = store_app(store.path(), "v2", None);
    assert!(reload(&app.state).await.is_err());
    assert_eq!(failures(&app, "NotFound").await, 1.0);
    std::fs::copy(store.path().join("v1.model"), store.path().join("v3.model")).unwrap();
    let app = store_app(store.path(), "v3", Some(digest(&v1)));
    let err = reload(&app.state).await.unwrap_err().to_string();
    assert!(err.contains("holds version \"v1\", not \"v3\""), "{err}");
    assert_eq!(failures(&app, "InvalidArtifact").await, 1.0);
}

#[tokio::test]
async fn a_replaced_file_with_another_digest_is_refused_and_the_old_model_serves() {
    let first = artifact("v1", 1);
    let app = app_with(|c| c.model_sha256 = Some(digest(&first)));
    artifact::save(&app.path, &first).unwrap();
    assert_eq!(reload(&app.state).await.unwrap(), "v1");

    // A valid artifact, but not the bytes the digest names.
    write(&app.path, "v2", 2);
    let err = reload(&app.state).await.unwrap_err().to_string();
    assert!(err.contains("is corrupt: its sha256 is"), "{err}");
    assert_eq!(failures(&app, "Corrupt").await, 1.0);
    let (status, body) = get(&app.router, "/v1/predict?user=u1&item=i2").await;
    assert_eq!(
        (status, body["model_version"].as_str()),
        (StatusCode::OK, Some("v1"))
    );
}
