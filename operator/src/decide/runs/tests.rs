//! Training runs through the whole decision: started, adopted, promoted or rejected, failed and
//! retried with backoff, retrained on each trigger, recorded in a bounded history.

use super::*;
use crate::crd::{Phase, RunOutcome, RunReason, RunTrigger};
use crate::decide::fixtures::*;
use crate::decide::{Plan, decide};
use crate::labels::RETRAIN_ANNOTATION;
use crate::observe::RunState;
use kube::runtime::events::EventType;
use recommender_contract::report::{Outcome, RunError};

#[test]
fn no_model_starts_run_one() {
    let m = model(file_spec(), None);
    let plan = decide_for(&m, vec![], None);
    assert_eq!(job_name(&plan).as_deref(), Some("movies-train-1"));
    let active = plan.status.runs.active.as_ref().unwrap();
    assert_eq!((active.run, active.trigger), (1, RunTrigger::NoModel));
    assert_eq!(active.started_at, now());
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
    let plan = decide_for(&m, vec![running(1, &spec)], None);
    assert!(plan.start_job.is_none(), "an existing Job must be adopted");
    let active = plan.status.runs.active.as_ref().unwrap();
    assert_eq!(active.job, "movies-train-1");
    assert_eq!(
        active.started_at,
        at("2026-11-27T11:50:00Z"),
        "from the Job"
    );
    assert_eq!(plan.status.runs.last, 1);
}

#[test]
fn candidate_passing_the_gate_is_promoted_and_served() {
    let spec = file_spec();
    let m = model(spec.clone(), None);
    let plan = decide_for(&m, vec![succeeded(1, &spec, 0.94, 0.74)], None);
    assert!(plan.start_job.is_none());
    let serving = plan.status.serving.as_ref().unwrap();
    assert_eq!(serving.version, "v1");
    assert_eq!(serving.metrics.rmse, 0.94);
    assert_eq!(serving.trained_at, at("2026-11-27T11:59:00Z"));
    assert_eq!(serving.fingerprint.as_ref().unwrap().rows, 100_000);
    let artifact = serving.artifact.as_ref().unwrap();
    assert_eq!(
        (artifact.path.as_str(), artifact.bytes),
        ("/models/movies/v1.model", 456_789)
    );
    let last = plan.status.history.last().unwrap();
    assert_eq!(last.outcome, RunOutcome::Succeeded);
    assert_eq!(
        last.finished_at,
        at("2026-11-27T11:59:01Z"),
        "the Job's completion"
    );
    assert_eq!(last.duration_seconds, Some(12.5));
    assert_eq!(condition(&plan, "Promoted").status, "True");
    assert_eq!(pod_labels(&plan)[crate::labels::VERSION], "v1");
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
            RunReason::Promoted,
            "v2 promoted",
        ),
        (
            "rmse over",
            &spec,
            1.0312,
            0.74,
            false,
            RunOutcome::Rejected,
            RunReason::GateFailed,
            "rmse 1.0312 exceeds maxRmse 1.0 by 0.0312",
        ),
        (
            "mae over",
            &spec,
            0.94,
            0.85,
            false,
            RunOutcome::Rejected,
            RunReason::GateFailed,
            "mae 0.8500 exceeds maxMae 0.8 by 0.0500",
        ),
        (
            "not better",
            &strict,
            0.95,
            0.74,
            true,
            RunOutcome::Rejected,
            RunReason::NotBetter,
            "does not beat the serving v1's rmse 0.9400",
        ),
        (
            "better",
            &strict,
            0.93,
            0.74,
            true,
            RunOutcome::Succeeded,
            RunReason::Promoted,
            "v2 promoted",
        ),
    ];
    for (name, spec, rmse, mae, has_model, outcome, reason, message) in cases {
        let mut status = serving_status(spec, "2026-11-27T00:00:00Z");
        if !has_model {
            status.models.clear();
        }
        status.runs.last = 2;
        let m = model(spec.clone(), Some(status));
        let plan = decide_for(&m, vec![succeeded(2, spec, rmse, mae)], None);
        let last = plan.status.history.last().unwrap();
        assert_eq!(last.outcome, outcome, "{name}");
        assert_eq!(last.reason, reason, "{name}");
        assert!(last.message.contains(message), "{name}: {}", last.message);
        assert!(
            last.metrics.is_some(),
            "{name}: a judged candidate keeps its metrics"
        );
        let promoted = condition(&plan, "Promoted");
        assert_eq!(promoted.reason, reason.as_str(), "{name}");
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
                        .any(|e| e.type_ == EventType::Warning && e.reason == reason.as_str())
                );
            }
        }
        assert!(
            plan.start_job.is_none(),
            "{name}: a rejected spec is not retrained in a loop"
        );
    }
}

