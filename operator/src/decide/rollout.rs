//! Progressive rollouts (`spec.rollout.strategy: Progressive`, docs/rollout.md): a candidate that
//! passed the gate starts one; each look moves it on by what the predictors' summed figures
//! (`status.online.rollout`), the spec, the annotations and the clock say, with
//! `recommender_rollout`'s tests as the judges:
//!
//! - **Shadow**: the paired test passes it to the canary's first step or aborts it
//!   (`WorseAccuracy`);
//! - **Canary**, step by step: a step passes once its `minDuration` has elapsed, the candidate's
//!   users brought the step's minimum feedback, rated suggestions and requests since it started,
//!   and no guardrail failed; the last step's pass promotes; any failing guardrail aborts;
//! - a stage past its timeout is inconclusive: it holds, aborts or proceeds (`onInconclusive`);
//! - `spec.rollout.paused` or `spec.suspend` holds stage, step and share, and stops the clock
//!   (a worse candidate is still aborted);
//! - `pinnedVersion` aborts it (`Pinned`), a newer candidate supersedes it (`Superseded`), the
//!   promote and abort annotations naming its id end it, and predictors that keep refusing the
//!   candidate abort it (`CandidateRefused`); switching to `Immediate` promotes it.
//!
//! Everything it needs is in `status.rollout`, so an operator restarted mid-rollout resumes at
//! the same stage, step, share and times.

use super::{Decided, PlannedEvent, Said};
use crate::condition::{Desired, RollingOutReason, State};
use crate::crd::{
    ArmFigures, GuardrailFigures, ModelRecord, OnInconclusive, RecommenderModelSpec, RolloutArms,
    RolloutEndReason, RolloutGuardrails, RolloutStage, RolloutStatus, RolloutTest, RolloutVerdict,
};
use crate::labels::{ABORT_ANNOTATION, PROMOTE_ANNOTATION};
use crate::time;
use crate::validate::Rollout;
use jiff::Timestamp;
use recommender_contract::rollout::{MAX_ROLLOUT_ID_BYTES, RolloutConfig, Stage as ConfigStage};
use recommender_contract::stats::{ArmStats, RolloutStats};
use recommender_rollout::canary::Check;
use recommender_rollout::{CanaryDecision, ShadowDecision, Verdict};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a running rollout is looked at even if nothing else happens: a step's
/// `minDuration` is honoured within this, and fresh figures are judged promptly.
pub const RECHECK: Duration = Duration::from_secs(5);
/// How long the predictors may report the rollout without its candidate before it is aborted
/// (`CandidateRefused`). A replica is ready only once it tried the candidate, so a ready replica
/// without it refused it; the grace covers a collection that raced a replica's start.
pub const CANDIDATE_REFUSED_AFTER: Duration = Duration::from_secs(120);

/// How a rollout ended: what the run's record, `status.models` and the metrics need.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub run: u32,
    pub reason: RolloutEndReason,
    pub message: String,
    /// The candidate, to be pushed to `status.models` when promoted.
    pub candidate: ModelRecord,
}

/// What a look at the rollout decided besides `status.rollout`.
#[derive(Debug, Default)]
pub(super) struct Moved {
    pub ended: Vec<Ended>,
    pub said: Said,
}

impl Moved {
    pub fn and(&mut self, later: Moved) {
        self.ended.extend(later.ended);
        self.said.and(later.said);
    }
}

/// The rollout's id: `<model>-<candidate version>-<unix seconds at start>`, cut to the bytes
/// the predictors accept.
pub fn rollout_id(model: &str, version: &str, now: Timestamp) -> String {
    let mut id = format!("{model}-{version}-{}", now.as_second());
    if id.len() > MAX_ROLLOUT_ID_BYTES {
        let mut cut = MAX_ROLLOUT_ID_BYTES;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id.truncate(cut);
    }
    id
}

