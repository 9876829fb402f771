//! Training runs: recording how runs ended (promoting or rejecting their candidates, which
//! `Promoted` reports), adopting the run in flight, and starting a new one when something calls
//! for it (which `Training` reports).

use super::freshness::Freshness;
use super::rollout::Ended;
use super::tuning::{self, Gate, Unrun};
use super::{Decided, PlannedEvent, Said, promotion};
use crate::children::{self, Defaults};
use crate::condition::{Desired, PromotedReason, State, TrainingReason};
use crate::crd::{
    ActiveRun, ArtifactFile, Fingerprint, ModelRecord, RecommenderModel, RecommenderModelSpec,
    RunCounts, RunLedger, RunOutcome, RunReason, RunRecord, RunTrigger, TuningStatus,
};
use crate::labels::RETRAIN_ANNOTATION;
use crate::observe::{Observed, ObservedRun, RunState};
use crate::time;
use crate::validate::Config;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use recommender_contract::report::{Outcome, TrainingReport};
use std::time::Duration;

/// Runs kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;
/// First retry delay after a failed run; doubles per consecutive failure up to the cap.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// A trainer pod still `Pending` after this long makes `WorkersHealthy` false.
pub const PENDING_TOLERANCE: Duration = Duration::from_secs(300);

pub fn backoff(consecutive_failures: u32) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP)
}

/// The parts of the status that recording runs writes.
pub(super) struct Book<'a> {
    pub ledger: &'a mut RunLedger,
    pub history: &'a mut Vec<RunRecord>,
    pub counts: &'a mut RunCounts,
    /// Promoted candidates join these.
    pub models: &'a mut Vec<ModelRecord>,
    /// Candidates that pass the gate are rolled out progressively instead (`spec.rollout`).
    pub progressive: bool,
}

impl<'a> Book<'a> {
    /// The parts of `status` the runs' records are kept in.
    pub fn of(status: &'a mut crate::crd::RecommenderModelStatus, progressive: bool) -> Self {
        Self {
            ledger: &mut status.runs,
            history: &mut status.history,
            counts: &mut status.run_counts,
            models: &mut status.models,
            progressive,
        }
    }
}

/// What recording the runs found.
pub(super) struct Recorded {
    /// Runs whose outcome was recorded now (for metrics).
    pub finished: Vec<RunRecord>,
    /// Candidates that passed the gate under a progressive rollout, oldest first: each starts a
    /// rollout (superseding the one before).
    pub rolling: Vec<ModelRecord>,
    /// Why the running trainer cannot make progress (`WorkersHealthy`).
    pub stuck_trainer: Option<String>,
    /// The `Promoted` condition: how the last finished run's candidate fared.
    pub promoted: Desired,
    pub said: Said,
}

/// Records the outcome of runs that finished since we last looked, in run order, and adopts the
/// one still running.
pub(super) fn record(observed: &Observed, spec_hash: &str, mut book: Book) -> Recorded {
    let now = observed.now;
    let mut runs = observed.runs.clone();
    runs.sort_by_key(|r| r.run);
    let (mut finished, mut rolling, mut said) = (Vec::new(), Vec::new(), Said::default());
    let (mut running, mut stuck_trainer) = (None, None);
    for run in &runs {
        book.ledger.last = book.ledger.last.max(run.run);
        if run.run <= book.ledger.last_completed {
            continue;
        }
        match &run.state {
            RunState::Running {
                stuck,
                pending_since,
            } => {
                running = Some(run);
                let why = stuck_reason(run, stuck.as_deref(), *pending_since, now, &mut said);
                stuck_trainer = why.or(stuck_trainer);
            }
            _ => {
                let (record, candidate) = book.finish(run, &observed.model.spec, now, &mut said);
                rolling.extend(candidate);
                // A candidate rolling out is counted once its rollout decides.
                if record.reason != RunReason::RollingOut {
                    finished.push(record);
                }
            }
        }
    }
    finished.extend(book.missing_job(&runs, now, &mut said));
    book.ledger.active = running.map(|r| ActiveRun {
        run: r.run,
        job: r.job_name.clone(),
        trigger: r.trigger,
        started_at: r.started_at.unwrap_or(now),
        spec_hash: r.spec_hash.clone().unwrap_or_else(|| spec_hash.to_string()),
    });
    Recorded {
        finished,
        rolling,
        stuck_trainer,
        promoted: promoted(book.history),
        said,
    }
}

