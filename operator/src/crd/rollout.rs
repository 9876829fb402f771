//! `spec.rollout` and `status.rollout`: progressive delivery of a candidate that passed the
//! offline gate (docs/rollout.md). Under `Progressive` the candidate first predicts every
//! feedback rating beside the stable model (the shadow stage, judged by a paired sequential
//! test), then answers a growing share of the users (the canary's steps, watched by guardrails),
//! and is promoted only at the end; any failure aborts it and the stable model serves everyone
//! again. `Immediate`, the default, promotes at the gate as before.

use super::ModelRecord;
use crate::condition::words;
use crate::time::{Rfc3339, whole_seconds, whole_seconds_opt};
use jiff::Timestamp;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

words! {
    /// How a candidate that passed the gate reaches the users.
    #[derive(JsonSchema, Serialize, Deserialize, Default)]
    pub enum RolloutStrategy {
        /// Promoted at the gate: every user gets it at once (the behaviour before rollouts).
        #[default]
        Immediate,
        /// A shadow stage, then the canary's steps, then promotion; aborted on the way when it
        /// does worse.
        Progressive,
    }
}

words! {
    /// What a stage that reaches its timeout without a verdict does.
    #[derive(JsonSchema, Serialize, Deserialize, Default)]
    pub enum OnInconclusive {
        /// Stays where it is (verdict `Inconclusive`, the `RollingOut` reason `Inconclusive`, an
        /// alert after a while) until a person promotes or aborts it, or the evidence decides.
        #[default]
        Hold,
        /// Aborts the candidate (end reason `Inconclusive`).
        Abort,
        /// Goes on to the next stage or step as if it had passed.
        Proceed,
    }
}

/// Progressive delivery of a candidate that passed the gate. `shadow` and `canary` are read only
/// under `Progressive` (under `Immediate` they are allowed and ignored).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Holds the rollout in progress where it is (stage, step and share); its timeouts do not
    /// run while it holds. `kubectl recommender pause` / `resume` set it.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub shadow: ShadowSpec,
    #[serde(default)]
    pub canary: CanarySpec,
}

impl RolloutSpec {
    pub fn progressive(&self) -> bool {
        self.strategy == RolloutStrategy::Progressive
    }
}

/// The shadow stage: no user sees the candidate; both models predict every feedback rating and a
/// paired sequential test (`recommender_rollout::PairedTest`) compares their squared errors.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShadowSpec {
    /// How much larger the candidate's mean squared error may be, in squared stars, and still
    /// pass (an RMSE margin `ε` near an RMSE `r` is about `2 r ε`).
    #[serde(default = "default_shadow_margin")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 25.0")
        .message("spec.rollout.shadow.margin must be in (0, 25] (squared stars)"))]
    pub margin: f64,
    /// The most often a candidate no worse than the stable model is aborted.
    #[serde(default = "default_level")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 0.5")
        .message("spec.rollout.shadow.alpha must be in (0, 0.5]"))]
    pub alpha: f64,
    /// The most often a candidate worse by the margin or more passes.
    #[serde(default = "default_level")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 0.5")
        .message("spec.rollout.shadow.beta must be in (0, 0.5]"))]
    pub beta: f64,
    /// Paired ratings before any verdict.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 2, max = 100000000))]
    pub min_samples: u64,
    /// How long the stage may take before it is inconclusive (Go duration).
    #[serde(default = "default_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("spec.rollout.shadow.timeout must be a duration of at least 1m"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub timeout: String,
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

/// One step of the canary: the share of the users the candidate answers, and for how long at
/// least.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("spec.rollout.canary.steps[].share must be in (0, 1]"))]
    pub share: f64,
    #[serde(default = "default_min_duration")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s')")
        .message("spec.rollout.canary.steps[].minDuration must be a duration such as 2m"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub min_duration: String,
}

/// One guardrail of the canary: how much worse the candidate may be, and how often a candidate
/// within that margin may be aborted by it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailSpec {
    /// Accuracy: squared stars; acceptance: a proportion of rated suggestions; latency: a
    /// fraction of the stable arm's p99.
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 25.0")
        .message("spec.rollout.canary guardrail margins must be in (0, 25]"))]
    pub margin: f64,
    #[serde(default = "default_level")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 0.5")
        .message("spec.rollout.canary guardrail alphas must be in (0, 0.5]"))]
    pub alpha: f64,
}

