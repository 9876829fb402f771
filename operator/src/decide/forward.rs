//! What the ratings after the serving model's snapshot say: how many arrived (`status.data`,
//! the `NewData` side of `Stale`), and how well the model predicts them (forward evaluations,
//! `status.serving.forward` and `AccuracyDegraded`). [`record`] writes down what was counted and
//! evaluated; [`plan`] judges the serving model on it and starts the next evaluation.

use super::{Decided, PlannedEvent, Said};
use crate::children::{self, Defaults};
use crate::condition::{AccuracyDegradedReason as Accuracy, Desired, State};
use crate::crd::{
    ActiveEvaluation, DataStatus, EvaluationLedger, ForwardRecord, ModelRecord, Promotion,
};
use crate::observe::{EvaluationState, NewRatings, Observed, ObservedEvaluation};
use crate::time;
use crate::validate::{Config, Forward};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

/// The new ratings past `freshness.maxNewRatings` for the serving model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct NewData {
    pub ratings: u64,
    pub threshold: u64,
    /// When the count first reached the threshold.
    pub since: Timestamp,
}

/// Records this reconcile's count of new ratings in `data` and the evaluations that finished
/// (on the model they scored, among `models`), and adopts the one running. `served` is the model
/// that served until now: the one the count was made against.
pub(super) fn record(
    observed: &Observed,
    config: &Config,
    served: Option<&ModelRecord>,
    data: &mut Option<DataStatus>,
    ledger: &mut EvaluationLedger,
    models: &mut [ModelRecord],
) -> Said {
    if let (Some(result), Some(served)) = (&observed.new_ratings, served) {
        *data = Some(counted(result, config, served, data.take(), observed.now));
    }
    let mut said = Said::default();
    let mut evaluations = observed.evaluations.clone();
    evaluations.sort_by_key(|e| e.number);
    for e in evaluations {
        if let Some(event) = record_evaluation(&e, ledger, models, observed.now) {
            said.event(event);
        }
    }
    said
}

/// `status.data` after a count against `served` (the last good numbers kept when it failed).
fn counted(
    result: &Result<NewRatings, String>,
    config: &Config,
    served: &ModelRecord,
    previous: Option<DataStatus>,
    now: Timestamp,
) -> DataStatus {
    let now = time::whole(now);
    let previous = previous.filter(|p| p.version == served.version);
    match result {
        Ok(count) => {
            let rows = served.fingerprint.as_ref().map_or(0, |f| f.rows);
            let reached = config
                .max_new_ratings
                .is_some_and(|limit| count.ratings >= limit.threshold(rows));
            let kept = previous
                .as_ref()
                .filter(|p| p.since == count.since)
                .and_then(|p| p.exceeded_at);
            DataStatus {
                version: served.version.clone(),
                since: count.since,
                new_ratings: count.ratings,
                new_users: count.users,
                new_items: count.items,
                newest: count.newest,
                counted_at: now,
                exceeded_at: reached.then(|| kept.unwrap_or(now)),
                error: None,
            }
        }
        Err(why) => DataStatus {
            error: Some(why.clone()),
            counted_at: now,
            ..previous.unwrap_or(DataStatus {
                version: served.version.clone(),
                since: served
                    .fingerprint
                    .as_ref()
                    .and_then(|f| f.max_timestamp)
                    .unwrap_or_default(),
                new_ratings: 0,
                new_users: 0,
                new_items: 0,
                newest: None,
                counted_at: now,
                exceeded_at: None,
                error: None,
            })
        },
    }
}