fn stuck_reason(
    run: &ObservedRun,
    stuck: Option<&str>,
    pending_since: Option<Timestamp>,
    now: Timestamp,
    said: &mut Said,
) -> Option<String> {
    if let Some(reason) = stuck {
        return Some(reason.to_string());
    }
    let since = pending_since?;
    let limit = time::add(since, PENDING_TOLERANCE);
    if limit > now {
        said.wake.at(now, limit);
        return None;
    }
    Some(format!(
        "trainer pod of {} has been Pending since {}",
        run.job_name,
        time::whole(since)
    ))
}

impl Book<'_> {
    /// A run we started whose Job vanished (deleted by hand, or TTL'd while we were away).
    fn missing_job(
        &mut self,
        runs: &[ObservedRun],
        now: Timestamp,
        said: &mut Said,
    ) -> Option<RunRecord> {
        let active = self.ledger.active.clone()?;
        if active.run <= self.ledger.last_completed || runs.iter().any(|r| r.run == active.run) {
            return None;
        }
        let record = RunRecord {
            run: active.run,
            version: children::version_label(active.run),
            trigger: active.trigger,
            started_at: active.started_at,
            finished_at: now,
            outcome: RunOutcome::Failed,
            reason: RunReason::JobMissing,
            message: format!("Job {} disappeared before it finished", active.job),
            metrics: None,
            duration_seconds: None,
            comparison: None,
            search: None,
        };
        self.note_failure(&record, now);
        said.event(PlannedEvent::warning(
            Decided::TrainingFailed,
            "Train",
            &record.message,
        ));
        self.push_history(record.clone());
        Some(record)
    }

    /// Turns a finished run into a history record, promoting or rejecting its candidate; under a
    /// progressive rollout also returns the candidate that passed the gate.
    fn finish(
        &mut self,
        run: &ObservedRun,
        spec: &RecommenderModelSpec,
        now: Timestamp,
        said: &mut Said,
    ) -> (RunRecord, Option<ModelRecord>) {
        let finished_at = match &run.state {
            RunState::Failed { finished_at, .. } | RunState::Succeeded { finished_at, .. } => {
                finished_at.map(time::whole).unwrap_or(now)
            }
            RunState::Running { .. } => now,
        };
        let started_at = run.started_at.unwrap_or(now);
        let mut record = RunRecord {
            run: run.run,
            version: children::version_label(run.run),
            trigger: run.trigger,
            started_at,
            finished_at,
            outcome: RunOutcome::Failed,
            reason: RunReason::JobMissing,
            message: String::new(),
            metrics: None,
            duration_seconds: None,
            comparison: None,
            search: run.search,
        };
        let mut rolling = None;
        let event = match ending(run, finished_at) {
            Ending::Failed {
                reason,
                message,
                duration,
            } => {
                (record.reason, record.message) = (reason, message);
                record.duration_seconds = duration;
                self.note_failure(&record, now);
                PlannedEvent::warning(
                    Decided::TrainingFailed,
                    "Train",
                    &format!(
                        "run {} failed ({}): {}",
                        run.run, record.reason, record.message
                    ),
                )
            }
            Ending::Candidate {
                model,
                metrics,
                challenge,
                duration,
            } => {
                record.metrics = Some(model.metrics.clone());
                record.duration_seconds = Some(duration);
                let (judged, candidate) = promotion::judge_candidate(
                    *model,
                    &metrics,
                    challenge.as_deref(),
                    spec,
                    (self.models, self.progressive),
                );
                rolling = candidate;
                (
                    record.outcome,
                    record.reason,
                    record.message,
                    record.comparison,
                ) = judged;
                self.ledger.consecutive_failures = 0;
                self.ledger.retry_after = None;
                self.ledger.trained_spec_hash = run.spec_hash.clone();
                self.ledger.last_attempt_started_at = Some(started_at);
                verdict_event(&record)
            }
        };
        said.event(event);
        self.push_history(record.clone());
        (record, rolling)
    }

    /// Makes the record of a rolled-out candidate's run final: promoted, rejected online, or
    /// stopped (a pin, a newer candidate), and counts it. A record the history no longer holds
    /// (ten runs ended during the rollout) is added again.
    pub(super) fn rollout_ended(&mut self, ended: &Ended) -> RunRecord {
        let (outcome, reason) = match ended.reason {
            r if r.promoted() => (RunOutcome::Succeeded, RunReason::Promoted),
            r if r.rejected_online() => (RunOutcome::Rejected, RunReason::RejectedOnline),
            _ => (RunOutcome::Rejected, RunReason::RolloutStopped),
        };
        let at = self.history.iter().rposition(|r| r.run == ended.run);
        let record = match at {
            Some(at) => &mut self.history[at],
            None => {
                let candidate = &ended.candidate;
                self.history.push(RunRecord {
                    run: ended.run,
                    version: candidate.version.clone(),
                    trigger: RunTrigger::Unknown,
                    started_at: candidate.trained_at,
                    finished_at: candidate.trained_at,
                    outcome,
                    reason: reason.clone(),
                    message: String::new(),
                    metrics: Some(candidate.metrics.clone()),
                    duration_seconds: None,
                    comparison: None,
                    search: None,
                });
                let excess = self.history.len().saturating_sub(HISTORY_LIMIT);
                self.history.drain(..excess);
                let last = self.history.len() - 1;
                &mut self.history[last]
            }
        };
        record.outcome = outcome;
        record.reason = reason;
        record.message = ended.message.clone();
        let record = record.clone();
        self.counts.count(record.outcome);
        record
    }

    /// Records a run whose tuning search ended with nothing to train. Like a rejected candidate
    /// it is not retried for the same spec and triggers; when every trial failed, it is retried
    /// with backoff like a failed run.
    pub(super) fn unrun(&mut self, unrun: &Unrun, spec_hash: &str, now: Timestamp) -> RunRecord {
        self.ledger.last = self.ledger.last.max(unrun.run);
        let record = RunRecord {
            run: unrun.run,
            version: children::version_label(unrun.run),
            trigger: unrun.trigger,
            started_at: unrun.started_at,
            finished_at: now,
            outcome: unrun.outcome,
            reason: unrun.reason.clone(),
            message: unrun.message.clone(),
            metrics: None,
            duration_seconds: Some(time::until(unrun.started_at, now).as_secs_f64()),
            comparison: None,
            search: Some(unrun.search),
        };
        if unrun.outcome == RunOutcome::Failed {
            self.note_failure(&record, now);
        } else {
            self.ledger.consecutive_failures = 0;
            self.ledger.retry_after = None;
            self.ledger.trained_spec_hash = Some(spec_hash.to_string());
            self.ledger.last_attempt_started_at = Some(unrun.started_at);
        }
        self.push_history(record.clone());
        record
    }

    fn note_failure(&mut self, record: &RunRecord, now: Timestamp) {
        self.ledger.consecutive_failures += 1;
        let failed_at = record.finished_at.max(now);
        let delay = backoff(self.ledger.consecutive_failures);
        self.ledger.retry_after = Some(time::add(failed_at, delay));
    }

    fn push_history(&mut self, record: RunRecord) {
        self.ledger.last_completed = self.ledger.last_completed.max(record.run);
        // A candidate rolling out is counted once its rollout decides (`rollout_ended`).
        if record.reason != RunReason::RollingOut {
            self.counts.count(record.outcome);
        }
        self.history.push(record);
        let excess = self.history.len().saturating_sub(HISTORY_LIMIT);
        self.history.drain(..excess);
    }
}