/// The canary: the candidate answers a share of the users, raised step by step; three
/// guardrails (`recommender_rollout::Guardrails`) compare the arms and any failure aborts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.steps.map(s, s.share).isSorted() && self.steps.all(s, self.steps.exists_one(t, t.share == s.share))")
    .message("spec.rollout.canary.steps: shares must be strictly increasing"))]
pub struct CanarySpec {
    /// 1 to 10 steps, shares strictly increasing in (0, 1]; the last step's pass promotes.
    #[serde(default = "default_steps")]
    #[schemars(length(min = 1, max = 10))]
    pub steps: Vec<CanaryStep>,
    /// Feedback ratings from the candidate's users since the step started, before it may pass.
    #[serde(default = "default_min_feedback")]
    #[schemars(range(min = 1, max = 100000000))]
    pub min_feedback: u64,
    /// Rated suggestions of the candidate's users since the step started, before it may pass
    /// (and in each arm before acceptance is compared).
    #[serde(default = "default_min_rated")]
    #[schemars(range(min = 1, max = 100000000))]
    pub min_rated_suggestions: u64,
    /// Requests answered by the candidate since the step started, before it may pass (and in
    /// each arm before latency is compared).
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 1, max = 100000000))]
    pub min_requests: u64,
    #[serde(default = "default_accuracy")]
    pub accuracy: GuardrailSpec,
    #[serde(default = "default_acceptance")]
    pub acceptance: GuardrailSpec,
    #[serde(default = "default_latency")]
    pub latency: GuardrailSpec,
    /// How long one step may take before it is inconclusive (Go duration).
    #[serde(default = "default_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("spec.rollout.canary.stepTimeout must be a duration of at least 1m"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub step_timeout: String,
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

fn default_shadow_margin() -> f64 {
    0.02
}
fn default_level() -> f64 {
    0.05
}
fn default_min_samples() -> u64 {
    200
}
fn default_timeout() -> String {
    "30m".into()
}
fn default_min_duration() -> String {
    "2m".into()
}
fn default_steps() -> Vec<CanaryStep> {
    [0.05, 0.25, 0.5]
        .into_iter()
        .map(|share| CanaryStep {
            share,
            min_duration: default_min_duration(),
        })
        .collect()
}
fn default_min_feedback() -> u64 {
    100
}
fn default_min_rated() -> u64 {
    30
}
fn default_min_requests() -> u64 {
    200
}
fn default_accuracy() -> GuardrailSpec {
    GuardrailSpec {
        margin: 0.02,
        alpha: default_level(),
    }
}
fn default_acceptance() -> GuardrailSpec {
    GuardrailSpec {
        margin: 0.10,
        alpha: default_level(),
    }
}
fn default_latency() -> GuardrailSpec {
    GuardrailSpec {
        margin: 0.50,
        alpha: default_level(),
    }
}

impl Default for ShadowSpec {
    fn default() -> Self {
        Self {
            margin: default_shadow_margin(),
            alpha: default_level(),
            beta: default_level(),
            min_samples: default_min_samples(),
            timeout: default_timeout(),
            on_inconclusive: OnInconclusive::default(),
        }
    }
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            steps: default_steps(),
            min_feedback: default_min_feedback(),
            min_rated_suggestions: default_min_rated(),
            min_requests: default_min_requests(),
            accuracy: default_accuracy(),
            acceptance: default_acceptance(),
            latency: default_latency(),
            step_timeout: default_timeout(),
            on_inconclusive: OnInconclusive::default(),
        }
    }
}

words! {
    /// Where a rollout is. `Promoted` and `Aborted` are terminal: the status keeps them until the
    /// next rollout starts.
    #[derive(JsonSchema, Serialize, Deserialize)]
    pub enum RolloutStage {
        Shadow,
        Canary,
        Promoted,
        Aborted,
    }
}

