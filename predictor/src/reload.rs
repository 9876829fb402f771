//! Loading the artifact and swapping it in: at start, on SIGHUP and when the file at the model
//! path is replaced. Loads run on the blocking pool; the swap is one atomic pointer store, so
//! requests in flight finish on the model they started with. A failed load leaves the served
//! model untouched.

use std::{
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{Arc, PoisonError},
    time::Duration,
};

use jiff::Timestamp;
use recommender_model::{Ranker, artifact};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    error::Error,
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

/// Loads the artifact at the model path and, if it verifies, serves it. Returns the version now
/// served; on failure the previous model (if any) keeps serving and the failure is counted.
pub async fn reload(state: &Arc<AppState>) -> Result<String, Error> {
    let path = state.model_path.clone();
    let (depth, max_bytes) = (
        state.limits.precompute_depth,
        state.limits.precompute_max_bytes,
    );
    let loaded = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            artifact::load(&path).map(|a| {
                let ranker = Ranker::new(&a.model.factors);
                let top = TopIndex::build(&a.model, &ranker, depth, max_bytes);
                (a, ranker, top)
            })
        }
    })
    .await;
    let (artifact, ranker, top) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(source)) => return Err(failed(state, Error::Load { path, source })),
        Err(join) => {
            return Err(failed(
                state,
                Error::LoadPanicked {
                    path,
                    message: join.to_string(),
                },
            ));
        }
    };
    let served = ServedModel::new(artifact, path, ranker, top);
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
        path = %served.path.display(),
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

fn failed(state: &AppState, error: Error) -> Error {
    let keeping = state.model.load();
    match keeping.as_deref() {
        Some(old) => tracing::warn!(error = %error, keeping = old.version(), "model load refused"),
        None => tracing::warn!(error = %error, "model load refused; no model to serve yet"),
    }
    state.metrics.model_load_failures.inc();
    let mut status = state
        .load_status
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    status.failures += 1;
    status.last_error = Some(error.to_string());
    status.last_error_at = Some(Timestamp::now());
    error
}

/// Loads the model now, then again on SIGHUP or whenever the file's identity changes, until
/// `shutdown` flips. A file that failed to load is not retried until it changes (or SIGHUP), so a
/// corrupt artifact is counted once rather than once per poll.
pub async fn watch_model(
    state: Arc<AppState>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut hangup = signal(SignalKind::hangup()).map_err(Error::Signal)?;
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempted: Option<Option<FileStamp>> = None;
    loop {
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            _ = hangup.recv() => true,
            _ = shutdown.changed() => return Ok(()),
        };
        let stamp = FileStamp::of(&state.model_path);
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
