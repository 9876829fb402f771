use super::*;
use crate::crd::{
    FileSource, ModelStore, PostgresSource, RecommenderModelSpec, SecretKeyRef, Source,
};
use crate::observe::{ObservedRun, RolloutState, RunState};
use recommender_report::{DataFingerprint, Durations, Metrics, REPORT_FORMAT, RunError};

const NOW: &str = "2026-11-27T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn defaults() -> Defaults {
    Defaults {
        trainer_image: "registry.local/recommender-trainer:test".into(),
        predictor_image: "registry.local/recommender-predictor:test".into(),
    }
}

fn file_spec() -> RecommenderModelSpec {
    serde_yaml::from_str("source: {file: {path: movies/u.data}}\nmodelStore: {claimName: models}")
        .unwrap()
}

fn model(spec: RecommenderModelSpec, status: Option<RecommenderModelStatus>) -> RecommenderModel {
    let mut m = RecommenderModel::new("movies", spec);
    m.metadata.namespace = Some("ml".into());
    m.metadata.uid = Some("uid-1".into());
    m.metadata.generation = Some(1);
    m.status = status;
    m
}

fn report(version: &str, rmse: f64, mae: f64, finished_at: &str) -> TrainingReport {
    TrainingReport {
        format: REPORT_FORMAT,
        outcome: Outcome::Succeeded,
        version: version.into(),
        algorithm: "svd".into(),
        artifact: Some(format!("/models/movies/{version}.model")),
        metrics: Some(Metrics {
            folds: 4,
            rmse,
            rmse_std: 0.01,
            mae,
            mae_std: 0.01,
            accuracy: 0.7,
            precision_at_10: 0.5,
            recall_at_10: 0.4,
            ndcg_at_10: 0.6,
        }),
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
    }
}

fn run(n: u32, spec: &RecommenderModelSpec, state: RunState) -> ObservedRun {
    ObservedRun {
        run: n,
        job_name: format!("movies-train-{n}"),
        trigger: "NoModel".into(),
        started_at: Some("2026-11-27T11:50:00Z".into()),
        spec_hash: Some(children::training_spec_hash(spec)),
        state,
    }
}

fn succeeded(n: u32, spec: &RecommenderModelSpec, rmse: f64, mae: f64) -> ObservedRun {
    run(
        n,
        spec,
        RunState::Succeeded {
            report: Ok(report(&format!("v{n}"), rmse, mae, "2026-11-27T11:59:00Z")),
            finished_at: Some("2026-11-27T11:59:01Z".into()),
        },
    )
}

fn running(n: u32, spec: &RecommenderModelSpec) -> ObservedRun {
    run(
        n,
        spec,
        RunState::Running {
            stuck: None,
            pending_since: None,
        },
    )
}

fn record(version: &str, run: u32, rmse: f64, trained_at: &str) -> ModelRecord {
    ModelRecord {
        version: version.into(),
        run,
        metrics: ModelMetrics {
            folds: 4,
            rmse,
            mae: 0.7,
            rmse_std: 0.0,
            mae_std: 0.0,
            precision_at_10: 0.0,
            recall_at_10: 0.0,
            ndcg_at_10: 0.0,
        },
        trained_at: trained_at.into(),
        fingerprint: None,
    }
}

/// A resource that has promoted v1 (trained at `trained_at`) and is otherwise at rest.
fn serving_status(spec: &RecommenderModelSpec, trained_at: &str) -> RecommenderModelStatus {
    RecommenderModelStatus {
        models: vec![record("v1", 1, 0.94, trained_at)],
        last_run: 1,
        last_completed_run: 1,
        trained_spec_hash: Some(children::training_spec_hash(spec)),
        last_attempt_started_at: Some(trained_at.into()),
        ..RecommenderModelStatus::default()
    }
}

fn available(version: &str, desired: i32, available: i32) -> RolloutState {
    RolloutState {
        version: Some(version.into()),
        desired,
        available,
        updated: available,
        total: available,
        observed: true,
        deadline_exceeded: None,
    }
}

