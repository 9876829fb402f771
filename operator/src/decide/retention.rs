//! Artifact retention: the model store keeps the serving model, the newest `modelStore.keep`
//! promoted models (the rollback window `pinnedVersion` can name, which `status.models` lists)
//! and nothing else. What falls out (rejected candidates, superseded models) is deleted by a
//! cleanup Job, started only once the predictor rollout has settled so that no pod may still
//! load a version being deleted.

use super::serving::Serving;
use super::{Decided, PlannedEvent, Said};
use crate::children::{self, Defaults};
use crate::crd::{ModelRecord, RunCounts, RunLedger, RunOutcome, RunRecord};
use crate::observe::{Observed, RolloutState};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

/// Trims `status.models` to the newest `keep`, and the pinned one wherever it is: a version
/// outside the list is one whose artifact is going.
pub(super) fn trim(models: &mut Vec<ModelRecord>, keep: u32, pin: Option<&str>) {
    let first_kept = models.len().saturating_sub(keep as usize);
    let mut index = 0;
    models.retain(|m| {
        index += 1;
        index > first_kept || Some(m.version.as_str()) == pin
    });
}

/// What the cleanup reads of the status: the runs recorded and the models kept.
pub(super) struct Window<'a> {
    pub history: &'a [RunRecord],
    pub models: &'a [ModelRecord],
    pub counts: RunCounts,
    /// The candidate of the rollout in progress: the predictors hold it too.
    pub rolling: Option<&'a str>,
}

/// A cleanup Job to start, if any.
pub(super) struct Cleanup {
    pub job: Option<Job>,
    pub said: Said,
}

/// A cleanup Job, when a run since the last cleanup left something outside the window and the
/// rollout has settled; it records the runs it covers in `runs.cleanedThrough`.
pub(super) fn cleanup(
    observed: &Observed,
    serving: &Serving,
    defaults: &Defaults,
    window: Window,
    runs: &mut RunLedger,
) -> Cleanup {
    let mut said = Said::default();
    let (model, rollout) = (observed.model, observed.rollout.as_ref());
    let (since, through) = (runs.cleaned_through, runs.last_completed);
    let produced = window
        .history
        .iter()
        .filter(|r| r.run > since && r.run <= through);
    let (mut rejected, mut promoted) = (false, false);
    for record in produced {
        rejected |= record.outcome == RunOutcome::Rejected;
        promoted |= record.outcome == RunOutcome::Succeeded;
    }
    // A promotion pushes the oldest model out only once more than `keep` were ever promoted.
    let outgrown = promoted && window.counts.succeeded > u64::from(model.spec.model_store.keep);
    // The cleanup pod would use the store's Secrets, which the user has not allowed.
    if !(rejected || outgrown)
        || !settled(serving, window.rolling, rollout)
        || !super::store::pods_allowed(observed)
    {
        return Cleanup { job: None, said };
    }
    let pin = model.spec.pinned_version.as_deref();
    let mut keep = kept_versions(window.models, serving, pin, rollout);
    if let Some(candidate) = window.rolling.filter(|c| !keep.iter().any(|k| k == c)) {
        keep.push(candidate.to_string());
        keep.sort_by_key(|v| v.trim_start_matches('v').parse::<u64>().unwrap_or(u64::MAX));
    }
    let job = children::cleanup_job(model, &keep, through, defaults);
    said.event(PlannedEvent::normal(
        Decided::CleanupStarted,
        "Cleanup",
        &format!(
            "{} deletes the artifacts of runs up to {through} except {}",
            children::cleanup_job_name(&model.name_any(), through),
            if keep.is_empty() {
                "none".to_string()
            } else {
                keep.join(", ")
            }
        ),
    ));
    runs.cleaned_through = through;
    Cleanup {
        job: Some(job),
        said,
    }
}

/// Every pod of the predictor runs the serving version, with the candidate of the rollout in
/// progress or none (or there is no predictor): nothing can load an older artifact, or the
/// candidate of a rollout that ended, any more.
fn settled(serving: &Serving, candidate: Option<&str>, rollout: Option<&RolloutState>) -> bool {
    let Some(model) = &serving.model else {
        return true;
    };
    rollout.is_some_and(|r| {
        r.version.as_deref() == Some(model.version.as_str())
            && r.candidate.as_deref() == candidate
            && r.observed
            && r.total <= r.updated
    })
}

