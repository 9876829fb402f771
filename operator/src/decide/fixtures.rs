//! Builders the decision's tests share: a resource, observed runs and rollouts, reports.

use super::{Plan, decide};
use crate::children::{self, Defaults};
use crate::crd::{
    ModelMetrics, ModelRecord, RecommenderModel, RecommenderModelSpec, RecommenderModelStatus,
    RunLedger, RunTrigger,
};
use crate::observe::{
    DatabaseProbe, Observed, ObservedRun, RolloutState, RunState, StoreProbe, WriteTokenState,
};
use crate::validate::{Config, validate};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use recommender_contract::metrics::Metrics;
use recommender_contract::report::{
    DataFingerprint, Durations, Outcome, REPORT_FORMAT, TrainingReport,
};
use std::collections::BTreeMap;

pub const NOW: &str = "2026-11-27T12:00:00Z";

pub fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

pub fn now() -> Timestamp {
    at(NOW)
}

pub fn defaults() -> Defaults {
    Defaults {
        trainer_image: "registry.local/recommender-trainer:test".into(),
        predictor_image: "registry.local/recommender-predictor:test".into(),
        cluster_domain: "cluster.local".into(),
        operator_pods: None,
    }
}

pub fn file_spec() -> RecommenderModelSpec {
    serde_yaml::from_str("source: {file: {path: movies/u.data}}\nmodelStore: {claimName: models}")
        .unwrap()
}

pub fn model(
    spec: RecommenderModelSpec,
    status: Option<RecommenderModelStatus>,
) -> RecommenderModel {
    let mut m = RecommenderModel::new("movies", spec);
    m.metadata.namespace = Some("ml".into());
    m.metadata.uid = Some("uid-1".into());
    m.metadata.generation = Some(1);
    m.status = status;
    m
}

pub fn config(m: &RecommenderModel) -> Config {
    validate(&m.spec).expect("a valid spec")
}

pub fn metrics(rmse: f64, mae: f64) -> ModelMetrics {
    ModelMetrics {
        folds: 4,
        rmse,
        mae,
        rmse_std: 0.0,
        mae_std: 0.0,
        accuracy: 0.0,
        precision_at_10: 0.0,
        recall_at_10: 0.0,
        ndcg_at_10: 0.0,
    }
}

/// Full-precision metrics as a trainer reports them (accuracy 0.75: above the default floor).
pub fn report_metrics(rmse: f64, mae: f64) -> Metrics {
    Metrics {
        folds: 4,
        rmse,
        rmse_std: 0.01,
        mae,
        mae_std: 0.01,
        accuracy: 0.75,
        precision_at_10: 0.5,
        recall_at_10: 0.4,
        ndcg_at_10: 0.6,
    }
}

pub fn report(version: &str, rmse: f64, mae: f64, finished_at: &str) -> TrainingReport {
    TrainingReport {
        format: REPORT_FORMAT,
        outcome: Outcome::Succeeded,
        version: version.into(),
        algorithm: "svd".into(),
        artifact: Some(format!("/models/movies/{version}.model")),
        artifact_bytes: Some(456_789),
        artifact_sha256: Some("ef".repeat(32)),
        metrics: Some(report_metrics(rmse, mae)),
        data: Some(DataFingerprint {
            rows: 100_000,
            users: 943,
            items: 1682,
            max_timestamp: None,
            content_hash: "ab".repeat(32),
            skipped: 0,
        }),
        durations: Durations {
            total_seconds: 12.5,
            ..Durations::default()
        },
        finished_at: finished_at.into(),
        error: None,
        forward: None,
        challenge: None,
        fit_threads: None,
    }
}

