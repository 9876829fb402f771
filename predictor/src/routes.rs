//! The HTTP surface: paths, per-route metrics, timeouts and body limits, load shedding, the
//! write token, and JSON answers for requests that match nothing.

use std::{sync::Arc, time::Instant};

use axum::{
    BoxError, Router,
    error_handling::HandleErrorLayer,
    extract::{DefaultBodyLimit, Request, State},
    handler::Handler,
    http::{Method, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};

use recommender_rollout::Arm;
use tower::{ServiceBuilder, limit::GlobalConcurrencyLimitLayer, load_shed::error::Overloaded};

use crate::{
    auth,
    error::Error,
    handlers::{feedback, predict, recommend, status},
    metrics::Route,
    state::AppState,
};

/// State of the per-route middleware: which route's metrics to count into.
#[derive(Clone)]
struct Tracked {
    state: Arc<AppState>,
    route: Route,
}

/// Times the request, bounds it by the request timeout and counts its status code. Rejections
/// from extractors pass through here too, so 4xx answers are counted like any other.
async fn track(State(t): State<Tracked>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let timeout = t.state.limits.request_timeout;
    let response = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Error::Timeout(timeout).into_response(),
    };
    let elapsed = start.elapsed();
    let metrics = &t.state.metrics;
    metrics.route(t.route).observe(response.status(), elapsed);
    // Set by the handler during a rollout: the arm whose model answered.
    if let Some(&arm) = response.extensions().get::<Arm>() {
        metrics.observe_arm(arm, elapsed);
    }
    response
}

async fn method_not_allowed(method: Method) -> Error {
    Error::MethodNotAllowed(method.to_string())
}

async fn not_found(method: Method, uri: Uri) -> Error {
    Error::NotFound(format!("{method} {}", uri.path()))
}

/// What the load shedder answers: 503 with `Retry-After`, counted.
async fn shed(state: Arc<AppState>, error: BoxError) -> Error {
    if error.is::<Overloaded>() {
        state.metrics.requests_shed.inc();
        Error::Overloaded(state.limits.max_in_flight)
    } else {
        Error::Serve(std::io::Error::other(error))
    }
}

/// Layers, outermost first: metrics and the request timeout (so refusals are counted too), the
/// write token on write endpoints, load shedding beyond `--max-in-flight` /v1 requests (one
/// semaphore shared by all routes; probes and /metrics are never shed, so an overloaded replica
/// is not also killed by its liveness probe), the body limit, the handler.
pub fn router(state: Arc<AppState>) -> Router {
    let limits = &state.limits;
    let tracked = |route: Route| Tracked {
        state: state.clone(),
        route,
    };
    let endpoint = |methods: MethodRouter<Arc<AppState>>, route: Route| {
        methods
            .fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(tracked(route), track))
    };
    let in_flight = GlobalConcurrencyLimitLayer::new(limits.max_in_flight);
    let shedding = {
        let state = state.clone();
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e| shed(state.clone(), e)))
            .load_shed()
            .layer(in_flight)
    };
    let v1 = |methods: MethodRouter<Arc<AppState>>, route: Route| {
        endpoint(methods.layer(shedding.clone()), route)
    };
    let write = |methods: MethodRouter<Arc<AppState>>, route: Route| {
        let guarded = methods
            .layer(shedding.clone())
            .layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_write_token,
            ));
        endpoint(guarded, route)
    };
    let pair_body = DefaultBodyLimit::max(limits.pair_body_bytes);
    Router::new()
        .route("/livez", endpoint(get(status::livez), Route::Livez))
        .route("/readyz", endpoint(get(status::readyz), Route::Readyz))
        .route("/metrics", endpoint(get(status::metrics), Route::Metrics))
        .route(
            "/v1/predict",
            v1(
                get(predict::predict_get).post(predict::predict_post.layer(pair_body)),
                Route::Predict,
            ),
        )
        .route(
            "/v1/predict/batch",
            v1(
                post(predict::predict_batch.layer(DefaultBodyLimit::max(limits.max_body_bytes))),
                Route::PredictBatch,
            ),
        )
        .route(
            "/v1/users/{user}/recommendations",
            v1(get(recommend::recommendations), Route::Recommendations),
        )
        .route(
            "/v1/feedback",
            write(post(feedback::feedback.layer(pair_body)), Route::Feedback),
        )
        .route("/v1/summary", v1(get(status::summary), Route::Summary))
        .route("/v1/stats", v1(get(status::stats), Route::Stats))
        .route("/v1/model", v1(get(status::model), Route::Model))
        .fallback(not_found.layer(middleware::from_fn_with_state(
            tracked(Route::Unmatched),
            track,
        )))
        // Any body read without a limit of its own gets the smallest.
        .layer(pair_body)
        .with_state(state)
}
