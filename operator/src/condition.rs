//! The conditions the operator writes: each condition type with the reasons it can carry, as
//! enums (alerts match these words, so a typo must not compile), and the standard Kubernetes
//! merge that keeps `lastTransitionTime` unless the status flips, so writing the same state twice
//! changes nothing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::fmt;

/// An enum of plain words: each variant is written as its own name.
macro_rules! words {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant)),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use words;

/// Declares the condition types, in the order they appear in the status, each with its enum of
/// reasons, and [`Reason`], which holds any of them (so a condition's type follows from its
/// reason and the two can never disagree).
macro_rules! conditions {
    ($($(#[$tmeta:meta])* $type_:ident: $reasons:ident {
        $($(#[$rmeta:meta])* $reason:ident),+ $(,)?
    })+) => {
        words! {
            /// The type of a condition the operator writes.
            pub enum ConditionType { $($(#[$tmeta])* $type_),+ }
        }

        $(words! {
            #[doc = concat!("Why `", stringify!($type_), "` is as it is.")]
            pub enum $reasons { $($(#[$rmeta])* $reason),+ }
        }

        impl From<$reasons> for Reason {
            fn from(reason: $reasons) -> Self {
                Self::$type_(reason)
            }
        })+

        /// A reason of any condition type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $($type_($reasons)),+ }

        impl Reason {
            pub fn condition_type(self) -> ConditionType {
                match self { $(Self::$type_(_) => ConditionType::$type_),+ }
            }

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$type_(r) => r.as_str()),+ }
            }
        }

        impl ConditionType {
            /// Every reason a condition of this type can carry.
            pub fn reasons(self) -> Vec<Reason> {
                match self {
                    $(Self::$type_ => $reasons::ALL.iter().map(|r| Reason::from(*r)).collect()),+
                }
            }
        }
    };
}

conditions! {
    /// Serving, database and model store reachable, and workers healthy.
    Ready: ReadyReason {
        Ready,
        NotReady,
        /// The spec failed validation; the message names the field.
        InvalidSpec,
    }
    /// A promoted model answers from the predictor (not `Unknown`, ever).
    Serving: ServingReason {
        NoModel,
        PinnedVersionUnknown,
        RollingOut,
        RolloutStuck,
        ScaledToZero,
        Available,
        PartiallyAvailable,
        Unavailable,
        /// Serving, but the p99 latency misses `spec.predictor.latencyObjective`.
        LatencyObjectiveMissed,
        /// Serving, but the RMSE against feedback exceeds `spec.promotion.maxRmse`.
        OnlineRmseOverGate,
        /// The Secret of `spec.predictor.writeToken` lacks the opt-in: the predictor Deployment
        /// is left as it is (the status is the running pods').
        WriteTokenNotAllowed,
        /// The Secret of `spec.predictor.writeToken` or its key is missing: the same.
        WriteTokenUnavailable,
    }
    Training: TrainingReason {
        Running,
        Suspended,
        BackingOff,
        Idle,
    }
    /// How the last finished run's candidate fared at the gate.
    Promoted: PromotedReason {
        NoCandidate,
        Promoted,
        GateFailed,
        NotBetter,
        TrainingFailed,
        /// The candidate passed the gate and is being rolled out progressively: not promoted
        /// yet (`Unknown`).
        RollingOut,
        /// The candidate passed the gate and was aborted on live traffic.
        RejectedOnline,
        /// The candidate's rollout was stopped by a pin or a newer candidate.
        RolloutStopped,
    }
    Stale: StaleReason {
        NewData,
        MaxAgeExceeded,
        Fresh,
        NoModel,
    }
    DatabaseReachable: DatabaseReachableReason {
        FileSource,
        Reachable,
        Unreachable,
        /// A Secret the spec names lacks the label `recommender.dev/allow=true`.
        SecretNotAllowed,
    }
    /// Whether the model store answers and the model's pods can use it.
    ModelStoreReachable: ModelStoreReachableReason {
        /// The store is a claim, which the pods mount (none reports a problem attaching it).
        Claim,
        /// A pod cannot attach or mount the claim (`FailedAttachVolume`, `Multi-Attach`,
        /// `FailedMount`): the message names the pod and gives the event's words.
        ClaimNotAttachable,
        /// A listing of the model's folder in the bucket succeeded.
        Reachable,
        /// No answer: connection refused, DNS failure, timeout, an untrusted certificate.
        Unreachable,
        BucketMissing,
        /// The store refused the key pair (`InvalidAccessKeyId`, `SignatureDoesNotMatch`,
        /// `AccessDenied`).
        CredentialsRefused,
        /// A Secret the spec names lacks the label `recommender.dev/allow=true`.
        SecretNotAllowed,
        /// The credentials or CA Secret is missing or lacks a key.
        SecretUnusable,
        /// A predictor refused the artifact of the version it was told to serve (another
        /// sha256, missing, unreadable); the previous version's pods keep serving.
        ArtifactRefused,
        /// Any other refusal of the store (read-only, full, invalid settings): the message says.
        StoreFailed,
    }
    WorkersHealthy: WorkersHealthyReason {
        TrainerPodStuck,
        PredictorReplicasShort,
        Healthy,
    }
    /// The serving model predicts the ratings after its snapshot worse than allowed.
    AccuracyDegraded: AccuracyDegradedReason {
        NotEvaluated,
        NoModel,
        EvaluationFailed,
        AboveMaxRmse,
        AboveCvRmse,
        WithinLimits,
    }
    /// How the last tuning search (`spec.tuning`) went; only with `spec.tuning`.
    Tuned: TunedReason {
        /// Trials are running.
        Searching,
        /// The best trial's parameters are trained (or are being).
        BestFound,
        /// No trial scored: no training run on searched parameters.
        AllTrialsFailed,
        /// The best trial scored worse than the serving model: no training run.
        WorseThanServing,
    }
    /// A progressive rollout (`spec.rollout.strategy: Progressive`): `True` while one runs,
    /// `False` once it ended or before the first; only under `Progressive` or while
    /// `status.rollout` exists.
    RollingOut: RollingOutReason {
        /// The candidate predicts every feedback rating beside the stable model; no user sees it.
        Shadow,
        /// The candidate answers a share of the users.
        Canary,
        /// `spec.rollout.paused` or `spec.suspend` holds it where it is.
        Paused,
        /// A stage timed out without a verdict and `onInconclusive` is `Hold`: it waits for a
        /// person (or more evidence).
        Inconclusive,
        /// The last rollout promoted its candidate.
        Promoted,
        /// The last rollout was aborted; the message has the end reason and the figures.
        Aborted,
        /// No rollout has run yet.
        NoRollout,
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

words! {
    pub enum State {
        True,
        False,
        Unknown,
    }
}

impl State {
    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition as the decision computes it, before transition times are merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub reason: Reason,
    pub status: State,
    pub message: String,
}

impl Desired {
    pub fn new(reason: impl Into<Reason>, status: State, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            status,
            message: message.into(),
        }
    }

    pub fn type_(&self) -> ConditionType {
        self.reason.condition_type()
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
            let previous = find(old, want.type_());
            let since = match previous {
                Some(prev) if prev.status == want.status.as_str() => {
                    prev.last_transition_time.clone()
                }
                _ => Time(now),
            };
            Condition {
                type_: want.type_().to_string(),
                status: want.status.to_string(),
                reason: want.reason.to_string(),
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
    match old.iter().position(|c| c.type_ == want.type_().as_str()) {
        Some(at) => conditions[at] = merged.remove(0),
        None => conditions.insert(0, merged.remove(0)),
    }
    conditions
}

pub fn find(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

pub fn is_true(conditions: &[Condition], type_: ConditionType) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == State::True.as_str())
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
                ServingReason::RollingOut,
                State::False,
                "v1 rolling out",
            )],
            t0,
            Some(1),
        );
        assert_eq!(first[0].last_transition_time, Time(t0));

        let same_status = merge(
            &first,
            &[Desired::new(
                ServingReason::RolloutStuck,
                State::False,
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
                ServingReason::Available,
                State::True,
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
                Desired::new(ReadyReason::Ready, State::True, "all good"),
                Desired::new(ServingReason::Available, State::True, "v1"),
            ],
            t0,
            Some(1),
        );
        let t1 = at("2026-11-27T11:00:00Z");
        let set = set(
            &all,
            &Desired::new(ReadyReason::InvalidSpec, State::False, "spec.x: bad"),
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
        let desired = [Desired::new(ReadyReason::Ready, State::True, "all good")];
        let once = merge(&[], &desired, t0, Some(3));
        let twice = merge(&once, &desired, at("2026-11-27T12:00:00Z"), Some(3));
        assert_eq!(once, twice);
    }

    /// The words are the ones the alert rules and dashboards were written against: a renamed
    /// variant would silently stop an alert.
    #[test]
    fn types_and_reasons_are_written_as_before() {
        let types: Vec<&str> = ConditionType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "Ready",
                "Serving",
                "Training",
                "Promoted",
                "Stale",
                "DatabaseReachable",
                "ModelStoreReachable",
                "WorkersHealthy",
                "AccuracyDegraded",
                "Tuned",
                "RollingOut"
            ]
        );
        let written = merge(
            &[],
            &[Desired::new(
                WorkersHealthyReason::TrainerPodStuck,
                State::False,
                "pod x is ErrImagePull",
            )],
            at("2026-11-27T10:00:00Z"),
            None,
        );
        assert_eq!(
            (
                written[0].type_.as_str(),
                written[0].status.as_str(),
                written[0].reason.as_str()
            ),
            ("WorkersHealthy", "False", "TrainerPodStuck")
        );
        assert_eq!(
            Reason::from(StaleReason::NoModel).condition_type(),
            ConditionType::Stale
        );
        let serving: Vec<&str> = ConditionType::Serving
            .reasons()
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert!(serving.contains(&"OnlineRmseOverGate") && !serving.contains(&"TrainerPodStuck"));
    }
}
