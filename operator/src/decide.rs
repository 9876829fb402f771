//! The controller's brain: a pure function from what is observed (the resource, its training
//! runs, its predictor rollout, the database probe, the clock) to what should be (children to
//! apply, the new status, events, when to look again). No client, so every decision is a unit
//! test.

use crate::children::{self, Defaults};
use crate::clock;
use crate::conditions::{self as cond, Desired, State};
use crate::crd::{
    ActiveRun, Fingerprint, ModelMetrics, ModelRecord, Phase, RETRAIN_ANNOTATION, RecommenderModel,
    RecommenderModelStatus, RunOutcome, RunRecord,
};
use crate::gate::{self, Verdict};
use crate::observe::{ObservedRun, RolloutState, RunState};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use recommender_report::{Outcome, TrainingReport};
use std::time::Duration;

/// Runs kept in `status.history` and promoted models kept in `status.models`.
pub const HISTORY_LIMIT: usize = 10;
pub const MODELS_LIMIT: usize = 10;
/// First retry delay after a failed run; doubles per consecutive failure up to the cap.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// A trainer pod still `Pending` after this long makes `WorkersHealthy` false.
pub const PENDING_TOLERANCE: Duration = Duration::from_secs(300);

/// The database probe's verdict, taken before deciding.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseProbe {
    /// The source is a file: there is no database to reach.
    NotUsed,
    Reachable,
    Unreachable(String),
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub model: &'a RecommenderModel,
    pub runs: Vec<ObservedRun>,
    pub rollout: Option<RolloutState>,
    pub database: DatabaseProbe,
    pub now: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    pub kind: EventKind,
    pub reason: String,
    pub action: String,
    pub note: String,
}

/// Everything the controller should make true.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A trainer Job to create (only when a new run starts; running Jobs are left alone).
    pub start_job: Option<Job>,
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    pub status: RecommenderModelStatus,
    pub events: Vec<PlannedEvent>,
    /// Runs whose outcome was recorded by this decision (for metrics).
    pub finished: Vec<RunRecord>,
    /// When to look again even if nothing changes: the soonest time a decision would differ.
    pub requeue_after: Option<Duration>,
}

pub fn backoff(consecutive_failures: u32) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP)
}

