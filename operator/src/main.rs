//! `recommender-operator`: runs the RecommenderModel controller.

use clap::{Parser, ValueEnum};
use kube::Client;
use recommender_operator::children::{Defaults, OperatorPods};
use recommender_operator::controller::{self, Context};
use recommender_operator::leader;
use recommender_operator::metrics::Metrics;
use recommender_operator::online::{self, Collector};
use recommender_operator::secrets::{SecretName, SecretPolicy};
use recommender_operator::server::{self, Health};
use recommender_operator::{Error, Result};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

const LONG_ABOUT: &str = "\
Runs the RecommenderModel controller: trains, gates, promotes, serves and watches recommender \
models (recommender.dev/v1alpha1).

Outside a cluster it uses your kubeconfig like kubectl does: $KUBECONFIG if set, else \
~/.kube/config, with its current context. Install the CRD first, then start the operator:

  kubectl apply -f crds/recommendermodels.yaml
  cargo run -p recommender-operator -- --namespace default --leader-elect false

Inside a cluster it uses the pod's service account. Metrics, /livez and /readyz are served on \
--metrics-addr. With --leader-elect (the default) only the holder of the Lease reconciles, so \
several replicas can run; a replica that loses the Lease exits and is restarted as a standby.
Logs go to stderr; RUST_LOG sets the filter (default info).";

#[derive(Parser, Debug)]
#[command(name = "recommender-operator", version, about = "Runs the RecommenderModel controller.", long_about = LONG_ABOUT)]
struct Cli {
    /// Namespace to watch; repeat or comma-separate for several. Watches all namespaces when absent.
    #[arg(
        long = "namespace",
        short = 'n',
        env = "WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Address of the /metrics, /livez and /readyz server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Trainer image for resources that do not set spec.trainer.image.
    #[arg(
        long,
        env = "TRAINER_IMAGE",
        default_value = "recommender/recommender-trainer:0.1.0"
    )]
    trainer_image: String,
    /// Predictor image for resources that do not set spec.predictor.image.
    #[arg(
        long,
        env = "PREDICTOR_IMAGE",
        default_value = "recommender/recommender-predictor:0.1.0"
    )]
    predictor_image: String,
    /// The cluster's DNS domain, for the predictor URL in `status.url`.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Reconcile only while holding the Lease (needed with more than one replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "recommender-operator")]
    lease_name: String,
    /// This replica's identity in the Lease and in events; random when absent.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds the database probe (connect + SELECT 1) may take.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    db_probe_timeout: u64,
    /// Seconds between reads of the predictors' stats into status.online; 0 turns it off.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    online_interval: u64,
    #[arg(long, value_enum, env = "LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// A Secret (NAMESPACE/NAME) the operator may use without the label
    /// recommender.dev/allow=true; repeat for several.
    #[arg(long = "allowed-secret", value_name = "NAMESPACE/NAME")]
    allowed_secrets: Vec<SecretName>,
    /// Namespace of the operator's own pods, admitted by each model's NetworkPolicy.
    #[arg(long, env = "POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Labels (KEY=VALUE, comma-separated) of the operator's own pods, admitted by each model's
    /// NetworkPolicy together with --operator-namespace.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    operator_pod_labels: Vec<(String, String)>,
}

/// `KEY=VALUE` of `--operator-pod-labels`.
fn parse_label(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

/// The operator's pods as each model's NetworkPolicy admits them, when both halves are known.
fn operator_pods(cli: &Cli) -> Option<OperatorPods> {
    let namespace = cli.operator_namespace.clone()?;
    (!cli.operator_pod_labels.is_empty()).then(|| OperatorPods {
        namespace,
        labels: cli.operator_pod_labels.iter().cloned().collect(),
    })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: `kubectl logs` shows the bytes as written.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // The reconcile span carries namespace and name, so every line names its object.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "recommender-operator stopped");
            ExitCode::FAILURE
        }
    }
}

