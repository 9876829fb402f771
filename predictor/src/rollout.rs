//! A rollout inside one replica: the candidate held beside the stable model, the rollout config
//! (`recommender_contract::rollout`) read again whenever its file changes, each user routed to
//! their arm (`recommender_rollout::arm`, the same on every replica), and the figures the
//! operator's tests read from `/v1/stats`: per arm, and both models' errors paired on every
//! feedback rating.
//!
//! A config that does not read (missing, malformed, too large, or naming a candidate this
//! replica does not hold) is logged and counted, and the last good one stays; before any good
//! one, or without a loaded candidate, every user is on the stable arm.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::Guard;
use axum::{
    http::{HeaderName, HeaderValue},
    response::Response,
};
use recommender_contract::{
    rollout::{MAX_CONFIG_BYTES, RolloutConfig, Stage},
    stats::{ArmStats, FeedbackSums, PairedSums, RolloutStats, SuggestionCounts},
};
use recommender_rollout::{Arm, Share, arm};
use tokio::sync::watch;

use crate::{
    feedback::Event,
    reload::FileStamp,
    state::{AppState, ServedModel},
};

/// Names the version that produced an answer, on every inference answer.
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");
/// The user's arm, on inference answers during a rollout.
pub const ARM_HEADER: HeaderName = HeaderName::from_static("x-rollout-arm");

/// The config in force, with its share parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveRollout {
    pub config: RolloutConfig,
    pub share: Share,
}

impl ActiveRollout {
    /// The share that applies: users see the candidate only in a canary.
    pub fn serving_share(&self) -> Share {
        match self.config.stage {
            Stage::Shadow => Share::NONE,
            Stage::Canary => self.share,
        }
    }
}

/// The model that answers a user, and whether a rollout is in force.
pub struct Routed {
    pub arm: Arm,
    pub model: Guard<Option<Arc<ServedModel>>>,
    pub rollout: Guard<Option<Arc<ActiveRollout>>>,
}

/// Whether `user` is on the candidate's arm by the config in force (if the candidate is loaded).
fn on_candidate(rollout: Option<&ActiveRollout>, user: &str) -> bool {
    rollout.is_some_and(|active| {
        arm(user, &active.config.rollout_id, active.serving_share()) == Arm::Candidate
    })
}

/// The arm and model of `user` given the config and the models loaded once for many users (a
/// batch).
pub fn pick<'m>(
    rollout: Option<&ActiveRollout>,
    stable: &'m ServedModel,
    candidate: Option<&'m ServedModel>,
    user: &str,
) -> (Arm, &'m ServedModel) {
    match candidate {
        Some(candidate) if on_candidate(rollout, user) => (Arm::Candidate, candidate),
        _ => (Arm::Stable, stable),
    }
}

/// The user's arm and its model. Without a rollout, or before the candidate is loaded, that is
/// the stable model.
pub fn route(state: &AppState, user: &str) -> Routed {
    let rollout = state.rollout.load();
    if on_candidate(rollout.as_deref(), user) {
        let candidate = state.candidate.load();
        if candidate.is_some() {
            return Routed {
                arm: Arm::Candidate,
                model: candidate,
                rollout,
            };
        }
    }
    Routed {
        arm: Arm::Stable,
        model: state.model.load(),
        rollout,
    }
}

impl Routed {
    pub fn in_rollout(&self) -> bool {
        self.rollout.is_some()
    }

    /// Names the answering version (and, in a rollout, the arm) on `response`.
    pub fn label(&self, served: &ServedModel, response: Response) -> Response {
        let mut response = name_version(served, response);
        if self.in_rollout() {
            response
                .headers_mut()
                .insert(ARM_HEADER, HeaderValue::from_static(self.arm.as_str()));
        }
        response
    }

    /// [`Routed::label`] on an inference answer, marked for its arm's latency too (the route's
    /// middleware observes it).
    pub fn answer(&self, served: &ServedModel, response: Response) -> Response {
        let mut response = self.label(served, response);
        if self.in_rollout() {
            response.extensions_mut().insert(self.arm);
        }
        response
    }
}

