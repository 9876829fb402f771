//! The gauges of what a model promises and does in production: its targets (latency objective,
//! RMSE gate, training deadline) from the spec and status, and its `status.online` figures. A
//! series exists only while its value is known, so an alert never compares with a stale number.

use crate::crd::{OnlineStatus, RecommenderModelSpec, RecommenderModelStatus};
use crate::time::parse_go_duration;
use prometheus::{GaugeVec, IntCounter, Opts, Registry};

const MODEL: [&str; 2] = ["namespace", "name"];

pub(super) struct Production {
    objective: GaugeVec,
    max_rmse: GaugeVec,
    run_started: GaugeVec,
    run_deadline: GaugeVec,
    requests: GaugeVec,
    latency: GaugeVec,
    rmse: GaugeVec,
    mae: GaugeVec,
    feedback: GaugeVec,
    acceptance: GaugeVec,
    shown: GaugeVec,
    pub(super) writes: IntCounter,
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
    pub(super) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                let g = GaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let writes = IntCounter::new(
            "recommender_operator_online_status_writes_total",
            "status.online writes (only when the figures changed).",
        )?;
        registry.register(Box::new(writes.clone()))?;
        Ok(Self {
            objective: gauge(
                "recommender_model_latency_objective_seconds",
                "spec.predictor.latencyObjective.",
                &MODEL,
            )?,
            max_rmse: gauge(
                "recommender_model_max_rmse",
                "spec.promotion.maxRmse.",
                &MODEL,
            )?,
            run_started: gauge(
                "recommender_model_active_run_started_timestamp_seconds",
                "When the training run in flight started.",
                &MODEL,
            )?,
            run_deadline: gauge(
                "recommender_model_active_run_deadline_seconds",
                "spec.trainer.activeDeadlineSeconds of the run in flight.",
                &MODEL,
            )?,
            requests: gauge(
                "recommender_model_online_requests_per_second",
                "Inference requests per second over the serving version's replicas.",
                &MODEL,
            )?,
            latency: gauge(
                "recommender_model_online_latency_seconds",
                "Server-side latency of the serving version over the last collection interval.",
                &["namespace", "name", "quantile"],
            )?,
            rmse: gauge(
                "recommender_model_online_rmse",
                "RMSE of the serving version against feedback.",
                &MODEL,
            )?,
            mae: gauge(
                "recommender_model_online_mae",
                "MAE of the serving version against feedback.",
                &MODEL,
            )?,
            feedback: gauge(
                "recommender_model_online_feedback",
                "Feedback ratings behind the online RMSE and MAE.",
                &MODEL,
            )?,
            acceptance: gauge(
                "recommender_model_online_acceptance_rate",
                "Suggestions the user went on to rate, divided by suggestions shown.",
                &MODEL,
            )?,
            shown: gauge(
                "recommender_model_online_suggestions_shown",
                "Suggestions shown by the predictors (since they started).",
                &MODEL,
            )?,
            writes,
        })
    }

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
