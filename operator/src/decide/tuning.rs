//! Tuning searches (`spec.tuning`): a run that is due first searches the hyperparameters, and
//! trains the best point found. A search is rungs of trials, one Indexed Job each (one rung
//! unless `halving`), planned by the contract's `plan` and `next_rung` so the trainer's `tune`
//! runs the same trials. `status.tuning` holds it: which run it is for, the trials of the rung in
//! flight, every trial that ended, the best. Its end decides the run: the best point is trained
//! (`Gate::Train`), or, when every trial failed or the best scores worse than the serving model,
//! the run is recorded without training (`Unrun`) and `Tuned` says why.

use super::{PlannedEvent, Said};
use crate::children::{self, Defaults, NewRung};
use crate::condition::{Desired, State, TunedReason};
use crate::crd::{
    ModelRecord, RecommenderModel, RunOutcome, RunReason, RunTrigger, SearchState, TRIALS_KEPT,
    TuningStatus,
};
use crate::observe::{Observed, ObservedRung, TrialEnd};
use crate::time;
use crate::validate::Config;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use recommender_contract::report::RunError;
use recommender_contract::tuning::{
    MAX_PASSED_RECORD_BYTES, Metric, SearchEnd, SearchRecord, TrialPlan, TrialResult, TuningSpec,
    best_of, next_rung, plan, space_fingerprint,
};

crate::condition::words! {
    /// The reason of an event about a search.
    pub enum SearchEvent {
        SearchStarted,
        RungStarted,
        SearchFinished,
    }
}

/// What a run that is due does under `spec.tuning`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Gate<'a> {
    /// No `spec.tuning`: the run trains the spec's hyperparameters.
    Untuned,
    /// A search must run first.
    Search,
    /// The run's search is still running.
    Wait,
    /// The run's search found its best point: the run trains it.
    Train(&'a TuningStatus),
}

/// What `run` (the next run's number) does, given the latest search.
pub(super) fn gate<'a>(
    spec: Option<&TuningSpec>,
    tuning: Option<&'a TuningStatus>,
    run: u32,
    spec_hash: &str,
) -> Gate<'a> {
    if spec.is_none() {
        return Gate::Untuned;
    }
    // A search for an earlier run, or for a training spec since changed, is not this run's.
    match tuning.filter(|t| t.run == run && t.spec_hash == spec_hash) {
        Some(t) if t.state == SearchState::Searching => Gate::Wait,
        Some(t) if t.state == SearchState::BestFound && t.best.is_some() => Gate::Train(t),
        _ => Gate::Search,
    }
}

/// The children of a rung to apply: its plan, then its Job (which mounts the plan).
#[derive(Debug, Clone)]
pub struct RungChildren {
    pub plan: ConfigMap,
    pub job: Job,
}

/// A run whose search ended with nothing to train: recorded as the run's outcome.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Unrun {
    pub run: u32,
    pub trigger: RunTrigger,
    pub started_at: Timestamp,
    pub outcome: RunOutcome,
    pub reason: RunReason,
    pub message: String,
    pub search: u32,
}

/// What advancing the search in flight decided.
#[derive(Debug, Default)]
pub(super) struct Advanced {
    pub rung: Option<RungChildren>,
    pub unrun: Option<Unrun>,
    pub said: Said,
}

/// Starts the search for run `run` (called for by `trigger`), warm from the previous search
/// when `spec.tuning`'s space is unchanged.
pub(super) fn start(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    (run, trigger, spec_hash): (u32, RunTrigger, &str),
    tuning: &mut Option<TuningStatus>,
) -> Option<(RungChildren, Said)> {
    let model = observed.model;
    let spec = model.spec.tuning.as_ref()?;
    let now = time::whole(observed.now);
    let fingerprint = space_fingerprint(spec);
    let previous = tuning.as_ref();
    let warm: &[TrialResult] = previous
        .filter(|t| t.space_fingerprint == fingerprint)
        .map_or(&[], |t| &t.trials);
    let trials = plan(spec, warm);
    let from_before = trials.iter().filter(|t| t.warm).count();
    let search = previous.map_or(1, |t| t.search + 1);
    let status = TuningStatus {
        state: SearchState::Searching,
        search,
        run,
        trigger,
        spec_hash: spec_hash.into(),
        space_fingerprint: fingerprint,
        warm: from_before > 0,
        metric: spec.metric,
        started_at: now,
        deadline: spec.time_limit().map(|limit| time::add(now, limit)),
        finished_at: None,
        rung: 0,
        trials_done: 0,
        trials_failed: 0,
        best: None,
        trials: Vec::new(),
        running: trials,
        message: String::new(),
    };
    let children = rung_children(model, config, defaults, spec, &status, now);
    let mut said = Said::default();
    said.event(PlannedEvent::normal(
        SearchEvent::SearchStarted,
        "Tune",
        &format!(
            "search {search} for run {run} started: {} trials{}",
            status.running.len(),
            if from_before > 0 {
                format!(", the first {from_before} the previous search's best")
            } else {
                String::new()
            }
        ),
    ));
    *tuning = Some(status);
    Some((children, said))
}

