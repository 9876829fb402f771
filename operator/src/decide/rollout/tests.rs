//! Every behaviour of a progressive rollout, through `decide` (so the run's record, the models,
//! the predictor's children, the conditions and the events are checked with the rollout).

use super::{CANDIDATE_REFUSED_AFTER, RECHECK};
use crate::crd::{
    RecommenderModel, RecommenderModelSpec, RecommenderModelStatus, RolloutEndReason, RolloutStage,
    RolloutStatus, RolloutVerdict, RunOutcome, RunReason, RunRecord, RunTrigger,
};
use crate::decide::fixtures::*;
use crate::decide::{Plan, decide};
use crate::labels::{ABORT_ANNOTATION, PROMOTE_ANNOTATION};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::runtime::events::EventType;
use recommender_contract::rollout::{RolloutConfig, Stage};
use recommender_contract::stats::{
    ArmStats, Bucket, FeedbackSums, LatencyHistogram, PairedSums, RolloutStats, SuggestionCounts,
};
use std::time::Duration;

const ID: &str = "movies-v2-1795780200";
/// When the rollout (and its current step) started in these tests: ten minutes before [`NOW`].
const STARTED: &str = "2026-11-27T11:50:00Z";

/// Progressive, with a shadow stage that decides on 100 pairs and a canary of two steps.
fn progressive() -> RecommenderModelSpec {
    let mut spec = file_spec();
    spec.rollout = serde_yaml::from_str(
        "strategy: Progressive
shadow: {margin: 0.05, minSamples: 100, timeout: 30m}
canary:
  steps: [{share: 0.1, minDuration: 5m}, {share: 0.5, minDuration: 5m}]
  minFeedback: 100
  minRatedSuggestions: 30
  minRequests: 200
  stepTimeout: 30m",
    )
    .unwrap();
    spec
}

/// Paired errors of `n` ratings around a mean difference of `mean` (standard deviation 0.1).
fn paired(n: u64, mean: f64) -> PairedSums {
    let mut s = PairedSums::default();
    for i in 0..n {
        let d = mean + if i % 2 == 0 { 0.1 } else { -0.1 };
        s.n += 1;
        s.sum_difference += d;
        s.sum_squared_difference += d * d;
    }
    s
}

/// `n` requests spread evenly over 1..=4 ms.
fn latencies(n: u64) -> LatencyHistogram {
    LatencyHistogram {
        count: n,
        sum_seconds: 0.0,
        buckets: (1..=20)
            .map(|ms| Bucket {
                le: ms as f64 / 1000.0,
                count: n * ms.min(4) / 4,
            })
            .collect(),
    }
}

fn arm(feedback: u64, rated: u64, accepted: u64, requests: u64) -> ArmStats {
    ArmStats {
        requests: latencies(requests),
        feedback: FeedbackSums {
            n: feedback,
            sum_squared_error: 0.81 * feedback as f64,
            ..Default::default()
        },
        suggestions: SuggestionCounts {
            shown: 10 * rated,
            rated,
            accepted,
        },
    }
}

/// What the predictors report of the rollout: the stable arm busy and accepted 30% of the time.
fn online(paired: PairedSums, candidate: ArmStats) -> RolloutStats {
    RolloutStats {
        rollout_id: ID.into(),
        stage: Stage::Canary,
        candidate_share: 0.1,
        stable_version: Some("v1".into()),
        candidate_version: Some("v2".into()),
        stable: arm(2000, 2000, 600, 5000),
        candidate,
        paired,
    }
}

/// A candidate arm like the stable one, with enough of everything for a step.
fn healthy() -> ArmStats {
    arm(500, 500, 150, 5000)
}

fn in_progress(stage: RolloutStage, step: u32, share: f64) -> RolloutStatus {
    RolloutStatus {
        stage,
        step,
        share,
        ..RolloutStatus::starting(
            ID.into(),
            "v1".into(),
            record("v2", 2, 0.9, "2026-11-27T11:40:00Z"),
            at(STARTED),
        )
    }
}