pub fn decide(observed: &Observed, defaults: &Defaults) -> Plan {
    let model = observed.model;
    let spec = &model.spec;
    let now = observed.now;
    let now_text = clock::format(now);
    let old = model.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut events = Vec::new();
    let mut finished = Vec::new();
    let mut wake = Wake::default();
    let spec_hash = children::training_spec_hash(spec);

    // 1. Record the outcome of runs that finished since we last looked, in run order.
    let mut runs = observed.runs.clone();
    runs.sort_by_key(|r| r.run);
    let mut running: Option<&ObservedRun> = None;
    let mut stuck_trainer: Option<String> = None;
    for run in &runs {
        status.last_run = status.last_run.max(run.run);
        if run.run <= status.last_completed_run {
            continue;
        }
        match &run.state {
            RunState::Running {
                stuck,
                pending_since,
            } => {
                running = Some(run);
                if let Some(reason) = stuck {
                    stuck_trainer = Some(reason.clone());
                } else if let Some(since) = pending_since {
                    let limit = clock::add(*since, PENDING_TOLERANCE);
                    if limit <= now {
                        stuck_trainer = Some(format!(
                            "trainer pod of {} has been Pending since {}",
                            run.job_name,
                            clock::format(*since)
                        ));
                    } else {
                        wake.at(now, limit);
                    }
                }
            }
            _ => {
                let record = record_finished(run, &mut status, spec, &now_text, &mut events);
                finished.push(record);
            }
        }
    }
    // A run we started whose Job vanished (deleted by hand, or TTL'd while we were away).
    if let Some(active) = status.active_run.clone()
        && active.run > status.last_completed_run
        && !runs.iter().any(|r| r.run == active.run)
    {
        let record = RunRecord {
            run: active.run,
            version: children::version_label(active.run),
            trigger: active.trigger.clone(),
            started_at: active.started_at.clone(),
            finished_at: now_text.clone(),
            outcome: RunOutcome::Failed,
            reason: "JobMissing".into(),
            message: format!("Job {} disappeared before it finished", active.job),
            metrics: None,
            duration_seconds: None,
        };
        note_failure(&mut status, &record, now);
        events.push(warning("TrainingFailed", "Train", &record.message));
        push_history(&mut status, record.clone());
        status.last_completed_run = status.last_completed_run.max(active.run);
        finished.push(record);
    }
    status.active_run = running.map(|r| ActiveRun {
        run: r.run,
        job: r.job_name.clone(),
        trigger: r.trigger.clone(),
        started_at: r.started_at.clone().unwrap_or_else(|| now_text.clone()),
        spec_hash: r.spec_hash.clone().unwrap_or_else(|| spec_hash.clone()),
    });

    // 2. Which model serves: the pinned one if it names a promoted model, else the newest.
    let newest = status.models.last().cloned();
    let (serving, pin_problem) = match &spec.pinned_version {
        Some(pin) => match status.models.iter().find(|m| &m.version == pin) {
            Some(found) => (Some(found.clone()), None),
            None => (
                newest,
                Some(format!(
                    "pinnedVersion {pin} is not a promoted model (known: {})",
                    known_versions(&status.models)
                )),
            ),
        },
        None => (newest, None),
    };
    status.serving = serving.clone();

    // 3. Freshness of what serves.
    let max_age = clock::parse_go_duration(&spec.freshness.max_age);
    let stale_at = serving
        .as_ref()
        .and_then(|m| clock::parse(&m.trained_at))
        .zip(max_age)
        .map(|(trained, age)| clock::add(trained, age));
    let stale = stale_at.is_some_and(|at| at <= now);
    if let Some(at) = stale_at
        && !stale
    {
        wake.at(now, at);
    }
    status.stale = stale;

    // 4. Start a run when something calls for one.
    let mut start_job = None;
    let retry_after = status.retry_after.as_deref().and_then(clock::parse);
    let wanted = if status.active_run.is_none() && !spec.suspend {
        trigger(observed, &status, &spec_hash, stale_at, &mut wake)
    } else {
        None
    };
    if let Some(trigger) = wanted {
        match retry_after.filter(|at| *at > now) {
            Some(at) => wake.at(now, at),
            None => {
                let run = status.last_run + 1;
                let job = children::trainer_job(model, run, trigger.name(), &now_text, defaults);
                let job_name = children::job_name(&model.name_any(), run);
                events.push(normal(
                    "TrainingStarted",
                    "Train",
                    &format!("run {run} ({job_name}) started: {}", trigger.explain()),
                ));
                if trigger == Trigger::Requested {
                    status.handled_retrain_request = retrain_request(model);
                }
                status.last_run = run;
                status.active_run = Some(ActiveRun {
                    run,
                    job: job_name,
                    trigger: trigger.name().into(),
                    started_at: now_text.clone(),
                    spec_hash: spec_hash.clone(),
                });
                start_job = Some(job);
            }
        }
    }

    // 5. The predictor serves whatever serves.
    let deployment = serving
        .as_ref()
        .map(|m| children::predictor_deployment(model, &m.version, defaults));
    let service = serving.as_ref().map(|_| children::predictor_service(model));
    status.predictor = match (&serving, &observed.rollout) {
        (Some(_), Some(rollout)) => {
            rollout
                .version
                .clone()
                .map(|version| crate::crd::PredictorStatus {
                    version,
                    desired_replicas: rollout.desired,
                    available_replicas: rollout.available,
                })
        }
        _ => None,
    };

    // 6. Conditions, phase and events for the transitions a person cares about.
    let desired = conditions(
        observed,
        &status,
        serving.as_ref(),
        pin_problem,
        stale_at,
        stuck_trainer,
        retry_after,
    );
    let generation = model.metadata.generation;
    status.conditions = cond::merge(&old.conditions, &desired, now, generation);
    status.observed_generation = generation;
    status.phase = phase(spec.suspend, &status);
    events.extend(transition_events(&old.conditions, &desired));

    if let DatabaseProbe::Reachable | DatabaseProbe::Unreachable(_) = observed.database
        && let Some(pg) = &spec.source.postgres
    {
        wake.after(Duration::from_secs(pg.probe_interval_seconds.into()));
    }

    Plan {
        start_job,
        deployment,
        service,
        status,
        events,
        finished,
        requeue_after: wake.soonest,
    }
}

/// Collects the soonest moment a decision would change by the clock alone.
#[derive(Default)]
struct Wake {
    soonest: Option<Duration>,
}