fn failed_run(spec: &crate::crd::RecommenderModelSpec) -> crate::observe::ObservedRun {
    let mut failed_report = report("v2", 0.0, 0.0, NOW);
    failed_report.outcome = Outcome::Failed;
    failed_report.metrics = None;
    failed_report.error = Some(RunError {
        reason: "SourceUnavailable".into(),
        message: "relation \"ratings\" does not exist".into(),
    });
    run(
        2,
        spec,
        RunState::Failed {
            reason: "PodFailurePolicy".into(),
            message: "container trainer exited with 1".into(),
            report: Some(failed_report),
            finished_at: Some(now()),
        },
    )
}

#[test]
fn failed_job_is_recorded_and_retried_with_backoff_while_v1_serves() {
    let spec = file_spec();
    let mut status = serving_status(&spec, "2026-11-27T00:00:00Z");
    status.runs.last = 2;
    status.runs.trained_spec_hash = Some("old".into()); // run 2 was for a changed spec
    let m = model(spec.clone(), Some(status));
    let plan = decide_for(&m, vec![failed_run(&spec)], Some(available("v1", 1, 1)));
    let last = plan.status.history.last().unwrap();
    assert_eq!(last.outcome, RunOutcome::Failed);
    assert_eq!(last.reason, RunReason::Other("SourceUnavailable".into()));
    assert_eq!(
        last.message,
        "PodFailurePolicy: relation \"ratings\" does not exist"
    );
    assert_eq!(plan.status.runs.consecutive_failures, 1);
    assert_eq!(
        plan.status.runs.retry_after,
        Some(at("2026-11-27T12:00:30Z"))
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
    let training = condition(&plan, "Training");
    assert_eq!(training.reason, "BackingOff");
    assert_eq!(
        training.message,
        "1 consecutive failed run(s), the last (v2) SourceUnavailable: PodFailurePolicy: relation \"ratings\" does not exist; next attempt not before 2026-11-27T12:00:30Z"
    );
    assert_eq!(condition(&plan, "Serving").status, "True");
    assert!(plan.deployment.is_some());
    assert!(plan.events.iter().any(|e| e.type_ == EventType::Warning
        && e.reason == "TrainingFailed"
        && e.note.contains("run 2 failed (SourceUnavailable)")));

    // After the backoff, the same trigger retries as run 3.
    let mut later = m.clone();
    later.status = Some(plan.status.clone());
    let mut obs = observe(&later, vec![], Some(available("v1", 1, 1)));
    obs.now = at("2026-11-27T12:00:31Z");
    let retry = decide(&obs, &config(&later), &defaults());
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
            finished_at: Some(now()),
        },
    );
    let plan = decide_for(&m, vec![no_report], None);
    let last = plan.status.history.last().unwrap();
    assert_eq!(
        (last.outcome, &last.reason),
        (RunOutcome::Failed, &RunReason::NoReport)
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
            finished_at: Some(now()),
        },
    );
    let plan = decide_for(&m, vec![deadline], None);
    let last = plan.status.history.last().unwrap();
    assert_eq!(last.reason.as_str(), "DeadlineExceeded");
    assert!(last.message.contains("longer than specified deadline"));
}

#[test]
fn a_vanished_job_is_a_failed_run() {
    let spec = file_spec();
    let m = model(spec.clone(), None);
    let started = decide_for(&m, vec![], None);
    let mut later = m.clone();
    later.status = Some(started.status);
    let plan = decide_for(&later, vec![], None);
    let last = plan.status.history.last().unwrap();
    assert_eq!((last.run, &last.reason), (1, &RunReason::JobMissing));
    assert_eq!(plan.status.runs.consecutive_failures, 1);
    assert!(plan.start_job.is_none(), "backing off before run 2");
}

