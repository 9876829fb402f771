//! The decide stage: a pure function from what is observed (the resource, its training runs,
//! its predictor rollout, the database and model store probes, the clock) and the validated spec to what should be
//! (children to apply, the new status, events, when to look again). No client, so every decision
//! is a unit test. Each concern has its own module, with its tests next to it, and each of its
//! steps is given the parts of the status it writes and returns what it decided.

mod access;
mod conditions;
mod forward;
mod freshness;
mod promotion;
mod retention;
mod rollout;
mod runs;
mod scaling;
mod serving;
mod store;
mod tuning;

#[cfg(test)]
pub(crate) mod fixtures;

pub use access::NetworkPlan;
pub use promotion::{
    Metric, Rejection, Shortfall, Verdict, compare, describe, judge, judge_against,
};
pub use rollout::{CANDIDATE_REFUSED_AFTER, RECHECK as ROLLOUT_RECHECK, rollout_id};
pub use runs::{BACKOFF_BASE, BACKOFF_CAP, HISTORY_LIMIT, PENDING_TOLERANCE, backoff};
pub use scaling::ScalingPlan;
pub use serving::MODELS_LIMIT;
pub use store::STORE_PROBE_INTERVAL;
pub use tuning::{RungChildren, SearchEvent};

use crate::children::{self, Defaults};
use crate::condition::{self, ConditionType, Desired, ReadyReason, Reason, State};
use crate::crd::{
    ModelRecord, Phase, RecommenderModel, RecommenderModelStatus, RolloutEndReason, RunRecord,
};
use crate::observe::{Observed, WriteTokenState};
use crate::time;
use crate::validate::{Config, Invalid};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
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
        /// A candidate passed the gate and its progressive rollout started (shadow stage).
        RolloutStarted,
        /// A rollout moved to the canary's next step.
        RolloutAdvanced,
        /// `spec.rollout.paused` or `spec.suspend` holds a rollout.
        RolloutPaused,
        RolloutResumed,
        /// A stage timed out without a verdict and holds (`onInconclusive: Hold`).
        RolloutInconclusive,
        /// A rollout was aborted: the stable model serves everyone again.
        RolloutAborted,
    }
}

/// Why an event was published: something decided, or a condition that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    Decided(Decided),
    Searched(tuning::SearchEvent),
    Condition(Reason),
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decided(d) => d.as_str(),
            Self::Searched(s) => s.as_str(),
            Self::Condition(r) => r.as_str(),
        }
    }
}

impl From<Decided> for EventReason {
    fn from(decided: Decided) -> Self {
        Self::Decided(decided)
    }
}

impl From<tuning::SearchEvent> for EventReason {
    fn from(searched: tuning::SearchEvent) -> Self {
        Self::Searched(searched)
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
    let searched = tuning::SearchEvent::ALL
        .iter()
        .map(|s| EventReason::from(*s));
    let changed = ConditionType::ALL
        .iter()
        .filter(|t| conditions::announced(**t))
        .flat_map(|t| t.reasons())
        .map(EventReason::from);
    decided.chain(searched).chain(changed).collect()
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
    /// The record of the search whose best point `start_job` trains, owned by that Job.
    pub search_record: Option<ConfigMap>,
    /// A rung of a tuning search to start: its plan ConfigMap and Indexed Job.
    pub start_rung: Option<RungChildren>,
    /// A forward-evaluation Job to create.
    pub start_evaluation: Option<Job>,
    /// The rollout config's ConfigMap, while `status.rollout` exists; applied before the
    /// Deployment that mounts it.
    pub rollout_config: Option<ConfigMap>,
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    /// The predictor's autoscaler and disruption budget, and the replica hand-over.
    pub scaling: ScalingPlan,
    /// The predictor's NetworkPolicy.
    pub network: NetworkPlan,
    /// A model store cleanup to start (artifacts outside the retention window).
    pub cleanup_job: Option<Job>,
    pub status: RecommenderModelStatus,
    pub events: Vec<PlannedEvent>,
    /// Runs whose outcome was recorded by this decision (for metrics).
    pub finished: Vec<RunRecord>,
    /// Rollouts that ended in this decision (for metrics).
    pub rollouts_ended: Vec<RolloutEndReason>,
    /// When to look again even if nothing changes: the soonest time a decision would differ.
    pub requeue_after: Option<Duration>,
}

/// What a step has to say beside the part of the status it writes: events, and when the clock
/// alone would change its decision.
#[derive(Debug, Default)]
struct Said {
    events: Vec<PlannedEvent>,
    wake: Wake,
}

impl Said {
    fn event(&mut self, event: PlannedEvent) {
        self.events.push(event);
    }

