//! Test-only node agent: registers a Node and runs the pods bound to it as local processes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use recommender_e2e::agent::{self, Config};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Name of the Node to register.
    #[arg(long, env = "NODE_NAME", default_value = "local-node")]
    node_name: String,
    /// Folder with the binaries images name: image `<any>/recommender-x:<tag>` runs `recommender-x`.
    #[arg(long, env = "RECOMMENDER_BIN_DIR")]
    bin_dir: PathBuf,
    /// Folder for pod logs, termination messages, emptyDirs and claim folders.
    #[arg(
        long,
        env = "RECOMMENDER_NODE_STATE",
        default_value = "/tmp/recommender-node"
    )]
    state_dir: PathBuf,
    /// Kubeconfig to use (otherwise KUBECONFIG or the default locations).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = "8")]
    cpu: String,
    #[arg(long, default_value = "16Gi")]
    memory: String,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Do not create hostPath PersistentVolumes for pending claims.
    #[arg(long)]
    no_volume_provisioning: bool,
}

async fn client(kubeconfig: Option<PathBuf>) -> Result<(kube::Client, String), String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no kubeconfig: {e}"))?,
    };
    let api_server = config.cluster_url.to_string();
    let client =
        kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))?;
    Ok((client, api_server.trim_end_matches('/').to_owned()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=warn,kube_runtime=warn".into()),
        )
        .init();
    let args = Args::parse();
    let (client, api_server) = match client(args.kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("node-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config {
        node_name: args.node_name,
        bin_dir: args.bin_dir,
        state_dir: args.state_dir,
        cpu: args.cpu,
        memory: args.memory,
        max_pods: args.max_pods,
        boot_id: format!("{}", jiff::Timestamp::now().as_nanosecond()),
        provide_volumes: !args.no_volume_provisioning,
        api_server,
    };
    match agent::run(client, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
