//! Typed `RecommenderModel`s: built, applied and read through the operator crate's own types, so
//! a renamed field is a compile error here, not a timeout.

use crate::env::Env;
use crate::http::get_json;
use crate::namespace::{DB_SECRET, MODEL_STORE_CLAIM, TestNamespace};
use crate::operator::is_ready;
use crate::wait::{wait_status, wait_until};
use crate::{PREDICTOR_IMAGE, TRAINER_IMAGE};
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use recommender_operator::crd::{
    PostgresSource, RecommenderModel, RecommenderModelSpec, RecommenderModelStatus, SecretKeyRef,
    Source,
};
use recommender_operator::labels::{RETRAIN_ANNOTATION, VERSION};
use serde_json::{Value, json};
use std::time::Duration;

pub const QUERY: &str = "SELECT user_id::text, movie_id::text, value::float8, \
                         extract(epoch from created_at)::bigint FROM ratings_rating";

pub fn models(client: &Client, ns: &str) -> Api<RecommenderModel> {
    Api::namespaced(client.clone(), ns)
}

/// A model reading the test database through the namespace's Service, small enough to train in
/// seconds; `customize` changes what the test is about.
pub fn postgres_model(
    env: &Env,
    ns: &TestNamespace,
    name: &str,
    customize: impl FnOnce(&mut RecommenderModelSpec),
) -> RecommenderModel {
    // Every field the schema defaults, defaulted as the API server would.
    let mut spec: RecommenderModelSpec = serde_json::from_value(
        json!({"source": {}, "modelStore": {"claimName": MODEL_STORE_CLAIM}}),
    )
    .expect("a spec with its defaults");
    spec.source = Source {
        postgres: Some(PostgresSource {
            host: ns.db_host(),
            port: 5432,
            database: env.pg.database.clone(),
            user: env.pg.user.clone(),
            password_secret_ref: SecretKeyRef {
                name: DB_SECRET.into(),
                key: "password".into(),
            },
            query: QUERY.into(),
            probe_interval_seconds: 2,
            ssl_mode: Default::default(),
            ca_secret_ref: None,
        }),
        file: None,
    };
    spec.hyperparameters.factors = 20;
    spec.hyperparameters.epochs = Some(20);
    spec.seed = Some(7);
    spec.trainer.image = Some(TRAINER_IMAGE.into());
    spec.trainer.active_deadline_seconds = 300;
    spec.predictor.image = Some(PREDICTOR_IMAGE.into());
    spec.predictor.replicas = 1;
    // The operator's defaults with smaller CPU requests: the suite's concurrent tests place their
    // trainers and predictors on the node's 2 CPUs at once, and a pod the scheduler has no room
    // for would read as a stuck trainer. The demo runs with the defaults.
    spec.trainer.resources = Some(cpu_request("100m", "512Mi", "2Gi"));
    spec.predictor.resources = Some(cpu_request("20m", "128Mi", "512Mi"));
    customize(&mut spec);
    let mut model = RecommenderModel::new(name, spec);
    model.metadata.namespace = Some(ns.name.clone());
    model
}

fn cpu_request(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
        limits: Some(quantities(&[("memory", memory_limit)])),
        ..ResourceRequirements::default()
    }
}

/// Long enough (tens of seconds) to still be training when the operator or the API server is
/// replaced or comes back; the gate is not what such tests are about, and this many epochs
/// overfit.
pub fn slow_training(spec: &mut RecommenderModelSpec) {
    spec.hyperparameters.factors = 50;
    spec.hyperparameters.epochs = Some(800);
    spec.promotion.max_rmse = 3.0;
    spec.promotion.max_mae = 3.0;
    spec.promotion.min_accuracy = 0.0;
}

/// How long a small model may take to be trained, judged and rolled out while the suite's other
/// tests share the node's two cores.
pub const TRAIN_TIMEOUT: Duration = Duration::from_secs(240);

/// Waits until `version` serves and its rollout is complete (`serves`).
pub async fn wait_serving(
    client: &Client,
    ns: &str,
    name: &str,
    version: &str,
) -> RecommenderModelStatus {
    let what = format!("{version} served");
    wait_status(&models(client, ns), name, TRAIN_TIMEOUT, &what, |s| {
        serves(s, version)
    })
    .await
}