/// v1 serves; run 2's candidate passed the gate and `rollout` rolls it out; the predictors
/// report `figures`.
fn rolling(
    spec: RecommenderModelSpec,
    rollout: RolloutStatus,
    figures: Option<RolloutStats>,
) -> RecommenderModel {
    let mut status = serving_status(&spec, "2026-11-27T11:00:00Z");
    status.serving = status.models.last().cloned();
    status.runs.last = 2;
    status.runs.last_completed = 2;
    status.history.push(RunRecord {
        run: 2,
        version: "v2".into(),
        trigger: RunTrigger::Stale,
        started_at: at("2026-11-27T11:30:00Z"),
        finished_at: at("2026-11-27T11:40:00Z"),
        outcome: RunOutcome::Succeeded,
        reason: RunReason::RollingOut,
        message: "v2 passed the gate (rmse 0.9000, mae 0.7000): rolling out".into(),
        metrics: None,
        duration_seconds: None,
        comparison: None,
        search: None,
    });
    status.rollout = Some(rollout);
    if let Some(figures) = figures {
        let mut o = online_status();
        o.rollout = Some(figures);
        status.online = Some(o);
    }
    model(spec, Some(status))
}

fn online_status() -> crate::crd::OnlineStatus {
    serde_json::from_value(serde_json::json!({
        "observedAt": NOW, "version": "v1", "replicas": 2, "feedback": 0,
        "suggestionsShown": 0, "suggestionsRated": 0, "suggestionsAccepted": 0,
        "activeUsers": 0, "engagedUsers": 0, "usersWindowSeconds": 3600,
        "userCountRelativeError": 0.0081
    }))
    .unwrap()
}

/// The predictor Deployment as the rollout left it: v1 with the candidate v2.
fn holding_v2() -> crate::observe::RolloutState {
    crate::observe::RolloutState {
        candidate: Some("v2".into()),
        ..available("v1", 1, 1)
    }
}

fn look(m: &RecommenderModel) -> Plan {
    decide_for(m, vec![], Some(holding_v2()))
}

fn look_at(m: &RecommenderModel, now: &str) -> Plan {
    let mut observed = observe(m, vec![], Some(holding_v2()));
    observed.now = at(now);
    decide(&observed, &config(m), &defaults())
}

fn rollout(plan: &Plan) -> &RolloutStatus {
    plan.status.rollout.as_ref().expect("a rollout")
}

fn record_of(plan: &Plan, run: u32) -> &RunRecord {
    plan.status
        .history
        .iter()
        .rev()
        .find(|r| r.run == run)
        .expect("the run's record")
}

fn args(plan: &Plan) -> String {
    pod_args(
        &plan
            .deployment
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .template,
    )
}

/// The first container's arguments, as one line.
fn pod_args(template: &PodTemplateSpec) -> String {
    template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ")
}

fn config_map(plan: &Plan) -> RolloutConfig {
    let cm = plan.rollout_config.as_ref().expect("the rollout ConfigMap");
    assert_eq!(cm.metadata.name.as_deref(), Some("movies-rollout"));
    RolloutConfig::parse(&cm.data.as_ref().unwrap()["rollout.json"]).unwrap()
}

fn events(plan: &Plan) -> Vec<(EventType, &str)> {
    plan.events
        .iter()
        .map(|e| (e.type_, e.reason.as_str()))
        .collect()
}

/// After the decision, looked at again with its status (as the next reconcile, or a restarted
/// operator, would).
fn again(m: &RecommenderModel, plan: &Plan) -> RecommenderModel {
    let mut next = m.clone();
    next.status = Some(plan.status.clone());
    next
}

