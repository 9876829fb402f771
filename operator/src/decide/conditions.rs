//! The conditions a person (and an alert) reads, the phase that sums them up, and events for the
//! transitions that matter.

use super::PlannedEvent;
use super::freshness::{self, Freshness};
use super::runs::RunsSeen;
use super::scaling;
use super::serving::{self, Serving};
use crate::condition::{
    self as cond, ConditionType, DatabaseReachableReason, Desired, PromotedReason, ReadyReason,
    State, TrainingReason, WorkersHealthyReason,
};
use crate::crd::{Phase, RecommenderModelStatus, RunOutcome, RunReason};
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
    if let Some(active) = &status.runs.active {
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
    match status.runs.retry_after.filter(|at| *at > observed.now) {
        Some(at) => {
            let last = status
                .history
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
                    status.runs.consecutive_failures,
                    time::whole(at)
                ),
            )
        }
        None => Desired::new(
            TrainingReason::Idle,
            State::False,
            "no training run in progress",
        ),
    }
}

fn promoted(status: &RecommenderModelStatus) -> Desired {
    let Some(last) = status.history.last() else {
        return Desired::new(
            PromotedReason::NoCandidate,
            State::Unknown,
            "no training run has finished yet",
        );
    };
    let (reason, state) = match (last.outcome, &last.reason) {
        (RunOutcome::Succeeded, _) => (PromotedReason::Promoted, State::True),
        (RunOutcome::Rejected, RunReason::NotBetter) => (PromotedReason::NotBetter, State::False),
        // The gate rejects for one other reason only.
        (RunOutcome::Rejected, _) => (PromotedReason::GateFailed, State::False),
        (RunOutcome::Failed, _) => (PromotedReason::TrainingFailed, State::False),
    };
    Desired::new(reason, state, last.message.clone())
}

fn database(probe: &DatabaseProbe) -> Desired {
    match probe {
        DatabaseProbe::NotUsed => Desired::new(
            DatabaseReachableReason::FileSource,
            State::True,
            "the ratings come from a file on the model store",
        ),
        DatabaseProbe::Reachable => Desired::new(
            DatabaseReachableReason::Reachable,
            State::True,
            "SELECT 1 succeeded",
        ),
        DatabaseProbe::Unreachable(why) => Desired::new(
            DatabaseReachableReason::Unreachable,
            State::False,
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
            WorkersHealthyReason::TrainerPodStuck,
            State::False,
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
            WorkersHealthyReason::PredictorReplicasShort,
            State::False,
            text,
        ),
        (_, replicas) => Desired::new(
            WorkersHealthyReason::Healthy,
            State::True,
            replicas.unwrap_or_else(|| "no worker reports a problem".into()),
        ),
    }
}

/// `Ready` is true when every condition it depends on is.
fn ready(parts: &[&Desired]) -> Desired {
    let failing: Vec<String> = parts
        .iter()
        .filter(|c| c.status != State::True)
        .map(|c| format!("{} is {} ({})", c.type_(), c.status, c.reason))
        .collect();
    if failing.is_empty() {
        Desired::new(
            ReadyReason::Ready,
            State::True,
            "serving, database reachable, workers healthy",
        )
    } else {
        Desired::new(ReadyReason::NotReady, State::False, failing.join("; "))
    }
}

pub(super) fn phase(suspend: bool, status: &RecommenderModelStatus) -> Phase {
    if suspend {
        return Phase::Suspended;
    }
    if status.runs.active.is_some() {
        return Phase::Training;
    }
    match &status.serving {
        None if status.runs.consecutive_failures > 0 => Phase::Failed,
        None => Phase::Pending,
        Some(_) if cond::is_true(&status.conditions, ConditionType::Ready) => Phase::Serving,
        Some(_) => Phase::Degraded,
    }
}

/// Whether a change of this condition is published as an event: `Training` and `Promoted`
/// changes are announced by the run events.
pub(super) fn announced(type_: ConditionType) -> bool {
    !matches!(type_, ConditionType::Training | ConditionType::Promoted)
}

/// Events for condition changes not already announced by a run event.
pub(super) fn transition_events(old: &[Condition], new: &[Desired]) -> Vec<PlannedEvent> {
    new.iter()
        .filter(|c| announced(c.type_()))
        .filter(|c| {
            cond::find(old, c.type_())
                .is_none_or(|o| o.status != c.status.as_str() || o.reason != c.reason.as_str())
        })
        .filter_map(|c| {
            let bad = match c.type_() {
                ConditionType::Stale | ConditionType::AccuracyDegraded => c.status == State::True,
                _ => c.status == State::False,
            };
            // A condition's first appearance is news only when it is bad.
            (bad || cond::find(old, c.type_()).is_some()).then_some((c, bad))
        })
        .map(|(c, bad)| {
            let note = format!("{} {}: {}", c.type_(), c.status, c.message);
            if bad {
                PlannedEvent::warning(c.reason, "Observe", &note)
            } else {
                PlannedEvent::normal(c.reason, "Observe", &note)
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
