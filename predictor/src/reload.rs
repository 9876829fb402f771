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
    source::LoadError,
    state::{AppState, ServedModel},
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

/// Reads the artifact from the model's source and, if it verifies, serves it. Returns the
/// version now served; on failure the previous model (if any) keeps serving and the failure is
/// counted.
pub async fn reload(state: &Arc<AppState>) -> Result<String, Error> {
    let fetched = match state.source.fetch().await {
        Ok(fetched) => fetched,
        Err(e) => return Err(failed(state, e)),
    };
    let (depth, max_bytes) = (
        state.limits.precompute_depth,
        state.limits.precompute_max_bytes,
    );
    let artifact = fetched.artifact;
    let indexed = tokio::task::spawn_blocking(move || {
        let ranker = Ranker::new(&artifact.model.factors);
        let top = TopIndex::build(&artifact.model, &ranker, depth, max_bytes);
        (artifact, ranker, top)
    })
    .await;
    let (artifact, ranker, top) = match indexed {
        Ok(indexed) => indexed,
        Err(join) => {
            let message = format!("indexing {} panicked: {join}", state.source.location());
            return Err(failed(
                state,
                LoadError {
                    reason: RefusalReason::Other,
                    message,
                },
            ));
        }
    };
    let served = ServedModel::new(
        artifact,
        state.source.location(),
        fetched.sha256,
        ranker,
        top,
    );
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
