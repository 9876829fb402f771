//! Prometheus metrics. Everything touched per request is resolved once at start-up, so the hot
//! path costs a couple of atomic adds rather than a label lookup.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use prometheus::core::Metric;
use recommender_contract::stats::{Bucket, LatencyHistogram};

use crate::error::Error;

const NAMESPACE: &str = "recommender_predictor";

/// Latency buckets from 25µs: the fast endpoints answer well below a millisecond.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Status codes pre-resolved per route; any other code falls back to a label lookup.
const COMMON_CODES: [u16; 10] = [200, 400, 404, 405, 408, 413, 415, 422, 500, 503];

/// The endpoints, as they appear in the `route` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Livez,
    Readyz,
    Metrics,
    Predict,
    PredictBatch,
    Recommendations,
    Feedback,
    Summary,
    Stats,
    Model,
    Unmatched,
}

impl Route {
    pub const ALL: [Route; 11] = [
        Route::Livez,
        Route::Readyz,
        Route::Metrics,
        Route::Predict,
        Route::PredictBatch,
        Route::Recommendations,
        Route::Feedback,
        Route::Summary,
        Route::Stats,
        Route::Model,
        Route::Unmatched,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::Livez => "/livez",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Predict => "/v1/predict",
            Route::PredictBatch => "/v1/predict/batch",
            Route::Recommendations => "/v1/users/{user}/recommendations",
            Route::Feedback => "/v1/feedback",
            Route::Summary => "/v1/summary",
            Route::Stats => "/v1/stats",
            Route::Model => "/v1/model",
            Route::Unmatched => "unmatched",
        }
    }
}

/// Pre-resolved request metrics of one route.
pub struct RouteMetrics {
    duration: Histogram,
    by_code: [IntCounter; COMMON_CODES.len()],
    requests: IntCounterVec,
    label: &'static str,
}

impl RouteMetrics {
    pub fn observe(&self, status: StatusCode, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let code = status.as_u16();
        match COMMON_CODES.iter().position(|&c| c == code) {
            Some(i) => self.by_code[i].inc(),
            None => self
                .requests
                .with_label_values(&[self.label, status.as_str()])
                .inc(),
        }
    }
}