/// Records the rung in flight once its Job is over, then starts the next rung or ends the
/// search: with a best point (the run trains it) or without (the run is recorded as not
/// trained).
pub(super) fn advance(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    (spec_hash, serving): (&str, Option<&ModelRecord>),
    tuning: &mut Option<TuningStatus>,
) -> Advanced {
    let model = observed.model;
    let (Some(spec), Some(t)) = (model.spec.tuning.as_ref(), tuning.as_mut()) else {
        return Advanced::default();
    };
    if t.state != SearchState::Searching || t.spec_hash != spec_hash {
        return Advanced::default();
    }
    let rung = observed
        .rungs
        .iter()
        .find(|r| (r.search, r.rung) == (t.search, t.rung));
    if rung.is_some_and(|r| !r.finished) {
        return Advanced::default();
    }
    let now = time::whole(observed.now);
    record_rung(t, spec.metric, rung);
    let past_deadline = t.deadline.is_some_and(|d| d <= now);
    let next = if past_deadline {
        Vec::new()
    } else {
        next_rung(spec, &t.trials)
    };
    let mut advanced = Advanced::default();
    if !next.is_empty() {
        t.rung += 1;
        t.running = next;
        advanced.rung = Some(rung_children(model, config, defaults, spec, t, now));
        advanced.said.event(PlannedEvent::normal(
            SearchEvent::RungStarted,
            "Tune",
            &format!(
                "search {}: rung {} started, the best {} at {} epochs",
                t.search,
                t.rung,
                t.running.len(),
                t.running[0].params.epochs
            ),
        ));
        return advanced;
    }
    let end = if past_deadline {
        SearchEnd::TimeLimit
    } else {
        SearchEnd::Completed
    };
    advanced.unrun = conclude(t, serving, end, now);
    let note = format!("search {}: {}", t.search, t.message);
    advanced.said.event(match t.state {
        SearchState::BestFound => PlannedEvent::normal(SearchEvent::SearchFinished, "Tune", &note),
        _ => PlannedEvent::warning(SearchEvent::SearchFinished, "Tune", &note),
    });
    advanced
}

/// Moves the rung in flight into the trials that ended: each index as its pod reported it, or
/// failed for the reason its pod (or the Job) gives.
fn record_rung(t: &mut TuningStatus, metric: Metric, rung: Option<&ObservedRung>) {
    for (position, trial) in std::mem::take(&mut t.running).into_iter().enumerate() {
        let end = rung.and_then(|r| r.trials.get(&(position as u32)));
        let failed = |reason: &str, message: String, seconds| {
            let error = RunError {
                reason: reason.into(),
                message,
            };
            TrialResult::failed(&trial, error, seconds)
        };
        let result = match end {
            Some(TrialEnd::Scored(result)) => match result.check(&trial) {
                Ok(()) => (**result).clone(),
                Err(e) => failed("WrongTrial", e.to_string(), result.seconds),
            },
            Some(TrialEnd::Failed { reason, message }) => failed(reason, message.clone(), 0.0),
            None => match rung {
                None => failed(
                    "JobMissing",
                    format!("the Job of rung {} disappeared", t.rung),
                    0.0,
                ),
                Some(r) if r.failed.as_deref() == Some("DeadlineExceeded") => failed(
                    "DeadlineExceeded",
                    "stopped at the search's time limit".into(),
                    0.0,
                ),
                Some(r) => failed(
                    "NoPod",
                    format!("Job {} ended without a pod of this trial", r.job_name),
                    0.0,
                ),
            },
        };
        t.trials.push(result);
    }
    t.trials_done = t.trials.len() as u32;
    t.trials_failed = t.trials.iter().filter(|r| r.error.is_some()).count() as u32;
    t.best = best_of(metric, &t.trials).cloned();
}

/// Ends the search: the best point against the serving model. A search with nothing to train
/// keeps its best few trials (the next search's warm start); one with a best point keeps every
/// trial until its run starts with the whole search ([`record_json`]), then the best few.
fn conclude(
    t: &mut TuningStatus,
    serving: Option<&ModelRecord>,
    end: SearchEnd,
    now: Timestamp,
) -> Option<Unrun> {
    t.finished_at = Some(now);
    let ended = match end {
        SearchEnd::Completed => "",
        SearchEnd::TimeLimit => " (stopped at the time limit)",
    };
    let done = format!(
        "{} trials, {} failed{ended}",
        t.trials_done, t.trials_failed
    );
    let verdict = match (&t.best, serving) {
        (None, _) => Err((
            SearchState::AllTrialsFailed,
            RunOutcome::Failed,
            RunReason::AllTrialsFailed,
            format!("{done}: no trial scored, nothing to train"),
        )),
        (Some(best), Some(serving)) if worse(best, t.metric, serving) => Err((
            SearchState::WorseThanServing,
            RunOutcome::Rejected,
            RunReason::WorseThanServing,
            format!(
                "{done}: the best ({}, {} {}) is worse than the serving {} ({}); nothing to train",
                best.params,
                t.metric.as_str(),
                rounded(best.value(t.metric).unwrap_or(f64::NAN)),
                serving.version,
                serving_score(serving, t.metric),
            ),
        )),
        (Some(best), _) => Ok(format!(
            "{done}: the best is trial {} ({}, {} {})",
            best.index,
            best.params,
            t.metric.as_str(),
            rounded(best.value(t.metric).unwrap_or(f64::NAN)),
        )),
    };
    match verdict {
        Ok(message) => {
            (t.state, t.message) = (SearchState::BestFound, message);
            None
        }
        Err((state, outcome, reason, message)) => {
            keep_best(t);
            (t.state, t.message) = (state, message.clone());
            Some(Unrun {
                run: t.run,
                trigger: t.trigger,
                started_at: t.started_at,
                outcome,
                reason,
                message,
                search: t.search,
            })
        }
    }
}