fn observe<'a>(
    model: &'a RecommenderModel,
    runs: Vec<ObservedRun>,
    rollout: Option<RolloutState>,
) -> Observed<'a> {
    Observed {
        model,
        runs,
        rollout,
        database: DatabaseProbe::NotUsed,
        now: now(),
    }
}

fn condition<'a>(
    plan: &'a Plan,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    cond::find(&plan.status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

fn job_name(plan: &Plan) -> Option<String> {
    plan.start_job
        .as_ref()
        .and_then(|j| j.metadata.name.clone())
}

#[test]
fn no_model_starts_run_one() {
    let m = model(file_spec(), None);
    let plan = decide(&observe(&m, vec![], None), &defaults());
    assert_eq!(job_name(&plan).as_deref(), Some("movies-train-1"));
    let active = plan.status.active_run.as_ref().unwrap();
    assert_eq!((active.run, active.trigger.as_str()), (1, "NoModel"));
    assert_eq!(plan.status.phase, Phase::Training);
    assert!(plan.deployment.is_none() && plan.service.is_none());
    assert_eq!(condition(&plan, "Serving").reason, "NoModel");
    assert_eq!(condition(&plan, "Ready").status, "False");
    assert!(plan.events.iter().any(|e| e.reason == "TrainingStarted"));
}

#[test]
fn running_job_is_adopted_not_duplicated() {
    // Operator restarted after creating run 1 but before writing status.
    let spec = file_spec();
    let m = model(spec.clone(), None);
    let plan = decide(&observe(&m, vec![running(1, &spec)], None), &defaults());
    assert!(plan.start_job.is_none(), "an existing Job must be adopted");
    assert_eq!(
        plan.status.active_run.as_ref().unwrap().job,
        "movies-train-1"
    );
    assert_eq!(plan.status.last_run, 1);
}

#[test]
fn candidate_passing_the_gate_is_promoted_and_served() {
    let spec = file_spec();
    let m = model(spec.clone(), None);
    let plan = decide(
        &observe(&m, vec![succeeded(1, &spec, 0.94, 0.74)], None),
        &defaults(),
    );
    assert!(plan.start_job.is_none());
    let serving = plan.status.serving.as_ref().unwrap();
    assert_eq!(serving.version, "v1");
    assert_eq!(serving.metrics.rmse, 0.94);
    assert_eq!(serving.trained_at, "2026-11-27T11:59:00Z");
    assert_eq!(serving.fingerprint.as_ref().unwrap().rows, 100_000);
    assert_eq!(
        plan.status.history.last().unwrap().outcome,
        RunOutcome::Succeeded
    );
    assert_eq!(condition(&plan, "Promoted").status, "True");
    let deployment = plan.deployment.as_ref().unwrap();
    let args = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        args,
        [
            "--model",
            "/models/movies/v1.model",
            "--listen",
            "$(POD_IP):8080"
        ]
    );
    assert!(plan.service.is_some());
    assert_eq!(condition(&plan, "Serving").reason, "RollingOut");
    assert_eq!(plan.finished.len(), 1);
    assert!(plan.events.iter().any(|e| e.reason == "Promoted"));
}

