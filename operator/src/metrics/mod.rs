//! Prometheus metrics, named as docs/contracts.md fixes them (the Helm chart's alerts use them).
//! Each is declared once, in a table (`declare_metrics!`): its field, kind, name, help and labels.

mod online;
mod rollout;

use crate::crd::{
    OnlineStatus, RecommenderModelSpec, RecommenderModelStatus, RolloutEndReason, RunOutcome,
    RunRecord,
};
use jiff::Timestamp;
use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// The labels of a per-resource series.
const MODEL: [&str; 2] = ["namespace", "name"];

/// A kind of metric the tables declare.
trait Declare: Collector + Clone + Sized + 'static {
    fn declare(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self>;
}

impl Declare for GaugeVec {
    fn declare(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        Self::new(Opts::new(name, help), labels)
    }
}

impl Declare for IntCounterVec {
    fn declare(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        Self::new(Opts::new(name, help), labels)
    }
}

impl Declare for IntCounter {
    fn declare(name: &str, help: &str, _labels: &[&str]) -> prometheus::Result<Self> {
        Self::new(name, help)
    }
}

/// Reconcile durations: from a few milliseconds (nothing to do) to seconds (a slow API server).
impl Declare for Histogram {
    fn declare(name: &str, help: &str, _labels: &[&str]) -> prometheus::Result<Self> {
        let buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Self::with_opts(HistogramOpts::new(name, help).buckets(buckets))
    }
}

/// Declares a struct of metrics, one line each (`field: Kind = name, help, labels;`), and its
/// `register`, which creates each one and registers it.
macro_rules! declare_metrics {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($fvis:vis $field:ident: $kind:ty = $metric:literal, $help:literal, $labels:expr;)+
    }) => {
        $(#[$meta])*
        $vis struct $name {
            $($fvis $field: $kind,)+
        }

        impl $name {
            $vis fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
                Ok(Self {
                    $($field: {
                        let metric = <$kind as $crate::metrics::Declare>::declare(
                            $metric, $help, &$labels,
                        )?;
                        registry.register(Box::new(metric.clone()))?;
                        metric
                    },)+
                })
            }
        }
    };
}
use declare_metrics;

declare_metrics! {
    /// The operator's reconciles, and what each resource's status says.
    struct Families {
        reconciles: IntCounter = "recommender_operator_reconcile_total",
            "Reconciliations run.", [];
        errors: IntCounterVec = "recommender_operator_reconcile_errors_total",
            "Reconciliations that failed, by error kind.", ["error"];
        duration: Histogram = "recommender_operator_reconcile_duration_seconds",
            "Time one reconciliation took.", [];
        condition: GaugeVec = "recommender_model_condition",
            "1 for each condition's current status.",
            ["namespace", "name", "type", "status", "reason"];
        age: GaugeVec = "recommender_model_age_seconds", "Age of the serving model.", MODEL;
        rmse: GaugeVec = "recommender_model_serving_rmse",
            "Cross-validated RMSE of the serving model.", MODEL;
        mae: GaugeVec = "recommender_model_serving_mae",
            "Cross-validated MAE of the serving model.", MODEL;
        accuracy: GaugeVec = "recommender_model_serving_accuracy",
            "Cross-validated share of predictions within one star, of the serving model.", MODEL;
        info: GaugeVec = "recommender_model_serving_info",
            "1 for the serving model's version.", ["namespace", "name", "version"];
        runs: IntCounterVec = "recommender_model_training_runs_total",
            "Finished training runs by outcome.", ["namespace", "name", "outcome"];
        last_success: GaugeVec = "recommender_model_last_successful_training_timestamp_seconds",
            "When the last promoted model finished training.", MODEL;
        replicas: GaugeVec = "recommender_model_predictor_replicas",
            "Predictor replicas by state (desired|available).", ["namespace", "name", "state"];
    }
}

type Key = (String, String);

pub struct Metrics {
    pub registry: Registry,
    m: Families,
    production: online::Production,
    rollouts: rollout::Rollouts,
    /// Per object: label sets last exported, so a changed reason or version replaces the old
    /// series instead of leaving it at 1, and when its serving model was trained (for age).
    exported: Mutex<HashMap<Key, Exported>>,
}

