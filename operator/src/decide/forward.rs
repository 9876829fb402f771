//! What the ratings after the serving model's snapshot say: how many arrived (`status.data`,
//! the `NewData` side of `Stale`), and how well the model predicts them (forward evaluations,
//! `status.serving.forward` and `AccuracyDegraded`).

use super::{Decided, Draft, PlannedEvent};
use crate::children::{self, Defaults};
use crate::condition::{AccuracyDegradedReason as Accuracy, Desired, State};
use crate::crd::{ActiveEvaluation, DataStatus, ForwardRecord, ModelRecord, Promotion};
use crate::observe::{EvaluationState, Observed};
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

/// Records this reconcile's count of new ratings in `status.data`. Runs before the serving
/// model is chosen, so `d.status.serving` is the model the count was made against.
pub(super) fn record_count(observed: &Observed, config: &Config, d: &mut Draft) {
    let Some(result) = &observed.new_ratings else {
        return;
    };
    let Some(serving) = d.status.serving.clone() else {
        return;
    };
    let rows = serving.fingerprint.as_ref().map_or(0, |f| f.rows);
    let previous = d
        .status
        .data
        .take()
        .filter(|p| p.version == serving.version);
    d.status.data = Some(match result {
        Ok(count) => {
            let reached = config
                .max_new_ratings
                .is_some_and(|limit| count.ratings >= limit.threshold(rows));
            let kept = previous
                .as_ref()
                .filter(|p| p.since == count.since)
                .and_then(|p| p.exceeded_at);
            DataStatus {
                version: serving.version.clone(),
                since: count.since,
                new_ratings: count.ratings,
                new_users: count.users,
                new_items: count.items,
                newest: count.newest,
                counted_at: time::whole(d.now),
                exceeded_at: reached.then(|| kept.unwrap_or(time::whole(d.now))),
                error: None,
            }
        }
        Err(why) => DataStatus {
            error: Some(why.clone()),
            counted_at: time::whole(d.now),
            ..previous.unwrap_or(DataStatus {
                version: serving.version.clone(),
                since: serving
                    .fingerprint
                    .as_ref()
                    .and_then(|f| f.max_timestamp)
                    .unwrap_or_default(),
                new_ratings: 0,
                new_users: 0,
                new_items: 0,
                newest: None,
                counted_at: time::whole(d.now),
                exceeded_at: None,
                error: None,
            })
        },
    });
}

/// The new data that makes `serving` stale, if the last count was made against it.
pub(super) fn new_data(
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

/// Records finished forward evaluations on the model they scored, and adopts the one running.
pub(super) fn record_evaluations(observed: &Observed, d: &mut Draft) {
    let mut evaluations = observed.evaluations.clone();
    evaluations.sort_by_key(|e| e.number);
    for e in evaluations {
        d.status.evaluations.last = d.status.evaluations.last.max(e.number);
        let started_at = e.started_at.unwrap_or(d.now);
        match e.state {
            EvaluationState::Running => {
                d.status.evaluations.active = Some(ActiveEvaluation {
                    number: e.number,
                    job: e.job_name.clone(),
                    version: e.version.clone(),
                    since: e.since,
                    started_at,
                });
                d.status.evaluations.last_started_at = Some(started_at);
                continue;
            }
            EvaluationState::Succeeded {
                report: Ok(report),
                finished_at,
            } if report.forward.is_some() => {
                let forward = report.forward.as_ref().expect("checked above");
                let record = ForwardRecord::from_report(forward, finished_at.unwrap_or(d.now));
                d.events.push(PlannedEvent::normal(
                    Decided::ForwardEvaluated,
                    "Evaluate",
                    &format!(
                        "{} on the {} ratings after its snapshot: rmse {:.4}, mae {:.4}, accuracy {:.4}",
                        e.version, record.ratings, record.rmse, record.mae, record.accuracy
                    ),
                ));
                if let Some(m) = d.status.models.iter_mut().find(|m| m.version == e.version) {
                    m.forward = Some(record);
                }
                d.status.evaluations.last_error = None;
            }
            EvaluationState::Succeeded { report, .. } => {
                let why = report
                    .err()
                    .unwrap_or_else(|| "its report has no result".into());
                evaluation_failed(d, &e.job_name, &why);
            }
            EvaluationState::Failed { message, .. } => {
                evaluation_failed(d, &e.job_name, &message);
            }
        }
        if d.status
            .evaluations
            .active
            .as_ref()
            .is_some_and(|a| a.number == e.number)
        {
            d.status.evaluations.active = None;
        }
    }
}

fn evaluation_failed(d: &mut Draft, job: &str, why: &str) {
    let message = format!("forward evaluation {job} failed: {why}");
    d.events.push(PlannedEvent::warning(
        Decided::ForwardEvaluationFailed,
        "Evaluate",
        &message,
    ));
    d.status.evaluations.last_error = Some(message);
}

/// Starts a forward evaluation of the serving model when enough new ratings exist, the last
/// evaluation is at least `interval` old and something changed since it.
pub(super) fn start_evaluation(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    d: &mut Draft,
) -> Option<Job> {
    let forward = config.forward.as_ref()?;
    let model = observed.model;
    if model.spec.suspend || d.status.evaluations.active.is_some() {
        return None;
    }
    let serving = d.status.serving.clone()?;
    let since = serving.fingerprint.as_ref()?.max_timestamp?;
    let data = d.status.data.as_ref()?;
    if data.version != serving.version
        || data.since != since
        || data.new_ratings < forward.min_ratings
    {
        return None;
    }
    let unchanged = serving
        .forward
        .as_ref()
        .is_some_and(|f| f.since == since && f.ratings == data.new_ratings);
    if unchanged {
        return None;
    }
    if let Some(due) = d
        .status
        .evaluations
        .last_started_at
        .map(|last| time::add(last, forward.interval))
        .filter(|due| *due > d.now)
    {
        d.wake.at(d.now, due);
        return None;
    }
    let number = d.status.evaluations.last + 1;
    let job = children::evaluation_job(
        model,
        config,
        number,
        &serving.version,
        since,
        d.now,
        defaults,
    );
    let name = children::evaluation_job_name(&model.name_any(), number);
    d.events.push(PlannedEvent::normal(
        Decided::ForwardEvaluationStarted,
        "Evaluate",
        &format!(
            "{name} scores {} on the {} ratings after its snapshot",
            serving.version, data.new_ratings
        ),
    ));
    d.status.evaluations.last = number;
    d.status.evaluations.last_started_at = Some(time::whole(d.now));
    d.status.evaluations.active = Some(ActiveEvaluation {
        number,
        job: name,
        version: serving.version,
        since,
        started_at: time::whole(d.now),
    });
    Some(job)
}

/// Why `serving`'s forward accuracy is degraded, if it is: `(reason, message)`.
pub(super) fn degradation(
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
pub(super) fn degraded_at(
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
pub(super) fn condition(
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