impl Wake {
    fn after(&mut self, delay: Duration) {
        self.soonest = Some(self.soonest.map_or(delay, |d| d.min(delay)));
    }

    fn at(&mut self, now: Timestamp, at: Timestamp) {
        // A hair late rather than early: a timer that fires before the boundary would find
        // nothing changed and have to wait for the next event.
        self.after(clock::until(now, at) + Duration::from_millis(100));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    NoModel,
    SpecChanged,
    Stale,
    Interval,
    Requested,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Self::NoModel => "NoModel",
            Self::SpecChanged => "SpecChanged",
            Self::Stale => "Stale",
            Self::Interval => "Interval",
            Self::Requested => "Requested",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Self::NoModel => "no model has been trained yet",
            Self::SpecChanged => "the training spec changed",
            Self::Stale => "the serving model is stale",
            Self::Interval => "the retraining interval elapsed",
            Self::Requested => "requested by the recommender.dev/retrain annotation",
        }
    }
}

fn retrain_request(model: &RecommenderModel) -> Option<String> {
    model.annotations().get(RETRAIN_ANNOTATION).cloned()
}

fn trigger(
    observed: &Observed,
    status: &RecommenderModelStatus,
    spec_hash: &str,
    stale_at: Option<Timestamp>,
    wake: &mut Wake,
) -> Option<Trigger> {
    let model = observed.model;
    let spec = &model.spec;
    let now = observed.now;
    if let Some(request) = retrain_request(model)
        && status.handled_retrain_request.as_ref() != Some(&request)
    {
        return Some(Trigger::Requested);
    }
    // A spec whose last run was rejected is not retried on its own: it would only be
    // rejected again. Failed runs do not set the hash, so they are retried with backoff.
    if status.trained_spec_hash.as_deref() != Some(spec_hash) {
        return Some(
            if status.models.is_empty() && status.trained_spec_hash.is_none() {
                Trigger::NoModel
            } else {
                Trigger::SpecChanged
            },
        );
    }
    let last_attempt = status
        .last_attempt_started_at
        .as_deref()
        .and_then(clock::parse);
    // Retrain once per staleness, not in a loop when the new candidate is also rejected; a
    // pinned model is stale by choice.
    if spec.freshness.retrain_when_stale
        && spec.pinned_version.is_none()
        && let Some(at) = stale_at
        && at <= now
        && last_attempt.is_none_or(|attempt| attempt < at)
    {
        return Some(Trigger::Stale);
    }
    if let Some(interval) = spec
        .freshness
        .retrain_interval
        .as_deref()
        .and_then(clock::parse_go_duration)
        && let Some(last) = last_attempt
    {
        let due = clock::add(last, interval);
        if due <= now {
            return Some(Trigger::Interval);
        }
        wake.at(now, due);
    }
    None
}

fn metrics_of(report: &TrainingReport) -> Option<ModelMetrics> {
    report.metrics.as_ref().map(|m| ModelMetrics {
        folds: m.folds,
        rmse: m.rmse,
        mae: m.mae,
        rmse_std: m.rmse_std,
        mae_std: m.mae_std,
        precision_at_10: m.precision_at_10,
        recall_at_10: m.recall_at_10,
        ndcg_at_10: m.ndcg_at_10,
    })
}

