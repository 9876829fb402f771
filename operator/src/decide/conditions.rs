//! The conditions a person (and an alert) reads, put together: each concern computes its own
//! (`Serving`, `ModelStoreReachable`, `Training`, `Promoted`, `Stale`, `AccuracyDegraded`); here
//! are the ones about the workers and the database, `Ready` over them, the phase that sums them
//! up, and events for the transitions that matter.

use super::{PlannedEvent, Said};
use crate::condition::{
    self as cond, ConditionType, DatabaseReachableReason, Desired, ReadyReason, State,
    WorkersHealthyReason,
};
use crate::crd::{Phase, RunLedger};
use crate::observe::{DatabaseProbe, Observed};
use crate::validate::{Config, SourceConfig};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use std::time::Duration;

/// The conditions the concerns computed.
pub(super) struct Reported {
    /// Whether a model serves.
    pub serves: bool,
    pub serving: Desired,
    /// `ModelStoreReachable`.
    pub store: Desired,
    pub training: Desired,
    pub promoted: Desired,
    pub stale: Desired,
    pub accuracy: Desired,
    /// Why the running trainer cannot make progress.
    pub stuck_trainer: Option<String>,
    /// `Tuned`, with `spec.tuning` only.
    pub tuned: Option<Desired>,
    /// `RollingOut`, under a progressive strategy or while a rollout is recorded.
    pub rolling_out: Option<Desired>,
}

/// The conditions as written, the phase, the events for what changed, and when to probe the
/// database again.
pub(super) struct Summary {
    pub conditions: Vec<Condition>,
    pub phase: Phase,
    pub said: Said,
}

/// Adds the database and workers conditions and `Ready` to what the concerns `reported`, merges
/// them into the `old` conditions and sums them up; `runs` says whether a run is in flight or
/// failing.
pub(super) fn report(
    observed: &Observed,
    config: &Config,
    old: &[Condition],
    reported: Reported,
    runs: &RunLedger,
) -> Summary {
    let model = observed.model;
    let serves = reported.serves;
    let database = database(&observed.database);
    let workers = workers(observed, serves, reported.stuck_trainer);
    let ready = ready(&[&reported.serving, &database, &reported.store, &workers]);
    let is_ready = ready.status == State::True;
    let mut desired = vec![
        ready,
        reported.serving,
        reported.training,
        reported.promoted,
        reported.stale,
        database,
        reported.store,
        workers,
        reported.accuracy,
    ];
    desired.extend(reported.tuned);
    desired.extend(reported.rolling_out);
    let mut said = Said {
        events: transition_events(old, &desired),
        ..Said::default()
    };
    // The probe runs on its interval whatever else happens.
    // A Secret not yet allowed is looked at again then too: labelling it does not wake us.
    if let (
        DatabaseProbe::Reachable
        | DatabaseProbe::Unreachable(_)
        | DatabaseProbe::SecretNotAllowed(_),
        SourceConfig::Postgres(pg),
    ) = (&observed.database, &config.source)
    {
        said.wake
            .after(Duration::from_secs(pg.probe_interval_seconds.into()));
    }
    if let Some(after) = super::store::next_look(observed) {
        said.wake.after(after);
    }
    Summary {
        conditions: cond::merge(old, &desired, observed.now, model.metadata.generation),
        phase: phase(model.spec.suspend, runs, serves, is_ready),
        said,
    }
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
        DatabaseProbe::SecretNotAllowed(why) => Desired::new(
            DatabaseReachableReason::SecretNotAllowed,
            State::False,
            why.clone(),
        ),
    }
}

fn workers(observed: &Observed, serves: bool, stuck_trainer: Option<String>) -> Desired {
    if let Some(why) = stuck_trainer {
        return Desired::new(WorkersHealthyReason::TrainerPodStuck, State::False, why);
    }
    let rollout = observed.rollout.as_ref().filter(|_| serves);
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
            "serving, database and model store reachable, workers healthy",
        )
    } else {
        Desired::new(ReadyReason::NotReady, State::False, failing.join("; "))
    }
}

fn phase(suspend: bool, runs: &RunLedger, serves: bool, ready: bool) -> Phase {
    if suspend {
        return Phase::Suspended;
    }
    if runs.active.is_some() {
        return Phase::Training;
    }
    match (serves, ready) {
        (false, _) if runs.consecutive_failures > 0 => Phase::Failed,
        (false, _) => Phase::Pending,
        (true, true) => Phase::Serving,
        (true, false) => Phase::Degraded,
    }
}

/// Whether a change of this condition is published as an event: `Training` and `Promoted`
/// changes are announced by the run events, `Tuned` by the search's, `RollingOut` by the
/// rollout's.
pub(super) fn announced(type_: ConditionType) -> bool {
    !matches!(
        type_,
        ConditionType::Training
            | ConditionType::Promoted
            | ConditionType::Tuned
            | ConditionType::RollingOut
    )
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

    fn postgres_spec() -> RecommenderModelSpec {
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
        spec
    }

    #[test]
    fn a_secret_not_allowed_is_said_and_starts_no_job() {
        let spec = postgres_spec();
        let why = "Secret ml/db (spec.source.postgres.passwordSecretRef) is not labelled \
                   recommender.dev/allow=true";
        // No model yet: without the Secret a first run would be started.
        let m = model(spec, None);
        let mut obs = observe(&m, vec![], None);
        obs.database = DatabaseProbe::SecretNotAllowed(why.into());
        let plan = decide(&obs, &config(&m), &defaults());
        let db = condition(&plan, "DatabaseReachable");
        assert_eq!(
            (db.status.as_str(), db.reason.as_str(), db.message.as_str()),
            ("False", "SecretNotAllowed", why)
        );
        assert!(plan.start_job.is_none(), "a trainer would mount the Secret");
        assert!(plan.start_evaluation.is_none());
        assert_eq!(
            plan.requeue_after,
            Some(Duration::from_secs(10)),
            "looked at again on the probe interval: a new label wakes nothing"
        );

        obs.database = DatabaseProbe::Reachable;
        let plan = decide(&obs, &config(&m), &defaults());
        assert!(plan.start_job.is_some(), "allowed, the first run starts");
    }

    #[test]
    fn database_down_makes_ready_false() {
        let spec = postgres_spec();
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
