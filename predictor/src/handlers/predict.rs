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
    rollout::{self, name_version},
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
    /// In a batch during a rollout: the version that made this prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
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
            model_version: None,
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

/// Answered by the model of the user's arm.
fn answer(state: &AppState, pair: &Pair<'_>) -> Result<Response, Error> {
    let routed = rollout::route(state, pair.user.as_str());
    let served = served(&routed.model)?;
    let body = SingleOut {
        model_version: served.version(),
        prediction: PredictionOut::of(served.model(), pair.user.as_str(), pair.item.as_str()),
    };
    Ok(routed.answer(served, json_response(StatusCode::OK, &body)))
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
    /// The stable version; during a rollout each prediction names its own.
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
    // Loaded once for the whole batch; each pair goes to its user's arm.
    let rollout = state.rollout.load();
    let candidate = state.candidate.load();
    let predictions = batch
        .pairs
        .iter()
        .map(|p| {
            let user = p.user.as_str();
            let (_, by) = rollout::pick(rollout.as_deref(), served, candidate.as_deref(), user);
            let mut out = PredictionOut::of(by.model(), user, p.item.as_str());
            out.model_version = rollout.is_some().then_some(by.version());
            out
        })
        .collect();
    let response = json_response(
        StatusCode::OK,
        &BatchOut {
            model_version: served.version(),
            predictions,
        },
    );
    Ok(name_version(served, response))
}