#[test]
fn gate_outcomes_table() {
    let spec = file_spec();
    let strict = {
        let mut s = file_spec();
        s.promotion.must_beat_serving = true;
        s
    };
    // (name, spec, rmse, mae, already serving v1 at 0.94?, outcome, reason, message fragment)
    let cases = [
        (
            "passes",
            &spec,
            0.94,
            0.74,
            false,
            RunOutcome::Succeeded,
            "Promoted",
            "v2 promoted",
        ),
        (
            "rmse over",
            &spec,
            1.0312,
            0.74,
            false,
            RunOutcome::Rejected,
            "GateFailed",
            "rmse 1.0312 exceeds maxRmse 1.0 by 0.0312",
        ),
        (
            "mae over",
            &spec,
            0.94,
            0.85,
            false,
            RunOutcome::Rejected,
            "GateFailed",
            "mae 0.8500 exceeds maxMae 0.8 by 0.0500",
        ),
        (
            "not better",
            &strict,
            0.95,
            0.74,
            true,
            RunOutcome::Rejected,
            "NotBetter",
            "does not beat the serving v1's rmse 0.9400",
        ),
        (
            "better",
            &strict,
            0.93,
            0.74,
            true,
            RunOutcome::Succeeded,
            "Promoted",
            "v2 promoted",
        ),
    ];
    for (name, spec, rmse, mae, has_model, outcome, reason, message) in cases {
        let mut status = serving_status(spec, "2026-11-27T00:00:00Z");
        if !has_model {
            status.models.clear();
        }
        status.last_run = 2;
        let m = model(spec.clone(), Some(status));
        let plan = decide(
            &observe(&m, vec![succeeded(2, spec, rmse, mae)], None),
            &defaults(),
        );
        let last = plan.status.history.last().unwrap();
        assert_eq!(last.outcome, outcome, "{name}");
        assert_eq!(last.reason, reason, "{name}");
        assert!(last.message.contains(message), "{name}: {}", last.message);
        let promoted = condition(&plan, "Promoted");
        assert_eq!(promoted.reason, reason, "{name}");
        assert!(promoted.message.contains(message), "{name}");
        let serving_version = plan.status.serving.as_ref().map(|s| s.version.as_str());
        match outcome {
            RunOutcome::Succeeded => assert_eq!(serving_version, Some("v2"), "{name}"),
            _ => {
                assert_eq!(
                    serving_version,
                    has_model.then_some("v1"),
                    "{name}: kept out"
                );
                assert!(
                    plan.events
                        .iter()
                        .any(|e| e.kind == EventKind::Warning && e.reason == reason)
                );
            }
        }
        assert!(
            plan.start_job.is_none(),
            "{name}: a rejected spec is not retrained in a loop"
        );
    }
}

#[test]
fn failed_job_is_recorded_and_retried_with_backoff_while_v1_serves() {
    let spec = file_spec();
    let mut status = serving_status(&spec, "2026-11-27T00:00:00Z");
    status.last_run = 2;
    status.trained_spec_hash = Some("old".into()); // run 2 was for a changed spec
    let m = model(spec.clone(), Some(status));
    let mut failed_report = report("v2", 0.0, 0.0, NOW);
    failed_report.outcome = Outcome::Failed;
    failed_report.metrics = None;
    failed_report.error = Some(RunError {
        reason: "SourceUnavailable".into(),
        message: "relation \"ratings\" does not exist".into(),
    });
    let failed = run(
        2,
        &spec,
        RunState::Failed {
            reason: "PodFailurePolicy".into(),
            message: "container trainer exited with 1".into(),
            report: Some(failed_report),
            finished_at: Some(NOW.into()),
        },
    );
    let plan = decide(
        &observe(&m, vec![failed], Some(available("v1", 1, 1))),
        &defaults(),
    );
    let last = plan.status.history.last().unwrap();
    assert_eq!(last.outcome, RunOutcome::Failed);
    assert_eq!(last.reason, "SourceUnavailable");
    assert!(last.message.contains("does not exist"));
    assert_eq!(plan.status.consecutive_failures, 1);
    assert_eq!(
        plan.status.retry_after.as_deref(),
        Some("2026-11-27T12:00:30Z")
    );
    assert!(
        plan.start_job.is_none(),
        "no retry before the backoff elapses"
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_millis(30_100)));
    assert_eq!(
        plan.status.serving.as_ref().unwrap().version,
        "v1",
        "v1 keeps serving"
    );
    assert_eq!(condition(&plan, "Promoted").reason, "TrainingFailed");
    assert_eq!(condition(&plan, "Training").reason, "BackingOff");
    assert_eq!(condition(&plan, "Serving").status, "True");
    assert!(plan.deployment.is_some());

    // After the backoff, the same trigger retries as run 3.
    let mut later = m.clone();
    later.status = Some(plan.status.clone());
    let mut obs = observe(&later, vec![], Some(available("v1", 1, 1)));
    obs.now = "2026-11-27T12:00:31Z".parse().unwrap();
    let retry = decide(&obs, &defaults());
    assert_eq!(job_name(&retry).as_deref(), Some("movies-train-3"));
}

