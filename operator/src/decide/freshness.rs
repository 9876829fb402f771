//! Freshness: the serving model turns `Stale` once it is older than `maxAge`, at exactly that
//! moment (a timer is set for it).

use super::Draft;
use crate::condition::{self as cond, Desired, State};
use crate::crd::ModelRecord;
use crate::time;
use jiff::Timestamp;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Freshness {
    /// When the serving model turns stale; `None` when nothing serves.
    pub stale_at: Option<Timestamp>,
    pub stale: bool,
}

pub(super) fn assess(serving: Option<&ModelRecord>, max_age: Duration, d: &mut Draft) -> Freshness {
    let stale_at = serving.map(|m| time::add(m.trained_at, max_age));
    let stale = stale_at.is_some_and(|at| at <= d.now);
    if let Some(at) = stale_at
        && !stale
    {
        d.wake.at(d.now, at);
    }
    d.status.stale = stale;
    Freshness { stale_at, stale }
}

/// The `Stale` condition; `max_age` as the user wrote it.
pub(super) fn condition(
    serving: Option<&ModelRecord>,
    freshness: &Freshness,
    max_age: &str,
) -> Desired {
    match (serving, freshness.stale_at) {
        (Some(m), Some(_)) if freshness.stale => Desired::new(
            cond::STALE,
            State::True,
            "MaxAgeExceeded",
            format!(
                "{} was trained at {} and is older than maxAge {max_age}",
                m.version, m.trained_at
            ),
        ),
        (Some(m), Some(at)) => Desired::new(
            cond::STALE,
            State::False,
            "Fresh",
            format!("{} turns stale at {}", m.version, time::whole(at)),
        ),
        _ => Desired::new(
            cond::STALE,
            State::Unknown,
            "NoModel",
            "no model is serving",
        ),
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
            plan.status.active_run.as_ref().unwrap().trigger,
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
        status.last_attempt_started_at = Some(at("2026-11-27T11:30:00Z"));
        let m = model(spec.clone(), Some(status));
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        assert!(plan.start_job.is_none());
    }
}