/// Starts a rollout of `candidate`, which passed the gate, against `stable`, what serves now.
/// One in progress is superseded first; under a pin the new one ends at once (`Pinned`).
pub(super) fn start(
    model: &str,
    candidate: ModelRecord,
    stable: &ModelRecord,
    spec: &RecommenderModelSpec,
    now: Timestamp,
    rollout: &mut Option<RolloutStatus>,
) -> Moved {
    let mut moved = Moved::default();
    if let Some(current) = rollout.as_mut().filter(|r| !r.stage.is_terminal()) {
        let message = format!(
            "superseded by {}, which passed the gate during this rollout",
            candidate.version
        );
        let ended = end(current, RolloutEndReason::Superseded, message, now);
        announce_end(&ended, &mut moved.said);
        moved.ended.push(ended);
    }
    let now = time::whole(now);
    let id = rollout_id(model, &candidate.version, now);
    let mut new = RolloutStatus::starting(id, stable.version.clone(), candidate, now);
    new.message = format!(
        "{} in the shadow stage beside {}: no user sees it yet",
        new.candidate_version, new.stable_version
    );
    if let Some(pin) = &spec.pinned_version {
        let message = format!("pinnedVersion {pin} is set: no rollout runs while pinned");
        let ended = end(&mut new, RolloutEndReason::Pinned, message, now);
        announce_end(&ended, &mut moved.said);
        moved.ended.push(ended);
    }
    *rollout = Some(new);
    moved
}

/// What a look at the rollout reads besides its status.
pub(super) struct Reads<'a> {
    pub spec: &'a RecommenderModelSpec,
    /// `None` once the strategy is `Immediate`.
    pub settings: Option<&'a Rollout>,
    pub annotations: &'a BTreeMap<String, String>,
    /// `status.online.rollout`.
    pub online: Option<&'a RolloutStats>,
    pub now: Timestamp,
}

/// Moves the rollout in progress on by what is observed; a rollout that ended stays as it is.
pub(super) fn advance(reads: &Reads, rollout: &mut Option<RolloutStatus>) -> Moved {
    let mut moved = Moved::default();
    let Some(r) = rollout.as_mut().filter(|r| !r.stage.is_terminal()) else {
        return moved;
    };
    if let Some(ended) = step(reads, r, &mut moved.said) {
        announce_end(&ended, &mut moved.said);
        moved.ended.push(ended);
    } else {
        moved.said.wake.after(RECHECK);
    }
    moved
}

/// One look at a running rollout; `Some` when it ended.
fn step(reads: &Reads, r: &mut RolloutStatus, said: &mut Said) -> Option<Ended> {
    let (spec, now) = (reads.spec, reads.now);
    if let Some(pin) = &spec.pinned_version {
        let message = format!("pinnedVersion {pin} was set: the pinned model serves");
        return Some(end(r, RolloutEndReason::Pinned, message, now));
    }
    let Some(settings) = reads.settings else {
        let message = "spec.rollout.strategy is Immediate: promoted at once".to_string();
        return Some(end(r, RolloutEndReason::ManualPromote, message, now));
    };
    let named = |key: &str| reads.annotations.get(key).is_some_and(|v| *v == r.id);
    if named(ABORT_ANNOTATION) {
        let message = format!("{ABORT_ANNOTATION} named this rollout");
        return Some(end(r, RolloutEndReason::ManualAbort, message, now));
    }
    if named(PROMOTE_ANNOTATION) {
        let message = format!(
            "{PROMOTE_ANNOTATION} named this rollout: the remaining {} skipped",
            remaining(r, settings)
        );
        return Some(end(r, RolloutEndReason::ManualPromote, message, now));
    }
    hold_or_resume(reads, r, said);
    let online = reads.online.filter(|o| {
        o.rollout_id == r.id && o.stable_version.as_deref() == Some(r.stable_version.as_str())
    });
    if let Some(refused) = refused(r, online, now) {
        return Some(end(r, RolloutEndReason::CandidateRefused, refused, now));
    }
    let online =
        online.filter(|o| o.candidate_version.as_deref() == Some(r.candidate_version.as_str()));
    let evidence = judge(r, settings, online);
    if let Evidence::Abort(reason, why) = evidence {
        return Some(end(r, reason, why, now));
    }
    if r.paused_at.is_some() {
        let why = match spec.suspend {
            true => "spec.suspend",
            false => "spec.rollout.paused",
        };
        r.message = format!("held by {why}: {}", evidence.message());
        return None;
    }
    let (timeout, on_inconclusive) = match r.stage {
        RolloutStage::Shadow => (settings.shadow.timeout, settings.shadow.on_inconclusive),
        _ => (settings.canary.timeout, settings.canary.on_inconclusive),
    };
    let elapsed = time::until(r.step_started_at, now);
    match evidence {
        Evidence::Pass(why) if min_duration_elapsed(r, settings, elapsed) => {
            proceed(r, settings, online, now, why, said)
        }
        evidence if elapsed >= timeout => match on_inconclusive {
            OnInconclusive::Proceed => {
                let why = format!("timed out after {timeout:?} without a verdict, proceeding");
                proceed(r, settings, online, now, why, said)
            }
            OnInconclusive::Abort => {
                let why = format!(
                    "{} timed out after {timeout:?} without a verdict: {}",
                    stage_name(r),
                    evidence.message()
                );
                Some(end(r, RolloutEndReason::Inconclusive, why, now))
            }
            OnInconclusive::Hold => {
                if r.verdict != RolloutVerdict::Inconclusive {
                    said.event(PlannedEvent::warning(
                        Decided::RolloutInconclusive,
                        "Rollout",
                        &format!(
                            "rollout {}: {} timed out after {timeout:?} without a verdict; held until promoted, aborted or decided",
                            r.id,
                            stage_name(r)
                        ),
                    ));
                }
                r.verdict = RolloutVerdict::Inconclusive;
                r.message = format!(
                    "{} inconclusive after {timeout:?}, held: {}",
                    stage_name(r),
                    evidence.message()
                );
                None
            }
        },
        evidence => {
            // A held inconclusive stage stays so until the evidence decides.
            if r.verdict != RolloutVerdict::Inconclusive {
                r.verdict = evidence.verdict();
            }
            r.message = match &evidence {
                Evidence::Pass(why) => format!(
                    "{why}; the step lasts at least {:?}",
                    step_min_duration(r, settings)
                ),
                other => other.message(),
            };
            None
        }
    }
}