/// Records one evaluation: a running one is adopted, a finished one's result goes on the model
/// it scored (or its failure in `lastError`).
fn record_evaluation(
    e: &ObservedEvaluation,
    ledger: &mut EvaluationLedger,
    models: &mut [ModelRecord],
    now: Timestamp,
) -> Option<PlannedEvent> {
    ledger.last = ledger.last.max(e.number);
    let started_at = e.started_at.unwrap_or(now);
    let event = match &e.state {
        EvaluationState::Running => {
            ledger.active = Some(ActiveEvaluation {
                number: e.number,
                job: e.job_name.clone(),
                version: e.version.clone(),
                since: e.since,
                started_at,
            });
            ledger.last_started_at = Some(started_at);
            return None;
        }
        EvaluationState::Succeeded {
            report: Ok(report),
            finished_at,
        } if report.forward.is_some() => {
            let forward = report.forward.as_ref().expect("checked above");
            let record = ForwardRecord::from_report(forward, finished_at.unwrap_or(now));
            let event = PlannedEvent::normal(
                Decided::ForwardEvaluated,
                "Evaluate",
                &format!(
                    "{} on the {} ratings after its snapshot: rmse {:.4}, mae {:.4}, accuracy {:.4}",
                    e.version, record.ratings, record.rmse, record.mae, record.accuracy
                ),
            );
            if let Some(m) = models.iter_mut().find(|m| m.version == e.version) {
                m.forward = Some(record);
            }
            ledger.last_error = None;
            event
        }
        EvaluationState::Succeeded { report, .. } => {
            let why = report
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "its report has no result".into());
            evaluation_failed(ledger, &e.job_name, &why)
        }
        EvaluationState::Failed { message, .. } => evaluation_failed(ledger, &e.job_name, message),
    };
    if ledger.active.as_ref().is_some_and(|a| a.number == e.number) {
        ledger.active = None;
    }
    Some(event)
}

fn evaluation_failed(ledger: &mut EvaluationLedger, job: &str, why: &str) -> PlannedEvent {
    let message = format!("forward evaluation {job} failed: {why}");
    let event = PlannedEvent::warning(Decided::ForwardEvaluationFailed, "Evaluate", &message);
    ledger.last_error = Some(message);
    event
}

/// What the new ratings say about the serving model, and the evaluation to start.
pub(super) struct Judged {
    /// The new data that makes it stale.
    pub new_data: Option<NewData>,
    /// When its forward accuracy was found degraded, when that should retrain.
    pub degraded_at: Option<Timestamp>,
    /// A forward evaluation to start.
    pub job: Option<Job>,
    /// The `AccuracyDegraded` condition.
    pub condition: Desired,
    pub said: Said,
}

/// Judges `serving` on the recorded `data` and its forward accuracy, and starts its next
/// evaluation when one is due (recorded in `ledger`).
pub(super) fn plan(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    serving: Option<&ModelRecord>,
    data: Option<&DataStatus>,
    ledger: &mut EvaluationLedger,
) -> Judged {
    let gate = &observed.model.spec.promotion;
    let mut said = Said::default();
    let condition = condition(config, serving, gate, ledger.last_error.as_deref());
    Judged {
        new_data: new_data(config, serving, data),
        degraded_at: degraded_at(config, serving, gate),
        job: serving.zip(data).and_then(|(serving, data)| {
            start_evaluation(
                observed,
                config,
                defaults,
                (serving, data),
                ledger,
                &mut said,
            )
        }),
        condition,
        said,
    }
}

/// The new data that makes `serving` stale, if the last count was made against it.
fn new_data(
    config: &Config,
    serving: Option<&ModelRecord>,
    data: Option<&DataStatus>,
) -> Option<NewData> {
    let (serving, data, limit) = (serving?, data?, config.max_new_ratings?);
    let fingerprint = serving.fingerprint.as_ref()?;
    if data.version != serving.version || Some(data.since) != fingerprint.max_timestamp {
        return None;
    }
    Some(NewData {
        ratings: data.new_ratings,
        threshold: limit.threshold(fingerprint.rows),
        since: data.exceeded_at?,
    })
}

