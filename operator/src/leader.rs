//! Leader election on a Lease: only the holder reconciles, so several replicas can run, and a
//! replica that loses the Lease stops so it can be restarted as a standby.

use crate::error::Result;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The Lease, held.
pub struct Leadership {
    holding: watch::Receiver<bool>,
    task: JoinHandle<std::result::Result<LeaseManager, LeaseManagerError>>,
    lost_watcher: JoinHandle<()>,
}

/// Waits until this replica holds the Lease `name` in `namespace`, or `stop` flips (then
/// `None`). Once held, losing it flips `stop`.
pub async fn acquire(
    client: Client,
    name: &str,
    namespace: &str,
    identity: Option<&str>,
    stop: &watch::Sender<bool>,
) -> Result<Option<Leadership>> {
    let mut builder = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_duration(15)
        .with_grace(5);
    if let Some(identity) = identity {
        builder = builder.with_identity(identity);
    }
    let manager = builder.build().await?;
    let (mut holding, task) = manager.watch().await;
    info!(lease = %name, namespace = %namespace, "waiting for leadership");
    let mut stopping = stop.subscribe();
    tokio::select! {
        _ = holding.wait_for(|held| *held) => info!("acquired leadership"),
        _ = stopping.wait_for(|s| *s) => return Ok(None),
    }
    let lost_tx = stop.clone();
    let mut watch_lost = holding.clone();
    let lost_watcher = tokio::spawn(async move {
        if watch_lost.wait_for(|held| !*held).await.is_ok() {
            warn!("lost leadership; stopping");
            let _ = lost_tx.send(true);
        }
    });
    Ok(Some(Leadership {
        holding,
        task,
        lost_watcher,
    }))
}

impl Leadership {
    pub fn lost(&self) -> bool {
        !*self.holding.borrow()
    }

    /// Gives the Lease up so a standby takes over at once instead of waiting for it to expire.
    pub async fn release(self) {
        self.lost_watcher.abort();
        let _ = self.lost_watcher.await;
        // Closing the channel (every receiver) ends the lease task, which hands the manager back.
        drop(self.holding);
        if let Ok(Ok(manager)) = self.task.await
            && let Err(err) = manager.release().await
        {
            warn!(error = %err, "cannot release the Lease");
        }
    }
}