#[test]
fn backoff_doubles_and_caps() {
    let table = [(1, 30), (2, 60), (3, 120), (4, 240), (8, 3600), (40, 3600)];
    for (failures, secs) in table {
        assert_eq!(backoff(failures), Duration::from_secs(secs), "{failures}");
    }
}

#[test]
fn job_without_report_is_a_failure() {
    let spec = file_spec();
    let m = model(spec.clone(), None);
    let no_report = run(
        1,
        &spec,
        RunState::Succeeded {
            report: Err("the trainer pod left no termination message".into()),
            finished_at: Some(NOW.into()),
        },
    );
    let plan = decide(&observe(&m, vec![no_report], None), &defaults());
    let last = plan.status.history.last().unwrap();
    assert_eq!(
        (last.outcome, last.reason.as_str()),
        (RunOutcome::Failed, "NoReport")
    );
    assert_eq!(plan.status.phase, Phase::Failed);
}

#[test]
fn deadline_exceeded_is_recorded_with_its_reason() {
    let spec = file_spec();
    let m = model(spec.clone(), None);
    let deadline = run(
        1,
        &spec,
        RunState::Failed {
            reason: "DeadlineExceeded".into(),
            message: "Job was active longer than specified deadline".into(),
            report: None,
            finished_at: Some(NOW.into()),
        },
    );
    let plan = decide(&observe(&m, vec![deadline], None), &defaults());
    let last = plan.status.history.last().unwrap();
    assert_eq!(last.reason, "DeadlineExceeded");
    assert!(last.message.contains("longer than specified deadline"));
}

#[test]
fn stale_boundary_is_exact() {
    // v1 trained at 11:00 with maxAge 1h turns stale at exactly 12:00:00.
    let mut spec = file_spec();
    spec.freshness.max_age = "1h".into();
    spec.freshness.retrain_when_stale = false;
    let cases = [
        (
            "2026-11-27T11:00:01Z",
            false,
            Some(Duration::from_millis(1100)),
        ),
        ("2026-11-27T11:00:00Z", true, None),
        ("2026-11-27T10:00:00Z", true, None),
    ];
    for (trained_at, stale, requeue) in cases {
        let m = model(spec.clone(), Some(serving_status(&spec, trained_at)));
        let plan = decide(
            &observe(&m, vec![], Some(available("v1", 1, 1))),
            &defaults(),
        );
        assert_eq!(plan.status.stale, stale, "{trained_at}");
        assert_eq!(
            condition(&plan, "Stale").status,
            if stale { "True" } else { "False" }
        );
        assert_eq!(
            plan.requeue_after, requeue,
            "{trained_at}: requeue exactly at the boundary"
        );
        assert!(plan.start_job.is_none(), "retrainWhenStale is off");
    }
}

#[test]
fn stale_with_retraining_on_trains_once() {
    let mut spec = file_spec();
    spec.freshness.max_age = "1h".into();
    let m = model(
        spec.clone(),
        Some(serving_status(&spec, "2026-11-27T10:00:00Z")),
    );
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert_eq!(plan.status.active_run.as_ref().unwrap().trigger, "Stale");
    assert_eq!(job_name(&plan).as_deref(), Some("movies-train-2"));

    // An attempt after the model turned stale was rejected: no new attempt in a loop.
    let mut status = serving_status(&spec, "2026-11-27T10:00:00Z");
    status.last_attempt_started_at = Some("2026-11-27T11:30:00Z".into());
    let m = model(spec.clone(), Some(status));
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert!(plan.start_job.is_none());
}