impl RolloutStage {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Promoted | Self::Aborted)
    }
}

words! {
    /// What the current stage's evidence says.
    #[derive(JsonSchema, Serialize, Deserialize, Default)]
    pub enum RolloutVerdict {
        /// Not enough evidence either way yet.
        #[default]
        Continue,
        Pass,
        Abort,
        /// The stage reached its timeout without a verdict and `onInconclusive` is `Hold`.
        Inconclusive,
    }
}

words! {
    /// Why a rollout ended (terminal stages only): the `reason` of
    /// `recommender_rollout_aborts_total`.
    #[derive(JsonSchema, Serialize, Deserialize)]
    pub enum RolloutEndReason {
        /// Every stage passed: promoted.
        Passed,
        /// Its predictions of the live ratings erred more than the stable model's.
        WorseAccuracy,
        /// Its suggestions were accepted less often than the stable model's.
        LowerAcceptance,
        /// Its p99 latency exceeded the stable arm's by more than the margin.
        SlowerLatency,
        /// `recommender.dev/abort` named this rollout.
        ManualAbort,
        /// `recommender.dev/promote` named this rollout: the remaining steps were skipped.
        ManualPromote,
        /// A stage timed out without a verdict under `onInconclusive: Abort`.
        Inconclusive,
        /// A newer candidate passed the gate: this rollout stopped for its.
        Superseded,
        /// `spec.pinnedVersion` was set: the pinned model serves, no rollout runs.
        Pinned,
        /// The predictors would not load the candidate (another sha256, missing, unreadable).
        CandidateRefused,
    }
}

impl RolloutEndReason {
    /// Whether the candidate ended promoted.
    pub fn promoted(self) -> bool {
        matches!(self, Self::Passed | Self::ManualPromote)
    }

    /// Whether the candidate was judged and rejected on live traffic (its run is recorded
    /// `RejectedOnline`); a pin or a newer candidate stops a rollout without judging it.
    pub fn rejected_online(self) -> bool {
        !self.promoted() && !matches!(self, Self::Superseded | Self::Pinned)
    }
}

impl From<recommender_rollout::AbortReason> for RolloutEndReason {
    fn from(reason: recommender_rollout::AbortReason) -> Self {
        use recommender_rollout::AbortReason as A;
        match reason {
            A::WorseAccuracy => Self::WorseAccuracy,
            A::LowerAcceptance => Self::LowerAcceptance,
            A::SlowerLatency => Self::SlowerLatency,
        }
    }
}

/// The rollout in progress, or the last one (kept in its terminal stage until the next starts).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `<model>-<candidate version>-<unix seconds at start>`: keys the users' arms, and what the
    /// promote and abort annotations name.
    pub id: String,
    pub stable_version: String,
    pub candidate_version: String,
    /// What promotion pushes to `status.models`.
    pub candidate_model: ModelRecord,
    pub stage: RolloutStage,
    /// The canary step (an index into `spec.rollout.canary.steps`); 0 in the shadow stage.
    #[serde(default)]
    pub step: u32,
    /// The share of the users the candidate answers now (0 in the shadow stage and once aborted).
    #[serde(default)]
    pub share: f64,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub started_at: Timestamp,
    /// When the current stage or step started, moved on by the time spent paused: its
    /// `minDuration` and timeout count from here.
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub step_started_at: Timestamp,
    /// The candidate arm's feedback ratings when the step started: a step's minimum counts
    /// only what came after.
    #[serde(default)]
    pub step_start_feedback: u64,
    /// The candidate arm's rated suggestions when the step started.
    #[serde(default)]
    pub step_start_rated_suggestions: u64,
    /// The candidate arm's requests when the step started.
    #[serde(default)]
    pub step_start_requests: u64,
    /// Set while `spec.rollout.paused` or `spec.suspend` holds the rollout.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub paused_at: Option<Timestamp>,
    /// Since when the predictors have reported the rollout without its candidate (refused).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub candidate_missing_since: Option<Timestamp>,
    #[serde(default)]
    pub verdict: RolloutVerdict,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub ended_at: Option<Timestamp>,
    /// Terminal stages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<RolloutEndReason>,
    /// A sentence with the figures behind the stage and verdict.
    #[serde(default)]
    pub message: String,
    /// The latest summed figures of each arm (from `status.online.rollout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arms: Option<RolloutArms>,
    /// The shadow stage's paired test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<RolloutTest>,
    /// The canary's guardrails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<RolloutGuardrails>,
}

