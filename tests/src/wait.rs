//! Polling with a clear failure: every wait names what it waited for and shows the last state.

use kube::api::Api;
use recommender_operator::crd::{RecommenderModel, RecommenderModelStatus};
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls until `check` holds; panics naming what it waited for.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Polls until `find` returns something, and returns it; panics naming what it waited for.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut find: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(found) = find().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Polls until `look` returns `Ok`, and returns it; on timeout the panic names what it waited
/// for and what the last look saw (`look`'s `Err`).
pub async fn wait_showing<T, F, Fut>(timeout: Duration, what: &str, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match look().await {
            Ok(found) => return found,
            Err(seen) => last = seen,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
}

/// Polls the resource until its status satisfies `pred`; on timeout the panic shows the status.
pub async fn wait_status(
    api: &Api<RecommenderModel>,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&RecommenderModelStatus) -> bool,
) -> RecommenderModelStatus {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        if let Ok(model) = api.get(name).await
            && let Some(status) = model.status
        {
            if pred(&status) {
                return status;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}; last status:\n{}",
        serde_yaml::to_string(&last).unwrap_or_default()
    );
}