#[test]
fn spec_change_interval_and_request_trigger_training() {
    let spec = file_spec();
    let at_rest = serving_status(&spec, "2026-11-27T11:00:00Z");

    let mut changed = spec.clone();
    changed.hyperparameters.factors = 50;
    let m = model(changed, Some(at_rest.clone()));
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert_eq!(
        plan.status.active_run.as_ref().unwrap().trigger,
        "SpecChanged"
    );

    let mut replicas_only = spec.clone();
    replicas_only.predictor.replicas = 3;
    let m = model(replicas_only, Some(at_rest.clone()));
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert!(
        plan.start_job.is_none(),
        "predictor settings do not retrain"
    );

    let mut interval = spec.clone();
    interval.freshness.retrain_interval = Some("30m".into());
    let m = model(interval, Some(at_rest.clone()));
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert_eq!(plan.status.active_run.as_ref().unwrap().trigger, "Interval");

    let mut m = model(spec.clone(), Some(at_rest.clone()));
    m.metadata.annotations = Some(
        [(
            RETRAIN_ANNOTATION.to_string(),
            "2026-11-27T12:00".to_string(),
        )]
        .into(),
    );
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert_eq!(
        plan.status.active_run.as_ref().unwrap().trigger,
        "Requested"
    );
    assert_eq!(
        plan.status.handled_retrain_request.as_deref(),
        Some("2026-11-27T12:00")
    );
    m.status = Some(RecommenderModelStatus {
        active_run: None,
        ..plan.status.clone()
    });
    let again = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert!(
        again.start_job.is_none(),
        "a handled request is not repeated"
    );

    let m = model(spec.clone(), Some(at_rest));
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert!(plan.start_job.is_none(), "nothing to do at rest");
    assert_eq!(plan.status.phase, Phase::Serving);
    assert_eq!(condition(&plan, "Ready").status, "True");
}

#[test]
fn pinned_version_rolls_back() {
    let mut spec = file_spec();
    let mut status = serving_status(&spec, "2026-11-27T11:00:00Z");
    status
        .models
        .push(record("v2", 2, 0.93, "2026-11-27T11:30:00Z"));
    spec.pinned_version = Some("v1".into());
    let m = model(spec.clone(), Some(status.clone()));
    let plan = decide(
        &observe(&m, vec![], Some(available("v2", 1, 1))),
        &defaults(),
    );
    assert_eq!(plan.status.serving.as_ref().unwrap().version, "v1");
    let labels = plan
        .deployment
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels[children::LABEL_VERSION], "v1");
    assert_eq!(condition(&plan, "Serving").reason, "RollingOut");

    spec.pinned_version = Some("v9".into());
    let m = model(spec, Some(status));
    let plan = decide(
        &observe(&m, vec![], Some(available("v2", 1, 1))),
        &defaults(),
    );
    assert_eq!(
        plan.status.serving.as_ref().unwrap().version,
        "v2",
        "unknown pin keeps the newest"
    );
    let serving = condition(&plan, "Serving");
    assert_eq!(serving.reason, "PinnedVersionUnknown");
    assert!(serving.message.contains("v9") && serving.message.contains("v1, v2"));
}

#[test]
fn suspend_starts_nothing() {
    let m = model(
        RecommenderModelSpec {
            suspend: true,
            ..file_spec()
        },
        None,
    );
    let plan = decide(&observe(&m, vec![], None), &defaults());
    assert!(plan.start_job.is_none());
    assert_eq!(plan.status.phase, Phase::Suspended);
    assert_eq!(condition(&plan, "Training").reason, "Suspended");
}