#[test]
fn a_candidate_that_passes_the_gate_starts_a_rollout_instead_of_serving() {
    let spec = progressive();
    let mut status = serving_status(&spec, "2026-11-27T11:00:00Z");
    status.serving = status.models.last().cloned();
    let m = model(spec.clone(), Some(status));
    let plan = decide_for(
        &m,
        vec![succeeded(2, &spec, 0.9, 0.7)],
        Some(available("v1", 1, 1)),
    );
    assert_eq!(plan.status.models.len(), 1, "v2 is not promoted yet");
    assert_eq!(plan.status.serving.as_ref().unwrap().version, "v1");
    let r = rollout(&plan);
    assert_eq!(r.id, "movies-v2-1795780800");
    assert_eq!((r.stage, r.step, r.share), (RolloutStage::Shadow, 0, 0.0));
    assert_eq!(
        (r.stable_version.as_str(), r.candidate_version.as_str()),
        ("v1", "v2")
    );
    assert_eq!((r.started_at, r.step_started_at), (now(), now()));
    let record = record_of(&plan, 2);
    assert_eq!(
        (record.outcome, &record.reason),
        (RunOutcome::Succeeded, &RunReason::RollingOut)
    );
    assert_eq!(plan.status.run_counts.succeeded, 0, "counted once decided");
    assert!(plan.finished.is_empty());
    // The predictors get the candidate and the config; the config says shadow.
    let sha = "ef".repeat(32);
    assert!(
        args(&plan).ends_with(&format!(
            "--candidate-version v2 --candidate-sha256 {sha} --rollout-config /etc/recommender/rollout/rollout.json"
        )),
        "{}",
        args(&plan)
    );
    assert_eq!(pod_labels(&plan)[crate::labels::VERSION], "v1");
    let cm = config_map(&plan);
    assert_eq!(
        (
            cm.rollout_id.as_str(),
            cm.stage,
            cm.candidate_version.as_str(),
            cm.candidate_share
        ),
        ("movies-v2-1795780800", Stage::Shadow, "v2", 0.0)
    );
    let rolling_out = condition(&plan, "RollingOut");
    assert_eq!(
        (rolling_out.status.as_str(), rolling_out.reason.as_str()),
        ("True", "Shadow")
    );
    let promoted = condition(&plan, "Promoted");
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_str()),
        ("Unknown", "RollingOut")
    );
    assert!(events(&plan).contains(&(EventType::Normal, "RolloutStarted")));
    assert!(
        plan.requeue_after
            .is_some_and(|d| d <= RECHECK + Duration::from_millis(100))
    );
}

#[test]
fn the_first_model_and_immediate_rollouts_are_promoted_at_the_gate() {
    let spec = progressive();
    let first = decide_for(
        &model(spec.clone(), None),
        vec![succeeded(1, &spec, 0.9, 0.7)],
        None,
    );
    assert_eq!(
        first.status.models.len(),
        1,
        "nothing to compare a first model with"
    );
    assert!(first.status.rollout.is_none() && first.rollout_config.is_none());
    assert_eq!(condition(&first, "RollingOut").reason, "NoRollout");

    let immediate = file_spec();
    let mut status = serving_status(&immediate, "2026-11-27T11:00:00Z");
    status.serving = status.models.last().cloned();
    let plan = decide_for(
        &model(immediate.clone(), Some(status)),
        vec![succeeded(2, &immediate, 0.9, 0.7)],
        Some(available("v1", 1, 1)),
    );
    assert_eq!(plan.status.serving.unwrap().version, "v2");
    assert!(plan.status.rollout.is_none());
    assert!(
        !plan
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "RollingOut"),
        "no RollingOut condition under Immediate"
    );
}

#[test]
fn shadow_passes_to_the_first_canary_step_with_its_counts() {
    let spec = progressive();
    let m = rolling(
        spec,
        in_progress(RolloutStage::Shadow, 0, 0.0),
        Some(online(paired(400, -0.05), arm(7, 3, 1, 40))),
    );
    let plan = look(&m);
    let r = rollout(&plan);
    assert_eq!((r.stage, r.step, r.share), (RolloutStage::Canary, 0, 0.1));
    assert_eq!(r.step_started_at, now());
    assert_eq!(
        (
            r.step_start_feedback,
            r.step_start_rated_suggestions,
            r.step_start_requests
        ),
        (7, 3, 40),
        "a step counts what its users bring after it started"
    );
    let test = r.test.as_ref().unwrap();
    assert_eq!(test.samples, 400);
    assert!(test.mean_difference.unwrap() < 0.0);
    assert!(r.message.contains("shadow stage passed"), "{}", r.message);
    let cm = config_map(&plan);
    assert_eq!((cm.stage, cm.candidate_share), (Stage::Canary, 0.1));
    assert!(
        args(&plan).contains("--candidate-version v2"),
        "the pods keep the candidate"
    );
    assert_eq!(condition(&plan, "RollingOut").reason, "Canary");
    assert!(events(&plan).contains(&(EventType::Normal, "RolloutAdvanced")));
}

