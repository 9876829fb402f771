//! Fixtures: a small synthetic model written as a real artifact, the app around it, and request
//! helpers.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use http_body_util::BodyExt;
use recommender_model::artifact::{CvMetrics, TrainingData};
use recommender_model::{
    Artifact, ArtifactMeta, FORMAT_VERSION, Hyperparameters, Model, SvdParams, artifact,
    fixtures::{self, Shape},
};
use recommender_predictor::{AppState, Config, reload, router};
use serde_json::Value;
use tower::ServiceExt;

pub const USERS: usize = 20;
pub const ITEMS: usize = 30;
pub const FACTORS: usize = 4;

/// Ratings of the fixture: user `uN` rated the six items `i((N + 3k) mod 30)`, k = 0..5, so
/// every item is rated; values 1..=5 from a fixed formula.
pub fn ratings() -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for u in 0..USERS {
        for k in 0..6 {
            let i = (u + 3 * k) % ITEMS;
            let rating = 1 + (u * 7 + i * 3 + (u * i) % 5) % 5;
            out.push((format!("u{u}"), format!("i{i}"), rating as f64));
        }
    }
    out
}

pub fn rated_by(user: &str) -> Vec<String> {
    ratings()
        .into_iter()
        .filter(|(u, _, _)| u == user)
        .map(|(_, i, _)| i)
        .collect()
}

fn params(seed: u64) -> Hyperparameters {
    Hyperparameters::Svd(SvdParams {
        n_factors: FACTORS,
        n_epochs: 30,
        seed,
        ..SvdParams::default()
    })
}

/// A model of the fixture's users and items that knows which items each user rated in
/// [`ratings`]; the seed draws its biases and factors, so models of different seeds predict
/// differently.
pub fn model(seed: u64) -> Model {
    let rated = ratings().into_iter().map(|(u, i, _)| {
        let index = |id: &str| id[1..].parse::<u32>().unwrap();
        (index(&u), index(&i))
    });
    let shape = Shape {
        users: USERS,
        items: ITEMS,
        factors: FACTORS,
        seed,
    };
    fixtures::model(shape, rated.collect::<Vec<_>>().into_iter())
}

pub fn artifact(version: &str, seed: u64) -> Artifact {
    Artifact {
        meta: ArtifactMeta {
            format_version: FORMAT_VERSION,
            version: version.into(),
            created_at: "2026-11-27T22:00:00Z".into(),
            algorithm: "svd".into(),
            hyperparameters: params(seed),
            data: TrainingData {
                rows: (USERS * 6) as u64,
                users: USERS as u64,
                items: ITEMS as u64,
                max_timestamp: None,
                content_hash: "ab".repeat(32),
                skipped: 0,
            },
            metrics: CvMetrics {
                folds: 4,
                rmse: 0.95,
                rmse_std: 0.01,
                mae: 0.75,
                mae_std: 0.01,
                accuracy: 0.7,
                precision_at_10: 0.1,
                recall_at_10: 0.1,
                ndcg_at_10: 0.1,
            },
            trainer_version: "test".into(),
            fit_threads: Some(1),
        },
        model: model(seed),
    }
}

pub fn write(path: &Path, version: &str, seed: u64) -> Artifact {
    let a = artifact(version, seed);
    artifact::save(path, &a).unwrap();
    a
}

pub struct App {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub state: Arc<AppState>,
    pub router: Router,
}

/// An app whose model path is `<tmp>/model/v.model`, nothing loaded yet.
pub fn app_with(configure: impl FnOnce(&mut Config)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.model");
    let mut config = Config::with_model(&path);
    configure(&mut config);
    let state = AppState::new(&config).unwrap();
    let router = router(state.clone());
    App {
        dir,
        path,
        state,
        router,
    }
}

/// An app serving `v1` (seed 1).
pub async fn loaded_app() -> App {
    let app = app_with(|_| {});
    write(&app.path, "v1", 1);
    assert_eq!(reload::reload(&app.state).await.unwrap(), "v1");
    app
}

pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = if content_type.starts_with("application/json") {
        serde_json::from_str(&text).unwrap()
    } else {
        Value::Null
    };
    (status, json, text)
}

pub async fn get(router: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, json, _) = send(router, Request::get(uri).body(Body::empty()).unwrap()).await;
    (status, json)
}

pub async fn post_json(router: &Router, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let (status, json, _) = send(router, request).await;
    (status, json)
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}