#[test]
fn database_down_makes_ready_false() {
    let mut spec = file_spec();
    spec.source = Source {
        postgres: Some(PostgresSource {
            host: "db".into(),
            port: 5432,
            database: "app".into(),
            user: "app".into(),
            password_secret_ref: SecretKeyRef {
                name: "db".into(),
                key: "password".into(),
            },
            query: "SELECT user_id, item_id, rating FROM ratings".into(),
            probe_interval_seconds: 10,
        }),
        file: None,
    };
    let m = model(
        spec.clone(),
        Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
    );
    let mut obs = observe(&m, vec![], Some(available("v1", 1, 1)));
    obs.database = DatabaseProbe::Unreachable("connection refused".into());
    let plan = decide(&obs, &defaults());
    let db = condition(&plan, "DatabaseReachable");
    assert_eq!(
        (db.status.as_str(), db.message.as_str()),
        ("False", "connection refused")
    );
    assert_eq!(condition(&plan, "Ready").status, "False");
    assert!(
        condition(&plan, "Ready")
            .message
            .contains("DatabaseReachable")
    );
    assert_eq!(plan.status.phase, Phase::Degraded);
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(10)),
        "probe again on the interval"
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.reason == "Unreachable")
    );

    obs.database = DatabaseProbe::Reachable;
    let plan = decide(&obs, &defaults());
    assert_eq!(condition(&plan, "DatabaseReachable").status, "True");
    assert_eq!(condition(&plan, "Ready").status, "True");
}

#[test]
fn replicas_short_and_stuck_rollout() {
    let mut spec = file_spec();
    spec.predictor.replicas = 3;
    let m = model(
        spec.clone(),
        Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
    );
    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 3, 1))),
        &defaults(),
    );
    let workers = condition(&plan, "WorkersHealthy");
    assert_eq!(
        (workers.status.as_str(), workers.reason.as_str()),
        ("False", "PredictorReplicasShort")
    );
    assert_eq!(workers.message, "1 of 3 predictor replicas available");
    assert_eq!(condition(&plan, "Ready").status, "False");

    let mut stuck = available("v1", 3, 0);
    stuck.deadline_exceeded = Some("ReplicaSet has timed out progressing.".into());
    let plan = decide(&observe(&m, vec![], Some(stuck)), &defaults());
    let serving = condition(&plan, "Serving");
    assert_eq!(
        (serving.status.as_str(), serving.reason.as_str()),
        ("False", "RolloutStuck")
    );
    assert!(serving.message.contains("timed out"));
}

#[test]
fn stuck_trainer_pod_is_unhealthy() {
    let spec = file_spec();
    let m = model(spec.clone(), None);
    let pending = run(
        1,
        &spec,
        RunState::Running {
            stuck: None,
            pending_since: Some("2026-11-27T11:50:00Z".parse().unwrap()),
        },
    );
    let plan = decide(&observe(&m, vec![pending], None), &defaults());
    assert_eq!(condition(&plan, "WorkersHealthy").reason, "TrainerPodStuck");

    let young = run(
        1,
        &spec,
        RunState::Running {
            stuck: None,
            pending_since: Some("2026-11-27T11:58:00Z".parse().unwrap()),
        },
    );
    let plan = decide(&observe(&m, vec![young], None), &defaults());
    assert_eq!(condition(&plan, "WorkersHealthy").status, "True");
    assert_eq!(plan.requeue_after, Some(Duration::from_millis(180_100)));
}

#[test]
fn deciding_twice_writes_the_same_status() {
    let spec = file_spec();
    let m = model(
        spec.clone(),
        Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
    );
    let first = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    let mut again = m.clone();
    again.status = Some(first.status.clone());
    let mut obs = observe(&again, vec![], Some(available("v1", 1, 1)));
    obs.now = "2026-11-27T12:05:00Z".parse().unwrap();
    let second = decide(&obs, &defaults());
    assert_eq!(first.status, second.status);
    assert!(
        second.events.is_empty(),
        "no news, no events: {:?}",
        second.events
    );
}

#[test]
fn history_is_bounded() {
    let spec = file_spec();
    let mut m = model(spec.clone(), None);
    for n in 1..=15 {
        let obs = observe(&m, vec![succeeded(n, &spec, 1.5, 0.9)], None);
        let plan = decide(&obs, &defaults());
        m.status = Some(plan.status);
    }
    let status = m.status.unwrap();
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    assert_eq!(status.history.first().unwrap().run, 6);
    assert_eq!(status.last_completed_run, 15);
}