#[test]
fn shadow_waits_for_its_minimum_and_a_verdict() {
    let m = rolling(
        progressive(),
        in_progress(RolloutStage::Shadow, 0, 0.0),
        Some(online(paired(50, 0.3), arm(0, 0, 0, 0))),
    );
    let plan = look(&m);
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.verdict),
        (RolloutStage::Shadow, RolloutVerdict::Continue)
    );
    assert!(
        r.message.contains("100 needed before a verdict"),
        "{}",
        r.message
    );
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn a_worse_candidate_is_aborted_in_the_shadow_stage() {
    let m = rolling(
        progressive(),
        in_progress(RolloutStage::Shadow, 0, 0.0),
        Some(online(paired(400, 0.2), arm(0, 0, 0, 0))),
    );
    let plan = look(&m);
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.end_reason, r.share),
        (
            RolloutStage::Aborted,
            Some(RolloutEndReason::WorseAccuracy),
            0.0
        )
    );
    assert_eq!(r.ended_at, Some(now()));
    assert!(r.message.contains("worse on live ratings"), "{}", r.message);
    // The stable model serves everyone: share 0 now, and the pods drop the candidate.
    assert_eq!(config_map(&plan).candidate_share, 0.0);
    assert!(
        !args(&plan).contains("--candidate-version"),
        "{}",
        args(&plan)
    );
    assert_eq!(plan.status.models.len(), 1);
    let record = record_of(&plan, 2);
    assert_eq!(
        (record.outcome, &record.reason),
        (RunOutcome::Rejected, &RunReason::RejectedOnline)
    );
    assert_eq!(record.message, r.message);
    assert_eq!(plan.status.run_counts.rejected, 1);
    assert_eq!(plan.finished, vec![record.clone()]);
    assert_eq!(plan.rollouts_ended, vec![RolloutEndReason::WorseAccuracy]);
    let c = condition(&plan, "RollingOut");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Aborted"));
    assert!(c.message.contains("WorseAccuracy"), "{}", c.message);
    assert_eq!(condition(&plan, "Promoted").reason, "RejectedOnline");
    assert!(events(&plan).contains(&(EventType::Warning, "RolloutAborted")));

    // The candidate's artifact stays while pods hold it...
    assert!(plan.cleanup_job.is_none());
    // ...and the next look, once they no longer do, deletes it; the rollout stays as it ended.
    let after = decide_for(&again(&m, &plan), vec![], Some(available("v1", 1, 1)));
    assert_eq!(after.status.rollout, plan.status.rollout);
    assert!(after.rollouts_ended.is_empty() && after.finished.is_empty());
    assert_eq!(after.status.run_counts.rejected, 1);
    let cleanup = after
        .cleanup_job
        .as_ref()
        .expect("a cleanup of the rejected candidate");
    let args = pod_args(&cleanup.spec.as_ref().unwrap().template);
    assert!(args.contains("--keep v1") && !args.contains("v2"), "{args}");
}

#[test]
fn a_step_passes_only_after_its_min_duration_and_its_counts_since_it_started() {
    // The step started 10 minutes ago with its minimum of 5 met: it passes.
    let canary = in_progress(RolloutStage::Canary, 0, 0.1);
    let plan = look(&rolling(
        progressive(),
        canary.clone(),
        Some(online(paired(2000, 0.0), healthy())),
    ));
    let r = rollout(&plan);
    assert_eq!((r.stage, r.step, r.share), (RolloutStage::Canary, 1, 0.5));
    assert_eq!(r.step_start_feedback, 500);
    assert_eq!(config_map(&plan).candidate_share, 0.5);

    // Started 2 minutes ago: the evidence passes, the time does not yet.
    let mut young = canary.clone();
    young.step_started_at = at("2026-11-27T11:58:00Z");
    let plan = look(&rolling(
        progressive(),
        young,
        Some(online(paired(2000, 0.0), healthy())),
    ));
    let r = rollout(&plan);
    assert_eq!((r.step, r.verdict), (0, RolloutVerdict::Pass));
    assert!(r.message.contains("lasts at least 300s"), "{}", r.message);

    // 500 feedback ratings in all, 450 of them before the step started: 50 of 100.
    let mut counted = canary;
    counted.step_start_feedback = 450;
    let plan = look(&rolling(
        progressive(),
        counted,
        Some(online(paired(2000, 0.0), healthy())),
    ));
    let r = rollout(&plan);
    assert_eq!((r.step, r.verdict), (0, RolloutVerdict::Continue));
    assert!(
        r.message.contains("50/100 feedback ratings"),
        "{}",
        r.message
    );
    let g = r.guardrails.as_ref().unwrap();
    assert!(!g.accuracy.failed && !g.acceptance.failed && !g.latency.failed);
}

