//! Top-N suggestions for a user.

use std::sync::Arc;

use axum::{
    extract::{RawPathParams, Request, State, rejection::RawPathParamsRejection},
    http::StatusCode,
    response::Response,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, json_response},
    handlers::served,
    input::{check_id_len, parse_query},
    rollout,
    state::AppState,
};

const DEFAULT_N: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendQuery {
    n: Option<usize>,
}

#[derive(Serialize)]
struct ScoredOut<'a> {
    item: &'a str,
    score: f64,
}

#[derive(Serialize)]
struct RecommendationsOut<'a> {
    model_version: &'a str,
    user: &'a str,
    /// The model does not know the user: these are the items with the highest bias.
    cold_start: bool,
    items: Vec<ScoredOut<'a>>,
}

/// `GET /v1/users/{user}/recommendations?n=10`: the best `n` items the user has not rated.
pub async fn recommendations(
    State(state): State<Arc<AppState>>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
) -> Result<Response, Error> {
    let params = params.map_err(|r| Error::BadRequest(format!("path: {}", r.body_text())))?;
    let user = params
        .iter()
        .find_map(|(name, value)| (name == "user").then_some(value))
        .unwrap_or_default();
    if user.is_empty() {
        return Err(Error::BadRequest("path: user id must not be empty".into()));
    }
    check_id_len(user, || "path: user id".into(), state.limits.max_id_bytes)?;
    let query: RecommendQuery = parse_query(req.uri().query())?;
    let max = state.limits.max_recommendations;
    let n = query.n.unwrap_or(DEFAULT_N);
    if n == 0 || n > max {
        return Err(Error::BadRequest(format!(
            "query string: n must be between 1 and {max}, got {n}"
        )));
    }
    let routed = rollout::route(&state, user);
    let served = served(&routed.model)?;
    let model = served.model();
    let index = model.user_index(user);
    let scored = |(i, score): (u32, f64)| ScoredOut {
        item: model.items.id(i),
        score,
    };
    let items: Vec<ScoredOut> = match served.top.as_ref().and_then(|t| t.get(index, n)) {
        Some(ranked) => ranked.iter().map(scored).collect(),
        None => model
            .recommend_ranked(&served.ranker, index, n)
            .into_iter()
            .map(scored)
            .collect(),
    };
    let metrics = &state.metrics;
    metrics.suggestions_served.inc_by(items.len() as u64);
    if routed.in_rollout() {
        state.rollout_figures.shown(routed.arm, items.len());
    }
    if index.is_none() {
        metrics.cold_start_recommendations.inc();
    }
    let response = json_response(
        StatusCode::OK,
        &RecommendationsOut {
            model_version: served.version(),
            user,
            cold_start: index.is_none(),
            items,
        },
    );
    Ok(routed.answer(served, response))
}
