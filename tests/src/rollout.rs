//! Progressive rollouts (docs/rollout.md) as the tests drive them: `spec.rollout` and the manual
//! annotations written as merge patches, and the status read as JSON at the paths the rollout's
//! API fixes (`status.rollout.stage`, `status.rollout.test.samples`, ...), so a flow reads
//! exactly what `kubectl get -o json` shows. Each predictor replica's own view comes from its
//! `/v1/stats` (`recommender_contract::stats::PredictorStats`).

use crate::http::get_json;
use crate::models::{TRAIN_TIMEOUT, predictor_pod_urls};
use crate::wait::wait_showing;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use recommender_contract::stats::PredictorStats;
use recommender_operator::crd::RecommenderModel;
use recommender_operator::labels::RETRAIN_ANNOTATION;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The model as an untyped object: its status as the API server holds it, whatever it contains.
pub fn model_objects(client: &Client, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<RecommenderModel>(&());
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// The model's `status` as JSON (`Null` before the operator wrote one).
pub async fn status_json(client: &Client, ns: &str, name: &str) -> Value {
    model_objects(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {ns}/{name}: {e}"))
        .data["status"]
        .clone()
}

/// Polls the model's status (JSON) until `pred` holds and returns it; on timeout the panic shows
/// the last status.
pub async fn wait_status_json(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let api = model_objects(client, ns);
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < timeout {
        if let Ok(model) = api.get(name).await {
            let status = &model.data["status"];
            if pred(status) {
                return status.clone();
            }
            last = status.clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}; last status:\n{}",
        serde_json::to_string_pretty(&last).unwrap_or_default()
    );
}

/// A JSON merge patch of the model (`{"spec": {...}}`, `{"metadata": {...}}`), as
/// `kubectl patch --type merge` sends it.
pub async fn patch_model(client: &Client, ns: &str, name: &str, patch: Value) {
    model_objects(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching {ns}/{name} with {patch}: {e}"));
}

/// Sets one annotation of the model (the plugin's `promote`, `abort`, `retrain` write these).
pub async fn annotate_model(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    patch_model(client, ns, name, patch).await;
}

/// The condition of that type in a JSON status.
pub fn json_condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// `status.rollout.stage`, if a rollout ever ran.
pub fn rollout_stage(status: &Value) -> Option<&str> {
    status["rollout"]["stage"].as_str()
}

/// Sets `spec.rollout` (and, when given, the source's query: a candidate trained on other data),
/// requests a training run, and waits until its candidate `version` starts a rollout (it passed
/// the offline gate); returns the status then.
pub async fn start_rollout(
    client: &Client,
    ns: &str,
    name: &str,
    rollout: Value,
    query: Option<&str>,
    version: &str,
) -> Value {
    let mut spec = json!({"rollout": rollout});
    if let Some(query) = query {
        spec["source"] = json!({"postgres": {"query": query}});
    }
    patch_model(client, ns, name, json!({"spec": spec})).await;
    annotate_model(
        client,
        ns,
        name,
        RETRAIN_ANNOTATION,
        &format!("rollout-{version}"),
    )
    .await;
    let what = format!("a rollout of {version} (trained, past the gate)");
    wait_status_json(client, ns, name, TRAIN_TIMEOUT, &what, |s| {
        s["rollout"]["candidateVersion"] == version
    })
    .await
}

/// What one predictor replica reports.
pub async fn replica_stats(url: &str) -> Result<PredictorStats, String> {
    let (code, body) = get_json(&format!("{url}/v1/stats")).await?;
    if code != 200 {
        return Err(format!("GET {url}/v1/stats: HTTP {code}: {body}"));
    }
    serde_json::from_value(body).map_err(|e| format!("{url}/v1/stats: {e}"))
}

/// The rollout config a replica has in force, as its `/v1/stats` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce {
    pub id: String,
    /// `shadow` or `canary`.
    pub stage: String,
    /// The share of the users the replica sends to the candidate (0 in the shadow stage).
    pub share: f64,
    /// The candidate the replica holds; `None` while it is not loaded (or was refused).
    pub candidate: Option<String>,
}

impl InForce {
    /// The config in force of `stats`, if it holds one.
    pub fn of(stats: &PredictorStats) -> Option<Self> {
        stats.rollout.as_ref().map(|r| InForce {
            id: r.rollout_id.clone(),
            stage: r.stage.as_str().to_string(),
            share: r.candidate_share,
            candidate: r.candidate_version.clone(),
        })
    }
}

/// Waits until `replicas` ready predictor pods of the model each have `want` in force; returns
/// their URLs, sorted by pod name. A stage or share reaches a running pod when the kubelet
/// refreshes its ConfigMap volume and the predictor's poll reads the file.
pub async fn wait_replicas_in_rollout(
    client: &Client,
    ns: &str,
    model: &str,
    want: &InForce,
    replicas: usize,
    timeout: Duration,
) -> Vec<String> {
    let what = format!("{replicas} replicas of {ns}/{model} with {want:?} in force");
    wait_showing(timeout, &what, || async {
        let urls = predictor_pod_urls(client, ns, model, None).await;
        let mut seen = Vec::new();
        for url in &urls {
            seen.push(replica_stats(url).await.map(|s| InForce::of(&s)));
        }
        if urls.len() == replicas && seen.iter().all(|s| s.as_ref() == Ok(&Some(want.clone()))) {
            return Ok(urls);
        }
        Err(format!(
            "{:?}",
            urls.into_iter().zip(seen).collect::<Vec<_>>()
        ))
    })
    .await
}

/// Waits until `replicas` ready predictor pods serve `version` with no rollout config (the
/// Deployment back to one model after a rollout ended); returns their URLs.
pub async fn wait_replicas_without_rollout(
    client: &Client,
    ns: &str,
    model: &str,
    version: &str,
    replicas: usize,
    timeout: Duration,
) -> Vec<String> {
    let what = format!("{replicas} replicas of {ns}/{model} serving {version} alone");
    wait_showing(timeout, &what, || async {
        let urls = predictor_pod_urls(client, ns, model, None).await;
        let mut seen = Vec::new();
        for url in &urls {
            seen.push(match replica_stats(url).await {
                Ok(stats) => (
                    stats.model_version.as_deref() == Some(version) && stats.rollout.is_none(),
                    format!(
                        "{url}: {:?}, rollout {:?}",
                        stats.model_version,
                        stats.rollout.map(|r| r.rollout_id)
                    ),
                ),
                Err(e) => (false, e),
            });
        }
        if urls.len() == replicas && seen.iter().all(|(ok, _)| *ok) {
            return Ok(urls);
        }
        Err(seen
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join("; "))
    })
    .await
}