#[test]
fn the_last_step_promotes_as_the_gate_would() {
    let plan = look(&rolling(
        progressive(),
        in_progress(RolloutStage::Canary, 1, 0.5),
        Some(online(paired(2000, 0.0), healthy())),
    ));
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.end_reason, r.share),
        (RolloutStage::Promoted, Some(RolloutEndReason::Passed), 1.0)
    );
    let versions: Vec<&str> = plan
        .status
        .models
        .iter()
        .map(|m| m.version.as_str())
        .collect();
    assert_eq!(versions, ["v1", "v2"]);
    assert_eq!(plan.status.serving.as_ref().unwrap().version, "v2");
    assert_eq!(pod_labels(&plan)[crate::labels::VERSION], "v2");
    assert!(
        !args(&plan).contains("--candidate"),
        "one model again: {}",
        args(&plan)
    );
    let record = record_of(&plan, 2);
    assert_eq!(
        (record.outcome, &record.reason),
        (RunOutcome::Succeeded, &RunReason::Promoted)
    );
    assert_eq!(plan.status.run_counts.succeeded, 1);
    assert_eq!(condition(&plan, "Promoted").reason, "Promoted");
    assert_eq!(condition(&plan, "RollingOut").reason, "Promoted");
    assert!(events(&plan).contains(&(EventType::Normal, "Promoted")));
    assert_eq!(plan.rollouts_ended, vec![RolloutEndReason::Passed]);
}

#[test]
fn a_failing_guardrail_aborts_the_canary() {
    let plan = look(&rolling(
        progressive(),
        in_progress(RolloutStage::Canary, 0, 0.1),
        Some(online(paired(2000, 0.0), arm(500, 500, 50, 5000))),
    ));
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.end_reason),
        (
            RolloutStage::Aborted,
            Some(RolloutEndReason::LowerAcceptance)
        )
    );
    assert!(
        r.message
            .contains("the acceptance guardrail failed at canary step 1 at 10%"),
        "{}",
        r.message
    );
    assert!(r.guardrails.as_ref().unwrap().acceptance.failed);
    assert_eq!(config_map(&plan).candidate_share, 0.0);
}

#[test]
fn a_timed_out_stage_does_what_on_inconclusive_says() {
    let undecided = || Some(online(paired(100, 0.025), arm(0, 0, 0, 0)));
    let timed_out = |on: &str| {
        let mut spec = progressive();
        spec.rollout.shadow.on_inconclusive = serde_yaml::from_str(on).unwrap();
        let mut r = in_progress(RolloutStage::Shadow, 0, 0.0);
        r.step_started_at = at("2026-11-27T11:29:00Z");
        rolling(spec, r, undecided())
    };
    // Before the timeout nothing happens.
    let mut early = in_progress(RolloutStage::Shadow, 0, 0.0);
    early.step_started_at = at("2026-11-27T11:31:00Z");
    let plan = look(&rolling(progressive(), early, undecided()));
    assert_eq!(rollout(&plan).verdict, RolloutVerdict::Continue);

    let held = timed_out("Hold");
    let plan = look(&held);
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.verdict),
        (RolloutStage::Shadow, RolloutVerdict::Inconclusive)
    );
    assert!(
        r.message.contains("inconclusive after 1800s, held"),
        "{}",
        r.message
    );
    assert_eq!(condition(&plan, "RollingOut").reason, "Inconclusive");
    assert!(events(&plan).contains(&(EventType::Warning, "RolloutInconclusive")));
    let still = look(&again(&held, &plan));
    assert_eq!(rollout(&still).verdict, RolloutVerdict::Inconclusive);
    assert!(
        still.events.is_empty(),
        "announced once: {:?}",
        still.events
    );
    // Evidence that decides later still decides.
    let mut decided = again(&held, &plan);
    decided
        .status
        .as_mut()
        .unwrap()
        .online
        .as_mut()
        .unwrap()
        .rollout = Some(online(paired(4000, -0.05), arm(0, 0, 0, 0)));
    assert_eq!(rollout(&look(&decided)).stage, RolloutStage::Canary);

    let plan = look(&timed_out("Abort"));
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.end_reason),
        (RolloutStage::Aborted, Some(RolloutEndReason::Inconclusive))
    );
    assert_eq!(record_of(&plan, 2).reason, RunReason::RejectedOnline);

    let plan = look(&timed_out("Proceed"));
    let r = rollout(&plan);
    assert_eq!((r.stage, r.step, r.share), (RolloutStage::Canary, 0, 0.1));
    assert!(r.message.contains("proceeding"), "{}", r.message);
}