#[derive(Default)]
struct Exported {
    conditions: Vec<[String; 3]>,
    version: Option<String>,
    trained_at: Option<Timestamp>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Families::register(&registry)?;
        // Every error kind is a series from the start, so a rate over it exists before the first.
        for kind in crate::error::Error::RECONCILE_LABELS {
            m.errors.with_label_values(&[kind]);
        }
        let production = online::Production::register(&registry)?;
        for reason in crate::online::Rejection::ALL {
            production.rejected.with_label_values(&[reason.as_str()]);
        }
        let rollouts = rollout::Rollouts::register(&registry)?;
        Ok(Self {
            production,
            rollouts,
            m,
            registry,
            exported: Mutex::default(),
        })
    }

    pub fn reconciled(&self, seconds: f64) {
        self.m.reconciles.inc();
        self.m.duration.observe(seconds);
    }

    pub fn failed(&self, label: &str) {
        self.m.errors.with_label_values(&[label]).inc();
    }

    pub fn runs_finished(&self, namespace: &str, name: &str, runs: &[RunRecord]) {
        for run in runs {
            self.m
                .runs
                .with_label_values(&[namespace, name, run.outcome.as_str()])
                .inc();
        }
    }

    /// Exports the per-resource gauges for `status`, replacing what was exported before.
    pub fn observe_status(&self, namespace: &str, name: &str, status: &RecommenderModelStatus) {
        let mut exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        let entry = exported
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        for [type_, status, reason] in entry.conditions.drain(..) {
            let _ = self
                .m
                .condition
                .remove_label_values(&[namespace, name, &type_, &status, &reason]);
        }
        for c in &status.conditions {
            self.m
                .condition
                .with_label_values(&[namespace, name, &c.type_, &c.status, &c.reason])
                .set(1.0);
            entry
                .conditions
                .push([c.type_.clone(), c.status.clone(), c.reason.clone()]);
        }
        if let Some(old) = entry.version.take() {
            let _ = self.m.info.remove_label_values(&[namespace, name, &old]);
        }
        match &status.serving {
            Some(model) => {
                self.m
                    .rmse
                    .with_label_values(&[namespace, name])
                    .set(model.metrics.rmse);
                self.m
                    .mae
                    .with_label_values(&[namespace, name])
                    .set(model.metrics.mae);
                self.m
                    .accuracy
                    .with_label_values(&[namespace, name])
                    .set(model.metrics.accuracy);
                self.m
                    .info
                    .with_label_values(&[namespace, name, &model.version])
                    .set(1.0);
                entry.version = Some(model.version.clone());
                entry.trained_at = Some(model.trained_at);
            }
            None => {
                let _ = self.m.rmse.remove_label_values(&[namespace, name]);
                let _ = self.m.mae.remove_label_values(&[namespace, name]);
                let _ = self.m.accuracy.remove_label_values(&[namespace, name]);
                let _ = self.m.age.remove_label_values(&[namespace, name]);
                entry.trained_at = None;
            }
        }
        if let Some(newest) = status.models.last().map(|m| m.trained_at) {
            self.m
                .last_success
                .with_label_values(&[namespace, name])
                .set(newest.as_second() as f64);
        }
        if let Some(p) = &status.predictor {
            self.m
                .replicas
                .with_label_values(&[namespace, name, "desired"])
                .set(p.desired_replicas.into());
            self.m
                .replicas
                .with_label_values(&[namespace, name, "available"])
                .set(p.available_replicas.into());
        }
    }

    /// Exports what the spec promises (latency objective, RMSE gate), the run in flight and the
    /// rollout.
    pub fn observe_targets(
        &self,
        namespace: &str,
        name: &str,
        spec: &RecommenderModelSpec,
        status: &RecommenderModelStatus,
    ) {
        self.production
            .observe_targets(&[namespace, name], spec, status);
        self.rollouts
            .observe(&[namespace, name], spec, status.rollout.as_ref());
    }

    /// Counts the rollouts a reconcile ended aborted.
    pub fn rollouts_ended(&self, namespace: &str, name: &str, reasons: &[RolloutEndReason]) {
        self.rollouts.ended(namespace, name, reasons);
    }

    /// Exports the collector's figures of the serving version.
    pub fn observe_online(&self, namespace: &str, name: &str, online: &OnlineStatus) {
        self.production.observe_online(&[namespace, name], online);
    }

    /// Counts a `status.online` write.
    pub fn online_written(&self) {
        self.production.writes.inc();
    }

    /// Counts a predictor's stats reply the collector refused.
    pub fn online_rejected(&self, reason: crate::online::Rejection) {
        self.production
            .rejected
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a restart of the online collector.
    pub fn online_collector_restarted(&self) {
        self.production.restarts.inc();
    }

    /// Drops every series of a resource that no longer exists.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.production.forget(&[namespace, name]);
        self.rollouts.forget(namespace, name);
        let mut exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = exported.remove(&(namespace.to_string(), name.to_string())) else {
            return;
        };
        for [type_, status, reason] in entry.conditions {
            let _ = self
                .m
                .condition
                .remove_label_values(&[namespace, name, &type_, &status, &reason]);
        }
        if let Some(version) = entry.version {
            let _ = self
                .m
                .info
                .remove_label_values(&[namespace, name, &version]);
        }
        for g in [
            &self.m.age,
            &self.m.rmse,
            &self.m.mae,
            &self.m.accuracy,
            &self.m.last_success,
        ] {
            let _ = g.remove_label_values(&[namespace, name]);
        }
        for state in ["desired", "available"] {
            let _ = self
                .m
                .replicas
                .remove_label_values(&[namespace, name, state]);
        }
        for outcome in RunOutcome::ALL {
            let _ = self
                .m
                .runs
                .remove_label_values(&[namespace, name, outcome.as_str()]);
        }
    }

    /// Resources currently exported, for pruning deleted ones.
    pub fn known(&self) -> Vec<(String, String)> {
        let exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        exported.keys().cloned().collect()
    }

    /// The text exposition, with model ages computed at scrape time (a resource at rest is not
    /// reconciled, yet its model keeps ageing).
    pub fn render(&self, now: Timestamp) -> String {
        {
            let exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
            for ((namespace, name), entry) in exported.iter() {
                if let Some(trained) = entry.trained_at {
                    let age = now.duration_since(trained).as_secs_f64().max(0.0);
                    self.m.age.with_label_values(&[namespace, name]).set(age);
                }
            }
        }
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::{self as conditions, Desired, ReadyReason, State};
    use crate::decide::fixtures::record;

    #[test]
    fn reconcile_error_series_exist_before_any_error() {
        let text = Metrics::new()
            .unwrap()
            .render("2026-11-27T12:00:00Z".parse().unwrap());
        for kind in crate::error::Error::RECONCILE_LABELS {
            let series =
                format!(r#"recommender_operator_reconcile_errors_total{{error="{kind}"}} 0"#);
            assert!(text.contains(&series), "{series} in:\n{text}");
        }
    }

    #[test]
    fn condition_series_are_replaced_not_accumulated() {
        let metrics = Metrics::new().unwrap();
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let mut status = RecommenderModelStatus {
            conditions: conditions::merge(
                &[],
                &[Desired::new(ReadyReason::NotReady, State::False, "")],
                now,
                None,
            ),
            ..RecommenderModelStatus::default()
        };
        metrics.observe_status("ml", "movies", &status);
        status.conditions = conditions::merge(
            &[],
            &[Desired::new(ReadyReason::Ready, State::True, "")],
            now,
            None,
        );
        status.serving = Some(record("v1", 1, 0.94, "2026-11-27T11:00:00Z"));
        metrics.observe_status("ml", "movies", &status);
        let text = metrics.render(now);
        assert!(text.contains(r#"recommender_model_condition{name="movies",namespace="ml",reason="Ready",status="True",type="Ready"} 1"#), "{text}");
        assert!(!text.contains(r#"reason="NotReady""#));
        assert!(
            text.contains(r#"recommender_model_age_seconds{name="movies",namespace="ml"} 3600"#)
        );
        assert!(text.contains(
            r#"recommender_model_serving_info{name="movies",namespace="ml",version="v1"} 1"#
        ));

        metrics.forget("ml", "movies");
        assert!(!metrics.render(now).contains("movies"));
    }
}
