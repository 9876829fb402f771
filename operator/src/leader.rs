//! Leader election on a Lease: only the holder reconciles, so several replicas can run, and a
//! replica that loses the Lease stops so it can be restarted as a standby.

use crate::error::{Error, Result};
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Whether this replica may write. Every writer (the applier, the online collector) asks before
/// each write, so a replica that lost the Lease stops writing at once, not when its reconciles
/// in flight finish: by then another replica may hold the Lease and write the same objects.
#[derive(Clone, Debug)]
pub struct Lease(Arc<AtomicBool>);

impl Lease {
    /// Without leader election this replica always writes.
    pub fn unelected() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    pub fn held(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(LeadershipLost)` once the Lease is lost.
    pub fn ensure_held(&self) -> Result<()> {
        if self.held() {
            Ok(())
        } else {
            Err(Error::LeadershipLost)
        }
    }

    /// Lowers the flag for good: the Lease is lost.
    pub fn lose(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The Lease, held.
pub struct Leadership {
    holding: watch::Receiver<bool>,
    lease: Lease,
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
    let lease = Lease::unelected();
    let flag = lease.clone();
    let lost_watcher = tokio::spawn(async move {
        // A lease task that ended (the channel closed) no longer renews: as good as lost.
        let _ = watch_lost.wait_for(|held| !*held).await;
        // Writes stop first; the controllers then drain their reconciles, which write nothing.
        flag.lose();
        warn!("lost leadership; stopping");
        let _ = lost_tx.send(true);
    });
    Ok(Some(Leadership {
        holding,
        lease,
        task,
        lost_watcher,
    }))
}

impl Leadership {
    /// The flag writers check; it falls when the Lease is lost.
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }

    pub fn lost(&self) -> bool {
        !*self.holding.borrow() || !self.lease.held()
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
