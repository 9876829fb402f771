//! What every request shares: the served model (and, during a rollout, the candidate and the
//! rollout config) behind atomic pointers, metrics, feedback and the limits from the
//! configuration.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use axum::http::HeaderValue;
use jiff::Timestamp;
use recommender_model::{Artifact, Model, Ranker};
use recommender_store::Sha256;

use crate::{
    auth::WriteToken,
    config::Config,
    error::Error,
    feedback::FeedbackStats,
    metrics::Metrics,
    rollout::{ActiveRollout, RolloutFigures},
    source::ModelSource,
    top_index::TopIndex,
};

/// A verified artifact and where and when it was loaded.
pub struct ServedModel {
    pub artifact: Artifact,
    /// Where it was read from: a path, or `s3://BUCKET/PREFIX/KEY`.
    pub location: String,
    /// Of the artifact's bytes, as read.
    pub sha256: Sha256,
    pub loaded_at: Timestamp,
    /// Parsed from the artifact's `created_at`; `None` if it is not RFC 3339.
    pub created_at: Option<Timestamp>,
    /// The item matrix packed for live ranking (requests deeper than `top`, or all of them).
    pub ranker: Ranker,
    /// Rankings computed at load; `None` when disabled or too large.
    pub top: Option<TopIndex>,
    /// The version as the `x-model-version` header, built once; `None` if it cannot be one.
    pub version_header: Option<HeaderValue>,
}

impl ServedModel {
    pub fn new(
        artifact: Artifact,
        location: String,
        sha256: Sha256,
        ranker: Ranker,
        top: Option<TopIndex>,
    ) -> Self {
        let created_at = artifact.meta.created_at.parse::<Timestamp>().ok();
        let version_header = HeaderValue::from_str(&artifact.meta.version).ok();
        ServedModel {
            artifact,
            location,
            sha256,
            loaded_at: Timestamp::now(),
            created_at,
            ranker,
            top,
            version_header,
        }
    }

    #[inline]
    pub fn version(&self) -> &str {
        &self.artifact.meta.version
    }

    #[inline]
    pub fn model(&self) -> &Model {
        &self.artifact.model
    }

    pub fn algorithm(&self) -> &str {
        &self.artifact.meta.algorithm
    }

    /// Seconds since training; falls back to the load time when the artifact has no valid date.
    pub fn age_seconds(&self, now: Timestamp) -> f64 {
        let since = self.created_at.unwrap_or(self.loaded_at);
        now.duration_since(since).as_secs_f64().max(0.0)
    }
}

/// Request and connection limits, copied out of [`Config`] so handlers read plain fields.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_batch: usize,
    pub max_recommendations: usize,
    /// Body of /v1/predict/batch.
    pub max_body_bytes: usize,
    /// Body of one pair (predict, feedback): see [`Limits::pair_body_bytes`].
    pub pair_body_bytes: usize,
    pub max_id_bytes: usize,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub precompute_depth: usize,
    pub precompute_max_bytes: usize,
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        let max_id_bytes = config.max_id_bytes as usize;
        Limits {
            max_batch: config.max_batch as usize,
            max_recommendations: config.max_recommendations as usize,
            max_body_bytes: config.max_body_bytes,
            pair_body_bytes: Limits::pair_body_bytes(max_id_bytes),
            max_id_bytes,
            request_timeout: config.request_timeout,
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_header_bytes: config.max_header_bytes as usize,
            max_connections: config.max_connections as usize,
            max_in_flight: config.max_in_flight as usize,
            precompute_depth: config.precompute_depth,
            precompute_max_bytes: config.precompute_max_bytes,
        }
    }

    /// A body holding one user and one item id: JSON may spell each byte of an id as a 6-byte
    /// `\u00XX` escape, and 1 KiB covers the field names, the rating and whitespace. 4 KiB for
    /// the default 256-byte ids.
    pub fn pair_body_bytes(max_id_bytes: usize) -> usize {
        2 * 6 * max_id_bytes + 1024
    }
}

/// Outcome of the last load attempts, for the summary endpoint.
#[derive(Default, Clone, Debug)]
pub struct LoadStatus {
    pub loads: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

pub struct AppState {
    pub source: ModelSource,
    pub model: ArcSwapOption<ServedModel>,
    pub limits: Limits,
    pub metrics: Metrics,
    pub feedback: FeedbackStats,
    /// Required by the write endpoints when set.
    pub write_token: Option<WriteToken>,
    pub load_status: Mutex<LoadStatus>,
    pub started: Instant,
    /// Where the rollout's candidate comes from (`--candidate-version`).
    pub candidate_source: Option<ModelSource>,
    /// The candidate, once loaded and verified; never swapped afterwards.
    pub candidate: ArcSwapOption<ServedModel>,
    /// Why the candidate is not served, if it was refused.
    pub candidate_error: Mutex<Option<String>>,
    /// The rollout config in force; `None` before a good one was read.
    pub rollout: ArcSwapOption<ActiveRollout>,
    /// Why the last rollout config file was refused, if it was.
    pub rollout_error: Mutex<Option<String>>,
    pub rollout_figures: RolloutFigures,
}

impl AppState {
    /// The state, with the model's source opened (no request yet); a source the flags cannot
    /// name is [`Error::Load`], which the server reports as the predictor's refusal.
    pub fn new(config: &Config) -> Result<Arc<Self>, Error> {
        config.validate().map_err(Error::Config)?;
        let metrics = Metrics::new()?;
        // Flags that cannot name a candidate are the candidate's refusal, not the predictor's:
        // the stable model serves everyone.
        let (candidate_source, candidate_error) = match ModelSource::candidate_from_config(config) {
            None => (None, None),
            Some(Ok(source)) => (Some(source), None),
            Some(Err(e)) => {
                tracing::error!(reason = e.reason.as_str(), error = %e, "candidate refused; every user stays on the stable model");
                metrics.model_load_failure(e.reason).inc();
                (None, Some(e.to_string()))
            }
        };
        Ok(Arc::new(AppState {
            source: ModelSource::from_config(config).map_err(Error::Load)?,
            model: ArcSwapOption::empty(),
            limits: Limits::of(config),
            metrics,
            feedback: FeedbackStats::new(config.accept_threshold, config.active_window),
            write_token: WriteToken::from_config(config)?,
            load_status: Mutex::new(LoadStatus::default()),
            started: Instant::now(),
            candidate_source,
            candidate: ArcSwapOption::empty(),
            candidate_error: Mutex::new(candidate_error),
            rollout: ArcSwapOption::empty(),
            rollout_error: Mutex::new(None),
            rollout_figures: RolloutFigures::default(),
        }))
    }

    pub fn candidate_error_now(&self) -> Option<String> {
        self.candidate_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn load_status(&self) -> LoadStatus {
        self.load_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
