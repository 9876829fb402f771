//! The online collector: on its own interval (not on every change), it reads the stats of every
//! ready predictor replica of each model's serving version and writes `status.online`, under a
//! field manager of its own so the reconciler's status writes never fight it, and only when the
//! figures changed: a model at rest costs no write and no reconcile. It reads only pods of the
//! model's own Deployment (`owned`), refuses replies over a size cap and sketches this build could
//! not have written, and runs under a supervisor that restarts it.

pub mod aggregate;
mod owned;

use crate::controller::scoped;
use crate::crd::{KIND, OnlineStatus, RecommenderModel};
use crate::error::{Error, Result};
use crate::labels;
use crate::leader::Lease;
use crate::metrics::Metrics;
use aggregate::{Readings, Sample, aggregate, same_figures};
use futures::FutureExt;
use futures::future::join_all;
use http_body_util::Limited;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client as HttpClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use recommender_contract::stats::PredictorStats;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, error, warn};

/// The field manager of `status.online`.
pub const FIELD_MANAGER: &str = "recommender-operator-online";
/// How long one replica may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest stats reply read. A genuine one is a few tens of KiB at most (two sketches, dense
/// at 3277 words or sparse under 13 KiB, and a latency histogram); the cap bounds what the
/// collector holds per replica whatever a pod sends.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// Why a replica's reply was refused (the `reason` of
/// `recommender_operator_online_replies_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Longer than `MAX_REPLY_BYTES`.
    TooLarge,
    /// Not predictor stats, or holding a sketch this build could not have written.
    Invalid,
}

impl Rejection {
    pub const ALL: [Rejection; 2] = [Rejection::TooLarge, Rejection::Invalid];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::Invalid => "invalid",
        }
    }
}

/// Why a replica gave no stats.
#[derive(Debug)]
enum Unanswered {
    /// It answered, with a reply that is refused.
    Rejected(Rejection, String),
    /// No answer (unreachable, timed out, an HTTP error).
    Failed(String),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Rejected(_, why) | Unanswered::Failed(why) => f.write_str(why),
        }
    }
}

type Key = (String, String);

pub struct Collector {
    client: Client,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    metrics: Arc<Metrics>,
    lease: Lease,
    interval: Duration,
    readings: HashMap<Key, Readings>,
    written: HashMap<Key, OnlineStatus>,
}

impl Collector {
    pub fn new(client: Client, metrics: Arc<Metrics>, lease: Lease, interval: Duration) -> Self {
        Self {
            client,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            metrics,
            lease,
            interval,
            readings: HashMap::new(),
            written: HashMap::new(),
        }
    }

