//! The online collector: on its own interval (not on every change), it reads the stats of every
//! ready predictor replica of each model's serving version and writes `status.online`, under a
//! field manager of its own so the reconciler's status writes never fight it, and only when the
//! figures changed: a model at rest costs no write and no reconcile.

pub mod aggregate;

use crate::controller::scoped;
use crate::crd::{KIND, OnlineStatus, RecommenderModel};
use crate::error::{Error, Result};
use crate::labels;
use crate::leader::Lease;
use crate::metrics::Metrics;
use aggregate::{Readings, Sample, aggregate, same_figures};
use futures::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client as HttpClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use recommender_contract::stats::PredictorStats;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};

/// The field manager of `status.online`.
pub const FIELD_MANAGER: &str = "recommender-operator-online";
/// How long one replica may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

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
        let pods = scoped::<Pod>(&self.client, namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::kube("listing predictor pods for the online collector", e))?
            .items;
        let mut seen = Vec::new();
        for model in &models {
            let key = (model.namespace().unwrap_or_default(), model.name_any());
            if let Some(online) = self.collect_model(model, &pods).await {
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
        pods: &[Pod],
    ) -> Option<OnlineStatus> {
        let version = model.status.as_ref()?.serving.as_ref()?.version.clone();
        let port = model.spec.predictor.port;
        let targets: Vec<(String, String)> = pods
            .iter()
            .filter(|p| p.namespace() == model.namespace())
            .filter(|p| p.labels().get(labels::MODEL) == Some(&model.name_any()))
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
        Some(aggregate(&version, &samples, readings, Timestamp::now()))
    }

    async fn fetch(&self, url: &str) -> std::result::Result<PredictorStats, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let exchange = async {
            let response = self.http.get(uri).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| format!("not predictor stats: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
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

    #[test]
    fn stats_urls_for_ipv4_and_ipv6_pods() {
        assert_eq!(
            stats_url("10.244.0.7", 8080),
            "http://10.244.0.7:8080/v1/stats"
        );
        assert_eq!(stats_url("fd00::7", 8080), "http://[fd00::7]:8080/v1/stats");
    }
}