/// Names `model`'s version on `response` (`x-model-version`). A batch's answer names the stable
/// version; during a rollout its predictions name their own.
pub fn name_version(model: &ServedModel, mut response: Response) -> Response {
    if let Some(version) = &model.version_header {
        response
            .headers_mut()
            .insert(MODEL_VERSION_HEADER, version.clone());
    }
    response
}

/// Per-arm sums and the paired errors since the config's rollout id took effect.
#[derive(Default)]
pub struct RolloutFigures {
    sums: Mutex<Sums>,
    /// Suggestions shown per arm: counted per request, so without the lock.
    shown: [AtomicU64; 2],
}

#[derive(Default, Clone)]
struct Sums {
    rollout_id: Option<String>,
    arms: [(FeedbackSums, SuggestionCounts); 2],
    paired: PairedSums,
}

fn slot(arm: Arm) -> usize {
    match arm {
        Arm::Stable => 0,
        Arm::Candidate => 1,
    }
}

impl RolloutFigures {
    fn lock(&self) -> MutexGuard<'_, Sums> {
        self.sums.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts over for a new rollout id.
    fn start(&self, rollout_id: &str) {
        let mut sums = self.lock();
        if sums.rollout_id.as_deref() != Some(rollout_id) {
            *sums = Sums {
                rollout_id: Some(rollout_id.to_owned()),
                ..Sums::default()
            };
            for shown in &self.shown {
                shown.store(0, Ordering::Relaxed);
            }
        }
    }

    pub fn shown(&self, arm: Arm, items: usize) {
        self.shown[slot(arm)].fetch_add(items as u64, Ordering::Relaxed);
    }

    /// Attributes a rating to the user's arm, and pairs both models' errors when both are
    /// loaded (`other`: the other arm's prediction).
    fn record(
        &self,
        rollout_id: &str,
        arm: Arm,
        event: &Event<'_>,
        accepted: Option<bool>,
        other: Option<f64>,
    ) {
        let mut sums = self.lock();
        if sums.rollout_id.as_deref() != Some(rollout_id) {
            // The config changed under this request: the rating belongs to neither rollout.
            return;
        }
        let (feedback, suggestions) = &mut sums.arms[slot(arm)];
        feedback.record(event.predicted, event.actual);
        suggestions.rated += u64::from(event.suggested);
        suggestions.accepted += u64::from(accepted == Some(true));
        if let Some(other) = other {
            let error = event.actual - event.predicted;
            let other_error = event.actual - other;
            let (stable, candidate) = match arm {
                Arm::Stable => (error, other_error),
                Arm::Candidate => (other_error, error),
            };
            sums.paired.record(stable, candidate);
        }
    }
}

/// Adds a feedback rating (`event`, predicted by the user's arm's model, on `item`) to the
/// rollout's figures: the user's arm gets it, and the other model predicts it too, so both
/// models' errors are paired on it.
pub fn record_feedback(
    state: &AppState,
    routed: &Routed,
    event: &Event<'_>,
    item: &str,
    accepted: Option<bool>,
) {
    let Some(active) = routed.rollout.as_deref() else {
        return;
    };
    let other = match routed.arm {
        Arm::Stable => state.candidate.load(),
        Arm::Candidate => state.model.load(),
    };
    let other = other
        .as_deref()
        .map(|m| m.model().predict(event.user, item).rating);
    state.rollout_figures.record(
        &active.config.rollout_id,
        routed.arm,
        event,
        accepted,
        other,
    );
}

