//! What every end-to-end test needs: the cluster client, a namespace of its own with a model store
//! and the database Secret, the operator as a real process, and polling with a clear failure.
//!
//! The control plane, the node agent and PostgreSQL are started by `tests/all.sh` (or by hand,
//! see docs/local-cluster.md); a test that cannot reach them fails with the reason, it never
//! passes vacuously.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

pub const MODEL_STORE_CLAIM: &str = "model-store";
pub const DB_SECRET: &str = "ratings-db";
pub const TRAINER_IMAGE: &str = "local/recommender-trainer:dev";
pub const PREDICTOR_IMAGE: &str = "local/recommender-predictor:dev";

/// Where the pieces started by `tests/all.sh` are, read from the environment.
pub struct Env {
    pub repo: PathBuf,
    pub bin_dir: PathBuf,
    pub state: PathBuf,
    pub pg: PgParams,
}

pub struct PgParams {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
}

fn required(var: &str, hint: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("end-to-end tests need {var} ({hint}); run them through `bash tests/all.sh`")
    })
}

impl Env {
    pub fn load() -> Self {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        required(
            "KUBECONFIG",
            "the local cluster's kubeconfig: tests/cluster/cluster.sh env",
        );
        let bin_dir = PathBuf::from(required(
            "RECOMMENDER_BIN_DIR",
            "the folder of release binaries, e.g. target/release",
        ));
        let url = required(
            "RECOMMENDER_TEST_PG_URL",
            "the ratings database: tests/cluster/postgres.sh env",
        );
        let state = std::env::var("RECOMMENDER_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("/tmp/recommender-operator"));
        Self {
            repo,
            bin_dir,
            state,
            pg: PgParams::parse(&url),
        }
    }
}

impl PgParams {
    /// Splits `postgres://user:password@host:port/database`.
    fn parse(url: &str) -> Self {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .unwrap_or_else(|| panic!("RECOMMENDER_TEST_PG_URL is not a postgres:// URL: {url}"));
        let (auth, rest) = rest.split_once('@').expect("URL has user:password@");
        let (user, password) = auth.split_once(':').expect("URL has a password");
        let (hostport, database) = rest.split_once('/').expect("URL has a database");
        let database = database.split('?').next().unwrap_or(database);
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
        Self {
            host: host.to_string(),
            port: port.parse().expect("numeric port"),
            database: database.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

pub async fn client() -> Client {
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot build a client from KUBECONFIG: {e}"));
    if let Err(e) = client.apiserver_version().await {
        panic!(
            "the local API server does not answer ({e}); is tests/cluster/cluster.sh up running?"
        );
    }
    install_crd(&client).await;
    client
}

/// Applies the generated CRD from `crds/` (what a user applies) and waits until it is served.
async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/recommendermodels.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let crd: Value = serde_yaml::from_str(&text).expect("CRD YAML");
    apply_yaml(client, &crd).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_until(
        Duration::from_secs(30),
        "the CRD to be Established",
        || async {
            crds.get("recommendermodels.recommender.dev")
                .await
                .ok()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await;
}

pub fn models_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("recommender.dev", "v1alpha1", "RecommenderModel"),
        "recommendermodels",
    )
}

pub fn models(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &models_resource())
}

/// A namespace of the test's own, with the model store claim and the database Secret.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn create(client: &Client, env: &Env, prefix: &str) -> Self {
        let suffix = std::process::id() % 100_000;
        let name = format!("{prefix}-{suffix}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        wait_until(Duration::from_secs(60), "old namespace to go", || async {
            namespaces.get_opt(&name).await.ok().flatten().is_none()
        })
        .await;
        apply_yaml(
            client,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await;
        apply_yaml(
            client,
            &json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": DB_SECRET, "namespace": name},
                "stringData": {"password": env.pg.password},
            }),
        )
        .await;
        apply_yaml(
            client,
            &json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": MODEL_STORE_CLAIM, "namespace": name},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }),
        )
        .await;
        Self {
            name,
            client: client.clone(),
        }
    }
}

/// Deleting the namespace stops the test's pods (their processes on the node) even when the test
/// panicked; `kubectl` because `Drop` cannot await.
impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Server-side apply of any manifest given as JSON, the way `kubectl apply --server-side` does.
pub async fn apply_yaml(client: &Client, manifest: &Value) -> DynamicObject {
    try_apply(client, manifest)
        .await
        .unwrap_or_else(|e| panic!("applying {manifest}: {e}"))
}

pub async fn try_apply(client: &Client, manifest: &Value) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(manifest.clone()).expect("manifest shape");
    let gvk = GroupVersionKind::try_from(obj.types.as_ref().expect("apiVersion and kind"))
        .expect("valid apiVersion");
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match (caps.scope, obj.namespace()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("e2e-tests").force(),
        &Patch::Apply(manifest),
    )
    .await
}

