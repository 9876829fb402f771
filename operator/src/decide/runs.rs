//! Training runs: recording how runs ended (promoting or rejecting their candidates), adopting
//! the run in flight, and starting a new one when something calls for it.

use super::freshness::Freshness;
use super::{Decided, Draft, PlannedEvent, promotion};
use crate::children::{self, Defaults};
use crate::crd::{
    ActiveRun, ArtifactFile, Fingerprint, ModelMetrics, ModelRecord, RecommenderModel,
    RecommenderModelSpec, RecommenderModelStatus, RunOutcome, RunReason, RunRecord, RunTrigger,
};
use crate::labels::RETRAIN_ANNOTATION;
use crate::observe::{Observed, ObservedRun, RunState};
use crate::time;
use crate::validate::Config;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use recommender_report::{Outcome, TrainingReport};
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

/// What recording the runs found that the conditions report.
#[derive(Debug, Default)]
pub(super) struct RunsSeen {
    /// Why the running trainer cannot make progress.
    pub stuck_trainer: Option<String>,
}

/// Records the outcome of runs that finished since we last looked, in run order, and adopts the
/// one still running.
pub(super) fn record(observed: &Observed, spec_hash: &str, d: &mut Draft) -> RunsSeen {
    let mut runs = observed.runs.clone();
    runs.sort_by_key(|r| r.run);
    let mut running: Option<&ObservedRun> = None;
    let mut seen = RunsSeen::default();
    for run in &runs {
        d.status.runs.last = d.status.runs.last.max(run.run);
        if run.run <= d.status.runs.last_completed {
            continue;
        }
        match &run.state {
            RunState::Running {
                stuck,
                pending_since,
            } => {
                running = Some(run);
                if let Some(why) = stuck_reason(run, stuck.as_deref(), *pending_since, d) {
                    seen.stuck_trainer = Some(why);
                }
            }
            _ => {
                let record = finished(run, &observed.model.spec, d);
                d.finished.push(record);
            }
        }
    }
    record_missing_job(&runs, d);
    d.status.runs.active = running.map(|r| ActiveRun {
        run: r.run,
        job: r.job_name.clone(),
        trigger: r.trigger,
        started_at: r.started_at.unwrap_or(d.now),
        spec_hash: r.spec_hash.clone().unwrap_or_else(|| spec_hash.to_string()),
    });
    seen
}

fn stuck_reason(
    run: &ObservedRun,
    stuck: Option<&str>,
    pending_since: Option<Timestamp>,
    d: &mut Draft,
) -> Option<String> {
    if let Some(reason) = stuck {
        return Some(reason.to_string());
    }
    let since = pending_since?;
    let limit = time::add(since, PENDING_TOLERANCE);
    if limit > d.now {
        d.wake.at(d.now, limit);
        return None;
    }
    Some(format!(
        "trainer pod of {} has been Pending since {}",
        run.job_name,
        time::whole(since)
    ))
}

/// A run we started whose Job vanished (deleted by hand, or TTL'd while we were away).
fn record_missing_job(runs: &[ObservedRun], d: &mut Draft) {
    let Some(active) = d.status.runs.active.clone() else {
        return;
    };
    if active.run <= d.status.runs.last_completed || runs.iter().any(|r| r.run == active.run) {
        return;
    }
    let record = RunRecord {
        run: active.run,
        version: children::version_label(active.run),
        trigger: active.trigger,
        started_at: active.started_at,
        finished_at: d.now,
        outcome: RunOutcome::Failed,
        reason: RunReason::JobMissing,
        message: format!("Job {} disappeared before it finished", active.job),
        metrics: None,
        duration_seconds: None,
        comparison: None,
    };
    note_failure(&mut d.status, &record, d.now);
    d.events.push(PlannedEvent::warning(
        Decided::TrainingFailed,
        "Train",
        &record.message,
    ));
    push_history(&mut d.status, record.clone());
    d.status.runs.last_completed = d.status.runs.last_completed.max(active.run);
    d.finished.push(record);
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
        metrics: recommender_report::Metrics,
        /// The trainer's comparison with the serving model, when asked for.
        challenge: Option<Box<recommender_report::Challenge>>,
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
            metrics: ModelMetrics::from_report(metrics),
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

/// Turns a finished run into a history record, promoting or rejecting its candidate.
fn finished(run: &ObservedRun, spec: &RecommenderModelSpec, d: &mut Draft) -> RunRecord {
    let finished_at = match &run.state {
        RunState::Failed { finished_at, .. } | RunState::Succeeded { finished_at, .. } => {
            finished_at.map(time::whole).unwrap_or(d.now)
        }
        RunState::Running { .. } => d.now,
    };
    let started_at = run.started_at.unwrap_or(d.now);
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
    };
    match ending(run, finished_at) {
        Ending::Failed {
            reason,
            message,
            duration,
        } => {
            (record.reason, record.message, record.duration_seconds) = (reason, message, duration);
            note_failure(&mut d.status, &record, d.now);
            d.events.push(PlannedEvent::warning(
                Decided::TrainingFailed,
                "Train",
                &format!(
                    "run {} failed ({}): {}",
                    run.run, record.reason, record.message
                ),
            ));
        }
        Ending::Candidate {
            model,
            metrics,
            challenge,
            duration,
        } => {
            record.metrics = Some(model.metrics.clone());
            record.duration_seconds = Some(duration);
            let judged = promotion::judge_candidate(
                *model,
                &metrics,
                challenge.as_deref(),
                spec,
                &mut d.status,
            );
            (
                record.outcome,
                record.reason,
                record.message,
                record.comparison,
            ) = judged;
            d.status.runs.consecutive_failures = 0;
            d.status.runs.retry_after = None;
            d.status.runs.trained_spec_hash = run.spec_hash.clone();
            d.status.runs.last_attempt_started_at = Some(started_at);
            d.events.push(match (record.outcome, &record.reason) {
                (RunOutcome::Succeeded, _) => {
                    PlannedEvent::normal(Decided::Promoted, "Promote", &record.message)
                }
                (_, RunReason::NotBetter) => {
                    PlannedEvent::warning(Decided::NotBetter, "Promote", &record.message)
                }
                _ => PlannedEvent::warning(Decided::GateFailed, "Promote", &record.message),
            });
        }
    }
    push_history(&mut d.status, record.clone());
    d.status.runs.last_completed = d.status.runs.last_completed.max(run.run);
    record
}