/// The event for the gate's verdict on a run's candidate.
fn verdict_event(record: &RunRecord) -> PlannedEvent {
    let message = &record.message;
    match (record.outcome, &record.reason) {
        (RunOutcome::Succeeded, RunReason::RollingOut) => {
            PlannedEvent::normal(Decided::RolloutStarted, "Rollout", message)
        }
        (RunOutcome::Succeeded, _) => PlannedEvent::normal(Decided::Promoted, "Promote", message),
        (_, RunReason::NotBetter) => PlannedEvent::warning(Decided::NotBetter, "Promote", message),
        _ => PlannedEvent::warning(Decided::GateFailed, "Promote", message),
    }
}

/// The `Promoted` condition: how the last finished run's candidate fared.
pub(super) fn promoted(history: &[RunRecord]) -> Desired {
    let Some(last) = history.last() else {
        return Desired::new(
            PromotedReason::NoCandidate,
            State::Unknown,
            "no training run has finished yet",
        );
    };
    let (reason, state) = match (last.outcome, &last.reason) {
        // Passed the gate; promoted or not once its progressive rollout ends.
        (RunOutcome::Succeeded, RunReason::RollingOut) => {
            (PromotedReason::RollingOut, State::Unknown)
        }
        (RunOutcome::Succeeded, _) => (PromotedReason::Promoted, State::True),
        (RunOutcome::Rejected, RunReason::RejectedOnline) => {
            (PromotedReason::RejectedOnline, State::False)
        }
        (RunOutcome::Rejected, RunReason::RolloutStopped) => {
            (PromotedReason::RolloutStopped, State::False)
        }
        (RunOutcome::Rejected, RunReason::NotBetter | RunReason::WorseThanServing) => {
            (PromotedReason::NotBetter, State::False)
        }
        // The gate rejects for one other reason only.
        (RunOutcome::Rejected, _) => (PromotedReason::GateFailed, State::False),
        (RunOutcome::Failed, _) => (PromotedReason::TrainingFailed, State::False),
    };
    Desired::new(reason, state, last.message.clone())
}

