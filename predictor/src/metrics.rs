//! Prometheus metrics. Everything touched per request is resolved once at start-up, so the hot
//! path costs a couple of atomic adds rather than a label lookup.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
    core::{Collector, Metric},
};

use recommender_contract::refusal::RefusalReason;
use recommender_contract::stats::{Bucket, LatencyHistogram};
use recommender_rollout::Arm;

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

/// Which timeout closed a connection, as it appears in the `timeout` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionTimeout {
    Header,
    Idle,
}

impl ConnectionTimeout {
    pub const ALL: [ConnectionTimeout; 2] = [ConnectionTimeout::Header, ConnectionTimeout::Idle];

    pub fn label(self) -> &'static str {
        match self {
            ConnectionTimeout::Header => "header",
            ConnectionTimeout::Idle => "idle",
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
    fn new(route: Route, duration: &HistogramVec, requests: &IntCounterVec) -> Self {
        let label = route.label();
        RouteMetrics {
            duration: duration.with_label_values(&[label]),
            by_code: COMMON_CODES
                .map(|code| requests.with_label_values(&[label, &code.to_string()])),
            requests: requests.clone(),
            label,
        }
    }

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

/// A Prometheus histogram as the stats wire carries one.
fn cumulative(histogram: &Histogram) -> LatencyHistogram {
    let metric = histogram.metric();
    let h = metric.get_histogram();
    LatencyHistogram {
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
    }
}

/// What one line of the [`metrics!`] table says about a metric.
struct Spec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: Option<&'static [f64]>,
}

impl Spec {
    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help.trim()).namespace(NAMESPACE)
    }

    /// A label or bucket list on a metric that cannot take it is a mistake in the table.
    fn refuse(&self, what: &str) -> prometheus::Error {
        prometheus::Error::Msg(format!("metric {}: {what}", self.name))
    }
}

/// The metric types the table uses, each built from its [`Spec`].
trait Declare: Collector + Clone + 'static {
    fn declare(spec: &Spec) -> prometheus::Result<Self>;
}

macro_rules! scalar {
    ($($kind:ty),+) => {$(
        impl Declare for $kind {
            fn declare(spec: &Spec) -> prometheus::Result<Self> {
                if !spec.labels.is_empty() || spec.buckets.is_some() {
                    return Err(spec.refuse("a single value takes no labels or buckets"));
                }
                <$kind>::with_opts(spec.opts())
            }
        }
    )+};
}
scalar!(IntGauge, Gauge, IntCounter);

macro_rules! labelled {
    ($($kind:ty),+) => {$(
        impl Declare for $kind {
            fn declare(spec: &Spec) -> prometheus::Result<Self> {
                if spec.labels.is_empty() || spec.buckets.is_some() {
                    return Err(spec.refuse("a labelled family takes labels and no buckets"));
                }
                <$kind>::new(spec.opts(), spec.labels)
            }
        }
    )+};
}
labelled!(GaugeVec, IntCounterVec);

impl Declare for HistogramVec {
    fn declare(spec: &Spec) -> prometheus::Result<Self> {
        let buckets = spec
            .buckets
            .ok_or_else(|| spec.refuse("a histogram needs its buckets"))?;
        HistogramVec::new(
            HistogramOpts::from(spec.opts()).buckets(buckets.to_vec()),
            spec.labels,
        )
    }
}