    /// Collects every `interval` in each scope (a namespace, or all with `None`) until `stop`.
    pub async fn run(mut self, scopes: Vec<Option<String>>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            for scope in &scopes {
                if let Err(err) = self.collect(scope.as_deref()).await {
                    warn!(error = %err, "online collection failed");
                }
            }
        }
    }

    async fn collect(&mut self, namespace: Option<&str>) -> Result<()> {
        let models: Vec<RecommenderModel> = scoped::<RecommenderModel>(&self.client, namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube("listing RecommenderModels for the online collector", e))?
            .items;
        let selector = format!(
            "{},{}",
            labels::selector(labels::MANAGED_BY, labels::MANAGER),
            labels::selector(labels::COMPONENT, labels::COMPONENT_PREDICTOR)
        );
        let params = ListParams::default().labels(&selector);
        let deployments = scoped::<Deployment>(&self.client, namespace)
            .list(&params)
            .await
            .map_err(|e| Error::kube("listing predictor Deployments for the online collector", e))?
            .items;
        let replica_sets = scoped::<ReplicaSet>(&self.client, namespace)
            .list(&params)
            .await
            .map_err(|e| Error::kube("listing predictor ReplicaSets for the online collector", e))?
            .items;
        let pods = scoped::<Pod>(&self.client, namespace)
            .list(&params)
            .await
            .map_err(|e| Error::kube("listing predictor pods for the online collector", e))?
            .items;
        let mut seen = Vec::new();
        for model in &models {
            let key = (model.namespace().unwrap_or_default(), model.name_any());
            let owned = owned::owned_pods(model, &deployments, &replica_sets, &pods);
            if let Some(online) = self.collect_model(model, &owned).await {
                self.write(&key, online).await?;
            }
            seen.push(key);
        }
        // Only this scope's models: another scope's are collected in its own pass.
        let in_scope = |key: &Key| namespace.is_none_or(|ns| key.0 == ns);
        self.readings
            .retain(|k, _| !in_scope(k) || seen.contains(k));
        self.written.retain(|k, _| !in_scope(k) || seen.contains(k));
        Ok(())
    }

    /// The aggregate over the ready replicas of `model`'s serving version, if any answered.
    async fn collect_model(
        &mut self,
        model: &RecommenderModel,
        pods: &[&Pod],
    ) -> Option<OnlineStatus> {
        let version = model.status.as_ref()?.serving.as_ref()?.version.clone();
        let port = model.spec.predictor.port;
        let targets: Vec<(String, String)> = pods
            .iter()
            .filter(|p| p.labels().get(labels::VERSION) == Some(&version))
            .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                Some((p.uid()?, stats_url(&ip, port)))
            })
            .collect();
        if targets.is_empty() {
            return None;
        }
        let answers = join_all(targets.iter().map(|(_, url)| self.fetch(url))).await;
        let samples: Vec<Sample> = targets
            .into_iter()
            .zip(answers)
            .filter_map(|((pod, url), answer)| match answer {
                Ok(stats) => Some(Sample { pod, stats }),
                Err(Unanswered::Rejected(reason, why)) => {
                    self.metrics.online_rejected(reason);
                    warn!(url = %url, reason = reason.as_str(), error = %why, "predictor stats refused");
                    None
                }
                Err(err) => {
                    debug!(url = %url, error = %err, "predictor stats unavailable");
                    None
                }
            })
            .collect();
        if samples.is_empty() {
            return None;
        }
        let key = (model.namespace().unwrap_or_default(), model.name_any());
        let readings = self.readings.entry(key).or_default();
        let mut online = aggregate(&version, &samples, readings, Timestamp::now());
        let rollout = model.status.as_ref().and_then(|s| s.rollout.as_ref());
        online.rollout = rollout.and_then(|r| aggregate::rollout(&samples, r));
        Some(online)
    }

    async fn fetch(&self, url: &str) -> std::result::Result<PredictorStats, Unanswered> {
        let failed = |e: &dyn std::fmt::Display| Unanswered::Failed(e.to_string());
        let uri: hyper::Uri = url.parse().map_err(|e| failed(&e))?;
        let exchange = async {
            let response = self.http.get(uri).await.map_err(|e| failed(&e))?;
            if !response.status().is_success() {
                return Err(Unanswered::Failed(format!("HTTP {}", response.status())));
            }
            let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Unanswered::Rejected(
                            Rejection::TooLarge,
                            format!("a reply over {MAX_REPLY_BYTES} bytes"),
                        )
                    } else {
                        failed(&e)
                    }
                })?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| {
                Unanswered::Rejected(Rejection::Invalid, format!("not predictor stats: {e}"))
            })
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Unanswered::Failed(format!(
                    "no answer within {FETCH_TIMEOUT:?}"
                )))
            })
    }

    /// Exports the figures, and writes them to the status only when they changed.
    async fn write(&mut self, key: &Key, online: OnlineStatus) -> Result<()> {
        self.metrics.observe_online(&key.0, &key.1, &online);
        if self
            .written
            .get(key)
            .is_some_and(|w| same_figures(w, &online))
        {
            return Ok(());
        }
        self.lease.ensure_held()?;
        let api: Api<RecommenderModel> = Api::namespaced(self.client.clone(), &key.0);
        let patch = serde_json::json!({
            "apiVersion": RecommenderModel::api_version(&()),
            "kind": KIND,
            "status": {"online": online},
        });
        api.patch_status(
            &key.1,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| Error::kube(format!("writing status.online of {}/{}", key.0, key.1), e))?;
        self.metrics.online_written();
        self.written.insert(key.clone(), online);
        Ok(())
    }
}

/// The longest wait between restarts of a collector that keeps failing.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// Runs the collector `start` makes until `stop`, starting a new one whenever it panics or ends
/// before `stop` (its handle is never dropped unwatched: a dead collector would leave
/// `status.online` silently frozen). Each restart is logged and counted in
/// `recommender_operator_online_collector_restarts_total`, after a delay doubling from 1 s to a
/// minute.
pub async fn supervise<F, Fut>(start: F, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>)
where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut delay = Duration::from_secs(1);
    loop {
        let run = AssertUnwindSafe(start(stop.clone())).catch_unwind();
        let outcome = tokio::select! {
            outcome = run => outcome,
            _ = stop.wait_for(|s| *s) => return,
        };
        if *stop.borrow() {
            return;
        }
        match outcome {
            Ok(()) => error!(retry_in = ?delay, "online collector stopped; restarting it"),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                error!(panic = %why, retry_in = ?delay, "online collector panicked; restarting it");
            }
        }
        metrics.online_collector_restarted();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

