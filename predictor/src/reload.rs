//! Loading the artifact and swapping it in. A version of the model store is fetched once, at
//! start; a file is loaded at start, on SIGHUP and when it is replaced (crate::source). Loads run
//! on the blocking pool; the swap is one atomic pointer store, so requests in flight finish on
//! the model they started with. A refused load leaves the served model untouched, and is logged
//! with why and counted by reason.

use std::{
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{Arc, PoisonError},
    time::Duration,
};

use jiff::Timestamp;
use recommender_contract::refusal::RefusalReason;
use recommender_model::Ranker;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    error::Error,
    source::{LoadError, ModelSource},
    state::{AppState, Limits, ServedModel},
    top_index::TopIndex,
};

/// Identity of the file at the model path. An atomic rename changes the inode; an in-place
/// rewrite changes size or mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// `None` when the file cannot be inspected (typically: not there yet).
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        })
    }
}

/// Reads the artifact from `source`, verifies it and indexes it for serving.
async fn load(source: &ModelSource, limits: &Limits) -> Result<ServedModel, LoadError> {
    let fetched = source.fetch().await?;
    let (depth, max_bytes) = (limits.precompute_depth, limits.precompute_max_bytes);
    let artifact = fetched.artifact;
    let indexed = tokio::task::spawn_blocking(move || {
        let ranker = Ranker::new(&artifact.model.factors);
        let top = TopIndex::build(&artifact.model, &ranker, depth, max_bytes);
        (artifact, ranker, top)
    })
    .await;
    let (artifact, ranker, top) = indexed.map_err(|join| LoadError {
        reason: RefusalReason::Other,
        message: format!("indexing {} panicked: {join}", source.location()),
    })?;
    Ok(ServedModel::new(
        artifact,
        source.location(),
        fetched.sha256,
        ranker,
        top,
    ))
}

/// Reads the artifact from the model's source and, if it verifies, serves it. Returns the
/// version now served; on failure the previous model (if any) keeps serving and the failure is
/// counted.
pub async fn reload(state: &Arc<AppState>) -> Result<String, Error> {
    let served = match load(&state.source, &state.limits).await {
        Ok(served) => served,
        Err(e) => return Err(failed(state, e)),
    };
    let version = served.version().to_owned();
    let metrics = &state.metrics;
    metrics.model_info.reset();
    metrics
        .model_info
        .with_label_values(&[served.version(), served.algorithm()])
        .set(1.0);
    metrics.model_loaded.set(1);
    metrics
        .model_load_timestamp_seconds
        .set(served.loaded_at.as_millisecond() as f64 / 1000.0);
    metrics.model_reloads.inc();
    state.feedback.model_changed(&version);
    tracing::info!(
        version = %version,
        algorithm = served.algorithm(),
        users = served.model().users.len(),
        items = served.model().items.len(),
        precomputed_depth = served.top.as_ref().map_or(0, |t| t.depth()),
        precomputed_bytes = served.top.as_ref().map_or(0, |t| t.bytes()),
        artifact = %served.location,
        sha256 = %served.sha256,
        "serving model"
    );
    state.model.store(Some(Arc::new(served)));
    state
        .load_status
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .loads += 1;
    Ok(version)
}

/// Loads the rollout's candidate, once: a refused candidate is logged and counted, and every
/// user stays on the stable model (a bad candidate never takes serving down); the operator sees
/// it missing from `/v1/stats`. Returns whether it is served.
pub async fn load_candidate(state: &Arc<AppState>) -> bool {
    let Some(source) = &state.candidate_source else {
        return false;
    };
    match load(source, &state.limits).await {
        Ok(served) => {
            tracing::info!(
                version = served.version(),
                artifact = %served.location,
                sha256 = %served.sha256,
                "holding the rollout's candidate"
            );
            state.metrics.candidate_loaded.set(1);
            state.candidate.store(Some(Arc::new(served)));
            true
        }
        Err(e) => {
            tracing::error!(artifact = %source.location(), reason = e.reason.as_str(), error = %e, "candidate refused; every user stays on the stable model");
            state.metrics.model_load_failure(e.reason).inc();
            *state
                .candidate_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
            false
        }
    }
}

fn failed(state: &AppState, error: LoadError) -> Error {
    let keeping = state.model.load();
    let (artifact, reason) = (state.source.location(), error.reason.as_str());
    match keeping.as_deref() {
        Some(old) => {
            tracing::error!(%artifact, reason, error = %error, keeping = old.version(), "model refused")
        }
        None => {
            tracing::error!(%artifact, reason, error = %error, "model refused; no model to serve")
        }
    }
    state.metrics.model_load_failure(error.reason).inc();
    let mut status = state
        .load_status
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    status.failures += 1;
    status.last_error = Some(error.to_string());
    status.last_error_at = Some(Timestamp::now());
    Error::Load(error)
}

/// Loads the model now and keeps it until `shutdown` flips. A file is loaded again on SIGHUP or
/// whenever its identity changes; one that failed to load is not retried until it changes (or
/// SIGHUP), so a corrupt artifact is counted once rather than once per poll. A store's version
/// is fetched once, and a refusal ends the watch with the error: the server stops and the
/// predictor exits with it, so its pod never becomes ready.
pub async fn watch_model(
    state: Arc<AppState>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut hangup = signal(SignalKind::hangup()).map_err(Error::Signal)?;
    let Some(path) = state.source.watched_file().map(Path::to_path_buf) else {
        // The candidate first: a replica is ready only once it can route both arms.
        load_candidate(&state).await;
        reload(&state).await?;
        loop {
            tokio::select! {
                _ = hangup.recv() => tracing::info!("SIGHUP: nothing to reload, a new version arrives by a rollout"),
                _ = shutdown.changed() => return Ok(()),
            }
        }
    };
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempted: Option<Option<FileStamp>> = None;
    loop {
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            _ = hangup.recv() => true,
            _ = shutdown.changed() => return Ok(()),
        };
        let stamp = FileStamp::of(&path);
        if !forced && attempted == Some(stamp) {
            continue;
        }
        if forced {
            tracing::info!("SIGHUP: reloading model");
        }
        attempted = Some(stamp);
        // The error is logged and counted inside; the loop only needs to carry on.
        let _ = reload(&state).await;
    }
}
