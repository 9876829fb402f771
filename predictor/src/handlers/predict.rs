//! Single and batch predictions.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use recommender_model::Model;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, json_response},
    handlers::served,
    input::{Id, JsonBody, parse_json, parse_query},
    state::AppState,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair<'a> {
    #[serde(borrow)]
    pub user: Id<'a>,
    #[serde(borrow)]
    pub item: Id<'a>,
}

impl Pair<'_> {
    /// `at` names where the pair was: `query string`, `request body`, `request body: pairs[3]`.
    fn check(&self, at: impl Fn() -> String, max_id_bytes: usize) -> Result<(), Error> {
        self.user
            .check_len(|| format!("{}: `user`", at()), max_id_bytes)?;
        self.item
            .check_len(|| format!("{}: `item`", at()), max_id_bytes)
    }
}

#[derive(Serialize)]
struct PredictionOut<'a> {
    user: &'a str,
    item: &'a str,
    rating: f64,
    user_known: bool,
    item_known: bool,
}

impl<'a> PredictionOut<'a> {
    #[inline]
    fn of(model: &Model, user: &'a str, item: &'a str) -> Self {
        let p = model.predict(user, item);
        PredictionOut {
            user,
            item,
            rating: p.rating,
            user_known: p.user_known,
            item_known: p.item_known,
        }
    }
}

#[derive(Serialize)]
struct SingleOut<'a> {
    model_version: &'a str,
    #[serde(flatten)]
    prediction: PredictionOut<'a>,
}

fn answer(state: &AppState, pair: &Pair<'_>) -> Result<Response, Error> {
    let guard = state.model.load();
    let served = served(&guard)?;
    let body = SingleOut {
        model_version: served.version(),
        prediction: PredictionOut::of(served.model(), pair.user.as_str(), pair.item.as_str()),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/predict?user=U&item=I`. Takes the whole request to borrow the query in place.
pub async fn predict_get(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, Error> {
    let pair: Pair = parse_query(req.uri().query())?;
    pair.check(|| "query string".into(), state.limits.max_id_bytes)?;
    answer(&state, &pair)
}

/// `POST /v1/predict` with `{"user": U, "item": I}`.
pub async fn predict_post(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, Error> {
    let pair: Pair = parse_json(&body)?;
    pair.check(|| "request body".into(), state.limits.max_id_bytes)?;
    answer(&state, &pair)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn<'a> {
    #[serde(borrow)]
    pairs: Vec<Pair<'a>>,
}

#[derive(Serialize)]
struct BatchOut<'a> {
    model_version: &'a str,
    predictions: Vec<PredictionOut<'a>>,
}

/// `POST /v1/predict/batch` with `{"pairs": [{"user": U, "item": I}, ...]}`; answers in order.
pub async fn predict_batch(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, Error> {
    let batch: BatchIn = parse_json(&body)?;
    let max = state.limits.max_batch;
    if batch.pairs.len() > max {
        return Err(Error::BatchTooLarge {
            got: batch.pairs.len(),
            max,
        });
    }
    if batch.pairs.is_empty() {
        return Err(Error::Unprocessable(
            "request body: `pairs` must hold at least one {\"user\", \"item\"} pair".into(),
        ));
    }
    for (i, pair) in batch.pairs.iter().enumerate() {
        pair.check(
            || format!("request body: pairs[{i}]"),
            state.limits.max_id_bytes,
        )?;
    }
    let guard = state.model.load();
    let served = served(&guard)?;
    let model = served.model();
    let predictions = batch
        .pairs
        .iter()
        .map(|p| PredictionOut::of(model, p.user.as_str(), p.item.as_str()))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &BatchOut {
            model_version: served.version(),
            predictions,
        },
    ))
}