fn stats_url(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{port}/v1/stats")
    } else {
        format!("http://{ip}:{port}/v1/stats")
    }
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use http::{Request, Response};
    use kube::client::Body;

    /// A collector whose API server is never asked: only its HTTP side is exercised.
    fn collector(metrics: Arc<Metrics>) -> Collector {
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "ml");
        Collector::new(client, metrics, Lease::unelected(), Duration::from_secs(30))
    }

    /// Serves `/v1/stats` with `body` on a loopback port; returns the port.
    async fn predictor(body: String) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().route("/v1/stats", get(move || async move { body }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn genuine() -> String {
        serde_json::to_string(&aggregate::tests::stats("v1", 10, 5, &["a", "b"])).unwrap()
    }

    #[tokio::test]
    async fn replies_over_the_cap_or_with_forged_sketches_are_refused() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let collector = collector(metrics.clone());
        let url = |port: u16| stats_url("127.0.0.1", port.into());

        let ok = predictor(genuine()).await;
        let stats = collector.fetch(&url(ok)).await.unwrap();
        assert_eq!(stats.model_version.as_deref(), Some("v1"));

        // A genuine reply padded past the cap (JSON allows the whitespace).
        let padded = format!("{}{}", genuine(), " ".repeat(MAX_REPLY_BYTES));
        let big = predictor(padded).await;
        match collector.fetch(&url(big)).await {
            Err(Unanswered::Rejected(Rejection::TooLarge, why)) => {
                assert!(why.contains(&MAX_REPLY_BYTES.to_string()), "{why}")
            }
            other => panic!("{other:?}"),
        }

        // A sketch whose register count runs past its buffer: merging it would panic.
        let mut forged: serde_json::Value = serde_json::from_str(&genuine()).unwrap();
        forged["users"]["active"]["registers"] =
            serde_json::json!({"buf": [0], "count": 1_000_000, "zeros": 1_000_000});
        let bad = predictor(forged.to_string()).await;
        match collector.fetch(&url(bad)).await {
            Err(Unanswered::Rejected(Rejection::Invalid, why)) => {
                assert!(why.contains("user sketch: "), "{why}")
            }
            other => panic!("{other:?}"),
        }

        // Refusals are counted when a collection meets them.
        use crate::decide::fixtures;
        let mut spec = fixtures::file_spec();
        spec.predictor.port = big.into();
        let status = crate::crd::RecommenderModelStatus {
            serving: Some(fixtures::record("v1", 1, 0.9, "2026-01-01T00:00:00Z")),
            ..Default::default()
        };
        let model = fixtures::model(spec, Some(status));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ml", "uid": "p1",
                "labels": {"recommender.dev/version": "v1"}},
            "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let mut collector = collector;
        assert!(collector.collect_model(&model, &[&pod]).await.is_none());
        let text = metrics.render(jiff::Timestamp::now());
        assert!(
            text.contains(
                r#"recommender_operator_online_replies_rejected_total{reason="too_large"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_collector_that_panics_or_ends_is_restarted_and_counted() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let (stop_tx, stop) = watch::channel(false);
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = starts.clone();
        let supervisor = tokio::spawn(supervise(
            move |mut stop: watch::Receiver<bool>| {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    match n {
                        0 => panic!("collector bug"),
                        1 => {} // ended on its own
                        _ => {
                            let _ = stop.wait_for(|s| *s).await;
                        }
                    }
                }
            },
            metrics.clone(),
            stop,
        ));
        while starts.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = metrics.render(jiff::Timestamp::now());
        assert!(
            text.contains("recommender_operator_online_collector_restarts_total 2"),
            "{text}"
        );
        stop_tx.send(true).unwrap();
        supervisor.await.unwrap();
        assert_eq!(
            starts.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "not restarted after stop"
        );
    }

    #[test]
    fn stats_urls_for_ipv4_and_ipv6_pods() {
        assert_eq!(
            stats_url("10.244.0.7", 8080),
            "http://10.244.0.7:8080/v1/stats"
        );
        assert_eq!(stats_url("fd00::7", 8080), "http://[fd00::7]:8080/v1/stats");
    }
}
