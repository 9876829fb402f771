//! Standard Kubernetes conditions, with `lastTransitionTime` kept unless the status flips, so
//! writing the same state twice changes nothing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const SERVING: &str = "Serving";
pub const TRAINING: &str = "Training";
pub const PROMOTED: &str = "Promoted";
pub const STALE: &str = "Stale";
pub const DATABASE_REACHABLE: &str = "DatabaseReachable";
pub const WORKERS_HEALTHY: &str = "WorkersHealthy";
/// The serving model predicts the ratings after its snapshot worse than allowed.
pub const ACCURACY_DEGRADED: &str = "AccuracyDegraded";

/// The order conditions appear in the status.
pub const ALL: [&str; 8] = [
    READY,
    SERVING,
    TRAINING,
    PROMOTED,
    STALE,
    DATABASE_REACHABLE,
    WORKERS_HEALTHY,
    ACCURACY_DEGRADED,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    True,
    False,
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition as the decision computes it, before transition times are merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: State,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: State,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Builds the new condition list: a condition whose status is unchanged keeps its
/// `lastTransitionTime`; reason and message always follow the latest observation.
pub fn merge(
    old: &[Condition],
    desired: &[Desired],
    now: Timestamp,
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = crate::time::whole(now);
    desired
        .iter()
        .map(|want| {
            let previous = old.iter().find(|c| c.type_ == want.type_);
            let since = match previous {
                Some(prev) if prev.status == want.status.as_str() => {
                    prev.last_transition_time.clone()
                }
                _ => Time(now),
            };
            Condition {
                type_: want.type_.to_string(),
                status: want.status.as_str().to_string(),
                reason: want.reason.clone(),
                message: want.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// `old` with the one condition `want` set (replaced in place, or added first), the others
/// untouched.
pub fn set(
    old: &[Condition],
    want: &Desired,
    now: Timestamp,
    generation: Option<i64>,
) -> Vec<Condition> {
    let mut merged = merge(old, std::slice::from_ref(want), now, generation);
    let mut conditions = old.to_vec();
    match old.iter().position(|c| c.type_ == want.type_) {
        Some(at) => conditions[at] = merged.remove(0),
        None => conditions.insert(0, merged.remove(0)),
    }
    conditions
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn transition_time_kept_while_status_holds_and_moves_when_it_flips() {
        let t0 = at("2026-11-27T10:00:00Z");
        let t1 = at("2026-11-27T11:00:00Z");
        let first = merge(
            &[],
            &[Desired::new(
                SERVING,
                State::False,
                "RollingOut",
                "v1 rolling out",
            )],
            t0,
            Some(1),
        );
        assert_eq!(first[0].last_transition_time, Time(t0));

        let same_status = merge(
            &first,
            &[Desired::new(
                SERVING,
                State::False,
                "RolloutStuck",
                "v1 stuck",
            )],
            t1,
            Some(1),
        );
        assert_eq!(same_status[0].last_transition_time, Time(t0));
        assert_eq!(same_status[0].reason, "RolloutStuck");

        let flipped = merge(
            &same_status,
            &[Desired::new(
                SERVING,
                State::True,
                "Available",
                "v1 available",
            )],
            t1,
            Some(2),
        );
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn set_replaces_one_condition_and_keeps_the_rest() {
        let t0 = at("2026-11-27T10:00:00Z");
        let all = merge(
            &[],
            &[
                Desired::new(READY, State::True, "Ready", "all good"),
                Desired::new(SERVING, State::True, "Available", "v1"),
            ],
            t0,
            Some(1),
        );
        let t1 = at("2026-11-27T11:00:00Z");
        let set = set(
            &all,
            &Desired::new(READY, State::False, "InvalidSpec", "spec.x: bad"),
            t1,
            Some(2),
        );
        assert_eq!(set.len(), 2);
        assert_eq!(
            (set[0].reason.as_str(), &set[0].last_transition_time),
            ("InvalidSpec", &Time(t1))
        );
        assert_eq!(set[1], all[1], "Serving untouched");
    }

    #[test]
    fn merge_is_idempotent() {
        let t0 = at("2026-11-27T10:00:00.123Z");
        let desired = [Desired::new(READY, State::True, "Ready", "all good")];
        let once = merge(&[], &desired, t0, Some(3));
        let twice = merge(&once, &desired, at("2026-11-27T12:00:00Z"), Some(3));
        assert_eq!(once, twice);
    }
}