pub struct Metrics {
    pub registry: Registry,
    routes: Vec<RouteMetrics>,
    pub model_info: GaugeVec,
    pub model_loaded: IntGauge,
    pub model_age_seconds: Gauge,
    pub model_load_timestamp_seconds: Gauge,
    pub model_reloads: IntCounter,
    pub model_load_failures: IntCounter,
    pub online_rmse: Gauge,
    pub online_mae: Gauge,
    pub online_predictions: IntGauge,
    pub acceptance_ratio: Gauge,
    pub feedback: IntCounterVec,
    pub suggestions_accepted: IntCounter,
    pub suggestions_served: IntCounter,
    pub cold_start_recommendations: IntCounter,
    pub active_users: IntGauge,
    pub engaged_users: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let duration = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from routing a request to its response being ready.",
            )
            .namespace(NAMESPACE)
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let requests = IntCounterVec::new(
            opts(
                "http_requests_total",
                "Requests answered, by route and status code.",
            ),
            &["route", "code"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        let routes = Route::ALL
            .iter()
            .map(|route| {
                let label = route.label();
                RouteMetrics {
                    duration: duration.with_label_values(&[label]),
                    by_code: COMMON_CODES
                        .map(|code| requests.with_label_values(&[label, &code.to_string()])),
                    requests: requests.clone(),
                    label,
                }
            })
            .collect();

        let model_info = GaugeVec::new(
            opts(
                "model_info",
                "The served model: 1 for its version and algorithm.",
            ),
            &["version", "algorithm"],
        )?;
        let model_loaded = IntGauge::with_opts(opts(
            "model_loaded",
            "1 when a verified model is loaded and served.",
        ))?;
        let model_age_seconds = Gauge::with_opts(opts(
            "model_age_seconds",
            "Seconds since the served model was trained.",
        ))?;
        let model_load_timestamp_seconds = Gauge::with_opts(opts(
            "model_load_timestamp_seconds",
            "Unix time the served model was loaded.",
        ))?;
        let model_reloads = IntCounter::with_opts(opts(
            "model_reloads_total",
            "Models loaded and swapped in, including the first.",
        ))?;
        let model_load_failures = IntCounter::with_opts(opts(
            "model_load_failures_total",
            "Model loads refused (missing, unreadable or corrupt artifact); the previous model kept serving.",
        ))?;
        let online_rmse = Gauge::with_opts(opts(
            "online_rmse",
            "RMSE of the served model's predictions against ratings reported as feedback.",
        ))?;
        let online_mae = Gauge::with_opts(opts(
            "online_mae",
            "MAE of the served model's predictions against ratings reported as feedback.",
        ))?;
        let online_predictions = IntGauge::with_opts(opts(
            "online_error_samples",
            "Feedback ratings behind online_rmse and online_mae (since the served model was loaded).",
        ))?;
        let acceptance_ratio = Gauge::with_opts(opts(
            "suggestion_acceptance_ratio",
            "Share of suggested items that users rated at or above the acceptance threshold.",
        ))?;
        let feedback = IntCounterVec::new(
            opts(
                "feedback_total",
                "Feedback events received, by whether the item had been suggested.",
            ),
            &["suggested"],
        )?;
        let suggestions_accepted = IntCounter::with_opts(opts(
            "suggestions_accepted_total",
            "Suggested items rated at or above the acceptance threshold.",
        ))?;
        let suggestions_served = IntCounter::with_opts(opts(
            "suggestions_served_total",
            "Items returned by the recommendations endpoint.",
        ))?;
        let cold_start_recommendations = IntCounter::with_opts(opts(
            "cold_start_recommendations_total",
            "Recommendation requests for users the model does not know.",
        ))?;
        let active_users = IntGauge::with_opts(opts(
            "active_users",
            "Distinct users who sent feedback within the active window.",
        ))?;
        let engaged_users = IntGauge::with_opts(opts(
            "engaged_users",
            "Active users who accepted at least one suggestion within the active window.",
        ))?;
        for collector in [
            Box::new(model_info.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(model_loaded.clone()),
            Box::new(model_age_seconds.clone()),
            Box::new(model_load_timestamp_seconds.clone()),
            Box::new(model_reloads.clone()),
            Box::new(model_load_failures.clone()),
            Box::new(online_rmse.clone()),
            Box::new(online_mae.clone()),
            Box::new(online_predictions.clone()),
            Box::new(acceptance_ratio.clone()),
            Box::new(feedback.clone()),
            Box::new(suggestions_accepted.clone()),
            Box::new(suggestions_served.clone()),
            Box::new(cold_start_recommendations.clone()),
            Box::new(active_users.clone()),
            Box::new(engaged_users.clone()),
        ] {
            registry.register(collector)?;
        }
        for suggested in ["true", "false"] {
            feedback.with_label_values(&[suggested]);
        }
        Ok(Metrics {
            registry,
            routes,
            model_info,
            model_loaded,
            model_age_seconds,
            model_load_timestamp_seconds,
            model_reloads,
            model_load_failures,
            online_rmse,
            online_mae,
            online_predictions,
            acceptance_ratio,
            feedback,
            suggestions_accepted,
            suggestions_served,
            cold_start_recommendations,
            active_users,
            engaged_users,
        })
    }

    pub fn route(&self, route: Route) -> &RouteMetrics {
        // Route::ALL fixes the order `routes` was built in.
        &self.routes[route as usize]
    }

    /// Server time of the inference endpoints (predictions, batches, suggestions) as one
    /// cumulative histogram: what the latency objective is about.
    pub fn inference_latency(&self) -> LatencyHistogram {
        let mut total = LatencyHistogram::default();
        for route in [Route::Predict, Route::PredictBatch, Route::Recommendations] {
            let metric = self.route(route).duration.metric();
            let h = metric.get_histogram();
            total.add(&LatencyHistogram {
                count: h.get_sample_count(),
                sum_seconds: h.get_sample_sum(),
                buckets: h
                    .get_bucket()
                    .iter()
                    .map(|b| Bucket {
                        le: b.upper_bound(),
                        count: b.cumulative_count(),
                    })
                    .collect(),
            });
        }
        total
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_index_in_declaration_order() {
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, i);
        }
    }

    #[test]
    fn inference_latency_sums_the_inference_routes_only() {
        let metrics = Metrics::new().unwrap();
        metrics
            .route(Route::Predict)
            .observe(StatusCode::OK, Duration::from_micros(30));
        metrics
            .route(Route::Recommendations)
            .observe(StatusCode::OK, Duration::from_millis(3));
        metrics
            .route(Route::Metrics)
            .observe(StatusCode::OK, Duration::from_secs(1));
        let h = metrics.inference_latency();
        assert_eq!(h.count, 2);
        let at = |le: f64| h.buckets.iter().find(|b| b.le == le).unwrap().count;
        assert_eq!((at(0.000_05), at(0.002_5), at(0.005)), (1, 1, 2));
    }

    #[test]
    fn uncommon_codes_are_still_counted() {
        let metrics = Metrics::new().unwrap();
        metrics
            .route(Route::Predict)
            .observe(StatusCode::IM_A_TEAPOT, Duration::from_micros(30));
        metrics
            .route(Route::Predict)
            .observe(StatusCode::OK, Duration::from_micros(30));
        let text = String::from_utf8(metrics.encode().unwrap()).unwrap();
        assert!(text.contains(
            r#"recommender_predictor_http_requests_total{code="418",route="/v1/predict"} 1"#
        ));
        assert!(text.contains(
            r#"recommender_predictor_http_requests_total{code="200",route="/v1/predict"} 1"#
        ));
        assert!(text.contains(
            r#"recommender_predictor_http_request_duration_seconds_count{route="/v1/predict"} 2"#
        ));
    }
}
