//! The conditions a person (and an alert) reads, the phase that sums them up, and events for the
//! transitions that matter.

use super::PlannedEvent;
use super::freshness::{self, Freshness};
use super::runs::RunsSeen;
use super::scaling;
use super::serving::{self, Serving};
use crate::condition::{self as cond, Desired, State};
use crate::crd::{Phase, RecommenderModelStatus, RunOutcome};
use crate::observe::{DatabaseProbe, Observed};
use crate::time;
use crate::validate::Config;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

pub(super) fn desired(
    observed: &Observed,
    config: &Config,
    status: &RecommenderModelStatus,
    serving: &Serving,
    freshness: &Freshness,
    seen: &RunsSeen,
) -> Vec<Desired> {
    let spec = &observed.model.spec;
    let replicas = scaling::desired_replicas(observed.model, observed.rollout.as_ref());
    let serving_cond = serving::inference_targets(
        serving::condition(serving, observed.rollout.as_ref(), replicas),
        serving,
        status.online.as_ref(),
        &serving::Targets {
            latency: config.latency_objective,
            max_rmse: spec.promotion.max_rmse,
        },
        observed.now,
    );
    let database = database(&observed.database);
    let workers = workers(observed, serving, seen);
    let ready = ready(&[&serving_cond, &database, &workers]);
    vec![
        ready,
        serving_cond,
        training(observed, status),
        promoted(status),
        freshness::condition(serving.model.as_ref(), freshness, &spec.freshness.max_age),
        database,
        workers,
    ]
}

fn training(observed: &Observed, status: &RecommenderModelStatus) -> Desired {
    if let Some(active) = &status.active_run {
        return Desired::new(
            cond::TRAINING,
            State::True,
            "Running",
            format!(
                "run {} ({}) started at {} ({})",
                active.run, active.job, active.started_at, active.trigger
            ),
        );
    }
    if observed.model.spec.suspend {
        return Desired::new(
            cond::TRAINING,
            State::False,
            "Suspended",
            "spec.suspend is true",
        );
    }
    match status.retry_after.filter(|at| *at > observed.now) {
        Some(at) => {
            let last = status
                .history
                .iter()
                .rev()
                .find(|r| r.outcome == RunOutcome::Failed)
                .map(|r| format!(", the last ({}) {}: {}", r.version, r.reason, r.message))
                .unwrap_or_default();
            Desired::new(
                cond::TRAINING,
                State::False,
                "BackingOff",
                format!(
                    "{} consecutive failed run(s){last}; next attempt not before {}",
                    status.consecutive_failures,
                    time::whole(at)
                ),
            )
        }
        None => Desired::new(
            cond::TRAINING,
            State::False,
            "Idle",
            "no training run in progress",
        ),
    }
}

fn promoted(status: &RecommenderModelStatus) -> Desired {
    let Some(last) = status.history.last() else {
        return Desired::new(
            cond::PROMOTED,
            State::Unknown,
            "NoCandidate",
            "no training run has finished yet",
        );
    };
    let (state, reason) = match last.outcome {
        RunOutcome::Succeeded => (State::True, "Promoted".to_string()),
        RunOutcome::Rejected => (State::False, last.reason.to_string()),
        RunOutcome::Failed => (State::False, "TrainingFailed".to_string()),
    };
    Desired::new(cond::PROMOTED, state, reason, last.message.clone())
}

fn database(probe: &DatabaseProbe) -> Desired {
    match probe {
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
    }
}

fn workers(observed: &Observed, serving: &Serving, seen: &RunsSeen) -> Desired {
    let rollout = observed
        .rollout
        .as_ref()
        .filter(|_| serving.model.is_some());
    if let Some(why) = &seen.stuck_trainer {
        return Desired::new(
            cond::WORKERS_HEALTHY,
            State::False,
            "TrainerPodStuck",
            why.clone(),
        );
    }
    let replicas = rollout.map(|r| {
        format!(
            "{} of {} predictor replicas available",
            r.available, r.desired
        )
    });
    match (rollout, replicas) {
        (Some(r), Some(text)) if r.available < r.desired => Desired::new(
            cond::WORKERS_HEALTHY,
            State::False,
            "PredictorReplicasShort",
            text,
        ),
        (_, replicas) => Desired::new(
            cond::WORKERS_HEALTHY,
            State::True,
            "Healthy",
            replicas.unwrap_or_else(|| "no worker reports a problem".into()),
        ),
    }
}

/// `Ready` is true when every condition it depends on is.
fn ready(parts: &[&Desired]) -> Desired {
    let failing: Vec<String> = parts
        .iter()
        .filter(|c| c.status != State::True)
        .map(|c| format!("{} is {} ({})", c.type_, c.status.as_str(), c.reason))
        .collect();
    if failing.is_empty() {
        Desired::new(
            cond::READY,
            State::True,
            "Ready",
            "serving, database reachable, workers healthy",
        )
    } else {
        Desired::new(cond::READY, State::False, "NotReady", failing.join("; "))
    }
}