fn register<M: Declare>(registry: &Registry, spec: &Spec) -> Result<M, Error> {
    let metric = M::declare(spec)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Declares every metric once: its doc comment is its help text, then field, type, name (after
/// the namespace), labels in brackets and, for a histogram, its buckets. Generates the
/// [`Metrics`] struct and the constructor that registers each metric.
macro_rules! metrics {
    (@buckets) => { None };
    (@buckets $buckets:expr) => { Some($buckets) };
    ($(
        $(#[doc = $help:literal])+
        $vis:vis $field:ident: $kind:ty = $name:literal $([$($label:literal),+])? $(buckets $buckets:expr)?;
    )+) => {
        pub struct Metrics {
            pub registry: Registry,
            routes: Vec<RouteMetrics>,
            /// `rollout_request_duration` of each arm, in `Arm::ALL` order.
            arms: Vec<Histogram>,
            $($(#[doc = $help])+ $vis $field: $kind,)+
        }

        impl Metrics {
            fn declare(registry: Registry) -> Result<Self, Error> {
                $(
                    let $field: $kind = register(&registry, &Spec {
                        name: $name,
                        help: concat!($($help),+),
                        labels: &[$($($label),+)?],
                        buckets: metrics!(@buckets $($buckets)?),
                    })?;
                )+
                Ok(Metrics { registry, routes: Vec::new(), arms: Vec::new(), $($field,)+ })
            }
        }
    };
}

metrics! {
    /// Time from routing a request to its response being ready.
    request_duration: HistogramVec = "http_request_duration_seconds" ["route"] buckets LATENCY_BUCKETS;
    /// Requests answered, by route and status code.
    requests: IntCounterVec = "http_requests_total" ["route", "code"];
    /// The served model: 1 for its version and algorithm.
    pub model_info: GaugeVec = "model_info" ["version", "algorithm"];
    /// 1 when a verified model is loaded and served.
    pub model_loaded: IntGauge = "model_loaded";
    /// Seconds since the served model was trained.
    pub model_age_seconds: Gauge = "model_age_seconds";
    /// Unix time the served model was loaded.
    pub model_load_timestamp_seconds: Gauge = "model_load_timestamp_seconds";
    /// Models loaded and swapped in, including the first.
    pub model_reloads: IntCounter = "model_reloads_total";
    /// Model loads refused, by reason (Corrupt: not the recorded sha256; NotFound;
    /// InvalidArtifact; TooLarge; Unreachable, BucketMissing, CredentialsRefused: the store;
    /// InvalidConfig; Other); the previous model kept serving.
    model_load_failures: IntCounterVec = "model_load_failures_total" ["reason"];
    /// RMSE of the served model's predictions against ratings reported as feedback.
    pub online_rmse: Gauge = "online_rmse";
    /// MAE of the served model's predictions against ratings reported as feedback.
    pub online_mae: Gauge = "online_mae";
    /// Feedback ratings behind online_rmse and online_mae (since the served model was loaded).
    pub online_predictions: IntGauge = "online_error_samples";
    /// Share of suggested items that users rated at or above the acceptance threshold.
    pub acceptance_ratio: Gauge = "suggestion_acceptance_ratio";
    /// Feedback events received, by whether the item had been suggested.
    pub feedback: IntCounterVec = "feedback_total" ["suggested"];
    /// Suggested items rated at or above the acceptance threshold.
    pub suggestions_accepted: IntCounter = "suggestions_accepted_total";
    /// Items returned by the recommendations endpoint.
    pub suggestions_served: IntCounter = "suggestions_served_total";
    /// Recommendation requests for users the model does not know.
    pub cold_start_recommendations: IntCounter = "cold_start_recommendations_total";
    /// Distinct users who sent feedback within the active window.
    pub active_users: IntGauge = "active_users";
    /// Active users who accepted at least one suggestion within the active window.
    pub engaged_users: IntGauge = "engaged_users";
    /// Client connections open.
    pub connections: IntGauge = "connections";
    /// Connections closed as soon as accepted because --max-connections were open.
    pub connections_rejected: IntCounter = "connections_rejected_total";
    /// Connections closed by a timeout: header (a request's headers begun but not complete
    /// within --header-read-timeout) or idle (a read or write without progress for
    /// --idle-timeout).
    pub connection_timeouts: IntCounterVec = "connection_timeouts_total" ["timeout"];
    /// /v1 requests answered 503 because --max-in-flight requests were in progress.
    pub requests_shed: IntCounter = "requests_shed_total";
    /// During a rollout, time to answer the predictions and suggestions of each arm's users
    /// (batches, whose pairs may be of both arms, are in neither).
    rollout_request_duration: HistogramVec = "rollout_request_duration_seconds" ["arm"] buckets LATENCY_BUCKETS;
    /// 1 while the rollout's candidate (--candidate-version) is loaded and verified.
    pub candidate_loaded: IntGauge = "rollout_candidate_loaded";
    /// The share of users the candidate answers (0 in the shadow stage and outside a rollout).
    pub candidate_share: Gauge = "rollout_candidate_share";
    /// Rollout configs read and put in force.
    pub rollout_config_reloads: IntCounter = "rollout_config_reloads_total";
    /// Rollout config files refused (unreadable, malformed, too large, or naming another
    /// candidate); the last good config stayed in force.
    pub rollout_config_failures: IntCounter = "rollout_config_failures_total";
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let mut metrics = Metrics::declare(Registry::new())?;
        // Route::ALL fixes the order `route()` indexes in.
        metrics.routes = Route::ALL
            .iter()
            .map(|&route| RouteMetrics::new(route, &metrics.request_duration, &metrics.requests))
            .collect();
        // Both series exist from the start, so a rate over them is never "no data".
        for suggested in ["true", "false"] {
            metrics.feedback.with_label_values(&[suggested]);
        }
        for timeout in ConnectionTimeout::ALL {
            metrics.connection_timeout(timeout);
        }
        for reason in RefusalReason::ALL {
            metrics.model_load_failure(reason);
        }
        metrics.arms = Arm::ALL
            .iter()
            .map(|arm| {
                metrics
                    .rollout_request_duration
                    .with_label_values(&[arm.as_str()])
            })
            .collect();
        Ok(metrics)
    }

    pub fn model_load_failure(&self, reason: RefusalReason) -> IntCounter {
        self.model_load_failures
            .with_label_values(&[reason.as_str()])
    }

    pub fn connection_timeout(&self, timeout: ConnectionTimeout) -> IntCounter {
        self.connection_timeouts
            .with_label_values(&[timeout.label()])
    }

    pub fn route(&self, route: Route) -> &RouteMetrics {
        &self.routes[route as usize]
    }

    /// Server time of the inference endpoints (predictions, batches, suggestions) as one
    /// cumulative histogram: what the latency objective is about.
    pub fn inference_latency(&self) -> LatencyHistogram {
        let mut total = LatencyHistogram::default();
        for route in [Route::Predict, Route::PredictBatch, Route::Recommendations] {
            total.add(&cumulative(&self.route(route).duration));
        }
        total
    }

    /// Counts a request answered by `arm`'s model during a rollout.
    pub fn observe_arm(&self, arm: Arm, elapsed: Duration) {
        self.arm_histogram(arm).observe(elapsed.as_secs_f64());
    }

    /// The latency of `arm`'s answers since the replica started.
    pub fn arm_latency(&self, arm: Arm) -> LatencyHistogram {
        cumulative(self.arm_histogram(arm))
    }

    fn arm_histogram(&self, arm: Arm) -> &Histogram {
        let at = Arm::ALL.iter().position(|&a| a == arm).unwrap_or(0);
        &self.arms[at]
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

#[cfg(test)]
mod schema {
    use std::collections::BTreeSet;

    use prometheus::proto::MetricType;

    use super::*;

    /// Name, type, label names and buckets of every metric, one line each: what alert rules and
    /// dashboards rely on (`model_info` set once so that its family shows).
    fn schema(metrics: &Metrics) -> String {
        metrics
            .model_info
            .with_label_values(&["v1", "svd"])
            .set(1.0);
        let mut lines = Vec::new();
        for family in metrics.registry.gather() {
            let labels: BTreeSet<&str> = family
                .get_metric()
                .iter()
                .flat_map(|m| m.get_label().iter().map(|l| l.name()))
                .collect();
            let mut line = format!(
                "{} {:?} [{}]",
                family.name(),
                family.get_field_type(),
                labels.into_iter().collect::<Vec<_>>().join(",")
            );
            if family.get_field_type() == MetricType::HISTOGRAM {
                let buckets: Vec<String> = family.get_metric()[0]
                    .get_histogram()
                    .get_bucket()
                    .iter()
                    .map(|b| b.upper_bound().to_string())
                    .collect();
                line += &format!(" le={}", buckets.join(","));
            }
            lines.push(line);
        }
        lines.join("\n") + "\n"
    }

    /// Changing `tests/metrics-schema.txt` changes what alert rules and dashboards may match:
    /// only additions are compatible.
    #[test]
    fn names_labels_and_buckets_are_the_contract() {
        let actual = schema(&Metrics::new().unwrap());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics-schema.txt");
        if std::env::var_os("UPDATE_METRICS_SCHEMA").is_some() {
            std::fs::write(path, &actual).unwrap();
        }
        assert_eq!(actual, include_str!("../tests/metrics-schema.txt"));
    }
}