/// The promoted models in the window, the serving (or pinned) one and what the Deployment runs.
fn kept_versions(
    models: &[ModelRecord],
    serving: &Serving,
    pin: Option<&str>,
    rollout: Option<&RolloutState>,
) -> Vec<String> {
    let mut keep: Vec<String> = models.iter().map(|m| m.version.clone()).collect();
    let extra = [
        serving.model.as_ref().map(|m| m.version.clone()),
        pin.map(str::to_string),
        rollout.and_then(|r| r.version.clone()),
    ];
    for version in extra.into_iter().flatten() {
        if !keep.contains(&version) {
            keep.push(version);
        }
    }
    keep.sort_by_key(|v| v.trim_start_matches('v').parse::<u64>().unwrap_or(u64::MAX));
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RecommenderModel, RunReason, RunTrigger};
    use crate::decide::fixtures::*;

    fn history(run: u32, outcome: RunOutcome) -> RunRecord {
        RunRecord {
            run,
            version: format!("v{run}"),
            trigger: RunTrigger::Requested,
            started_at: at("2026-11-27T10:00:00Z"),
            finished_at: at("2026-11-27T10:01:00Z"),
            outcome,
            reason: RunReason::Promoted,
            message: String::new(),
            metrics: None,
            duration_seconds: None,
            comparison: None,
            search: None,
        }
    }

    /// v1..v`promoted` promoted (all in `status.models`), then `rejected` runs rejected.
    fn at_rest(keep: u32, promoted: u32, rejected: u32) -> RecommenderModel {
        let mut spec = file_spec();
        spec.model_store.keep = keep;
        let mut status = serving_status(&spec, "2026-11-27T11:00:00Z");
        status.models = (1..=promoted)
            .map(|n| record(&format!("v{n}"), n, 0.94, "2026-11-27T11:00:00Z"))
            .collect();
        status.history = (1..=promoted)
            .map(|n| history(n, RunOutcome::Succeeded))
            .chain((promoted + 1..=promoted + rejected).map(|n| history(n, RunOutcome::Rejected)))
            .collect();
        status.run_counts.succeeded = promoted.into();
        status.run_counts.rejected = rejected.into();
        status.runs.last = promoted + rejected;
        status.runs.last_completed = promoted + rejected;
        model(spec, Some(status))
    }

    fn cleanup_args(plan: &crate::decide::Plan) -> Option<String> {
        plan.cleanup_job
            .as_ref()
            .map(crate::children::testing::args)
    }

    #[test]
    fn the_window_keeps_the_newest_and_the_pin() {
        let m = at_rest(2, 5, 0);
        let mut models = m.status.clone().unwrap().models;
        trim(&mut models, 2, None);
        let versions: Vec<_> = models.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["v4", "v5"]);
        let mut models = m.status.unwrap().models;
        trim(&mut models, 2, Some("v1"));
        let versions: Vec<_> = models.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v4", "v5"]);
    }

    #[test]
    fn a_rejected_candidate_is_cleaned_up_once_the_rollout_settled() {
        let m = at_rest(2, 2, 1);
        let rolling = {
            let mut r = available("v2", 1, 1);
            r.total = 2;
            r
        };
        let plan = decide_for(&m, vec![], Some(rolling));
        assert_eq!(cleanup_args(&plan), None, "an old pod may still load v1");

        let plan = decide_for(&m, vec![], Some(available("v2", 1, 1)));
        assert_eq!(
            cleanup_args(&plan).as_deref(),
            Some("prune --store /models/movies --through-run 3 --keep v1 --keep v2")
        );
        assert_eq!(plan.status.runs.cleaned_through, 3);
        assert!(plan.events.iter().any(|e| e.reason == "CleanupStarted"
            && e.note == "movies-cleanup-3 deletes the artifacts of runs up to 3 except v1, v2"));

        let mut done = m.clone();
        done.status = Some(plan.status.clone());
        let again = decide_for(&done, vec![], Some(available("v2", 1, 1)));
        assert_eq!(cleanup_args(&again), None, "once per run");
    }

    #[test]
    fn promotions_clean_up_only_once_the_window_is_full() {
        let within = decide_for(&at_rest(3, 3, 0), vec![], Some(available("v3", 1, 1)));
        assert_eq!(cleanup_args(&within), None, "v1..v3 all stay");
        let outgrown = decide_for(&at_rest(2, 3, 0), vec![], Some(available("v3", 1, 1)));
        assert_eq!(
            cleanup_args(&outgrown).as_deref(),
            Some("prune --store /models/movies --through-run 3 --keep v2 --keep v3")
        );
        let versions: Vec<_> = outgrown
            .status
            .models
            .iter()
            .map(|m| m.version.clone())
            .collect();
        assert_eq!(versions, ["v2", "v3"], "status.models is the window");
    }

    #[test]
    fn the_pinned_and_serving_versions_are_never_deleted() {
        let mut m = at_rest(1, 3, 1);
        m.spec.pinned_version = Some("v1".into());
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        assert_eq!(plan.status.serving.as_ref().unwrap().version, "v1");
        assert_eq!(
            cleanup_args(&plan).as_deref(),
            Some("prune --store /models/movies --through-run 4 --keep v1 --keep v3")
        );
        let unsettled = decide_for(&m, vec![], Some(available("v3", 1, 1)));
        assert_eq!(cleanup_args(&unsettled), None, "rolling back to v1");
        assert_eq!(
            kept_versions(
                &m.status.as_ref().unwrap().models,
                &Serving {
                    model: None,
                    pin_problem: None
                },
                Some("v2"),
                Some(&available("v7", 1, 1))
            ),
            ["v1", "v2", "v3", "v7"]
        );
    }
}