/// How a finished run ended, before the gate has had its say.
enum Ending {
    Failed {
        reason: RunReason,
        message: String,
        duration: Option<f64>,
    },
    Candidate {
        // Boxed: a model record is several times the size of a failure.
        model: Box<ModelRecord>,
        /// Full precision, for the gate.
        metrics: recommender_contract::metrics::Metrics,
        /// The trainer's comparison with the serving model, when asked for.
        challenge: Option<Box<recommender_contract::report::Challenge>>,
        duration: f64,
    },
}

fn ending(run: &ObservedRun, finished_at: Timestamp) -> Ending {
    let failed = |reason: RunReason, message: String, duration| Ending::Failed {
        reason,
        message,
        duration,
    };
    match &run.state {
        RunState::Failed {
            reason,
            message,
            report,
            ..
        } => {
            let duration = report.as_ref().map(|r| r.durations.total_seconds);
            match report.as_ref().and_then(|r| r.error.as_ref()) {
                Some(err) => failed(
                    err.reason.as_str().into(),
                    format!("{reason}: {}", err.message),
                    duration,
                ),
                None if message.is_empty() => failed(
                    reason.as_str().into(),
                    format!("Job {} failed", run.job_name),
                    duration,
                ),
                None => failed(reason.as_str().into(), message.clone(), duration),
            }
        }
        RunState::Succeeded {
            report: Err(problem),
            ..
        } => failed(
            RunReason::NoReport,
            format!("Job {} succeeded but {problem}", run.job_name),
            None,
        ),
        RunState::Succeeded {
            report: Ok(report), ..
        } => from_report(run, report, finished_at),
        // Running runs are never recorded.
        RunState::Running { .. } => failed(RunReason::JobMissing, String::new(), None),
    }
}

fn from_report(run: &ObservedRun, report: &TrainingReport, finished_at: Timestamp) -> Ending {
    if report.outcome != Outcome::Succeeded {
        let err = report.error.as_ref();
        return Ending::Failed {
            reason: err.map_or(RunReason::TrainerFailed, |e| e.reason.as_str().into()),
            message: err.map_or("the trainer reported failure".into(), |e| e.message.clone()),
            duration: Some(report.durations.total_seconds),
        };
    }
    let Some(metrics) = report.metrics.as_ref() else {
        return Ending::Failed {
            reason: RunReason::NoMetrics,
            message: "the trainer's report has no metrics".into(),
            duration: Some(report.durations.total_seconds),
        };
    };
    Ending::Candidate {
        model: Box::new(ModelRecord {
            version: children::version_label(run.run),
            run: run.run,
            metrics: metrics.rounded(),
            trained_at: report
                .finished_at
                .parse()
                .map(time::whole)
                .unwrap_or(finished_at),
            artifact: match (
                &report.artifact,
                report.artifact_bytes,
                &report.artifact_sha256,
            ) {
                (Some(path), Some(bytes), Some(sha256)) => Some(ArtifactFile {
                    path: path.clone(),
                    bytes,
                    sha256: sha256.clone(),
                }),
                _ => None,
            },
            fingerprint: report.data.as_ref().map(|d| Fingerprint {
                rows: d.rows,
                users: d.users,
                items: d.items,
                content_hash: d.content_hash.clone(),
                max_timestamp: d.max_timestamp,
            }),
            forward: None,
        }),
        metrics: metrics.clone(),
        challenge: report.challenge.clone().map(Box::new),
        duration: report.durations.total_seconds,
    }
}