/// `pausedAt` is set while held, and on resume the stage's clock moves on by the time held, so
/// neither `minDuration` nor the timeout counts it.
fn hold_or_resume(reads: &Reads, r: &mut RolloutStatus, said: &mut Said) {
    let holding = reads.spec.rollout.paused || reads.spec.suspend;
    let now = time::whole(reads.now);
    match (holding, r.paused_at) {
        (true, None) => {
            r.paused_at = Some(now);
            said.event(PlannedEvent::normal(
                Decided::RolloutPaused,
                "Rollout",
                &format!(
                    "rollout {} held at {} (share {})",
                    r.id,
                    stage_name(r),
                    r.share
                ),
            ));
        }
        (false, Some(since)) => {
            r.paused_at = None;
            r.step_started_at = time::add(r.step_started_at, time::until(since, now));
            said.event(PlannedEvent::normal(
                Decided::RolloutResumed,
                "Rollout",
                &format!("rollout {} resumed at {}", r.id, stage_name(r)),
            ));
        }
        _ => {}
    }
}

/// Why the candidate is taken for refused, once the predictors have reported the rollout without
/// it for [`CANDIDATE_REFUSED_AFTER`].
fn refused(r: &mut RolloutStatus, online: Option<&RolloutStats>, now: Timestamp) -> Option<String> {
    let o = online?;
    if o.candidate_version.is_some() {
        r.candidate_missing_since = None;
        return None;
    }
    let since = *r.candidate_missing_since.get_or_insert(time::whole(now));
    (time::until(since, now) >= CANDIDATE_REFUSED_AFTER).then(|| {
        format!(
            "the predictors have served {} without the candidate {} since {since}: they refused its artifact (see the predictor logs and ModelStoreReachable)",
            r.stable_version, r.candidate_version
        )
    })
}

/// What the figures say about the stage, in words.
enum Evidence {
    Continue(String),
    Pass(String),
    Abort(RolloutEndReason, String),
}

impl Evidence {
    fn message(&self) -> String {
        match self {
            Self::Continue(m) | Self::Pass(m) | Self::Abort(_, m) => m.clone(),
        }
    }