#[test]
fn trainer_job_runs_the_contracted_cli_safely() {
    let mut spec = file_spec();
    spec.source.file = Some(FileSource {
        path: "movies/ratings.csv".into(),
        format: crate::crd::FileFormat::Delimited,
        delimiter: Some(",".into()),
        header: Some(true),
        columns: Some("userId,movieId,rating,timestamp".into()),
        skip_bad_lines: true,
    });
    spec.seed = Some(7);
    spec.model_store = ModelStore {
        claim_name: "store".into(),
    };
    let m = model(spec, None);
    let job = children::trainer_job(&m, 3, "NoModel", NOW, &defaults());
    assert_eq!(job.metadata.name.as_deref(), Some("movies-train-3"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("RecommenderModel", "uid-1", Some(true))
    );
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.args.clone().unwrap().join(" "),
        "train --source /models/movies/ratings.csv --format delimited --delimiter , --header true \
         --columns userId,movieId,rating,timestamp --out /models/movies/v3.model --version v3 \
         --report /dev/termination-log --algorithm svd --folds 4 --seed 7 --factors 100 --epochs 20 \
         --lr-all 0.005 --reg-all 0.02 --init-mean 0 --init-std 0.1 --biased true --skip-bad-lines"
    );
    assert_eq!(
        c.image.as_deref(),
        Some("registry.local/recommender-trainer:test")
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, "/models");
    assert_eq!(
        pod.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "store"
    );
    assert!(c.resources.as_ref().unwrap().requests.is_some());
}

#[test]
fn postgres_job_gets_password_from_the_secret() {
    let mut spec = file_spec();
    spec.source = Source {
        postgres: Some(PostgresSource {
            host: "db.ml.svc".into(),
            port: 5433,
            database: "shop".into(),
            user: "reader".into(),
            password_secret_ref: SecretKeyRef {
                name: "shop-db".into(),
                key: "pw".into(),
            },
            query: "SELECT user_id, item_id, rating FROM ratings".into(),
            probe_interval_seconds: 15,
        }),
        file: None,
    };
    let m = model(spec, None);
    let job = children::trainer_job(&m, 1, "NoModel", NOW, &defaults());
    let c = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let args = c.args.clone().unwrap().join(" ");
    assert!(args.starts_with(
        "train --source postgres --pg-host db.ml.svc --pg-port 5433 --pg-database shop --pg-user reader \
         --pg-query SELECT user_id, item_id, rating FROM ratings --out"
    ), "{args}");
    let env = &c.env.as_ref().unwrap()[0];
    assert_eq!(env.name, "PGPASSWORD");
    let secret = env
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("shop-db", "pw")
    );
}

#[test]
fn predictor_reads_pod_ip_and_probes_readyz() {
    let m = model(file_spec(), None);
    let d = children::predictor_deployment(&m, "v2", &defaults());
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    let env = &c.env.as_ref().unwrap()[0];
    assert_eq!(env.name, "POD_IP");
    assert_eq!(
        env.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "status.podIP"
    );
    let probe = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/readyz"));
    assert_eq!(c.volume_mounts.as_ref().unwrap()[0].read_only, Some(true));
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    assert!(
        d.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.len() == 1)
    );
}

#[test]
fn rollout_is_done_only_when_no_old_pod_answers() {
    let spec = file_spec();
    let m = model(
        spec.clone(),
        Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
    );
    let mut old_still_up = available("v1", 1, 2);
    old_still_up.updated = 1;
    old_still_up.total = 2;
    let plan = decide(&observe(&m, vec![], Some(old_still_up)), &defaults());
    let serving = condition(&plan, "Serving");
    assert_eq!(
        (serving.status.as_str(), serving.reason.as_str()),
        ("True", "RollingOut"),
        "the old pod still answers, so it serves, but the rollout is not done"
    );

    let plan = decide(
        &observe(&m, vec![], Some(available("v1", 1, 1))),
        &defaults(),
    );
    assert_eq!(condition(&plan, "Serving").reason, "Available");
}