/// This replica's part of the rollout's figures for `/v1/stats`; `None` without a rollout.
pub fn stats(state: &AppState) -> Option<RolloutStats> {
    let rollout = state.rollout.load_full()?;
    let candidate = state.candidate.load();
    let stable = state.model.load();
    let sums = state.rollout_figures.lock().clone();
    let arm_stats = |arm: Arm| {
        let (mut feedback, mut suggestions) = sums.arms[slot(arm)].clone();
        suggestions.shown = state.rollout_figures.shown[slot(arm)].load(Ordering::Relaxed);
        feedback.model_version = match arm {
            Arm::Stable => stable.as_deref(),
            Arm::Candidate => candidate.as_deref(),
        }
        .map(|m| m.version().to_owned());
        ArmStats {
            requests: state.metrics.arm_latency(arm),
            feedback,
            suggestions,
        }
    };
    Some(RolloutStats {
        rollout_id: rollout.config.rollout_id.clone(),
        stage: rollout.config.stage,
        candidate_share: if candidate.is_some() {
            rollout.serving_share().fraction()
        } else {
            0.0
        },
        stable_version: stable.as_deref().map(|m| m.version().to_owned()),
        candidate_version: candidate.as_deref().map(|m| m.version().to_owned()),
        stable: arm_stats(Arm::Stable),
        candidate: arm_stats(Arm::Candidate),
        paired: sums.paired,
    })
}

/// Reads the config at `path`; the error says what is wrong and where.
async fn read(path: &Path, candidate_version: Option<&str>) -> Result<ActiveRollout, String> {
    let at = path.display();
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("{at}: {e}"))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(format!(
            "{at} is {size} bytes, a rollout config is at most {MAX_CONFIG_BYTES}"
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "{at} grew beyond {MAX_CONFIG_BYTES} bytes while read"
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| format!("{at}: not UTF-8: {e}"))?;
    let config = RolloutConfig::parse(text).map_err(|e| format!("{at}: {e}"))?;
    if Some(config.candidate_version.as_str()) != candidate_version {
        return Err(format!(
            "{at}: candidateVersion {:?} is not the candidate this predictor holds ({})",
            config.candidate_version,
            candidate_version.unwrap_or("none")
        ));
    }
    let share = Share::from_fraction(config.candidate_share).map_err(|e| format!("{at}: {e}"))?;
    Ok(ActiveRollout { config, share })
}

/// Reads the config file once and puts it in force; a file that does not read is logged and
/// counted, and the config in force stays. Returns whether the config in force changed.
pub async fn refresh(state: &AppState, path: &Path) -> Result<bool, String> {
    let candidate_version = state.candidate_source.as_ref().and_then(|s| s.version());
    let next = match read(path, candidate_version).await {
        Ok(next) => next,
        Err(e) => {
            let keeping = state.rollout.load();
            let keeping = keeping.as_deref().map(|r| r.config.rollout_id.as_str());
            tracing::error!(error = %e, keeping, "rollout config refused; the last good one stays");
            state.metrics.rollout_config_failures.inc();
            *state
                .rollout_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
            return Err(e);
        }
    };
    *state
        .rollout_error
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = None;
    if state.rollout.load().as_deref() == Some(&next) {
        return Ok(false);
    }
    let c = &next.config;
    tracing::info!(
        rollout = %c.rollout_id,
        stage = c.stage.as_str(),
        candidate = %c.candidate_version,
        share = next.serving_share().fraction(),
        "rollout config in force"
    );
    // Figures start over before any request can route by the new id.
    state.rollout_figures.start(&c.rollout_id);
    state
        .metrics
        .candidate_share
        .set(next.serving_share().fraction());
    state.metrics.rollout_config_reloads.inc();
    state.rollout.store(Some(Arc::new(next)));
    Ok(true)
}

/// Reads the config at start and whenever the file's identity changes (a ConfigMap update
/// swaps a symlink, so the inode changes), until `shutdown` flips. A file that failed is not
/// read again until it changes, so a bad one is counted once rather than once per poll.
pub async fn watch_config(
    state: Arc<AppState>,
    path: PathBuf,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempted = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let stamp = FileStamp::of(&path);
        if attempted == Some(stamp) {
            continue;
        }
        attempted = Some(stamp);
        // Logged and counted inside.
        let _ = refresh(&state, &path).await;
    }
}