    fn verdict(&self) -> RolloutVerdict {
        match self {
            Self::Continue(_) => RolloutVerdict::Continue,
            Self::Pass(_) => RolloutVerdict::Pass,
            Self::Abort(..) => RolloutVerdict::Abort,
        }
    }
}

/// Records the figures in the status and judges the stage by its test.
fn judge(r: &mut RolloutStatus, settings: &Rollout, online: Option<&RolloutStats>) -> Evidence {
    let Some(o) = online else {
        return Evidence::Continue(format!(
            "{}: waiting for the predictors' figures of this rollout",
            stage_name(r)
        ));
    };
    r.arms = Some(RolloutArms {
        stable: arm_figures(&o.stable),
        candidate: arm_figures(&o.candidate),
    });
    match r.stage {
        RolloutStage::Shadow => {
            let decision = settings.shadow.test.decide(&o.paired);
            r.test = Some(test_figures(&decision));
            shadow_evidence(&decision, settings)
        }
        _ => {
            let decision = settings
                .canary
                .test
                .decide(&o.paired, &o.stable, &o.candidate);
            r.guardrails = Some(RolloutGuardrails {
                accuracy: guardrail_figures(&decision.accuracy),
                acceptance: guardrail_figures(&decision.acceptance),
                latency: guardrail_figures(&decision.latency),
            });
            canary_evidence(r, &decision, settings, &o.candidate)
        }
    }
}

fn shadow_evidence(d: &ShadowDecision, settings: &Rollout) -> Evidence {
    let test = &settings.shadow.test;
    let figures = match (d.mean_difference, d.standard_error) {
        (Some(mean), Some(se)) => format!(
            "{} paired ratings, candidate MSE minus stable {mean:+.4} (standard error {se:.4}, margin {})",
            d.samples, test.margin
        ),
        _ => format!("{} paired ratings", d.samples),
    };
    match d.verdict {
        Verdict::Abort { reason } => Evidence::Abort(
            reason.into(),
            format!(
                "worse on live ratings in the shadow stage: {figures}, ln Λ {:.2} ≥ {:.2}",
                d.log_ratio_worse.unwrap_or_default(),
                (1.0 / test.alpha).ln()
            ),
        ),
        Verdict::Pass => Evidence::Pass(format!("shadow stage passed: {figures}")),
        Verdict::Continue if d.samples < test.min_samples => Evidence::Continue(format!(
            "shadow: {figures}, {} needed before a verdict",
            test.min_samples
        )),
        Verdict::Continue => Evidence::Continue(format!("shadow: {figures}, no verdict yet")),
    }
}

fn canary_evidence(
    r: &RolloutStatus,
    d: &CanaryDecision,
    settings: &Rollout,
    candidate: &ArmStats,
) -> Evidence {
    let at = format!("canary step {} at {}%", r.step + 1, percent(r.share));
    match d.verdict {
        Verdict::Abort { reason } => {
            let check = match reason {
                recommender_rollout::AbortReason::WorseAccuracy => d.accuracy,
                recommender_rollout::AbortReason::LowerAcceptance => d.acceptance,
                recommender_rollout::AbortReason::SlowerLatency => d.latency,
            };
            Evidence::Abort(
                reason.into(),
                format!(
                    "the {} guardrail failed at {at}: estimate {:.4}, ln Λ {:.2}",
                    guardrail_name(reason),
                    check.estimate.unwrap_or_default(),
                    check.log_ratio.unwrap_or_default()
                ),
            )
        }
        verdict => {
            let g = &settings.canary.test;
            let since = [
                (
                    "feedback ratings",
                    candidate.feedback.n.saturating_sub(r.step_start_feedback),
                    g.min_feedback,
                ),
                (
                    "rated suggestions",
                    candidate
                        .suggestions
                        .rated
                        .saturating_sub(r.step_start_rated_suggestions),
                    g.min_rated_suggestions,
                ),
                (
                    "requests",
                    candidate
                        .requests
                        .count
                        .saturating_sub(r.step_start_requests),
                    g.min_requests,
                ),
            ];
            let counts: Vec<String> = since
                .iter()
                .map(|(what, n, min)| format!("{n}/{min} {what}"))
                .collect();
            let enough = since.iter().all(|(_, n, min)| n >= min);
            let text = format!(
                "{at}: the candidate's users since the step started: {}; no guardrail failed",
                counts.join(", ")
            );
            if verdict == Verdict::Pass && enough {
                Evidence::Pass(text)
            } else {
                Evidence::Continue(text)
            }
        }
    }
}