pub(super) fn phase(suspend: bool, status: &RecommenderModelStatus) -> Phase {
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
pub(super) fn transition_events(old: &[Condition], new: &[Desired]) -> Vec<PlannedEvent> {
    new.iter()
        .filter(|c| c.type_ != cond::TRAINING && c.type_ != cond::PROMOTED)
        .filter(|c| {
            cond::find(old, c.type_)
                .is_none_or(|o| o.status != c.status.as_str() || o.reason != c.reason)
        })
        .filter_map(|c| {
            let bad = match c.type_ {
                cond::STALE | cond::ACCURACY_DEGRADED => c.status == State::True,
                _ => c.status == State::False,
            };
            // A condition's first appearance is news only when it is bad.
            (bad || cond::find(old, c.type_).is_some()).then_some((c, bad))
        })
        .map(|(c, bad)| {
            let note = format!("{} {}: {}", c.type_, c.status.as_str(), c.message);
            if bad {
                PlannedEvent::warning(&c.reason, "Observe", &note)
            } else {
                PlannedEvent::normal(&c.reason, "Observe", &note)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::crd::{Phase, PostgresSource, RecommenderModelSpec, SecretKeyRef, Source};
    use crate::decide::fixtures::*;
    use crate::decide::{decide, invalid};
    use crate::observe::{DatabaseProbe, RunState};
    use crate::validate::validate;
    use kube::runtime::events::EventType;
    use std::time::Duration;

    #[test]
    fn suspend_starts_nothing() {
        let m = model(
            RecommenderModelSpec {
                suspend: true,
                ..file_spec()
            },
            None,
        );
        let plan = decide_for(&m, vec![], None);
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
                ssl_mode: Default::default(),
                ca_secret_ref: None,
            }),
            file: None,
        };
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let mut obs = observe(&m, vec![], Some(available("v1", 1, 1)));
        obs.database = DatabaseProbe::Unreachable("connection refused".into());
        let plan = decide(&obs, &config(&m), &defaults());
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
                .any(|e| e.type_ == EventType::Warning && e.reason == "Unreachable")
        );

        obs.database = DatabaseProbe::Reachable;
        let plan = decide(&obs, &config(&m), &defaults());
        assert_eq!(condition(&plan, "DatabaseReachable").status, "True");
        assert_eq!(condition(&plan, "Ready").status, "True");
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
                pending_since: Some(at("2026-11-27T11:50:00Z")),
            },
        );
        let plan = decide_for(&m, vec![pending], None);
        let workers = condition(&plan, "WorkersHealthy");
        assert_eq!(workers.reason, "TrainerPodStuck");
        assert!(
            workers
                .message
                .contains("Pending since 2026-11-27T11:50:00Z"),
            "{}",
            workers.message
        );

        let young = run(
            1,
            &spec,
            RunState::Running {
                stuck: None,
                pending_since: Some(at("2026-11-27T11:58:00Z")),
            },
        );
        let plan = decide_for(&m, vec![young], None);
        assert_eq!(condition(&plan, "WorkersHealthy").status, "True");
        assert_eq!(plan.requeue_after, Some(Duration::from_millis(180_100)));

        let image = run(
            1,
            &spec,
            RunState::Running {
                stuck: Some("pod movies-train-1-x is ErrImagePull: not found".into()),
                pending_since: Some(at("2026-11-27T11:59:00Z")),
            },
        );
        let plan = decide_for(&m, vec![image], None);
        let workers = condition(&plan, "WorkersHealthy");
        assert_eq!(
            (workers.status.as_str(), workers.message.as_str()),
            ("False", "pod movies-train-1-x is ErrImagePull: not found"),
            "a stuck reason counts at once, without waiting for the tolerance"
        );
    }

    #[test]
    fn deciding_twice_writes_the_same_status() {
        let spec = file_spec();
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let first = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        let mut again = m.clone();
        again.status = Some(first.status.clone());
        let mut obs = observe(&again, vec![], Some(available("v1", 1, 1)));
        obs.now = at("2026-11-27T12:05:00Z");
        let second = decide(&obs, &config(&again), &defaults());
        assert_eq!(first.status, second.status);
        assert!(
            second.events.is_empty(),
            "no news, no events: {:?}",
            second.events
        );
    }

    #[test]
    fn an_invalid_spec_is_one_condition_and_touches_nothing() {
        let spec = file_spec();
        let mut m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let serving = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        m.status = Some(serving.status.clone());
        m.metadata.generation = Some(2);
        m.spec.freshness.max_age = "a week".into();
        let problem = validate(&m.spec).unwrap_err();
        let plan = invalid(&m, &problem, now());
        let ready = condition(&plan, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(
            ready.message.starts_with("spec.freshness.maxAge: "),
            "{}",
            ready.message
        );
        assert_eq!(plan.status.observed_generation, Some(2));
        assert_eq!(plan.status.phase, Phase::Degraded, "v1 still serves");
        assert_eq!(
            condition(&plan, "Serving"),
            condition(&serving, "Serving"),
            "other conditions are left as they were"
        );
        assert!(plan.start_job.is_none() && plan.deployment.is_none() && plan.service.is_none());
        assert!(
            plan.events
                .iter()
                .any(|e| e.type_ == EventType::Warning && e.reason == "InvalidSpec")
        );
        assert_eq!(plan.requeue_after, None, "a fixed spec wakes us");
    }
}
