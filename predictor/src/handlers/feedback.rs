//! What the application reports users actually did.

use std::{sync::Arc, time::Instant};

use axum::{extract::State, http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, json_response},
    feedback::Event,
    handlers::served,
    input::{Id, JsonBody, parse_json},
    rollout,
    state::AppState,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackIn<'a> {
    #[serde(borrow)]
    user: Id<'a>,
    #[serde(borrow)]
    item: Id<'a>,
    /// The rating the user gave.
    rating: f64,
    /// Whether the item had been suggested to the user by this service.
    #[serde(default)]
    suggested: bool,
}

#[derive(Serialize)]
struct FeedbackOut<'a> {
    /// The version of the user's arm, which the feedback is attributed to.
    model_version: &'a str,
    /// What that version predicts for the pair.
    predicted: f64,
    /// `rating - predicted`.
    residual: f64,
    /// For a suggested item: whether the rating counts as accepting the suggestion.
    accepted: Option<bool>,
}

/// `POST /v1/feedback` with `{"user": U, "item": I, "rating": R, "suggested": true}`.
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, Error> {
    let input: FeedbackIn = parse_json(&body)?;
    let max = state.limits.max_id_bytes;
    input
        .user
        .check_len(|| "request body: `user`".into(), max)?;
    input
        .item
        .check_len(|| "request body: `item`".into(), max)?;
    let routed = rollout::route(&state, input.user.as_str());
    let served = served(&routed.model)?;
    let model = served.model();
    let scale = model.scale;
    if !input.rating.is_finite() || input.rating < scale.lo || input.rating > scale.hi {
        return Err(Error::Unprocessable(format!(
            "request body: rating {} is outside the model's rating scale {}..={}",
            input.rating, scale.lo, scale.hi
        )));
    }
    let predicted = model
        .predict(input.user.as_str(), input.item.as_str())
        .rating;
    let event = Event {
        user: input.user.as_str(),
        model_version: served.version(),
        predicted,
        actual: input.rating,
        suggested: input.suggested,
    };
    let accepted = state.feedback.record(event, Instant::now());
    rollout::record_feedback(&state, &routed, &event, input.item.as_str(), accepted);
    let metrics = &state.metrics;
    metrics
        .feedback
        .with_label_values(&[if input.suggested { "true" } else { "false" }])
        .inc();
    if accepted == Some(true) {
        metrics.suggestions_accepted.inc();
    }
    let response = json_response(
        StatusCode::OK,
        &FeedbackOut {
            model_version: served.version(),
            predicted,
            residual: input.rating - predicted,
            accepted,
        },
    );
    Ok(routed.label(served, response))
}
