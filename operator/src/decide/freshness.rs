//! Freshness: the serving model turns `Stale` once it is older than `maxAge`, at exactly that
//! moment (a timer is set for it), or once `maxNewRatings` ratings arrived after its snapshot
//! (`NewData`, from the operator's count).

use super::Draft;
use super::forward::NewData;
use crate::condition::{Desired, StaleReason, State};
use crate::crd::ModelRecord;
use crate::time;
use jiff::Timestamp;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Freshness {
    /// When the serving model turns stale; `None` when nothing serves.
    pub stale_at: Option<Timestamp>,
    pub stale: bool,
    /// When it passes `maxAge`.
    pub old_at: Option<Timestamp>,
    /// The new ratings past `maxNewRatings`, if they are.
    pub new_data: Option<NewData>,
    /// When the forward evaluation found it degraded (and that should retrain).
    pub degraded_at: Option<Timestamp>,
}

impl Freshness {
    /// Why a stale model retrains: new data when that came first.
    pub fn trigger(&self) -> crate::crd::RunTrigger {
        match (self.new_data, self.old_at) {
            (Some(n), Some(old)) if n.since < old => crate::crd::RunTrigger::NewData,
            (Some(_), None) => crate::crd::RunTrigger::NewData,
            _ => crate::crd::RunTrigger::Stale,
        }
    }
}

pub(super) fn assess(
    serving: Option<&ModelRecord>,
    max_age: Duration,
    new_data: Option<NewData>,
    d: &mut Draft,
) -> Freshness {
    let old_at = serving.map(|m| time::add(m.trained_at, max_age));
    let new_data = new_data.filter(|_| serving.is_some());
    let stale_at = match (old_at, new_data) {
        (Some(old), Some(n)) => Some(old.min(n.since)),
        (old, _) => old,
    };
    let stale = stale_at.is_some_and(|at| at <= d.now);
    if let Some(at) = stale_at
        && !stale
    {
        d.wake.at(d.now, at);
    }
    d.status.stale = stale;
    Freshness {
        stale_at,
        stale,
        old_at,
        new_data,
        degraded_at: None,
    }
}

/// The `Stale` condition; `max_age` as the user wrote it.
pub(super) fn condition(
    serving: Option<&ModelRecord>,
    freshness: &Freshness,
    max_age: &str,
) -> Desired {
    if let (Some(m), Some(n)) = (serving, freshness.new_data)
        && freshness.stale
        && freshness.trigger() == crate::crd::RunTrigger::NewData
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
    match (serving, freshness.old_at) {
        (Some(m), Some(_)) if freshness.stale => Desired::new(
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
            crate::crd::RunTrigger::Stale
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
