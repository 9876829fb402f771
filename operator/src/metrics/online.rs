//! The gauges of what a model promises and does in production: its targets (latency objective,
//! RMSE gate, training deadline) from the spec and status, and its `status.online` figures. A
//! series exists only while its value is known, so an alert never compares with a stale number.

use super::{MODEL, declare_metrics};
use crate::crd::{OnlineStatus, RecommenderModelSpec, RecommenderModelStatus};
use crate::time::parse_go_duration;
use prometheus::{GaugeVec, IntCounter, IntCounterVec};

declare_metrics! {
    pub(super) struct Production {
        objective: GaugeVec = "recommender_model_latency_objective_seconds",
            "spec.predictor.latencyObjective.", MODEL;
        max_rmse: GaugeVec = "recommender_model_max_rmse", "spec.promotion.maxRmse.", MODEL;
        run_started: GaugeVec = "recommender_model_active_run_started_timestamp_seconds",
            "When the training run in flight started.", MODEL;
        run_deadline: GaugeVec = "recommender_model_active_run_deadline_seconds",
            "spec.trainer.activeDeadlineSeconds of the run in flight.", MODEL;
        requests: GaugeVec = "recommender_model_online_requests_per_second",
            "Inference requests per second over the serving version's replicas.", MODEL;
        latency: GaugeVec = "recommender_model_online_latency_seconds",
            "Server-side latency of the serving version over the last collection interval.",
            ["namespace", "name", "quantile"];
        rmse: GaugeVec = "recommender_model_online_rmse",
            "RMSE of the serving version against feedback.", MODEL;
        mae: GaugeVec = "recommender_model_online_mae",
            "MAE of the serving version against feedback.", MODEL;
        feedback: GaugeVec = "recommender_model_online_feedback",
            "Feedback ratings behind the online RMSE and MAE.", MODEL;
        acceptance: GaugeVec = "recommender_model_online_acceptance_rate",
            "Suggestions the user went on to rate, divided by suggestions shown.", MODEL;
        shown: GaugeVec = "recommender_model_online_suggestions_shown",
            "Suggestions shown by the predictors (since they started).", MODEL;
        pub(super) writes: IntCounter = "recommender_operator_online_status_writes_total",
            "status.online writes (only when the figures changed).", [];
        pub(super) rejected: IntCounterVec = "recommender_operator_online_replies_rejected_total",
            "Predictor stats replies refused, by reason (too_large|invalid).", ["reason"];
        pub(super) restarts: IntCounter = "recommender_operator_online_collector_restarts_total",
            "Restarts of the online collector after it failed or panicked.", [];
    }
}

fn set(gauge: &GaugeVec, labels: &[&str], value: Option<f64>) {
    match value {
        Some(v) => gauge.with_label_values(labels).set(v),
        None => {
            let _ = gauge.remove_label_values(labels);
        }
    }
}

impl Production {
    pub(super) fn observe_targets(
        &self,
        labels: &[&str; 2],
        spec: &RecommenderModelSpec,
        status: &RecommenderModelStatus,
    ) {
        let objective =
            parse_go_duration(&spec.predictor.latency_objective).map(|d| d.as_secs_f64());
        set(&self.objective, labels, objective);
        set(&self.max_rmse, labels, Some(spec.promotion.max_rmse));
        let run = status.runs.active.as_ref();
        set(
            &self.run_started,
            labels,
            run.map(|r| r.started_at.as_second() as f64),
        );
        set(
            &self.run_deadline,
            labels,
            run.map(|_| spec.trainer.active_deadline_seconds as f64),
        );
    }

    pub(super) fn observe_online(&self, labels: &[&str; 2], online: &OnlineStatus) {
        set(&self.requests, labels, online.requests_per_second);
        for (quantile, value) in [
            ("0.5", online.latency_p50_seconds),
            ("0.99", online.latency_p99_seconds),
        ] {
            set(&self.latency, &[labels[0], labels[1], quantile], value);
        }
        set(&self.rmse, labels, online.rmse);
        set(&self.mae, labels, online.mae);
        set(&self.feedback, labels, Some(online.feedback as f64));
        set(&self.acceptance, labels, online.acceptance_rate);
        set(&self.shown, labels, Some(online.suggestions_shown as f64));
    }

    pub(super) fn forget(&self, labels: &[&str; 2]) {
        for g in [
            &self.objective,
            &self.max_rmse,
            &self.run_started,
            &self.run_deadline,
            &self.requests,
            &self.rmse,
            &self.mae,
            &self.feedback,
            &self.acceptance,
            &self.shown,
        ] {
            set(g, labels, None);
        }
        for quantile in ["0.5", "0.99"] {
            set(&self.latency, &[labels[0], labels[1], quantile], None);
        }
    }
}