/// Starts a forward evaluation of the serving model when enough new ratings exist (`data`, the
/// last count), the last evaluation is at least `interval` old and something changed since it.
fn start_evaluation(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    (serving, data): (&ModelRecord, &DataStatus),
    ledger: &mut EvaluationLedger,
    said: &mut Said,
) -> Option<Job> {
    let (forward, model, now) = (config.forward.as_ref()?, observed.model, observed.now);
    // The evaluator would use a Secret the user did not allow (the condition says which).
    if model.spec.suspend
        || ledger.active.is_some()
        || observed.database.secret_not_allowed()
        || !super::store::pods_allowed(observed)
    {
        return None;
    }
    let since = serving.fingerprint.as_ref()?.max_timestamp?;
    let enough = data.version == serving.version
        && data.since == since
        && data.new_ratings >= forward.min_ratings;
    let unchanged = serving
        .forward
        .as_ref()
        .is_some_and(|f| f.since == since && f.ratings == data.new_ratings);
    if !enough || unchanged {
        return None;
    }
    if let Some(due) = ledger
        .last_started_at
        .map(|last| time::add(last, forward.interval))
        .filter(|due| *due > now)
    {
        said.wake.at(now, due);
        return None;
    }
    let number = ledger.last + 1;
    let version = &serving.version;
    let sha256 = serving.artifact.as_ref().map(|a| a.sha256.as_str());
    let job =
        children::evaluation_job(model, config, number, version, sha256, since, now, defaults);
    let name = children::evaluation_job_name(&model.name_any(), number);
    said.event(PlannedEvent::normal(
        Decided::ForwardEvaluationStarted,
        "Evaluate",
        &format!(
            "{name} scores {version} on the {} ratings after its snapshot",
            data.new_ratings
        ),
    ));
    ledger.last = number;
    ledger.last_started_at = Some(time::whole(now));
    ledger.active = Some(ActiveEvaluation {
        number,
        job: name,
        version: version.clone(),
        since,
        started_at: time::whole(now),
    });
    Some(job)
}

/// Why `serving`'s forward accuracy is degraded, if it is.
fn degradation(
    serving: &ModelRecord,
    forward: &Forward,
    gate: &Promotion,
) -> Option<(Accuracy, String)> {
    let f = serving.forward.as_ref()?;
    let v = &serving.version;
    if f.rmse > gate.max_rmse {
        return Some((
            Accuracy::AboveMaxRmse,
            format!(
                "{v}'s rmse on the {} ratings after its snapshot is {:.4}, above maxRmse {:?}",
                f.ratings, f.rmse, gate.max_rmse
            ),
        ));
    }
    let limit = serving.metrics.rmse + forward.max_rmse_increase;
    (f.rmse > limit).then(|| {
        (
            Accuracy::AboveCvRmse,
            format!(
                "{v}'s rmse on the {} ratings after its snapshot is {:.4}, more than maxRmseIncrease {:?} above its cross-validated {:.4}",
                f.ratings, f.rmse, forward.max_rmse_increase, serving.metrics.rmse
            ),
        )
    })
}

/// When the serving model's forward accuracy was found degraded (a retrain trigger), if it is
/// and retraining on it is asked for.
fn degraded_at(
    config: &Config,
    serving: Option<&ModelRecord>,
    gate: &Promotion,
) -> Option<Timestamp> {
    let forward = config
        .forward
        .as_ref()
        .filter(|f| f.retrain_when_degraded)?;
    let serving = serving?;
    degradation(serving, forward, gate)?;
    serving.forward.as_ref().map(|f| f.evaluated_at)
}

/// The `AccuracyDegraded` condition.
fn condition(
    config: &Config,
    serving: Option<&ModelRecord>,
    gate: &Promotion,
    last_error: Option<&str>,
) -> Desired {
    let unknown = |reason: Accuracy, message: String| Desired::new(reason, State::Unknown, message);
    let Some(forward) = &config.forward else {
        return unknown(
            Accuracy::NotEvaluated,
            "spec.freshness.forwardEvaluation is not set".into(),
        );
    };
    let Some(serving) = serving else {
        return unknown(Accuracy::NoModel, "no model is serving".into());
    };
    let Some(f) = &serving.forward else {
        return match last_error {
            Some(why) => unknown(Accuracy::EvaluationFailed, why.to_string()),
            None => unknown(
                Accuracy::NotEvaluated,
                format!(
                    "{} has not been evaluated on new ratings yet (at least {} needed)",
                    serving.version, forward.min_ratings
                ),
            ),
        };
    };
    match degradation(serving, forward, gate) {
        Some((reason, message)) => Desired::new(reason, State::True, message),
        None => Desired::new(
            Accuracy::WithinLimits,
            State::False,
            format!(
                "{}'s rmse on the {} ratings after its snapshot is {:.4} (cross-validated {:.4})",
                serving.version, f.ratings, f.rmse, serving.metrics.rmse
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