/// Turns a finished run into a history record, promoting or rejecting its candidate.
fn record_finished(
    run: &ObservedRun,
    status: &mut RecommenderModelStatus,
    spec: &crate::crd::RecommenderModelSpec,
    now_text: &str,
    events: &mut Vec<PlannedEvent>,
) -> RunRecord {
    let version = children::version_label(run.run);
    let started_at = run
        .started_at
        .clone()
        .unwrap_or_else(|| now_text.to_string());
    let mut record = RunRecord {
        run: run.run,
        version: version.clone(),
        trigger: run.trigger.clone(),
        started_at: started_at.clone(),
        finished_at: now_text.to_string(),
        outcome: RunOutcome::Failed,
        reason: String::new(),
        message: String::new(),
        metrics: None,
        duration_seconds: None,
    };
    let now = clock::parse(now_text).unwrap_or(Timestamp::UNIX_EPOCH);
    match &run.state {
        RunState::Running { .. } => {}
        RunState::Failed {
            reason,
            message,
            report,
            finished_at,
        } => {
            record.finished_at = finished_at.clone().unwrap_or_else(|| now_text.to_string());
            let (reason, message) = match report.as_ref().and_then(|r| r.error.as_ref()) {
                Some(err) => (err.reason.clone(), format!("{}: {}", reason, err.message)),
                None => (reason.clone(), message.clone()),
            };
            record.reason = reason;
            record.message = if record.message.is_empty() && message.is_empty() {
                format!("Job {} failed", run.job_name)
            } else {
                message
            };
            record.duration_seconds = report.as_ref().map(|r| r.durations.total_seconds);
        }
        RunState::Succeeded {
            report,
            finished_at,
        } => {
            record.finished_at = finished_at.clone().unwrap_or_else(|| now_text.to_string());
            match report {
                Err(problem) => {
                    record.reason = "NoReport".into();
                    record.message = format!("Job {} succeeded but {problem}", run.job_name);
                }
                Ok(report) if report.outcome != Outcome::Succeeded => {
                    let err = report.error.as_ref();
                    record.reason = err.map_or("TrainerFailed".into(), |e| e.reason.clone());
                    record.message =
                        err.map_or("the trainer reported failure".into(), |e| e.message.clone());
                }
                Ok(report) => match metrics_of(report) {
                    None => {
                        record.reason = "NoMetrics".into();
                        record.message = "the trainer's report has no metrics".into();
                    }
                    Some(metrics) => {
                        record.metrics = Some(metrics.clone());
                        record.duration_seconds = Some(report.durations.total_seconds);
                        let candidate = ModelRecord {
                            version: version.clone(),
                            run: run.run,
                            metrics: metrics.clone(),
                            trained_at: clock::parse(&report.finished_at)
                                .map(clock::format)
                                .unwrap_or_else(|| record.finished_at.clone()),
                            fingerprint: report.data.as_ref().map(|d| Fingerprint {
                                rows: d.rows,
                                users: d.users,
                                items: d.items,
                                content_hash: d.content_hash.clone(),
                                max_timestamp: d.max_timestamp,
                            }),
                        };
                        // Judged against what serves now (the pin, if any, else the newest).
                        let current = match &spec.pinned_version {
                            Some(pin) => status.models.iter().find(|m| &m.version == pin),
                            None => status.models.last(),
                        };
                        match gate::judge(&metrics, &spec.promotion, current) {
                            Verdict::Promote => {
                                record.outcome = RunOutcome::Succeeded;
                                record.reason = "Promoted".into();
                                record.message = format!(
                                    "{version} promoted: rmse {:.4}, mae {:.4}",
                                    metrics.rmse, metrics.mae
                                );
                                status.models.push(candidate);
                                let excess = status.models.len().saturating_sub(MODELS_LIMIT);
                                status.models.drain(..excess);
                            }
                            Verdict::Reject { reason, message } => {
                                record.outcome = RunOutcome::Rejected;
                                record.reason = reason.into();
                                record.message = format!("{version} not promoted: {message}");
                            }
                        }
                    }
                },
            }
        }
    }
    match record.outcome {
        RunOutcome::Failed => {
            note_failure(status, &record, now);
            events.push(warning(
                "TrainingFailed",
                "Train",
                &format!(
                    "run {} failed ({}): {}",
                    run.run, record.reason, record.message
                ),
            ));
        }
        outcome => {
            status.consecutive_failures = 0;
            status.retry_after = None;
            status.trained_spec_hash = run.spec_hash.clone();
            status.last_attempt_started_at = Some(started_at);
            let event = if outcome == RunOutcome::Succeeded {
                normal("Promoted", "Promote", &record.message)
            } else {
                warning(&record.reason, "Promote", &record.message)
            };
            events.push(event);
        }
    }
    push_history(status, record.clone());
    status.last_completed_run = status.last_completed_run.max(run.run);
    record
}

fn note_failure(status: &mut RecommenderModelStatus, record: &RunRecord, now: Timestamp) {
    status.consecutive_failures += 1;
    let failed_at = clock::parse(&record.finished_at).unwrap_or(now).max(now);
    status.retry_after = Some(clock::format(clock::add(
        failed_at,
        backoff(status.consecutive_failures),
    )));
}

fn push_history(status: &mut RecommenderModelStatus, record: RunRecord) {
    status.history.push(record);
    let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
    status.history.drain(..excess);
}

