//! `recommender-rollout`: the decisions of progressive delivery, as pure functions of what the
//! predictors report, with no I/O and no clock, so every rule is a unit test and the error rates
//! are checked by simulation:
//!
//! - [`arm`]: which arm a user is on, by a keyed hash of the user id and the rollout id that
//!   every replica, build and platform computes alike, monotone in the candidate's share;
//! - [`mixture`]: the always-valid one-sided test both stages use (a normal-mixture sequential
//!   probability ratio test, Johari et al.);
//! - [`shadow`]: the paired test of the shadow stage, on both models' errors on the same ratings;
//! - [`canary`]: the canary's guardrails (accuracy, acceptance of suggestions, p99 latency).
//!
//! The operator's rollout (its stages, steps, timeouts and the status that reports them) reads
//! these; the predictor uses [`arm`] to route each user.

pub mod arm;
pub mod canary;
pub mod mixture;
pub mod shadow;
#[cfg(test)]
mod simulation;

pub use arm::{Arm, Share, arm};
pub use canary::{CanaryDecision, Guardrails};
pub use shadow::{PairedTest, ShadowDecision};

use serde::Serialize;

/// What a stage's evidence says so far.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum Verdict {
    /// Not enough evidence either way yet.
    Continue,
    /// Shadow: the candidate is no worse than the stable model by more than the margin. Canary:
    /// the step's minimum evidence is in and no guardrail failed.
    Pass,
    /// The candidate is worse: stop and remove it.
    Abort { reason: AbortReason },
}

/// Why a candidate was aborted: a condition's reason, an alert's label.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// Its predictions of the live ratings erred more than the stable model's.
    WorseAccuracy,
    /// Its suggestions were accepted less often than the stable model's.
    LowerAcceptance,
    /// Its p99 latency exceeded the stable arm's by more than the margin.
    SlowerLatency,
}

impl AbortReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AbortReason::WorseAccuracy => "WorseAccuracy",
            AbortReason::LowerAcceptance => "LowerAcceptance",
            AbortReason::SlowerLatency => "SlowerLatency",
        }
    }
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