impl RolloutStatus {
    /// A rollout of `candidate` beside `stable_version` as it starts: the shadow stage, no share,
    /// no evidence yet.
    pub fn starting(
        id: String,
        stable_version: String,
        candidate: ModelRecord,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            stable_version,
            candidate_version: candidate.version.clone(),
            candidate_model: candidate,
            stage: RolloutStage::Shadow,
            step: 0,
            share: 0.0,
            started_at: now,
            step_started_at: now,
            step_start_feedback: 0,
            step_start_rated_suggestions: 0,
            step_start_requests: 0,
            paused_at: None,
            candidate_missing_since: None,
            verdict: RolloutVerdict::Continue,
            ended_at: None,
            end_reason: None,
            message: String::new(),
            arms: None,
            test: None,
            guardrails: None,
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RolloutArms {
    pub stable: ArmFigures,
    pub candidate: ArmFigures,
}

/// One arm's figures, summed over the replicas (rounded for reading).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArmFigures {
    /// Inference requests its model answered.
    pub requests: u64,
    /// Feedback ratings of its users.
    pub feedback: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    /// Accepted ÷ rated suggestions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_of_rated: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_seconds: Option<f64>,
}

/// The paired test's statistic (`recommender_rollout::ShadowDecision`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTest {
    /// Ratings both models predicted.
    pub samples: u64,
    /// The candidate's mean squared error minus the stable model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_difference: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_error: Option<f64>,
    /// `ln Λ` of the test that aborts (at `ln(1/alpha)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_ratio_worse: Option<f64>,
    /// `ln Λ` of the test that passes (at `ln(1/beta)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_ratio_no_worse: Option<f64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RolloutGuardrails {
    pub accuracy: GuardrailFigures,
    pub acceptance: GuardrailFigures,
    pub latency: GuardrailFigures,
}

/// One guardrail's estimate (accuracy: the mean squared error difference; acceptance: the drop
/// in acceptance; latency: the candidate's share of requests beyond the stable p99 bound) and
/// `ln Λ`, absent until it has its minimum evidence.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailFigures {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_ratio: Option<f64>,
    #[serde(default)]
    pub failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_rollout_spec_takes_the_defaults() {
        let spec: RolloutSpec = serde_yaml::from_str("strategy: Progressive").unwrap();
        assert!(spec.progressive() && !spec.paused);
        assert_eq!(spec.shadow, ShadowSpec::default());
        assert_eq!((spec.shadow.margin, spec.shadow.min_samples), (0.02, 200));
        let shares: Vec<f64> = spec.canary.steps.iter().map(|s| s.share).collect();
        assert_eq!(shares, [0.05, 0.25, 0.5]);
        assert_eq!(spec.canary.steps[0].min_duration, "2m");
        assert_eq!(spec.canary.acceptance.margin, 0.10);
        let guardrail: GuardrailSpec = serde_yaml::from_str("margin: 0.3").unwrap();
        assert_eq!(guardrail.alpha, 0.05);
        assert_eq!(RolloutSpec::default().strategy, RolloutStrategy::Immediate);
    }

    #[test]
    fn words_are_written_as_their_names() {
        assert_eq!(
            serde_json::to_value(RolloutEndReason::CandidateRefused).unwrap(),
            "CandidateRefused"
        );
        assert_eq!(RolloutEndReason::ALL.len(), 10);
        assert_eq!(RolloutStage::Aborted.as_str(), "Aborted");
        assert!(RolloutStage::Promoted.is_terminal() && !RolloutStage::Canary.is_terminal());
        assert!(RolloutEndReason::ManualAbort.rejected_online());
        assert!(!RolloutEndReason::Superseded.rejected_online());
        assert!(!RolloutEndReason::ManualPromote.rejected_online());
    }
}