#[test]
fn a_canary_step_times_out_by_its_own_timeout() {
    let mut spec = progressive();
    spec.rollout.canary.on_inconclusive = crate::crd::OnInconclusive::Abort;
    let mut r = in_progress(RolloutStage::Canary, 1, 0.5);
    r.step_started_at = at("2026-11-27T11:29:59Z");
    // Too few requests for the step to pass.
    let plan = look(&rolling(
        spec,
        r,
        Some(online(paired(2000, 0.0), arm(500, 500, 150, 100))),
    ));
    let r = rollout(&plan);
    assert_eq!(r.end_reason, Some(RolloutEndReason::Inconclusive));
    assert!(
        r.message.contains("canary step 2 timed out"),
        "{}",
        r.message
    );
}

#[test]
fn pause_and_suspend_hold_the_rollout_and_stop_its_clock() {
    let mut spec = progressive();
    spec.rollout.paused = true;
    let m = rolling(
        spec.clone(),
        in_progress(RolloutStage::Canary, 0, 0.1),
        Some(online(paired(2000, 0.0), healthy())),
    );
    let plan = look(&m);
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.step, r.share),
        (RolloutStage::Canary, 0, 0.1),
        "held, though it would pass"
    );
    assert_eq!(r.paused_at, Some(now()));
    assert!(
        r.message.starts_with("held by spec.rollout.paused"),
        "{}",
        r.message
    );
    let c = condition(&plan, "RollingOut");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Paused"));
    assert!(events(&plan).contains(&(EventType::Normal, "RolloutPaused")));
    assert_eq!(config_map(&plan).candidate_share, 0.1);

    // Held for an hour: longer than the step's timeout, which does not run while paused.
    let held = again(&m, &plan);
    let plan = look_at(&held, "2026-11-27T13:00:00Z");
    assert_eq!(rollout(&plan).paused_at, Some(now()));
    assert_eq!(rollout(&plan).stage, RolloutStage::Canary);

    // Resumed: the step's clock moves on by the hour held.
    let mut resumed = again(&held, &plan);
    resumed.spec.rollout.paused = false;
    resumed
        .status
        .as_mut()
        .unwrap()
        .online
        .as_mut()
        .unwrap()
        .rollout = Some(online(paired(2000, 0.0), arm(50, 50, 15, 5000)));
    let plan = look_at(&resumed, "2026-11-27T13:00:00Z");
    let r = rollout(&plan);
    assert_eq!(r.paused_at, None);
    assert_eq!(
        r.step_started_at,
        at("2026-11-27T12:50:00Z"),
        "11:50 + the hour held"
    );
    assert_eq!(
        r.verdict,
        RolloutVerdict::Continue,
        "not timed out: 10 of 30 minutes ran"
    );
    assert!(events(&plan).contains(&(EventType::Normal, "RolloutResumed")));

    // spec.suspend holds it too.
    let mut suspended = progressive();
    suspended.suspend = true;
    let plan = look(&rolling(
        suspended,
        in_progress(RolloutStage::Shadow, 0, 0.0),
        Some(online(paired(400, -0.05), arm(0, 0, 0, 0))),
    ));
    assert_eq!(rollout(&plan).stage, RolloutStage::Shadow);
    assert!(rollout(&plan).message.starts_with("held by spec.suspend"));
}

#[test]
fn a_worse_candidate_is_aborted_even_while_paused() {
    let mut spec = progressive();
    spec.rollout.paused = true;
    let plan = look(&rolling(
        spec,
        in_progress(RolloutStage::Canary, 0, 0.1),
        Some(online(paired(2000, 0.0), arm(500, 500, 50, 5000))),
    ));
    assert_eq!(
        rollout(&plan).end_reason,
        Some(RolloutEndReason::LowerAcceptance)
    );
}