    /// Appends what a later step said.
    fn and(&mut self, later: Said) {
        self.events.extend(later.events);
        if let Some(delay) = later.wake.soonest {
            self.wake.after(delay);
        }
    }
}

/// Collects the soonest moment a decision would change by the clock alone.
#[derive(Debug, Default)]
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

/// Each step gets the parts of the status it writes (`&mut`) and what it reads, and returns what
/// it decided; their order is the data flow: what happened is recorded before the serving model
/// is chosen, and what to start follows from the model chosen.
pub fn decide(observed: &Observed, config: &Config, defaults: &Defaults) -> Plan {
    let model = observed.model;
    let old = model.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let spec_hash = children::training_spec_hash(&model.spec);
    let (mut recorded, mut said) = record(observed, config, &spec_hash, &mut status);
    let rolling = std::mem::take(&mut recorded.rolling);
    let rolled = rollouts(observed, config, rolling, &mut status);

    // What should be, for the model that serves now.
    let online = status.online.as_ref();
    let mut served = serving::plan(observed, config, defaults, &status.models, online);
    let rollout = status.rollout.as_ref();
    // The predictors hold the candidate from the rollout's start to its end: only the
    // ConfigMap changes in between, so no pod restarts for a change of stage or share.
    if let (Some(deployment), Some((version, sha256))) =
        (served.deployment.as_mut(), rollout::candidate(rollout))
    {
        children::mount_rollout(deployment, model, version, sha256);
    }
    let rollout_config = rollout.map(|r| children::rollout_config_map(model, &rollout::config(r)));
    let rolling_out = rollout::condition(&model.spec, rollout);
    let rolling_candidate = rollout::candidate(rollout).map(|(v, _)| v.to_string());
    status.serving = served.chosen.model.clone();
    (status.predictor, status.url, status.address) = (served.predictor, served.url, served.address);
    let serving = status.serving.as_ref();
    let data = status.data.as_ref();
    let forward = forward::plan(
        observed,
        config,
        defaults,
        serving,
        data,
        &mut status.evaluations,
    );
    let max_age = &model.spec.freshness.max_age;
    let freshness = freshness::assess(serving, config, max_age, forward.new_data, observed.now);
    status.stale = freshness.stale;
    // The search in flight first: its end may train now, or record the run as not trained.
    let served_model = status.serving.clone();
    let advanced = tuning::advance(
        observed,
        config,
        defaults,
        (&spec_hash, served_model.as_ref()),
        &mut status.tuning,
    );
    let mut finished = recorded.finished;
    finished.extend(rolled.finished);
    let mut promoted = match rolled.started_or_ended {
        true => runs::promoted(&status.history),
        false => recorded.promoted,
    };
    if let Some(unrun) = &advanced.unrun {
        let mut book = runs::Book::of(&mut status, config.rollout.is_some());
        finished.push(book.unrun(unrun, &spec_hash, observed.now));
        promoted = runs::promoted(&status.history);
    }
    let serving = status.serving.as_ref();
    let reads = runs::Reads {
        spec_hash: &spec_hash,
        freshness: &freshness,
        degraded_at: forward.degraded_at,
        serving,
        history: &status.history,
        models: &status.models,
        tuning: status.tuning.as_ref(),
    };
    let started = runs::start(observed, config, defaults, reads, &mut status.runs);
    if started.search_record.is_some()
        && let Some(t) = status.tuning.as_mut()
    {
        // The run has the whole search now; the status keeps its best few.
        tuning::keep_best(t);
    }
    let mut rung = advanced.rung;
    let mut searched = advanced.said;
    if let Some(due) = started.search
        && let Some((children, said)) = tuning::start(
            observed,
            config,
            defaults,
            (due.0, due.1, &spec_hash),
            &mut status.tuning,
        )
    {
        rung = Some(children);
        searched.and(said);
    }
    let window = retention::Window {
        history: &status.history,
        models: &status.models,
        counts: status.run_counts,
        rolling: rolling_candidate.as_deref(),
    };
    let cleanup = retention::cleanup(observed, &served.chosen, defaults, window, &mut status.runs);

    let rolled_out = observed.rollout.as_ref().and_then(|r| r.version.as_deref());
    let store = store::condition(observed, rolled_out.or(serving.map(|m| m.version.as_str())));
    let reported = conditions::Reported {
        serves: status.serving.is_some(),
        serving: served.condition,
        store,
        training: started.training,
        promoted,
        stale: freshness.condition,
        accuracy: forward.condition,
        stuck_trainer: recorded.stuck_trainer,
        tuned: tuning::tuned(model.spec.tuning.as_ref(), status.tuning.as_ref()),
        rolling_out,
    };
    let summary = conditions::report(observed, config, &old.conditions, reported, &status.runs);
    (status.conditions, status.phase) = (summary.conditions, summary.phase);
    status.observed_generation = model.metadata.generation;

    // Secrets are not watched: a write token refused now is looked at again on a timer, so
    // labelling its Secret is enough.
    if matches!(observed.write_token, WriteTokenState::Refused(_)) {
        said.wake.after(access::SECRET_RECHECK);
    }
    for later in [
        rolled.said,
        freshness.said,
        searched,
        started.said,
        forward.said,
        cleanup.said,
        summary.said,
    ] {
        said.and(later);
    }
    Plan {
        start_job: started.job,
        search_record: started.search_record,
        start_rung: rung,
        start_evaluation: forward.job,
        rollout_config,
        deployment: served.deployment,
        service: served.service,
        scaling: served.scaling,
        network: served.network,
        cleanup_job: cleanup.job,
        status,
        events: said.events,
        finished,
        rollouts_ended: rolled.ended,
        requeue_after: said.wake.soonest,
    }
}

/// What the rollouts did in one decision.
struct Rolled {
    /// Runs whose rolled-out candidate was decided (their records made final).
    finished: Vec<RunRecord>,
    ended: Vec<RolloutEndReason>,
    /// Whether a rollout started or ended: the `Promoted` condition follows the history.
    started_or_ended: bool,
    said: Said,
}

/// Rollouts (`spec.rollout.strategy: Progressive`): each candidate that passed the gate starts
/// one (superseding the one in progress), the one in progress moves on by what the predictors
/// report, and one that ended either promotes its candidate (into `status.models`, as the gate
/// does under `Immediate`) or records its run rejected online.
fn rollouts(
    observed: &Observed,
    config: &Config,
    rolling: Vec<ModelRecord>,
    status: &mut RecommenderModelStatus,
) -> Rolled {
    let model = observed.model;
    let (spec, now) = (&model.spec, observed.now);
    let started = !rolling.is_empty();
    let mut moved = rollout::Moved::default();
    for candidate in rolling {
        match status
            .serving
            .clone()
            .or_else(|| status.models.last().cloned())
        {
            Some(stable) => moved.and(rollout::start(
                &model.name_any(),
                candidate,
                &stable,
                spec,
                now,
                &mut status.rollout,
            )),
            // Nothing to compare it with live (the gate promotes a first model at once).
            None => promotion::admit(&mut status.models, candidate),
        }
    }
    let reads = rollout::Reads {
        spec,
        settings: config.rollout.as_ref(),
        annotations: model.annotations(),
        online: status.online.as_ref().and_then(|o| o.rollout.as_ref()),
        now,
    };
    moved.and(rollout::advance(&reads, &mut status.rollout));
    let mut book = runs::Book::of(status, config.rollout.is_some());
    let (mut finished, mut ended) = (Vec::new(), Vec::new());
    for end in &moved.ended {
        if end.reason.promoted() {
            promotion::admit(book.models, end.candidate.clone());
        }
        finished.push(book.rollout_ended(end));
        ended.push(end.reason);
    }
    Rolled {
        finished,
        started_or_ended: started || !ended.is_empty(),
        ended,
        said: moved.said,
    }
}

/// What happened since the last look: finished runs (promoting their candidates), then the count
/// of new ratings and finished evaluations of the model that served until now, and the promoted
/// models trimmed to the retention window.
fn record(
    observed: &Observed,
    config: &Config,
    spec_hash: &str,
    status: &mut RecommenderModelStatus,
) -> (runs::Recorded, Said) {
    let book = runs::Book::of(status, config.rollout.is_some());
    let mut recorded = runs::record(observed, spec_hash, book);
    let served = status.serving.as_ref();
    let (data, ledger) = (&mut status.data, &mut status.evaluations);
    let measured = forward::record(observed, config, served, data, ledger, &mut status.models);
    let spec = &observed.model.spec;
    let pin = spec.pinned_version.as_deref();
    retention::trim(&mut status.models, spec.model_store.keep, pin);
    let mut said = std::mem::take(&mut recorded.said);
    said.and(measured);
    (recorded, said)
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
        search_record: None,
        start_rung: None,
        start_evaluation: None,
        rollout_config: None,
        deployment: None,
        service: None,
        scaling: ScalingPlan::default(),
        network: NetworkPlan::default(),
        cleanup_job: None,
        status,
        events: conditions::transition_events(&old.conditions, &[ready]),
        finished: Vec::new(),
        rollouts_ended: Vec::new(),
        requeue_after: None,
    }
}
