//! Health, metrics and the state of the served model.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use jiff::Timestamp;
use recommender_contract::stats::PredictorStats;
use recommender_model::{ArtifactMeta, RatingScale};
use serde::Serialize;

use crate::{
    error::{Error, json_response},
    feedback::Snapshot,
    handlers::served,
    rollout,
    state::AppState,
};

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    model_version: Option<&'a str>,
}

/// `GET /livez`: the process answers; says nothing about the model.
pub async fn livez(State(state): State<Arc<AppState>>) -> Response {
    let guard = state.model.load();
    json_response(
        StatusCode::OK,
        &Health {
            status: "alive",
            model_version: guard.as_deref().map(|m| m.version()),
        },
    )
}

/// `GET /readyz`: 200 only while a verified model is served.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let guard = state.model.load();
    match guard.as_deref() {
        Some(m) => json_response(
            StatusCode::OK,
            &Health {
                status: "ready",
                model_version: Some(m.version()),
            },
        ),
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &Health {
                status: "no_model",
                model_version: None,
            },
        ),
    }
}

/// Brings the gauges that are derived rather than counted up to date.
fn refresh_gauges(state: &AppState, now: Timestamp) -> Snapshot {
    let metrics = &state.metrics;
    let guard = state.model.load();
    match guard.as_deref() {
        Some(m) => {
            metrics.model_age_seconds.set(m.age_seconds(now));
            metrics.model_loaded.set(1);
        }
        None => metrics.model_loaded.set(0),
    }
    let snapshot = state.feedback.snapshot(Instant::now());
    metrics.online_rmse.set(snapshot.rmse.unwrap_or(f64::NAN));
    metrics.online_mae.set(snapshot.mae.unwrap_or(f64::NAN));
    metrics.online_predictions.set(snapshot.samples as i64);
    metrics
        .acceptance_ratio
        .set(snapshot.acceptance_rate.unwrap_or(f64::NAN));
    metrics.active_users.set(snapshot.active_users as i64);
    metrics.engaged_users.set(snapshot.engaged_users as i64);
    snapshot
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, Error> {
    refresh_gauges(&state, Timestamp::now());
    let body = state.metrics.encode()?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

#[derive(Serialize)]
struct ModelStatus<'a> {
    version: &'a str,
    algorithm: &'a str,
    created_at: &'a str,
    age_seconds: f64,
    loaded_at: Timestamp,
    path: String,
    /// Cross-validated error measured by the trainer, to compare with the online error.
    cv_rmse: f64,
    cv_mae: f64,
}

#[derive(Serialize)]
struct Loads {
    succeeded: u64,
    failed: u64,
    last_error: Option<String>,
    last_error_at: Option<Timestamp>,
}

#[derive(Serialize)]
struct Summary<'a> {
    /// `serving` or `no_model`.
    status: &'a str,
    model_version: Option<&'a str>,
    model: Option<ModelStatus<'a>>,
    online: Online,
    suggestions: Suggestions,
    users: Users,
    loads: Loads,
    /// Only when the predictor was started with a candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutSummary>,
    uptime_seconds: f64,
}

#[derive(Serialize)]
struct RolloutSummary {
    /// `None` until a rollout config was read.
    rollout_id: Option<String>,
    stage: Option<&'static str>,
    candidate_share: f64,
    candidate_version: Option<String>,
    /// Why the candidate is not served, if it was refused.
    candidate_error: Option<String>,
    /// Why the last rollout config file was refused, if it was (the previous one stays).
    config_error: Option<String>,
}

fn rollout_summary(state: &AppState) -> Option<RolloutSummary> {
    let expected = state.candidate_source.is_some() || state.candidate_error_now().is_some();
    if !expected {
        return None;
    }
    let stats = rollout::stats(state);
    let rollout = state.rollout.load();
    Some(RolloutSummary {
        rollout_id: rollout.as_deref().map(|r| r.config.rollout_id.clone()),
        stage: rollout.as_deref().map(|r| r.config.stage.as_str()),
        candidate_share: stats.as_ref().map_or(0.0, |s| s.candidate_share),
        candidate_version: state
            .candidate
            .load()
            .as_deref()
            .map(|m| m.version().to_owned()),
        candidate_error: state.candidate_error_now(),
        config_error: state
            .rollout_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    })
}