/// How long controllers may take to finish after a stop, within Kubernetes' default 30 s grace.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves `/metrics`, `/livez` and `/readyz` until the process ends.
async fn serve_health(addr: SocketAddr, health: Health) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, server::router(health)).await {
            error!(error = %err, "metrics server stopped");
        }
    });
    info!(addr = %addr, "serving /metrics, /livez, /readyz");
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    serve_health(
        cli.metrics_addr,
        Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    )
    .await?;

    let client = Client::try_default().await.map_err(Error::Connect)?;
    let version = client.apiserver_version().await.map_err(Error::Connect)?;
    info!(server = %version.git_version, "connected to the Kubernetes API");
    ready.store(true, Ordering::Relaxed);

    // `stop` flips on SIGTERM/SIGINT or when the Lease is lost.
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested");
        let _ = signal_tx.send(true);
    });

    let leadership = if cli.leader_elect {
        let acquired = leader::acquire(
            client.clone(),
            &cli.lease_name,
            &cli.lease_namespace,
            cli.identity.as_deref(),
            &stop_tx,
        )
        .await?;
        match acquired {
            Some(held) => Some(held),
            None => return Ok(()),
        }
    } else {
        None
    };

    let lease = leadership
        .as_ref()
        .map_or_else(leader::Lease::unelected, |held| held.lease());
    let mut ctx = Context::new(
        client,
        metrics,
        Defaults {
            trainer_image: cli.trainer_image.clone(),
            predictor_image: cli.predictor_image.clone(),
            cluster_domain: cli.cluster_domain.clone(),
            operator_pods: operator_pods(&cli),
        },
        cli.identity.clone(),
        lease.clone(),
    );
    ctx.probe_timeout = Duration::from_secs(cli.db_probe_timeout);
    ctx.secrets = SecretPolicy::new(cli.allowed_secrets.iter().cloned());
    let scopes = scopes(&cli.namespaces);
    if cli.online_interval > 0 {
        let interval = Duration::from_secs(cli.online_interval);
        let (client, metrics, scopes) = (ctx.client.clone(), ctx.metrics.clone(), scopes.clone());
        let start = move |stop| {
            let collector =
                Collector::new(client.clone(), metrics.clone(), lease.clone(), interval);
            collector.run(scopes.clone(), stop)
        };
        tokio::spawn(online::supervise(
            start,
            ctx.metrics.clone(),
            stop_rx.clone(),
        ));
    }
    run_controllers(Arc::new(ctx), scopes, stop_rx).await;

    let lost = leadership.as_ref().is_some_and(|l| l.lost());
    if let Some(held) = leadership {
        held.release().await;
    }
    info!("stopped");
    if lost {
        return Err(Error::LeadershipLost);
    }
    Ok(())
}

/// Each watched namespace, or `None` for all of them.
fn scopes(namespaces: &[String]) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    }
}

/// One controller per scope, until `stop` flips.
async fn run_controllers(
    ctx: Arc<Context>,
    scopes: Vec<Option<String>>,
    stop: watch::Receiver<bool>,
) {
    let mut controllers = Vec::new();
    for scope in scopes {
        info!(
            namespace = scope.as_deref().unwrap_or("<all>"),
            "starting controller"
        );
        // kube wants a Sync shutdown future: a oneshot fired when `stop` flips.
        let (fire, fired) = oneshot::channel::<()>();
        let mut stopping = stop.clone();
        tokio::spawn(async move {
            let _ = stopping.wait_for(|s| *s).await;
            let _ = fire.send(());
        });
        controllers.push(controller::run(ctx.clone(), scope, async move {
            let _ = fired.await;
        }));
    }
    // Controllers drain in-flight reconciles on shutdown, but one whose watch is failing (say,
    // the CRD is not installed) may not notice; exit within the pod's termination grace anyway.
    let mut stopping = stop.clone();
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time; exiting"),
    }
}