/// A `RecommenderModel` reading the test database, small enough to train in seconds.
pub fn postgres_model(env: &Env, ns: &str, name: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "source": {"postgres": {
            "host": env.pg.host,
            "port": env.pg.port,
            "database": env.pg.database,
            "user": env.pg.user,
            "passwordSecretRef": {"name": DB_SECRET, "key": "password"},
            "query": "SELECT user_id::text, movie_id::text, value::float8, \
                      extract(epoch from created_at)::bigint FROM ratings_rating",
            "probeIntervalSeconds": 2,
        }},
        "hyperparameters": {"factors": 20, "epochs": 20},
        "seed": 7,
        "trainer": {"image": TRAINER_IMAGE, "activeDeadlineSeconds": 300},
        "predictor": {"image": PREDICTOR_IMAGE, "replicas": 1},
        "modelStore": {"claimName": MODEL_STORE_CLAIM},
    });
    merge(&mut spec, extra_spec);
    json!({
        "apiVersion": "recommender.dev/v1alpha1",
        "kind": "RecommenderModel",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// JSON merge (RFC 7386): objects merge key by key, `null` removes, anything else replaces.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// The operator as the real binary, watching only the test's namespace.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
}

impl Operator {
    pub fn start(env: &Env, ns: &str) -> Self {
        let metrics_port = free_port();
        let log = env.state.join(format!("operator-{ns}.log"));
        std::fs::create_dir_all(&env.state).expect("state dir");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("operator log");
        let child = Command::new(env.bin_dir.join("recommender-operator"))
            .args([
                "--namespace",
                ns,
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--trainer-image",
                TRAINER_IMAGE,
                "--predictor-image",
                PREDICTOR_IMAGE,
                "--leader-elect",
                "false",
            ])
            .env("RUST_LOG", "info,recommender_operator=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("start recommender-operator");
        Self {
            child,
            log,
            metrics_port,
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a crash or an evicted pod would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn metrics(&self) -> String {
        http_get("127.0.0.1", self.metrics_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls until `check` holds; panics naming what it waited for.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
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

/// Polls the resource until its status satisfies `pred`; on timeout the panic shows the status.
pub async fn wait_status(
    api: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < timeout {
        if let Ok(obj) = api.get(name).await {
            last = obj.data.get("status").cloned().unwrap_or(Value::Null);
            if pred(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}; last status:\n{}",
        serde_json::to_string_pretty(&last).unwrap_or_default()
    );
}

/// `(status, reason, message)` of a condition.
pub fn condition(status: &Value, kind: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

pub fn condition_is(status: &Value, kind: &str, want: &str) -> bool {
    condition(status, kind).is_some_and(|(s, _, _)| s == want)
}

pub fn serving_version(status: &Value) -> Option<&str> {
    status["serving"]["version"].as_str()
}

/// That version serves and its rollout is complete (no pod of an older version left).
pub fn serves(status: &Value, version: &str) -> bool {
    serving_version(status) == Some(version)
        && status["predictor"]["version"] == version
        && condition(status, "Serving")
            .is_some_and(|(s, reason, _)| s == "True" && reason == "Available")
}

/// A GET to a ready predictor pod of the model (pods have their own loopback address).
pub async fn predictor_get(client: &Client, ns: &str, model: &str, path: &str) -> (u16, Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default()).await.expect("list pods");
    let pod = list
        .items
        .iter()
        .filter(|p| p.name_any().starts_with(&format!("{model}-predictor")))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .unwrap_or_else(|| panic!("no ready predictor pod for {ns}/{model}"));
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let port = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.container_port as u16)
        .unwrap_or(8080);
    let (code, body) =
        http_get(&ip, port, path).unwrap_or_else(|e| panic!("GET http://{ip}:{port}{path}: {e}"));
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (code, json)
}

/// A prediction from the model's predictor answers 200 and names `version`.
pub async fn assert_served_by(client: &Client, ns: &str, model: &str, version: &str) {
    let (code, body) = predictor_get(client, ns, model, "/v1/predict?user=1&item=1").await;
    assert_eq!(
        (code, body["model_version"].as_str()),
        (200, Some(version)),
        "the predictor of {ns}/{model} should serve {version}: {body}"
    );
}

/// A plain HTTP/1.1 GET: the tests need nothing more and stay free of an HTTP client crate.
pub fn http_get(host: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, dechunk(body)))
}

/// Removes chunked transfer framing if present.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, tail)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if tail.len() < n {
            return body.to_string();
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
}

/// `kubectl` from the project's build cache (PATH set by tests/all.sh), against KUBECONFIG.
pub fn kubectl(args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `helm` from the project's build cache (PATH set by tests/all.sh), against KUBECONFIG.
pub fn helm(args: &[&str]) -> (bool, String) {
    let out = Command::new("helm").args(args).output().expect("run helm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The API server's audit events (tests/cluster/cluster.sh logs those of ServiceAccounts outside
/// kube-system) made by `user`.
pub fn audit_events_of(env: &Env, user: &str) -> Vec<Value> {
    let path = std::env::var("RECOMMENDER_AUDIT_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| env.state.join("logs/audit.log"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the audit log {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["user"]["username"] == user)
        .collect()
}

/// Names of the model's trainer Jobs.
pub async fn job_names(client: &Client, ns: &str) -> Vec<String> {
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

pub async fn request_retrain(api: &Api<DynamicObject>, name: &str, token: &str) {
    let patch = json!({"metadata": {"annotations": {"recommender.dev/retrain": token}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate for retraining");
}

pub async fn patch_spec(api: &Api<DynamicObject>, name: &str, spec: Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": spec })),
    )
    .await
    .expect("patch spec");
}

pub async fn create_raw(
    client: &Client,
    ns: &str,
    manifest: &Value,
) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(manifest.clone()).expect("manifest shape");
    models(client, ns)
        .create(&PostParams::default(), &obj)
        .await
}