#[test]
fn a_pin_stops_the_rollout_without_rejecting_the_candidate() {
    let mut spec = progressive();
    spec.pinned_version = Some("v1".into());
    let plan = look(&rolling(
        spec.clone(),
        in_progress(RolloutStage::Canary, 0, 0.1),
        Some(online(paired(2000, 0.0), healthy())),
    ));
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.end_reason),
        (RolloutStage::Aborted, Some(RolloutEndReason::Pinned))
    );
    let record = record_of(&plan, 2);
    assert_eq!(
        (record.outcome, &record.reason),
        (RunOutcome::Rejected, &RunReason::RolloutStopped)
    );
    assert_eq!(condition(&plan, "Promoted").reason, "RolloutStopped");
    assert_eq!(plan.rollouts_ended, vec![RolloutEndReason::Pinned]);

    // A candidate passing the gate while pinned is stopped at once.
    let mut status = serving_status(&spec, "2026-11-27T11:00:00Z");
    status.serving = status.models.last().cloned();
    let plan = decide_for(
        &model(spec.clone(), Some(status)),
        vec![succeeded(2, &spec, 0.9, 0.7)],
        Some(available("v1", 1, 1)),
    );
    assert_eq!(rollout(&plan).end_reason, Some(RolloutEndReason::Pinned));
    assert!(!args(&plan).contains("--candidate"));
}

#[test]
fn a_newer_candidate_supersedes_the_rollout_in_progress() {
    let spec = progressive();
    let mut m = rolling(
        spec.clone(),
        in_progress(RolloutStage::Canary, 0, 0.1),
        Some(online(paired(100, 0.0), arm(5, 5, 1, 50))),
    );
    m.status.as_mut().unwrap().runs.last = 3;
    let plan = decide_for(
        &m,
        vec![succeeded(3, &spec, 0.88, 0.69)],
        Some(available("v1", 1, 1)),
    );
    let record = record_of(&plan, 2);
    assert_eq!(
        (record.outcome, &record.reason),
        (RunOutcome::Rejected, &RunReason::RolloutStopped)
    );
    assert!(
        record.message.contains("superseded by v3"),
        "{}",
        record.message
    );
    let r = rollout(&plan);
    assert_eq!(
        (r.candidate_version.as_str(), r.stage),
        ("v3", RolloutStage::Shadow)
    );
    assert_eq!(r.stable_version, "v1");
    assert_eq!(record_of(&plan, 3).reason, RunReason::RollingOut);
    assert_eq!(plan.rollouts_ended, vec![RolloutEndReason::Superseded]);
    assert!(args(&plan).contains("--candidate-version v3"));
    assert_eq!(config_map(&plan).candidate_version, "v3");
}

#[test]
fn a_restarted_operator_resumes_the_same_stage_share_and_times() {
    let mut r = in_progress(RolloutStage::Canary, 1, 0.5);
    r.step_started_at = at("2026-11-27T11:58:00Z");
    r.step_start_feedback = 480;
    let m = rolling(progressive(), r, Some(online(paired(2000, 0.0), healthy())));
    let first = look(&m);
    // A new operator process knows nothing but the status it reads.
    let second = look(&again(&m, &first));
    assert_eq!(first.status.rollout, second.status.rollout);
    let r = rollout(&second);
    assert_eq!((r.stage, r.step, r.share), (RolloutStage::Canary, 1, 0.5));
    assert_eq!(r.step_started_at, at("2026-11-27T11:58:00Z"));
    assert_eq!(config_map(&second).candidate_share, 0.5);
    assert_eq!(first.deployment, second.deployment, "no pod restarts");
    assert!(second.events.is_empty(), "{:?}", second.events);
}

#[test]
fn promote_and_abort_annotations_act_on_their_rollout_only() {
    let annotated = |key: &str, value: &str| {
        let mut m = rolling(
            progressive(),
            in_progress(RolloutStage::Shadow, 0, 0.0),
            Some(online(paired(50, 0.0), arm(0, 0, 0, 0))),
        );
        m.metadata.annotations = Some([(key.to_string(), value.to_string())].into());
        look(&m)
    };
    let plan = annotated(PROMOTE_ANNOTATION, ID);
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.end_reason),
        (
            RolloutStage::Promoted,
            Some(RolloutEndReason::ManualPromote)
        )
    );
    assert!(
        r.message
            .contains("the remaining shadow stage and 2 canary step(s) were skipped"),
        "{}",
        r.message
    );
    assert_eq!(plan.status.serving.as_ref().unwrap().version, "v2");

    let plan = annotated(ABORT_ANNOTATION, ID);
    let r = rollout(&plan);
    assert_eq!(
        (r.stage, r.end_reason),
        (RolloutStage::Aborted, Some(RolloutEndReason::ManualAbort))
    );
    assert_eq!(record_of(&plan, 2).reason, RunReason::RejectedOnline);
    assert_eq!(plan.status.serving.as_ref().unwrap().version, "v1");

    for key in [PROMOTE_ANNOTATION, ABORT_ANNOTATION] {
        let stale = annotated(key, "movies-v1-1700000000");
        assert_eq!(
            rollout(&stale).stage,
            RolloutStage::Shadow,
            "{key} naming another rollout"
        );
    }
}