fn known_versions(models: &[ModelRecord]) -> String {
    if models.is_empty() {
        return "none".into();
    }
    models
        .iter()
        .map(|m| m.version.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn conditions(
    observed: &Observed,
    status: &RecommenderModelStatus,
    serving: Option<&ModelRecord>,
    pin_problem: Option<String>,
    stale_at: Option<Timestamp>,
    stuck_trainer: Option<String>,
    retry_after: Option<Timestamp>,
) -> Vec<Desired> {
    let spec = &observed.model.spec;
    let now = observed.now;

    let serving_cond = match (serving, &observed.rollout) {
        (None, _) => Desired::new(
            cond::SERVING,
            State::False,
            "NoModel",
            "no model has been promoted yet",
        ),
        (Some(_), _) if pin_problem.is_some() => Desired::new(
            cond::SERVING,
            State::False,
            "PinnedVersionUnknown",
            pin_problem.unwrap_or_default(),
        ),
        (Some(m), None) => Desired::new(
            cond::SERVING,
            State::False,
            "RollingOut",
            format!("creating the predictor for {}", m.version),
        ),
        (Some(m), Some(r)) => rollout_condition(&m.version, r, spec.predictor.replicas),
    };

    let training = match (&status.active_run, spec.suspend) {
        (Some(active), _) => Desired::new(
            cond::TRAINING,
            State::True,
            "Running",
            format!(
                "run {} ({}) started at {} ({})",
                active.run, active.job, active.started_at, active.trigger
            ),
        ),
        (None, true) => Desired::new(
            cond::TRAINING,
            State::False,
            "Suspended",
            "spec.suspend is true",
        ),
        (None, false) => match retry_after.filter(|at| *at > now) {
            Some(at) => Desired::new(
                cond::TRAINING,
                State::False,
                "BackingOff",
                format!(
                    "{} consecutive failed run(s); next attempt not before {}",
                    status.consecutive_failures,
                    clock::format(at)
                ),
            ),
            None => Desired::new(
                cond::TRAINING,
                State::False,
                "Idle",
                "no training run in progress",
            ),
        },
    };

    let promoted = match status.history.last() {
        None => Desired::new(
            cond::PROMOTED,
            State::Unknown,
            "NoCandidate",
            "no training run has finished yet",
        ),
        Some(last) => {
            let (state, reason) = match last.outcome {
                RunOutcome::Succeeded => (State::True, "Promoted".to_string()),
                RunOutcome::Rejected => (State::False, last.reason.clone()),
                RunOutcome::Failed => (State::False, "TrainingFailed".to_string()),
            };
            Desired::new(cond::PROMOTED, state, reason, last.message.clone())
        }
    };

    let stale = match (serving, stale_at) {
        (Some(m), Some(at)) if at <= now => Desired::new(
            cond::STALE,
            State::True,
            "MaxAgeExceeded",
            format!(
                "{} was trained at {} and is older than maxAge {}",
                m.version, m.trained_at, spec.freshness.max_age
            ),
        ),
        (Some(m), Some(at)) => Desired::new(
            cond::STALE,
            State::False,
            "Fresh",
            format!("{} turns stale at {}", m.version, clock::format(at)),
        ),
        (Some(_), None) => Desired::new(
            cond::STALE,
            State::Unknown,
            "InvalidMaxAge",
            format!(
                "spec.freshness.maxAge {:?} is not a duration",
                spec.freshness.max_age
            ),
        ),
        (None, _) => Desired::new(
            cond::STALE,
            State::Unknown,
            "NoModel",
            "no model is serving",
        ),
    };

    let database = match &observed.database {
        DatabaseProbe::NotUsed => Desired::new(
            cond::DATABASE_REACHABLE,
            State::True,
            "FileSource",
            "the ratings come from a file on the model store",
        ),
        DatabaseProbe::Reachable => Desired::new(
            cond::DATABASE_REACHABLE,
            State::True,
            "Reachable",
            "SELECT 1 succeeded",
        ),
        DatabaseProbe::Unreachable(why) => Desired::new(
            cond::DATABASE_REACHABLE,
            State::False,
            "Unreachable",
            why.clone(),
        ),
    };

    let short = observed
        .rollout
        .as_ref()
        .filter(|r| serving.is_some() && r.available < r.desired);
    let workers = match (stuck_trainer, short) {
        (Some(why), _) => Desired::new(cond::WORKERS_HEALTHY, State::False, "TrainerPodStuck", why),
        (None, Some(r)) => Desired::new(
            cond::WORKERS_HEALTHY,
            State::False,
            "PredictorReplicasShort",
            format!(
                "{} of {} predictor replicas available",
                r.available, r.desired
            ),
        ),
        (None, None) => Desired::new(
            cond::WORKERS_HEALTHY,
            State::True,
            "Healthy",
            match &observed.rollout {
                Some(r) if serving.is_some() => {
                    format!(
                        "{} of {} predictor replicas available",
                        r.available, r.desired
                    )
                }
                _ => "no worker reports a problem".to_string(),
            },
        ),
    };

    let failing: Vec<String> = [&serving_cond, &database, &workers]
        .iter()
        .filter(|c| c.status != State::True)
        .map(|c| format!("{} is {} ({})", c.type_, c.status.as_str(), c.reason))
        .collect();
    let ready = if failing.is_empty() {
        Desired::new(
            cond::READY,
            State::True,
            "Ready",
            "serving, database reachable, workers healthy",
        )
    } else {
        Desired::new(cond::READY, State::False, "NotReady", failing.join("; "))
    };

    vec![
        ready,
        serving_cond,
        training,
        promoted,
        stale,
        database,
        workers,
    ]
}

fn rollout_condition(version: &str, rollout: &RolloutState, desired: i32) -> Desired {
    // Old pods keep answering until they are gone, so the rollout is done only when every pod
    // left runs the new template.
    let current = rollout.version.as_deref() == Some(version)
        && rollout.observed
        && rollout.updated >= desired
        && rollout.available >= desired
        && rollout.total <= rollout.updated;
    if let Some(why) = &rollout.deadline_exceeded {
        return Desired::new(
            cond::SERVING,
            State::False,
            "RolloutStuck",
            format!("the rollout of {version} did not become available: {why}"),
        );
    }
    if desired == 0 {
        return Desired::new(
            cond::SERVING,
            State::False,
            "ScaledToZero",
            "spec.predictor.replicas is 0",
        );
    }
    if current {
        return Desired::new(
            cond::SERVING,
            State::True,
            "Available",
            format!(
                "{version} available on {} of {desired} replicas",
                rollout.available
            ),
        );
    }
    // An older version still answering counts as serving while the new one rolls out.
    let state = State::from_bool(rollout.available > 0);
    Desired::new(
        cond::SERVING,
        state,
        "RollingOut",
        format!(
            "rolling out {version}: {} updated, {} of {desired} available",
            rollout.updated, rollout.available
        ),
    )
}

fn phase(suspend: bool, status: &RecommenderModelStatus) -> Phase {
    if suspend {
        return Phase::Suspended;
    }
    if status.active_run.is_some() {
        return Phase::Training;
    }
    match &status.serving {
        None if status.consecutive_failures > 0 => Phase::Failed,
        None => Phase::Pending,
        Some(_) if cond::is_true(&status.conditions, cond::READY) => Phase::Serving,
        Some(_) => Phase::Degraded,
    }
}

/// Events for condition changes not already announced by a run event.
fn transition_events(
    old: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    new: &[Desired],
) -> Vec<PlannedEvent> {
    new.iter()
        .filter(|c| c.type_ != cond::TRAINING && c.type_ != cond::PROMOTED)
        .filter(|c| {
            cond::find(old, c.type_)
                .is_none_or(|o| o.status != c.status.as_str() || o.reason != c.reason)
        })
        .filter_map(|c| {
            let bad = match c.type_ {
                cond::STALE => c.status == State::True,
                _ => c.status == State::False,
            };
            // A condition's first appearance is news only when it is bad.
            (bad || cond::find(old, c.type_).is_some()).then_some((c, bad))
        })
        .map(|(c, bad)| {
            let note = format!("{} {}: {}", c.type_, c.status.as_str(), c.message);
            if bad {
                warning(&c.reason, "Observe", &note)
            } else {
                normal(&c.reason, "Observe", &note)
            }
        })
        .collect()
}

fn normal(reason: &str, action: &str, note: &str) -> PlannedEvent {
    PlannedEvent {
        kind: EventKind::Normal,
        reason: reason.into(),
        action: action.into(),
        note: note.into(),
    }
}

fn warning(reason: &str, action: &str, note: &str) -> PlannedEvent {
    PlannedEvent {
        kind: EventKind::Warning,
        reason: reason.into(),
        action: action.into(),
        note: note.into(),
    }
}

#[cfg(test)]
mod tests;