fn min_duration_elapsed(r: &RolloutStatus, settings: &Rollout, elapsed: Duration) -> bool {
    elapsed >= step_min_duration(r, settings)
}

fn step_min_duration(r: &RolloutStatus, settings: &Rollout) -> Duration {
    match r.stage {
        RolloutStage::Canary => settings
            .steps
            .get(r.step as usize)
            .map_or(Duration::ZERO, |s| s.min_duration),
        _ => Duration::ZERO,
    }
}

/// On to the canary's first step, the next step, or promotion after the last.
fn proceed(
    r: &mut RolloutStatus,
    settings: &Rollout,
    online: Option<&RolloutStats>,
    now: Timestamp,
    why: String,
    said: &mut Said,
) -> Option<Ended> {
    let next = match r.stage {
        RolloutStage::Shadow => 0,
        _ => r.step as usize + 1,
    };
    let Some(step) = settings.steps.get(next) else {
        let message = format!("every stage passed ({why})");
        return Some(end(r, RolloutEndReason::Passed, message, now));
    };
    let candidate = online.map(|o| &o.candidate);
    r.stage = RolloutStage::Canary;
    r.step = next as u32;
    r.share = step.share;
    r.step_started_at = time::whole(now);
    r.step_start_feedback = candidate.map_or(0, |c| c.feedback.n);
    r.step_start_rated_suggestions = candidate.map_or(0, |c| c.suggestions.rated);
    r.step_start_requests = candidate.map_or(0, |c| c.requests.count);
    r.verdict = RolloutVerdict::Continue;
    r.guardrails = r.guardrails.take().filter(|_| next > 0);
    r.message = format!(
        "{why}; canary step {} of {}: {}% of the users on {}",
        next + 1,
        settings.steps.len(),
        percent(step.share),
        r.candidate_version
    );
    said.event(PlannedEvent::normal(
        Decided::RolloutAdvanced,
        "Rollout",
        &format!("rollout {}: {}", r.id, r.message),
    ));
    None
}

/// Ends the rollout: promoted (everyone on the candidate, which joins `status.models`) or
/// aborted (nobody on it).
fn end(r: &mut RolloutStatus, reason: RolloutEndReason, why: String, now: Timestamp) -> Ended {
    let promoted = reason.promoted();
    r.stage = match promoted {
        true => RolloutStage::Promoted,
        false => RolloutStage::Aborted,
    };
    r.share = if promoted { 1.0 } else { 0.0 };
    r.verdict = match promoted {
        true => RolloutVerdict::Pass,
        false => RolloutVerdict::Abort,
    };
    r.end_reason = Some(reason);
    r.ended_at = Some(time::whole(now));
    r.paused_at = None;
    r.message = match promoted {
        true => format!("{} promoted: {why}", r.candidate_version),
        false => format!("{} aborted ({reason}): {why}", r.candidate_version),
    };
    Ended {
        run: r.candidate_model.run,
        reason,
        message: r.message.clone(),
        candidate: r.candidate_model.clone(),
    }
}

fn announce_end(ended: &Ended, said: &mut Said) {
    let event = if ended.reason.promoted() {
        PlannedEvent::normal(Decided::Promoted, "Promote", &ended.message)
    } else {
        PlannedEvent::warning(Decided::RolloutAborted, "Rollout", &ended.message)
    };
    said.event(event);
}

fn remaining(r: &RolloutStatus, settings: &Rollout) -> String {
    let steps = settings.steps.len();
    match r.stage {
        RolloutStage::Shadow => format!("shadow stage and {steps} canary step(s) were"),
        _ => format!(
            "{} canary step(s) were",
            steps.saturating_sub(r.step as usize)
        ),
    }
}

fn stage_name(r: &RolloutStatus) -> String {
    match r.stage {
        RolloutStage::Canary => format!("canary step {}", r.step + 1),
        stage => format!("the {} stage", stage.as_str().to_lowercase()),
    }
}