#[test]
fn a_candidate_the_predictors_refuse_is_aborted_after_a_grace() {
    let mut refused = online(paired(0, 0.0), arm(0, 0, 0, 0));
    refused.candidate_version = None;
    let m = rolling(
        progressive(),
        in_progress(RolloutStage::Shadow, 0, 0.0),
        Some(refused),
    );
    let plan = look(&m);
    assert_eq!(rollout(&plan).candidate_missing_since, Some(now()));
    assert_eq!(rollout(&plan).stage, RolloutStage::Shadow);
    let grace =
        Timestamp::from_second(now().as_second() + CANDIDATE_REFUSED_AFTER.as_secs() as i64)
            .unwrap()
            .to_string();
    let plan = look_at(&again(&m, &plan), &grace);
    let r = rollout(&plan);
    assert_eq!(r.end_reason, Some(RolloutEndReason::CandidateRefused));
    assert!(r.message.contains("refused its artifact"), "{}", r.message);
    assert_eq!(record_of(&plan, 2).reason, RunReason::RejectedOnline);

    // Loaded again before the grace ran out: forgotten.
    let mut back = again(&m, &look(&m));
    back.status
        .as_mut()
        .unwrap()
        .online
        .as_mut()
        .unwrap()
        .rollout = Some(online(paired(10, 0.0), arm(0, 0, 0, 0)));
    assert_eq!(rollout(&look(&back)).candidate_missing_since, None);
}

#[test]
fn figures_of_another_rollout_are_not_judged() {
    let mut other = online(paired(400, 0.2), arm(0, 0, 0, 0));
    other.rollout_id = "movies-v9-1".into();
    let plan = look(&rolling(
        progressive(),
        in_progress(RolloutStage::Shadow, 0, 0.0),
        Some(other),
    ));
    let r = rollout(&plan);
    assert_eq!((r.stage, r.test.as_ref()), (RolloutStage::Shadow, None));
    assert!(
        r.message.contains("waiting for the predictors' figures"),
        "{}",
        r.message
    );
}

#[test]
fn switching_to_immediate_promotes_the_candidate() {
    let mut spec = progressive();
    spec.rollout.strategy = crate::crd::RolloutStrategy::Immediate;
    let plan = look(&rolling(
        spec,
        in_progress(RolloutStage::Shadow, 0, 0.0),
        None,
    ));
    let r = rollout(&plan);
    assert_eq!(r.end_reason, Some(RolloutEndReason::ManualPromote));
    assert_eq!(plan.status.serving.as_ref().unwrap().version, "v2");
    // The last rollout stays on record, and with it the condition.
    assert_eq!(condition(&plan, "RollingOut").reason, "Promoted");
}

#[test]
fn rollout_ids_are_bounded() {
    let id = super::rollout_id(&"m".repeat(200), "v12", now());
    assert_eq!(id.len(), 128);
    assert_eq!(
        super::rollout_id("movies", "v7", now()),
        "movies-v7-1795780800"
    );
}

#[test]
fn an_ended_record_missing_from_the_history_is_added_again() {
    let mut m = rolling(
        progressive(),
        in_progress(RolloutStage::Shadow, 0, 0.0),
        Some(online(paired(400, 0.2), arm(0, 0, 0, 0))),
    );
    let status: &mut RecommenderModelStatus = m.status.as_mut().unwrap();
    status.history.clear();
    let plan = look(&m);
    let record = record_of(&plan, 2);
    assert_eq!(
        (record.version.as_str(), record.outcome, &record.reason),
        ("v2", RunOutcome::Rejected, &RunReason::RejectedOnline)
    );
}