#[test]
fn a_run_lost_with_its_node_is_recorded_once_and_retried_as_the_next_run() {
    let spec = file_spec();
    let mut status = serving_status(&spec, "2026-11-27T00:00:00Z");
    status.runs.last = 2;
    status.runs.trained_spec_hash = Some("old".into());
    let m = model(spec.clone(), Some(status));
    let lost = |reason: &str| {
        run(
            2,
            &spec,
            RunState::Failed {
                reason: reason.into(),
                message:
                    "trainer pod movies-train-2-x on node node-3 was deleted by the taint manager"
                        .into(),
                report: None,
                finished_at: Some(now()),
            },
        )
    };
    let plan = decide_for(&m, vec![lost("NodeLost")], Some(available("v1", 2, 2)));
    let last = plan.status.history.last().unwrap();
    assert_eq!(
        (last.run, last.outcome, &last.reason),
        (2, RunOutcome::Failed, &RunReason::NodeLost)
    );
    assert!(last.message.contains("node-3"), "{}", last.message);
    assert_eq!(plan.finished.len(), 1);
    assert_eq!(plan.status.serving.as_ref().unwrap().version, "v1");

    // The node returns and the Job fails as well: nothing more is recorded, run 3 follows the
    // backoff.
    let mut later = m.clone();
    later.status = Some(plan.status.clone());
    let mut obs = observe(
        &later,
        vec![lost("BackoffLimitExceeded")],
        Some(available("v1", 2, 2)),
    );
    obs.now = at("2026-11-27T12:00:31Z");
    let retry = decide(&obs, &config(&later), &defaults());
    assert!(retry.finished.is_empty(), "{:?}", retry.finished);
    assert_eq!(retry.status.history, plan.status.history);
    assert_eq!(job_name(&retry).as_deref(), Some("movies-train-3"));
}

fn decide_at_rest(spec: crate::crd::RecommenderModelSpec) -> Plan {
    let at_rest = serving_status(&file_spec(), "2026-11-27T11:00:00Z");
    decide_for(
        &model(spec, Some(at_rest)),
        vec![],
        Some(available("v1", 1, 1)),
    )
}

fn trigger_of(plan: &Plan) -> Option<RunTrigger> {
    plan.status.runs.active.as_ref().map(|a| a.trigger)
}

#[test]
fn spec_change_interval_and_request_trigger_training() {
    let spec = file_spec();
    let mut changed = spec.clone();
    changed.hyperparameters.factors = 50;
    assert_eq!(
        trigger_of(&decide_at_rest(changed)),
        Some(RunTrigger::SpecChanged)
    );

    let mut replicas_only = spec.clone();
    replicas_only.predictor.replicas = 3;
    assert!(
        decide_at_rest(replicas_only).start_job.is_none(),
        "predictor settings do not retrain"
    );

    let mut interval = spec.clone();
    interval.freshness.retrain_interval = Some("30m".into());
    assert_eq!(
        trigger_of(&decide_at_rest(interval)),
        Some(RunTrigger::Interval)
    );

    let at_rest = serving_status(&spec, "2026-11-27T11:00:00Z");
    let mut m = model(spec.clone(), Some(at_rest));
    m.metadata.annotations = Some(
        [(
            RETRAIN_ANNOTATION.to_string(),
            "2026-11-27T12:00".to_string(),
        )]
        .into(),
    );
    let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
    assert_eq!(trigger_of(&plan), Some(RunTrigger::Requested));
    assert_eq!(
        plan.status.runs.handled_retrain_request.as_deref(),
        Some("2026-11-27T12:00")
    );
    let mut handled = plan.status.clone();
    handled.runs.active = None;
    m.status = Some(handled);
    let again = decide_for(&m, vec![], Some(available("v1", 1, 1)));
    assert!(
        again.start_job.is_none(),
        "a handled request is not repeated"
    );

    let plan = decide_at_rest(spec);
    assert!(plan.start_job.is_none(), "nothing to do at rest");
    assert_eq!(plan.status.phase, Phase::Serving);
    assert_eq!(condition(&plan, "Ready").status, "True");
}

#[test]
fn history_is_bounded() {
    let spec = file_spec();
    let mut m = model(spec.clone(), None);
    for n in 1..=15 {
        let plan = decide_for(&m, vec![succeeded(n, &spec, 1.5, 0.9)], None);
        m.status = Some(plan.status);
    }
    let status = m.status.unwrap();
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    assert_eq!(status.history.first().unwrap().run, 6);
    assert_eq!(status.runs.last_completed, 15);
    assert_eq!(
        status.run_counts,
        crate::crd::RunCounts {
            succeeded: 0,
            failed: 0,
            rejected: 15
        },
        "counts outlive the bounded history"
    );
}