/// Scores as the status shows them (the serving model's are rounded so).
fn rounded(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn serving_score(serving: &ModelRecord, metric: Metric) -> f64 {
    match metric {
        Metric::CvRmse => serving.metrics.rmse,
        Metric::CvMae => serving.metrics.mae,
    }
}

/// Whether `best` scores worse than the serving model's cross-validation, at the precision
/// the serving model's is kept: re-measuring the point that serves is not worse than itself.
fn worse(best: &TrialResult, metric: Metric, serving: &ModelRecord) -> bool {
    best.value(metric)
        .is_some_and(|v| rounded(v) > serving_score(serving, metric))
}

/// The ended search `t` of `spec` as the contract's `SearchRecord`, every trial, as JSON within
/// `MAX_PASSED_RECORD_BYTES` (a ConfigMap holds 1 MiB): past it, failed trials' messages are cut,
/// then the worst trials left out (counted in the record's `omitted`).
pub(super) fn record_json(spec: &TuningSpec, t: &TuningStatus) -> String {
    let finished = t.finished_at.unwrap_or(t.started_at);
    let end = match t.deadline {
        Some(deadline) if finished >= deadline => SearchEnd::TimeLimit,
        _ => SearchEnd::Completed,
    };
    let seconds = time::until(t.started_at, finished).as_secs_f64();
    SearchRecord::new(spec.clone(), t.warm, end, seconds, t.trials.clone())
        .to_bounded_json(MAX_PASSED_RECORD_BYTES)
}

/// The best trials first (the highest rung, then the score, then failed ones), at most
/// `TRIALS_KEPT`: what a search keeps once its run has the whole of it.
pub(super) fn keep_best(t: &mut TuningStatus) {
    let metric = t.metric;
    t.trials
        .sort_by(|a, b| match (a.value(metric), b.value(metric)) {
            (Some(x), Some(y)) => b.rung.cmp(&a.rung).then(x.total_cmp(&y)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.index.cmp(&b.index),
        });
    t.trials.truncate(TRIALS_KEPT);
}

/// The plan ConfigMap and the Indexed Job of the rung in flight; the Job's deadline is what is
/// left of the time limit (else the trainer's deadline).
fn rung_children(
    model: &RecommenderModel,
    config: &Config,
    defaults: &Defaults,
    spec: &TuningSpec,
    t: &TuningStatus,
    now: Timestamp,
) -> RungChildren {
    let plan = TrialPlan::new(spec.clone(), t.running.clone()).to_json();
    let deadline_seconds = match t.deadline {
        Some(deadline) => time::until(now, deadline).as_secs() as i64,
        None => model.spec.trainer.active_deadline_seconds,
    };
    let new = NewRung {
        search: t.search,
        rung: t.rung,
        plan: &plan,
        trials: t.running.len() as u32,
        parallelism: spec.parallelism,
        deadline_seconds,
        resources: model.spec.trainer.trial_resources.as_ref(),
        fit_threads: Some(config.training.fit_threads),
    };
    RungChildren {
        plan: children::plan_config_map(model, &new),
        job: children::trial_job(model, config, &new, defaults),
    }
}

/// The `Tuned` condition, with `spec.tuning` only.
pub(super) fn tuned(spec: Option<&TuningSpec>, tuning: Option<&TuningStatus>) -> Option<Desired> {
    spec?;
    let Some(t) = tuning else {
        return Some(Desired::new(
            TunedReason::Searching,
            State::Unknown,
            "no search has run yet: one runs before the next training run",
        ));
    };
    Some(match t.state {
        SearchState::Searching => Desired::new(
            TunedReason::Searching,
            State::Unknown,
            format!(
                "search {} for run {}: rung {}, {} trials running, {} done ({} failed)",
                t.search,
                t.run,
                t.rung,
                t.running.len(),
                t.trials_done,
                t.trials_failed
            ),
        ),
        SearchState::BestFound => {
            Desired::new(TunedReason::BestFound, State::True, t.message.clone())
        }
        SearchState::AllTrialsFailed => Desired::new(
            TunedReason::AllTrialsFailed,
            State::False,
            t.message.clone(),
        ),
        SearchState::WorseThanServing => Desired::new(
            TunedReason::WorseThanServing,
            State::False,
            t.message.clone(),
        ),
    })
}

#[cfg(test)]
mod tests;