/// Trial `index`'s termination message: SVD at the defaults, scored `rmse`.
pub fn trial_result(index: u32, rmse: f64) -> String {
    use recommender_contract::tuning::{Algorithm, Params, Score, TrialParams, TrialResult};
    let trial = TrialParams {
        index,
        config: index,
        rung: 0,
        warm: false,
        params: Params::defaults(Algorithm::Svd),
    };
    let score = Score {
        rmse,
        mae: rmse * 0.8,
    };
    TrialResult::scored(&trial, score, 1.5).to_json()
}

pub fn run(n: u32, spec: &RecommenderModelSpec, state: RunState) -> ObservedRun {
    ObservedRun {
        run: n,
        job_name: format!("movies-train-{n}"),
        trigger: RunTrigger::NoModel,
        started_at: Some(at("2026-11-27T11:50:00Z")),
        spec_hash: Some(children::training_spec_hash(spec)),
        search: None,
        state,
    }
}

pub fn succeeded(n: u32, spec: &RecommenderModelSpec, rmse: f64, mae: f64) -> ObservedRun {
    run(
        n,
        spec,
        RunState::Succeeded {
            report: Ok(report(&format!("v{n}"), rmse, mae, "2026-11-27T11:59:00Z")),
            finished_at: Some(at("2026-11-27T11:59:01Z")),
        },
    )
}

pub fn running(n: u32, spec: &RecommenderModelSpec) -> ObservedRun {
    run(
        n,
        spec,
        RunState::Running {
            stuck: None,
            pending_since: None,
        },
    )
}

pub fn record(version: &str, run: u32, rmse: f64, trained_at: &str) -> ModelRecord {
    ModelRecord {
        version: version.into(),
        run,
        metrics: ModelMetrics {
            mae: 0.7,
            ..metrics(rmse, 0.7)
        },
        trained_at: at(trained_at),
        fingerprint: None,
        artifact: None,
        forward: None,
    }
}

/// A resource that has promoted v1 (trained at `trained_at`) and is otherwise at rest.
pub fn serving_status(spec: &RecommenderModelSpec, trained_at: &str) -> RecommenderModelStatus {
    RecommenderModelStatus {
        models: vec![record("v1", 1, 0.94, trained_at)],
        runs: RunLedger {
            last: 1,
            last_completed: 1,
            trained_spec_hash: Some(children::training_spec_hash(spec)),
            last_attempt_started_at: Some(at(trained_at)),
            ..RunLedger::default()
        },
        ..RecommenderModelStatus::default()
    }
}

pub fn available(version: &str, desired: i32, available: i32) -> RolloutState {
    RolloutState {
        version: Some(version.into()),
        candidate: None,
        desired,
        available,
        updated: available,
        total: available,
        observed: true,
        deadline_exceeded: None,
        replicas_released: false,
        network_policy: false,
    }
}

pub fn observe(
    model: &RecommenderModel,
    runs: Vec<ObservedRun>,
    rollout: Option<RolloutState>,
) -> Observed<'_> {
    Observed {
        model,
        runs,
        rollout,
        database: DatabaseProbe::NotUsed,
        store: StoreProbe::Claim,
        store_pods: Vec::new(),
        new_ratings: None,
        evaluations: Vec::new(),
        rungs: Vec::new(),
        write_token: WriteTokenState::NotUsed,
        now: now(),
    }
}

/// `decide` at [`NOW`] with a file source, for `model` with `runs` and `rollout`.
pub fn decide_for(
    model: &RecommenderModel,
    runs: Vec<ObservedRun>,
    rollout: Option<RolloutState>,
) -> Plan {
    decide(&observe(model, runs, rollout), &config(model), &defaults())
}

pub fn condition<'a>(plan: &'a Plan, type_: &str) -> &'a Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

pub fn job_name(plan: &Plan) -> Option<String> {
    plan.start_job
        .as_ref()
        .and_then(|j| j.metadata.name.clone())
}

/// The predictor pod template's labels.
pub fn pod_labels(plan: &Plan) -> BTreeMap<String, String> {
    plan.deployment
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("a predictor Deployment with pod labels")
}
