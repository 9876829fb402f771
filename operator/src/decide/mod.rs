//! The decide stage: a pure function from what is observed (the resource, its training runs,
//! its predictor rollout, the database probe, the clock) and the validated spec to what should be
//! (children to apply, the new status, events, when to look again). No client, so every decision
//! is a unit test. Each concern has its own module, with its tests next to it.

mod conditions;
mod forward;
mod freshness;
mod promotion;
mod retention;
mod runs;
mod scaling;
mod serving;

#[cfg(test)]
pub(crate) mod fixtures;

pub use promotion::{
    Metric, Rejection, Shortfall, Verdict, compare, describe, judge, judge_against,
};
pub use runs::{BACKOFF_BASE, BACKOFF_CAP, HISTORY_LIMIT, PENDING_TOLERANCE, backoff};
pub use scaling::ScalingPlan;
pub use serving::MODELS_LIMIT;

use crate::children::{self, Defaults};
use crate::condition::{self, ConditionType, Desired, ReadyReason, Reason, State};
use crate::crd::{Phase, RecommenderModel, RecommenderModelStatus, RunRecord};
use crate::observe::{DatabaseProbe, Observed};
use crate::time;
use crate::validate::{Config, Invalid, SourceConfig};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::events::EventType;
use std::time::Duration;

crate::condition::words! {
    /// The reason of an event about something the decision did or recorded (a changed condition
    /// is published under its own reason instead).
    pub enum Decided {
        TrainingStarted,
        TrainingFailed,
        Promoted,
        /// A candidate missed a threshold of the gate.
        GateFailed,
        /// A candidate did not beat the serving model under `mustBeatServing`.
        NotBetter,
        ForwardEvaluationStarted,
        ForwardEvaluated,
        ForwardEvaluationFailed,
        CleanupStarted,
    }
}

/// Why an event was published: something decided, or a condition that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    Decided(Decided),
    Condition(Reason),
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decided(d) => d.as_str(),
            Self::Condition(r) => r.as_str(),
        }
    }
}

impl From<Decided> for EventReason {
    fn from(decided: Decided) -> Self {
        Self::Decided(decided)
    }
}

impl From<Reason> for EventReason {
    fn from(reason: Reason) -> Self {
        Self::Condition(reason)
    }
}

/// Compares the word as published.
impl PartialEq<&str> for EventReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Every reason an event of the operator can carry.
pub fn event_reasons() -> Vec<EventReason> {
    let decided = Decided::ALL.iter().map(|d| EventReason::from(*d));
    let changed = ConditionType::ALL
        .iter()
        .filter(|t| conditions::announced(**t))
        .flat_map(|t| t.reasons())
        .map(EventReason::from);
    decided.chain(changed).collect()
}

/// An event to publish about the resource (kube's `Event` minus the parts the decision does
/// not choose, and comparable in tests).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    pub type_: EventType,
    pub reason: EventReason,
    pub action: &'static str,
    pub note: String,
}

impl PlannedEvent {
    pub fn normal(reason: impl Into<EventReason>, action: &'static str, note: &str) -> Self {
        Self::new(EventType::Normal, reason.into(), action, note)
    }

    pub fn warning(reason: impl Into<EventReason>, action: &'static str, note: &str) -> Self {
        Self::new(EventType::Warning, reason.into(), action, note)
    }

    fn new(type_: EventType, reason: EventReason, action: &'static str, note: &str) -> Self {
        Self {
            type_,
            reason,
            action,
            note: note.into(),
        }
    }
}

/// Everything the controller should make true.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A trainer Job to create (only when a new run starts; running Jobs are left alone).
    pub start_job: Option<Job>,
    /// A forward-evaluation Job to create.
    pub start_evaluation: Option<Job>,
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    /// The predictor's autoscaler and disruption budget, and the replica hand-over.
    pub scaling: ScalingPlan,
    /// A model store cleanup to start (artifacts outside the retention window).
    pub cleanup_job: Option<Job>,
    pub status: RecommenderModelStatus,
    pub events: Vec<PlannedEvent>,
    /// Runs whose outcome was recorded by this decision (for metrics).
    pub finished: Vec<RunRecord>,
    /// When to look again even if nothing changes: the soonest time a decision would differ.
    pub requeue_after: Option<Duration>,
}