#[derive(Serialize)]
struct Online {
    /// The model version the online error refers to.
    model_version: Option<String>,
    samples: u64,
    rmse: Option<f64>,
    mae: Option<f64>,
    feedback_total: u64,
}

#[derive(Serialize)]
struct Suggestions {
    served: u64,
    feedback: u64,
    accepted: u64,
    acceptance_rate: Option<f64>,
    accept_threshold: f64,
}

#[derive(Serialize)]
struct Users {
    active: u64,
    engaged: u64,
    window_seconds: u64,
}

/// `GET /v1/summary`: model status, version and age, acceptance and online error in one JSON.
pub async fn summary(State(state): State<Arc<AppState>>) -> Response {
    let now = Timestamp::now();
    let snapshot = refresh_gauges(&state, now);
    let guard = state.model.load();
    let served = guard.as_deref();
    let loads = state.load_status();
    let model = served.map(|m| {
        let cv = &m.artifact.meta.metrics;
        ModelStatus {
            version: m.version(),
            algorithm: m.algorithm(),
            created_at: &m.artifact.meta.created_at,
            age_seconds: m.age_seconds(now),
            loaded_at: m.loaded_at,
            path: m.location.clone(),
            cv_rmse: cv.rmse,
            cv_mae: cv.mae,
        }
    });
    let body = Summary {
        status: if served.is_some() {
            "serving"
        } else {
            "no_model"
        },
        model_version: served.map(|m| m.version()),
        model,
        online: Online {
            model_version: snapshot.model_version,
            samples: snapshot.samples,
            rmse: snapshot.rmse,
            mae: snapshot.mae,
            feedback_total: snapshot.feedback_total,
        },
        suggestions: Suggestions {
            served: state.metrics.suggestions_served.get(),
            feedback: snapshot.suggested_total,
            accepted: snapshot.accepted_total,
            acceptance_rate: snapshot.acceptance_rate,
            accept_threshold: snapshot.accept_threshold,
        },
        users: Users {
            active: snapshot.active_users,
            engaged: snapshot.engaged_users,
            window_seconds: snapshot.active_window_seconds,
        },
        loads: Loads {
            succeeded: loads.loads,
            failed: loads.failures,
            last_error: loads.last_error,
            last_error_at: loads.last_error_at,
        },
        rollout: rollout_summary(&state),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
    };
    json_response(StatusCode::OK, &body)
}

/// `GET /v1/stats`: this replica's counters, latency histogram and user sketches, for the
/// operator to add up over all replicas (`recommender_contract::stats`).
pub async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let (feedback, mut suggestions, users) = state.feedback.stats(Instant::now());
    suggestions.shown = state.metrics.suggestions_served.get();
    let guard = state.model.load();
    let body = PredictorStats {
        model_version: guard.as_deref().map(|m| m.version().to_string()),
        requests: state.metrics.inference_latency(),
        feedback,
        suggestions,
        users,
        rollout: rollout::stats(&state),
    };
    json_response(StatusCode::OK, &body)
}

#[derive(Serialize)]
struct ModelOut<'a> {
    model_version: &'a str,
    /// Where the artifact was read from: a path, or `s3://BUCKET/PREFIX/KEY`.
    path: String,
    /// Of the artifact's bytes as read.
    sha256: String,
    loaded_at: Timestamp,
    age_seconds: f64,
    users: usize,
    items: usize,
    factors: usize,
    rating_scale: RatingScale,
    meta: &'a ArtifactMeta,
}

/// `GET /v1/model`: everything the artifact says about itself.
pub async fn model(State(state): State<Arc<AppState>>) -> Result<Response, Error> {
    let guard = state.model.load();
    let served = served(&guard)?;
    let model = served.model();
    Ok(json_response(
        StatusCode::OK,
        &ModelOut {
            model_version: served.version(),
            path: served.location.clone(),
            sha256: served.sha256.to_string(),
            loaded_at: served.loaded_at,
            age_seconds: served.age_seconds(Timestamp::now()),
            users: model.users.len(),
            items: model.items.len(),
            factors: model.factors.n_factors(),
            rating_scale: model.scale,
            meta: &served.artifact.meta,
        },
    ))
}