fn guardrail_name(reason: recommender_rollout::AbortReason) -> &'static str {
    match reason {
        recommender_rollout::AbortReason::WorseAccuracy => "accuracy",
        recommender_rollout::AbortReason::LowerAcceptance => "acceptance",
        recommender_rollout::AbortReason::SlowerLatency => "latency",
    }
}

fn percent(share: f64) -> f64 {
    round(share * 100.0, 4)
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn round_opt(x: Option<f64>, decimals: i32) -> Option<f64> {
    x.filter(|v| v.is_finite()).map(|v| round(v, decimals))
}

fn arm_figures(arm: &ArmStats) -> ArmFigures {
    let f = &arm.feedback;
    let s = &arm.suggestions;
    ArmFigures {
        requests: arm.requests.count,
        feedback: f.n,
        rmse: (f.n > 0).then(|| round((f.sum_squared_error / f.n as f64).sqrt(), 4)),
        accepted_of_rated: (s.rated > 0)
            .then(|| round(s.accepted.min(s.rated) as f64 / s.rated as f64, 4)),
        latency_p99_seconds: round_opt(arm.requests.quantile(0.99), 6),
    }
}

fn test_figures(d: &ShadowDecision) -> RolloutTest {
    RolloutTest {
        samples: d.samples,
        mean_difference: round_opt(d.mean_difference, 6),
        standard_error: round_opt(d.standard_error, 6),
        log_ratio_worse: round_opt(d.log_ratio_worse, 4),
        log_ratio_no_worse: round_opt(d.log_ratio_no_worse, 4),
    }
}

fn guardrail_figures(c: &Check) -> GuardrailFigures {
    GuardrailFigures {
        estimate: round_opt(c.estimate, 6),
        log_ratio: round_opt(c.log_ratio, 4),
        failed: c.failed,
    }
}

/// The config the predictors read: the stage and share in force; once ended, nobody on the
/// candidate (aborted) or everybody (promoted, while the pods roll to it as the stable model).
pub fn config(r: &RolloutStatus) -> RolloutConfig {
    let stage = match r.stage {
        RolloutStage::Shadow => ConfigStage::Shadow,
        _ => ConfigStage::Canary,
    };
    RolloutConfig {
        rollout_id: r.id.clone(),
        stage,
        candidate_version: r.candidate_version.clone(),
        candidate_share: r.share.clamp(0.0, 1.0),
    }
}

/// The candidate the predictors hold while the rollout runs: its version and artifact digest.
pub fn candidate(rollout: Option<&RolloutStatus>) -> Option<(&str, Option<&str>)> {
    let r = rollout.filter(|r| !r.stage.is_terminal())?;
    let sha256 = r
        .candidate_model
        .artifact
        .as_ref()
        .map(|a| a.sha256.as_str());
    Some((r.candidate_version.as_str(), sha256))
}

/// The `RollingOut` condition: under `Progressive`, or while a rollout is recorded.
pub(super) fn condition(
    spec: &RecommenderModelSpec,
    rollout: Option<&RolloutStatus>,
) -> Option<Desired> {
    let Some(r) = rollout else {
        return spec.rollout.progressive().then(|| {
            Desired::new(
                RollingOutReason::NoRollout,
                State::False,
                "no candidate has been rolled out yet",
            )
        });
    };
    let (reason, status) = match (r.stage, r.paused_at, r.verdict) {
        (RolloutStage::Promoted, ..) => (RollingOutReason::Promoted, State::False),
        (RolloutStage::Aborted, ..) => (RollingOutReason::Aborted, State::False),
        (_, Some(_), _) => (RollingOutReason::Paused, State::True),
        (_, _, RolloutVerdict::Inconclusive) => (RollingOutReason::Inconclusive, State::True),
        (RolloutStage::Shadow, ..) => (RollingOutReason::Shadow, State::True),
        (RolloutStage::Canary, ..) => (RollingOutReason::Canary, State::True),
    };
    Some(Desired::new(
        reason,
        status,
        format!("rollout {}: {}", r.id, r.message),
    ))
}

#[cfg(test)]
mod tests;