fn note_failure(status: &mut RecommenderModelStatus, record: &RunRecord, now: Timestamp) {
    status.runs.consecutive_failures += 1;
    let failed_at = record.finished_at.max(now);
    status.runs.retry_after = Some(time::add(
        failed_at,
        backoff(status.runs.consecutive_failures),
    ));
}

fn push_history(status: &mut RecommenderModelStatus, record: RunRecord) {
    status.run_counts.count(record.outcome);
    status.history.push(record);
    let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
    status.history.drain(..excess);
}

/// Starts a run when something calls for one and the backoff allows it.
pub(super) fn start(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    spec_hash: &str,
    freshness: &Freshness,
    d: &mut Draft,
) -> Option<Job> {
    let model = observed.model;
    if d.status.runs.active.is_some() || model.spec.suspend {
        return None;
    }
    let trigger = trigger(model, config, spec_hash, freshness, d)?;
    if let Some(at) = d.status.runs.retry_after.filter(|at| *at > d.now) {
        d.wake.at(d.now, at);
        return None;
    }
    let run = d.status.runs.last + 1;
    let new = children::NewRun {
        run,
        trigger,
        started_at: d.now,
        earlier: &d.status.history,
    };
    let mut job = children::trainer_job(model, config, &new, defaults);
    // The candidate is compared with what serves now on the ratings that came after it.
    if model.spec.promotion.must_beat_serving
        && let Some(serving) = &d.status.serving
        && let Some(since) = serving.fingerprint.as_ref().and_then(|f| f.max_timestamp)
    {
        let challenge = &model.spec.promotion.challenge;
        children::challenge_serving(&mut job, model, &serving.version, since, challenge);
    }
    let job_name = children::job_name(&model.name_any(), run);
    d.events.push(PlannedEvent::normal(
        Decided::TrainingStarted,
        "Train",
        &format!("run {run} ({job_name}) started: {}", explain(trigger)),
    ));
    if trigger == RunTrigger::Requested {
        d.status.runs.handled_retrain_request = retrain_request(model);
    }
    d.status.runs.last = run;
    d.status.runs.active = Some(ActiveRun {
        run,
        job: job_name,
        trigger,
        started_at: time::whole(d.now),
        spec_hash: spec_hash.to_string(),
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
    spec_hash: &str,
    freshness: &Freshness,
    d: &mut Draft,
) -> Option<RunTrigger> {
    let status = &d.status;
    if let Some(request) = retrain_request(model)
        && status.runs.handled_retrain_request.as_ref() != Some(&request)
    {
        return Some(RunTrigger::Requested);
    }
    // A spec whose last run was rejected is not retried on its own: it would only be
    // rejected again. Failed runs do not set the hash, so they are retried with backoff.
    if status.runs.trained_spec_hash.as_deref() != Some(spec_hash) {
        let first = status.models.is_empty() && status.runs.trained_spec_hash.is_none();
        return Some(if first {
            RunTrigger::NoModel
        } else {
            RunTrigger::SpecChanged
        });
    }
    let last_attempt = status.runs.last_attempt_started_at;
    // Retrain once per staleness, not in a loop when the new candidate is also rejected; a
    // pinned model is stale by choice.
    if model.spec.freshness.retrain_when_stale
        && model.spec.pinned_version.is_none()
        && let Some(at) = freshness.stale_at
        && at <= d.now
        && last_attempt.is_none_or(|attempt| attempt < at)
    {
        return Some(freshness.trigger());
    }
    // Once per degradation, as for staleness.
    if model.spec.pinned_version.is_none()
        && let Some(at) = freshness.degraded_at
        && last_attempt.is_none_or(|attempt| attempt < at)
    {
        return Some(RunTrigger::AccuracyDegraded);
    }
    if let Some(interval) = config.retrain_interval
        && let Some(last) = last_attempt
    {
        let due = time::add(last, interval);
        if due <= d.now {
            return Some(RunTrigger::Interval);
        }
        d.wake.at(d.now, due);
    }
    None
}

#[cfg(test)]
mod tests;
