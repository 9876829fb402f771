//! The test-only node agent: a Node whose pods are local processes of the project's binaries
//! (see docs/contracts.md, "Test node agent", and docs/local-cluster.md).

mod api_access;
mod claims;
pub mod ips;
pub mod launch;
mod node;
mod pods;
pub mod probe;
mod resolve;
mod runtime;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use crate::Error;

/// How the agent presents itself and where it runs things.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    /// Folder holding the binaries images name (`recommender-trainer`, ...).
    pub bin_dir: PathBuf,
    /// Pod folders (logs, termination messages, emptyDirs) and claim folders live here.
    pub state_dir: PathBuf,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    /// Changes with every agent start, like a real node's boot id.
    pub boot_id: String,
    /// Create hostPath PersistentVolumes for pending claims.
    pub provide_volumes: bool,
    /// The API server URL written into the kubeconfig of pods with a ServiceAccount token.
    pub api_server: String,
}

pub struct Agent {
    pub client: Client,
    pub config: Config,
    pub ips: ips::PodIps,
}

/// Registers the node and runs pods until `shutdown` resolves; then stops every pod's processes.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    if !config.bin_dir.is_dir() {
        return Err(Error::Config(format!(
            "--bin-dir {} is not a directory",
            config.bin_dir.display()
        )));
    }
    std::fs::create_dir_all(&config.state_dir).map_err(Error::io(&config.state_dir))?;
    // The API server may still be starting: retry registration for a while before giving up.
    let mut attempt = 0;
    loop {
        match node::register(&client, &config).await {
            Ok(()) => break,
            Err(e) if attempt < 30 => {
                attempt += 1;
                tracing::warn!(error = %e, "registering the node failed, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
    tracing::info!(node = %config.node_name, "node registered");
    let since = runtime::timestamp();
    let heartbeat = tokio::spawn(node::heartbeat_loop(client.clone(), config.clone(), since));
    let volumes = config.provide_volumes.then(|| {
        tokio::spawn(claims::provide_volumes(
            client.clone(),
            config.state_dir.clone(),
        ))
    });
    let agent = Arc::new(Agent {
        client,
        config,
        ips: ips::PodIps::default(),
    });
    let mut pods = pods::Pods::new(agent);
    let (quit_tx, quit_rx) = watch::channel(false);
    {
        let watching = pods.watch(quit_rx);
        tokio::pin!(watching);
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut watching => {}
            _ = &mut shutdown => { let _ = quit_tx.send(true); }
        }
    }
    heartbeat.abort();
    if let Some(v) = volumes {
        v.abort();
    }
    tracing::info!("stopping all pods");
    pods.shutdown().await;
    Ok(())
}