/// What starting a run reads from the rest of the decision and the status.
pub(super) struct Reads<'a> {
    pub spec_hash: &'a str,
    pub freshness: &'a Freshness,
    /// When the serving model's forward accuracy was found degraded (and that should retrain).
    pub degraded_at: Option<Timestamp>,
    pub serving: Option<&'a ModelRecord>,
    pub history: &'a [RunRecord],
    pub models: &'a [ModelRecord],
    /// The latest tuning search, under `spec.tuning`.
    pub tuning: Option<&'a TuningStatus>,
}

/// The run to start, if any, and the `Training` condition after it.
pub(super) struct Started {
    pub job: Option<Job>,
    /// A run is due, but under `spec.tuning` a search must find its parameters first: the run's
    /// number and trigger.
    pub search: Option<(u32, RunTrigger)>,
    /// The record of the search whose best point the started run trains, for the Job to mount.
    pub search_record: Option<ConfigMap>,
    pub training: Desired,
    pub said: Said,
}

/// Starts a run when something calls for one and the backoff allows it, recording it in
/// `ledger`.
pub(super) fn start(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    reads: Reads,
    ledger: &mut RunLedger,
) -> Started {
    let mut said = Said::default();
    let mut search = None;
    let mut search_record = None;
    let job = new_run(
        observed,
        config,
        defaults,
        &reads,
        ledger,
        (&mut search, &mut search_record),
        &mut said,
    );
    let training = training(observed, ledger, reads.history);
    Started {
        job,
        search,
        search_record,
        training,
        said,
    }
}

fn new_run(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    reads: &Reads,
    ledger: &mut RunLedger,
    (search, search_record): (&mut Option<(u32, RunTrigger)>, &mut Option<ConfigMap>),
    said: &mut Said,
) -> Option<Job> {
    let (model, now) = (observed.model, observed.now);
    // The trainer would use a Secret the user did not allow (the condition says which).
    if ledger.active.is_some()
        || model.spec.suspend
        || observed.database.secret_not_allowed()
        || !super::store::pods_allowed(observed)
    {
        return None;
    }
    let run = ledger.last + 1;
    let tuning_spec = model.spec.tuning.as_ref();
    let gate = tuning::gate(tuning_spec, reads.tuning, run, reads.spec_hash);
    let trigger = match gate {
        // The search ran because the run was called for; it trains now, whatever the clock says.
        Gate::Train(t) => t.trigger,
        Gate::Wait => return None,
        Gate::Search | Gate::Untuned => {
            let trigger = trigger(model, config, reads, ledger, now, said)?;
            if let Some(at) = ledger.retry_after.filter(|at| *at > now) {
                said.wake.at(now, at);
                return None;
            }
            if gate == Gate::Search {
                // Handled now: a search that ends with nothing to train must not be requested
                // again by the same annotation.
                if trigger == RunTrigger::Requested {
                    ledger.handled_retrain_request = retrain_request(model);
                }
                *search = Some((run, trigger));
                return None;
            }
            trigger
        }
    };
    let searched = match (gate, tuning_spec) {
        (Gate::Train(t), Some(spec)) => t.best.as_ref().map(|best| {
            let record = tuning::record_json(spec, t);
            *search_record = Some(children::record_config_map(model, t.search, &record));
            children::Searched {
                search: t.search,
                params: &best.params,
                seed: spec.seed,
            }
        }),
        _ => None,
    };
    let new = children::NewRun {
        run,
        trigger,
        started_at: now,
        earlier: reads.history,
        searched,
    };
    let mut job = children::trainer_job(model, config, &new, defaults);
    // The candidate is compared with what serves now on the ratings that came after it.
    if model.spec.promotion.must_beat_serving
        && let Some(serving) = reads.serving
        && let Some(since) = serving.fingerprint.as_ref().and_then(|f| f.max_timestamp)
    {
        let challenge = &model.spec.promotion.challenge;
        let sha256 = serving.artifact.as_ref().map(|a| a.sha256.as_str());
        children::challenge_serving(&mut job, &serving.version, sha256, since, challenge);
    }
    let job_name = children::job_name(&model.name_any(), run);
    said.event(PlannedEvent::normal(
        Decided::TrainingStarted,
        "Train",
        &format!(
            "run {run} ({job_name}) started: {}{}",
            explain(trigger),
            searched.map_or(String::new(), |s| format!(
                ", with the best point of search {} ({})",
                s.search, s.params
            ))
        ),
    ));
    if trigger == RunTrigger::Requested {
        ledger.handled_retrain_request = retrain_request(model);
    }
    ledger.last = run;
    ledger.active = Some(ActiveRun {
        run,
        job: job_name,
        trigger,
        started_at: time::whole(now),
        spec_hash: reads.spec_hash.to_string(),
    });
    Some(job)
}