/// The model's status as it is now; panics when it has none yet.
pub async fn model_status(client: &Client, ns: &str, name: &str) -> RecommenderModelStatus {
    models(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {ns}/{name}: {e}"))
        .status
        .unwrap_or_else(|| panic!("{ns}/{name} has no status yet"))
}

/// Server-side apply of `model`, owning every field it sets (as `kubectl apply --server-side`).
pub async fn apply_model(client: &Client, model: &RecommenderModel) {
    let api = models(client, &model.namespace().expect("a namespace"));
    let mut manifest = serde_json::to_value(model).expect("a model serialises");
    manifest.as_object_mut().map(|o| o.remove("status"));
    api.patch(
        &model.name_any(),
        &PatchParams::apply("e2e-tests").force(),
        &Patch::Apply(&manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {}: {e}", model.name_any()));
}

/// Changes the spec the way a person editing the manifest and re-applying it would.
pub async fn update_spec(
    client: &Client,
    ns: &str,
    name: &str,
    change: impl FnOnce(&mut RecommenderModelSpec),
) {
    let current = models(client, ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {ns}/{name}: {e}"));
    let mut model = RecommenderModel::new(name, current.spec);
    model.metadata.namespace = Some(ns.into());
    change(&mut model.spec);
    apply_model(client, &model).await;
}

pub async fn request_retrain(client: &Client, ns: &str, name: &str, token: &str) {
    let patch = json!({"metadata": {"annotations": {RETRAIN_ANNOTATION: token}}});
    models(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotating {ns}/{name} for retraining: {e}"));
}

pub fn condition<'a>(status: &'a RecommenderModelStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

pub fn condition_is(status: &RecommenderModelStatus, type_: &str, want: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == want)
}

pub fn serving_version(status: &RecommenderModelStatus) -> Option<&str> {
    status.serving.as_ref().map(|m| m.version.as_str())
}

/// That version serves and its rollout is complete (no pod of an older version left).
pub fn serves(status: &RecommenderModelStatus, version: &str) -> bool {
    serving_version(status) == Some(version)
        && status
            .predictor
            .as_ref()
            .is_some_and(|p| p.version == version)
        && condition(status, "Serving")
            .is_some_and(|c| c.status == "True" && c.reason == "Available")
}

/// The predictor Service's `http://clusterIP:port`, as pods (and this host) reach it.
pub async fn predictor_url(client: &Client, ns: &str, model: &str) -> String {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let name = recommender_operator::children::predictor_name(model);
    let service = services
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("the predictor Service {ns}/{name}: {e}"));
    let spec = service.spec.expect("a Service spec");
    let ip = spec.cluster_ip.expect("a ClusterIP");
    let port = spec
        .ports
        .and_then(|p| p.first().map(|p| p.port))
        .unwrap_or(8080);
    format!("http://{ip}:{port}")
}

/// `http://podIP:port` of each ready predictor pod of `model` (that is not being deleted), and only
/// those labelled with `version` when one is given, sorted by pod name.
pub async fn predictor_pod_urls(
    client: &Client,
    ns: &str,
    model: &str,
    version: Option<&str>,
) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut selector =
        format!("app.kubernetes.io/component=predictor,app.kubernetes.io/instance={model}");
    if let Some(version) = version {
        selector.push_str(&format!(",{VERSION}={version}"));
    }
    let mut ready: Vec<Pod> = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap_or_else(|e| panic!("listing the predictor pods of {ns}/{model}: {e}"))
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .collect();
    ready.sort_by_key(|p| p.name_any());
    ready
        .into_iter()
        .map(|p| {
            let ip = p
                .status
                .and_then(|s| s.pod_ip)
                .expect("a ready pod has an IP");
            format!("http://{ip}:8080")
        })
        .collect()
}

/// A GET to the model's predictor through its Service. A Service's routing reaches the node a
/// moment after its pods turn ready (kube-proxy's sync), so a refused or unanswered connection
/// is retried for up to 30 s; an HTTP answer is returned as it is.
pub async fn predictor_get(client: &Client, ns: &str, model: &str, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", predictor_url(client, ns, model).await);
    let mut last = String::new();
    for _ in 0..30 {
        match get_json(&url).await {
            Ok(answer) => return answer,
            Err(e) => last = e,
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("{last}")
}

/// A prediction from the model's predictor answers 200 and names `version`. Asked once no pod of
/// another version may answer: a replaced pod keeps answering what kube-proxy still sends it for
/// its `preStop` drain (docs/production.md), by design, after the rollout that `Serving` reports
/// has completed; a pod that never became ready (one refusing its artifact) gets no traffic.
pub async fn assert_served_by(client: &Client, ns: &str, model: &str, version: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector =
        format!("app.kubernetes.io/component=predictor,app.kubernetes.io/instance={model}");
    wait_until(
        Duration::from_secs(60),
        &format!("only {version}'s predictor pods ready or draining in {ns}"),
        || async {
            pods.list(&ListParams::default().labels(&selector))
                .await
                .is_ok_and(|list| {
                    list.items
                        .iter()
                        .filter(|p| is_ready(p) || p.metadata.deletion_timestamp.is_some())
                        .all(|p| p.labels().get(VERSION).map(String::as_str) == Some(version))
                })
        },
    )
    .await;
    let (code, body) = predictor_get(client, ns, model, "/v1/predict?user=1&item=1").await;
    assert_eq!(
        (code, body["model_version"].as_str()),
        (200, Some(version)),
        "the predictor of {ns}/{model} should serve {version}: {body}"
    );
}

/// Names of the namespace's trainer Jobs (one per training run), sorted; model store cleanup
/// Jobs are not runs.
pub async fn job_names(client: &Client, ns: &str) -> Vec<String> {
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = jobs
        .list(&ListParams::default().labels("app.kubernetes.io/component=trainer"))
        .await
        .expect("list jobs")
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

/// The API server's audit events (tests/cluster/cluster.sh logs those of ServiceAccounts outside
/// kube-system) made by `user`.
pub fn audit_events_of(env: &Env, user: &str) -> Vec<Value> {
    let path = env.state.join("logs/audit.log");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the audit log {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["user"]["username"] == user)
        .collect()
}
