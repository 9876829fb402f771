//! Freshness: the serving model turns `Stale` once it is older than `maxAge`, at exactly that
//! moment (a timer is set for it), or once `maxNewRatings` ratings arrived after its snapshot
//! (`NewData`, from the operator's count).

use super::Said;
use super::forward::NewData;
use crate::condition::{Desired, StaleReason, State};
use crate::crd::{ModelRecord, RunTrigger};
use crate::time;
use crate::validate::Config;
use jiff::Timestamp;

/// Whether the serving model is stale, since when, and why.
#[derive(Debug)]
pub(super) struct Freshness {
    /// When the serving model turns stale; `None` when nothing serves.
    pub stale_at: Option<Timestamp>,
    pub stale: bool,
    /// When it passes `maxAge`.
    pub old_at: Option<Timestamp>,
    /// The new ratings past `maxNewRatings`, if they are.
    pub new_data: Option<NewData>,
    /// The `Stale` condition.
    pub condition: Desired,
    /// A timer for the moment it turns stale.
    pub said: Said,
}

impl Freshness {
    /// Why a stale model retrains: new data when that came first.
    pub fn trigger(&self) -> RunTrigger {
        trigger(self.new_data, self.old_at)
    }
}

fn trigger(new_data: Option<NewData>, old_at: Option<Timestamp>) -> RunTrigger {
    match (new_data, old_at) {
        (Some(n), Some(old)) if n.since < old => RunTrigger::NewData,
        (Some(_), None) => RunTrigger::NewData,
        _ => RunTrigger::Stale,
    }
}

/// How fresh `serving` is at `now`: older than `maxAge` (`max_age` as the user wrote it), or
/// behind on `new_data`.
pub(super) fn assess(
    serving: Option<&ModelRecord>,
    config: &Config,
    max_age: &str,
    new_data: Option<NewData>,
    now: Timestamp,
) -> Freshness {
    let old_at = serving.map(|m| time::add(m.trained_at, config.max_age));
    let new_data = new_data.filter(|_| serving.is_some());
    let stale_at = match (old_at, new_data) {
        (Some(old), Some(n)) => Some(old.min(n.since)),
        (old, _) => old,
    };
    let stale = stale_at.is_some_and(|at| at <= now);
    let mut said = Said::default();
    if let Some(at) = stale_at
        && !stale
    {
        said.wake.at(now, at);
    }
    let condition = condition(serving, stale, old_at, new_data, max_age);
    Freshness {
        stale_at,
        stale,
        old_at,
        new_data,
        condition,
        said,
    }
}

/// The `Stale` condition.
fn condition(
    serving: Option<&ModelRecord>,
    stale: bool,
    old_at: Option<Timestamp>,
    new_data: Option<NewData>,
    max_age: &str,
) -> Desired {
    if let (Some(m), Some(n)) = (serving, new_data)
        && stale
        && trigger(new_data, old_at) == RunTrigger::NewData
    {
        return Desired::new(
            StaleReason::NewData,
            State::True,
            format!(
                "{} ratings arrived after {}'s snapshot, at least maxNewRatings ({}) since {}",
                n.ratings, m.version, n.threshold, n.since
            ),
        );
    }
    match (serving, old_at) {
        (Some(m), Some(_)) if stale => Desired::new(
            StaleReason::MaxAgeExceeded,
            State::True,
            format!(
                "{} was trained at {} and is older than maxAge {max_age}",
                m.version, m.trained_at
            ),
        ),
        (Some(m), Some(at)) => Desired::new(
            StaleReason::Fresh,
            State::False,
            format!("{} turns stale at {}", m.version, time::whole(at)),
        ),
        _ => Desired::new(StaleReason::NoModel, State::Unknown, "no model is serving"),
    }
}

#[cfg(test)]
mod tests {
    use crate::crd::RunTrigger;
    use crate::decide::fixtures::*;
    use std::time::Duration;

    #[test]
    fn stale_boundary_is_exact() {
        // v1 trained at 11:00 with maxAge 1h turns stale at exactly 12:00:00.
        let mut spec = file_spec();
        spec.freshness.max_age = "1h".into();
        spec.freshness.retrain_when_stale = false;
        let cases = [
            (
                "2026-11-27T11:00:01Z",
                false,
                Some(Duration::from_millis(1100)),
            ),
            ("2026-11-27T11:00:00Z", true, None),
            ("2026-11-27T10:00:00Z", true, None),
        ];
        for (trained_at, stale, requeue) in cases {
            let m = model(spec.clone(), Some(serving_status(&spec, trained_at)));
            let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
            assert_eq!(plan.status.stale, stale, "{trained_at}");
            assert_eq!(
                condition(&plan, "Stale").status,
                if stale { "True" } else { "False" }
            );
            assert_eq!(
                plan.requeue_after, requeue,
                "{trained_at}: requeue exactly at the boundary"
            );
            assert!(plan.start_job.is_none(), "retrainWhenStale is off");
        }
    }

    #[test]
    fn stale_with_retraining_on_trains_once() {
        let mut spec = file_spec();
        spec.freshness.max_age = "1h".into();
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T10:00:00Z")),
        );
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        assert_eq!(
            plan.status.runs.active.as_ref().unwrap().trigger,
            RunTrigger::Stale
        );
        assert_eq!(job_name(&plan).as_deref(), Some("movies-train-2"));
        assert!(
            condition(&plan, "Stale")
                .message
                .contains("older than maxAge 1h")
        );

        // An attempt after the model turned stale was rejected: no new attempt in a loop.
        let mut status = serving_status(&spec, "2026-11-27T10:00:00Z");
        status.runs.last_attempt_started_at = Some(at("2026-11-27T11:30:00Z"));
        let m = model(spec.clone(), Some(status));
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        assert!(plan.start_job.is_none());
    }
}