/// The status being written, and what the decision has to say about it so far.
struct Draft {
    now: Timestamp,
    status: RecommenderModelStatus,
    events: Vec<PlannedEvent>,
    finished: Vec<RunRecord>,
    wake: Wake,
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
        self.after(time::until(now, at) + Duration::from_millis(100));
    }
}

pub fn decide(observed: &Observed, config: &Config, defaults: &Defaults) -> Plan {
    let model = observed.model;
    let old = model.status.clone().unwrap_or_default();
    let mut draft = Draft {
        now: observed.now,
        status: old.clone(),
        events: Vec::new(),
        finished: Vec::new(),
        wake: Wake::default(),
    };
    let spec_hash = children::training_spec_hash(&model.spec);

    forward::record_count(observed, config, &mut draft);
    let seen = runs::record(observed, &spec_hash, &mut draft);
    forward::record_evaluations(observed, &mut draft);
    let pin = model.spec.pinned_version.as_deref();
    retention::trim(&mut draft.status, model.spec.model_store.keep, pin);
    let serving = serving::choose(&draft.status, pin);
    draft.status.serving = serving.model.clone();
    let new_data = forward::new_data(config, serving.model.as_ref(), draft.status.data.as_ref());
    let mut freshness =
        freshness::assess(serving.model.as_ref(), config.max_age, new_data, &mut draft);
    freshness.degraded_at =
        forward::degraded_at(config, serving.model.as_ref(), &model.spec.promotion);
    let start_job = runs::start(
        observed, config, defaults, &spec_hash, &freshness, &mut draft,
    );
    let start_evaluation = forward::start_evaluation(observed, config, defaults, &mut draft);
    let (deployment, service) = serving::children(model, &serving, defaults);
    let scaling = match &deployment {
        Some(_) => scaling::plan(model, observed.rollout.as_ref()),
        None => ScalingPlan::default(),
    };
    draft.status.predictor = serving::predictor_status(model, &serving, observed.rollout.as_ref());
    let cleanup_job = retention::cleanup(
        model,
        &serving,
        observed.rollout.as_ref(),
        defaults,
        &mut draft,
    );
    (draft.status.url, draft.status.address) = serving::address(model, &serving, defaults);

    let mut desired =
        conditions::desired(observed, config, &draft.status, &serving, &freshness, &seen);
    desired.push(forward::condition(
        config,
        serving.model.as_ref(),
        &model.spec.promotion,
        draft.status.evaluations.last_error.as_deref(),
    ));
    let generation = model.metadata.generation;
    draft.status.conditions = condition::merge(&old.conditions, &desired, draft.now, generation);
    draft.status.observed_generation = generation;
    draft.status.phase = conditions::phase(model.spec.suspend, &draft.status);
    draft
        .events
        .extend(conditions::transition_events(&old.conditions, &desired));

    if let (DatabaseProbe::Reachable | DatabaseProbe::Unreachable(_), SourceConfig::Postgres(pg)) =
        (&observed.database, &config.source)
    {
        draft
            .wake
            .after(Duration::from_secs(pg.probe_interval_seconds.into()));
    }

    Plan {
        start_job,
        start_evaluation,
        deployment,
        service,
        scaling,
        cleanup_job,
        status: draft.status,
        events: draft.events,
        finished: draft.finished,
        requeue_after: draft.wake.soonest,
    }
}

/// The plan for a spec that failed validation: nothing is started or changed, what serves keeps
/// serving, and `Ready` says which field is wrong. A fixed spec is a change, which wakes us.
pub fn invalid(model: &RecommenderModel, invalid: &Invalid, now: Timestamp) -> Plan {
    let old = model.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let ready = Desired::new(ReadyReason::InvalidSpec, State::False, invalid.to_string());
    let generation = model.metadata.generation;
    status.conditions = condition::set(&old.conditions, &ready, now, generation);
    status.observed_generation = generation;
    status.phase = if status.serving.is_some() {
        Phase::Degraded
    } else {
        Phase::Failed
    };
    Plan {
        start_job: None,
        start_evaluation: None,
        deployment: None,
        service: None,
        scaling: ScalingPlan::default(),
        cleanup_job: None,
        status,
        events: conditions::transition_events(&old.conditions, &[ready]),
        finished: Vec::new(),
        requeue_after: None,
    }
}