fn explain(trigger: RunTrigger) -> &'static str {
    match trigger {
        RunTrigger::NoModel => "no model has been trained yet",
        RunTrigger::SpecChanged => "the training spec changed",
        RunTrigger::Stale => "the serving model is stale",
        RunTrigger::NewData => "enough new ratings arrived after the serving model's snapshot",
        RunTrigger::AccuracyDegraded => "the serving model's accuracy on new ratings degraded",
        RunTrigger::Interval => "the retraining interval elapsed",
        RunTrigger::Requested => "requested by the recommender.dev/retrain annotation",
        RunTrigger::Unknown => "for an unknown reason",
    }
}

fn retrain_request(model: &RecommenderModel) -> Option<String> {
    model.annotations().get(RETRAIN_ANNOTATION).cloned()
}

fn trigger(
    model: &RecommenderModel,
    config: &Config,
    reads: &Reads,
    ledger: &RunLedger,
    now: Timestamp,
    said: &mut Said,
) -> Option<RunTrigger> {
    if let Some(request) = retrain_request(model)
        && ledger.handled_retrain_request.as_ref() != Some(&request)
    {
        return Some(RunTrigger::Requested);
    }
    // A spec whose last run was rejected is not retried on its own: it would only be
    // rejected again. Failed runs do not set the hash, so they are retried with backoff.
    if ledger.trained_spec_hash.as_deref() != Some(reads.spec_hash) {
        let first = reads.models.is_empty() && ledger.trained_spec_hash.is_none();
        return Some(if first {
            RunTrigger::NoModel
        } else {
            RunTrigger::SpecChanged
        });
    }
    let last_attempt = ledger.last_attempt_started_at;
    let pinned = model.spec.pinned_version.is_some();
    // Retrain once per staleness, not in a loop when the new candidate is also rejected; a
    // pinned model is stale by choice.
    if model.spec.freshness.retrain_when_stale
        && !pinned
        && let Some(at) = reads.freshness.stale_at
        && at <= now
        && last_attempt.is_none_or(|attempt| attempt < at)
    {
        return Some(reads.freshness.trigger());
    }
    // Once per degradation, as for staleness.
    if !pinned
        && let Some(at) = reads.degraded_at
        && last_attempt.is_none_or(|attempt| attempt < at)
    {
        return Some(RunTrigger::AccuracyDegraded);
    }
    if let Some(interval) = config.retrain_interval
        && let Some(last) = last_attempt
    {
        let due = time::add(last, interval);
        if due <= now {
            return Some(RunTrigger::Interval);
        }
        said.wake.at(now, due);
    }
    None
}

/// The `Training` condition.
fn training(observed: &Observed, ledger: &RunLedger, history: &[RunRecord]) -> Desired {
    if let Some(active) = &ledger.active {
        return Desired::new(
            TrainingReason::Running,
            State::True,
            format!(
                "run {} ({}) started at {} ({})",
                active.run, active.job, active.started_at, active.trigger
            ),
        );
    }
    if observed.model.spec.suspend {
        return Desired::new(
            TrainingReason::Suspended,
            State::False,
            "spec.suspend is true",
        );
    }
    let Some(at) = ledger.retry_after.filter(|at| *at > observed.now) else {
        return Desired::new(
            TrainingReason::Idle,
            State::False,
            "no training run in progress",
        );
    };
    let last = history
        .iter()
        .rev()
        .find(|r| r.outcome == RunOutcome::Failed)
        .map(|r| format!(", the last ({}) {}: {}", r.version, r.reason, r.message))
        .unwrap_or_default();
    Desired::new(
        TrainingReason::BackingOff,
        State::False,
        format!(
            "{} consecutive failed run(s){last}; next attempt not before {}",
            ledger.consecutive_failures,
            time::whole(at)
        ),
    )
}

#[cfg(test)]
mod tests;
