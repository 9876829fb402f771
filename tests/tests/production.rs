//! What a platform team needs before running models in production (issue 14), on the local
//! cluster: where to call a model (`status.url`, the READY column), pod settings that put
//! training on a dedicated node pool, autoscaling that owns the replica count without a fight and
//! a disruption budget, PostgreSQL over TLS, artifact retention on the model store, and upgrades
//! (the CRD path from the previous chart version, a rolling update of two operators while a run
//! is in flight). Run by `tests/all.sh`, one test at a time.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use recommender_e2e::*;
use recommender_operator::crd::{
    Autoscaling, CaSecretRef, PgSslMode, RecommenderModelSpec, RunOutcome,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TRAIN: Duration = Duration::from_secs(240);

async fn serving(client: &Client, ns: &str, name: &str, version: &str) {
    let what = format!("{version} served");
    wait_status(&models(client, ns), name, TRAIN, &what, |s| {
        serves(s, version)
    })
    .await;
}

fn required_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set; run through tests/all.sh"))
}

/// The labels, taint, PriorityClass and pods of a node pool made for one test, removed when it
/// ends, even by a panic (the node serves the tests after it).
struct NodePool {
    node: String,
}

const POOL_KEY: &str = "e2e.recommender.dev/pool";

impl NodePool {
    fn create(node: &str) -> Self {
        let pool = Self { node: node.into() };
        let label = format!("{POOL_KEY}=highmem");
        let taint = format!("{POOL_KEY}=highmem:NoSchedule");
        for args in [
            ["label", "node", node, &label, "--overwrite"],
            ["taint", "node", node, &taint, "--overwrite"],
        ] {
            let (ok, out) = kubectl(&args);
            assert!(ok, "kubectl {args:?}: {out}");
        }
        let (ok, out) = kubectl(&["create", "priorityclass", "e2e-batch-low", "--value=100"]);
        assert!(ok || out.contains("AlreadyExists"), "{out}");
        pool
    }
}

impl Drop for NodePool {
    fn drop(&mut self) {
        let _ = kubectl(&["taint", "node", &self.node, &format!("{POOL_KEY}-")]);
        let _ = kubectl(&["label", "node", &self.node, &format!("{POOL_KEY}-")]);
        let _ = kubectl(&["delete", "priorityclass", "e2e-batch-low", "--wait=false"]);
    }
}

#[tokio::test]
async fn status_url_is_the_predictors_dns_name_and_ready_is_a_column() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-url").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    serving(&client, &ns.name, "movies", "v1").await;
    let status = models(&client, &ns.name)
        .get("movies")
        .await
        .unwrap()
        .status
        .unwrap();

    let host = format!("movies-predictor.{}.svc.cluster.local", ns.name);
    let url = format!("http://{host}:8080");
    assert_eq!(status.url.as_deref(), Some(url.as_str()), "{status:?}");
    assert_eq!(
        status.address.as_ref().map(|a| a.url.as_str()),
        Some(url.as_str())
    );

    // The name resolves, through the cluster's DNS, to the predictor Service, which answers.
    let dns: std::net::Ipv4Addr = required_env("RECOMMENDER_DNS_IP").parse().unwrap();
    let ip = resolve(dns, &host).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let service = services.get("movies-predictor").await.unwrap();
    assert_eq!(service.spec.unwrap().cluster_ip, Some(ip.to_string()));
    let (code, body) = predictor_get(&client, &ns.name, "movies", "/v1/model").await;
    assert_eq!(
        (code, body["model_version"].as_str()),
        (200, Some("v1")),
        "{body}"
    );

    let (ok, table) = kubectl(&["get", "rm", "-n", &ns.name, "-o", "wide"]);
    assert!(ok, "{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        &rows[0][..4],
        ["NAME", "PHASE", "READY", "VERSION"],
        "{table}"
    );
    assert_eq!(rows[0].last(), Some(&"URL"), "{table}");
    assert_eq!(
        &rows[1][..4],
        ["movies", "Serving", "True", "v1"],
        "{table}"
    );
    assert_eq!(rows[1].last(), Some(&url.as_str()), "{table}");
}

/// Trainer and predictor settings for the pool, and for the pods' identity and metadata.
fn on_the_pool(spec: &mut RecommenderModelSpec) {
    let settings = json!({
        "nodeSelector": {POOL_KEY: "highmem"},
        "tolerations": [{"key": POOL_KEY, "operator": "Equal", "value": "highmem", "effect": "NoSchedule"}],
        "serviceAccountName": "recommender-workloads",
        "priorityClassName": "e2e-batch-low",
        "imagePullSecrets": [{"name": "registry-login"}],
        "labels": {"team": "recs"},
        "annotations": {"cost-center": "ml-42"},
        "env": [{"name": "E2E_MARK", "value": "from-the-spec"}],
    });
    spec.trainer.pod = serde_json::from_value(settings.clone()).unwrap();
    spec.predictor.pod = serde_json::from_value(settings).unwrap();
}

fn assert_pod_settings(pod: &Pod, node: &str) {
    let spec = pod.spec.as_ref().unwrap();
    let name = pod.name_any();
    assert_eq!(spec.node_name.as_deref(), Some(node), "{name} scheduled");
    assert_eq!(
        spec.node_selector.as_ref().unwrap()[POOL_KEY],
        "highmem",
        "{name}"
    );
    assert!(
        spec.tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some(POOL_KEY)),
        "{name}"
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("recommender-workloads"),
        "{name}"
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("e2e-batch-low"),
        "{name}"
    );
    assert_eq!(
        spec.priority,
        Some(100),
        "{name}: the PriorityClass applied"
    );
    assert_eq!(
        spec.image_pull_secrets.as_ref().unwrap()[0].name,
        "registry-login"
    );
    assert_eq!(spec.automount_service_account_token, Some(false), "{name}");
    assert_eq!(pod.labels()["team"], "recs", "{name}");
    assert_eq!(pod.annotations()["cost-center"], "ml-42", "{name}");
    let env = spec.containers[0].env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "E2E_MARK" && e.value.as_deref() == Some("from-the-spec")),
        "{name}: {env:?}"
    );
}

#[tokio::test]
async fn pod_settings_put_training_on_a_tainted_node_pool_and_reach_both_pods() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-pool").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    for manifest in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "recommender-workloads", "namespace": ns.name}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "registry-login", "namespace": ns.name},
            "stringData": {".dockerconfigjson": "{\"auths\": {}}"}}),
    ] {
        apply_json(&client, &manifest).await;
    }
    // Only pods that tolerate the taint may start on the node from now on.
    let _pool = NodePool::create(&env.node_name);

    // The schema refuses what the operator sets, naming the field.
    let mut reserved = postgres_model(&env, &ns, "reserved", on_the_pool);
    reserved
        .spec
        .trainer
        .pod
        .labels
        .insert("recommender.dev/run".into(), "7".into());
    let refused = models(&client, &ns.name)
        .create(&Default::default(), &reserved)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("labels: keys under recommender.dev/"),
        "{refused}"
    );

    apply_model(&client, &postgres_model(&env, &ns, "movies", on_the_pool)).await;
    serving(&client, &ns.name, "movies", "v1").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    for component in ["trainer", "predictor"] {
        let selector = format!("app.kubernetes.io/component={component}");
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        assert!(!list.items.is_empty(), "a {component} pod");
        for pod in &list.items {
            assert_pod_settings(pod, &env.node_name);
        }
    }
    let trainer = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=trainer"))
        .await
        .unwrap();
    let env_names: Vec<String> = trainer.items[0].spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(
        env_names,
        ["PGPASSWORD", "E2E_MARK"],
        "the operator's own variable first"
    );
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}

async fn deployment(client: &Client, ns: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get("movies-predictor").await.unwrap()
}

/// Whether the operator's server-side apply owns the Deployment's `spec.replicas`.
fn operator_owns_replicas(d: &Deployment) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|f| {
        f.manager.as_deref() == Some("recommender-operator")
            && f.operation.as_deref() == Some("Apply")
            && f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0.pointer("/f:spec/f:replicas").is_some())
    })
}

async fn wait_replicas(client: &Client, ns: &str, want: i32, owned: bool, what: &str) {
    wait_until(Duration::from_secs(120), what, || async {
        let d = deployment(client, ns).await;
        d.spec.as_ref().and_then(|s| s.replicas) == Some(want)
            && operator_owns_replicas(&d) == owned
    })
    .await;
}

async fn budget_exists(client: &Client, ns: &str) -> bool {
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    api.get_opt("movies-predictor").await.unwrap().is_some()
}

#[tokio::test]
async fn autoscaling_takes_the_replicas_over_and_gives_them_back() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-scale").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    serving(&client, &ns.name, "movies", "v1").await;
    assert!(
        !budget_exists(&client, &ns.name).await,
        "one replica: no budget"
    );

    // The resource's scale subresource sets spec.predictor.replicas.
    let (ok, out) = kubectl(&["scale", "rm", "movies", "-n", &ns.name, "--replicas=2"]);
    assert!(ok, "{out}");
    wait_replicas(&client, &ns.name, 2, true, "2 replicas, the operator's").await;
    wait_until(Duration::from_secs(60), "a disruption budget", || {
        budget_exists(&client, &ns.name)
    })
    .await;
    let scale_path = format!(
        "/apis/recommender.dev/v1alpha1/namespaces/{}/recommendermodels/movies/scale",
        ns.name
    );
    wait_until(
        Duration::from_secs(120),
        "the scale subresource at 2 of 2",
        || async {
            let (_, raw) = kubectl(&["get", "--raw", &scale_path]);
            let scale: Value = serde_json::from_str(&raw).unwrap_or_default();
            scale["spec"]["replicas"] == 2
                && scale["status"]["replicas"] == 2
                && scale["status"]["selector"]
                    == "app.kubernetes.io/component=predictor,recommender.dev/model=movies"
        },
    )
    .await;

    autoscale_then_scale_by_hand(&client, &ns.name).await;

    // Autoscaling removed: the autoscaler goes, the operator owns the count again.
    update_spec(&client, &ns.name, "movies", |s| {
        s.predictor.autoscaling = None
    })
    .await;
    wait_replicas(
        &client,
        &ns.name,
        2,
        true,
        "2 replicas again, the operator's",
    )
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns.name);
    wait_until(
        Duration::from_secs(60),
        "the autoscaler deleted",
        || async { hpas.get_opt("movies-predictor").await.unwrap().is_none() },
    )
    .await;
    let (ok, out) = kubectl(&["scale", "rm", "movies", "-n", &ns.name, "--replicas=1"]);
    assert!(ok, "{out}");
    wait_replicas(&client, &ns.name, 1, true, "1 replica").await;
    wait_until(Duration::from_secs(60), "the budget deleted", || async {
        !budget_exists(&client, &ns.name).await
    })
    .await;
    serving(&client, &ns.name, "movies", "v1").await;
}

/// Autoscaling on: the HorizontalPodAutoscaler exists and the operator lets go of the count; a
/// second field manager (`kubectl scale`) changes it, and a change the operator applies to the
/// Deployment leaves it as that manager set it.
async fn autoscale_then_scale_by_hand(client: &Client, ns: &str) {
    update_spec(client, ns, "movies", |s| {
        s.predictor.autoscaling = Some(Autoscaling {
            min_replicas: 2,
            max_replicas: 4,
            target_cpu_utilization: Some(80),
            target_requests_per_second: None,
        })
    })
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let hpa = wait_for(Duration::from_secs(60), "the autoscaler", || async {
        hpas.get_opt("movies-predictor").await.unwrap()
    })
    .await;
    let target = hpa.spec.unwrap().scale_target_ref;
    assert_eq!(
        (target.kind.as_str(), target.name.as_str()),
        ("Deployment", "movies-predictor")
    );
    wait_replicas(client, ns, 2, false, "2 replicas, no longer the operator's").await;

    let (ok, out) = kubectl(&[
        "scale",
        "deployment",
        "movies-predictor",
        "-n",
        ns,
        "--replicas=3",
    ]);
    assert!(ok, "{out}");
    // A template change makes the operator apply the Deployment again.
    update_spec(client, ns, "movies", |s| {
        s.predictor.pod.labels.insert("revision".into(), "2".into());
    })
    .await;
    wait_until(
        Duration::from_secs(120),
        "the new template applied",
        || async {
            let d = deployment(client, ns).await;
            let labels = d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.labels);
            labels.is_some_and(|l| l.get("revision").map(String::as_str) == Some("2"))
        },
    )
    .await;
    // Several reconciles later (the rollout's status changes wake the operator) it is still 3.
    serving(client, ns, "movies", "v1").await;
    let d = deployment(client, ns).await;
    assert_eq!(
        d.spec.as_ref().and_then(|s| s.replicas),
        Some(3),
        "not reverted"
    );
    assert!(!operator_owns_replicas(&d));
    let status = models(client, ns)
        .get("movies")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.predictor.unwrap().desired_replicas,
        3,
        "Serving follows the autoscaler"
    );
}

/// The ratings role that may only use TLS, in `mode`, the CA (for verify-full) in the Secret
/// `ratings-db-ca`.
fn over_tls(mode: PgSslMode) -> impl FnOnce(&mut RecommenderModelSpec) {
    let user = required_env("RECOMMENDER_PG_TLS_USER");
    move |spec: &mut RecommenderModelSpec| {
        let pg = spec.source.postgres.as_mut().unwrap();
        pg.user = user;
        pg.ssl_mode = mode;
        pg.ca_secret_ref = (mode == PgSslMode::VerifyFull).then(|| CaSecretRef {
            name: "ratings-db-ca".into(),
            key: "ca.crt".into(),
        });
    }
}

async fn set_ca(client: &Client, ns: &str, pem_file: &str) {
    let pem = std::fs::read_to_string(pem_file).unwrap_or_else(|e| panic!("{pem_file}: {e}"));
    apply_json(
        client,
        &json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "ratings-db-ca", "namespace": ns},
            "stringData": {"ca.crt": pem}}),
    )
    .await;
}

async fn database_condition(client: &Client, ns: &str, status: &str, says: &str) -> String {
    let what = format!("DatabaseReachable {status} saying {says:?}");
    let s = wait_status(
        &models(client, ns),
        "movies",
        Duration::from_secs(90),
        &what,
        |s| {
            condition(s, "DatabaseReachable")
                .is_some_and(|c| c.status == status && c.message.contains(says))
        },
    )
    .await;
    condition(&s, "DatabaseReachable").unwrap().message.clone()
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_server_and_says_why_a_wrong_ca_fails() {
    let env = Env::load();
    let client = client().await;
    // The server's certificate names postgres.<this namespace>.svc.cluster.local.
    let ns =
        TestNamespace::create_named(&client, &env, &required_env("RECOMMENDER_PG_TLS_NAMESPACE"))
            .await;
    let sets = [format!(
        "rbac.secrets.resourceNames={{{DB_SECRET},ratings-db-ca}}"
    )];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &sets).await;
    set_ca(&client, &ns.name, &required_env("RECOMMENDER_PG_CA_FILE")).await;

    // The database refuses the role without TLS, as a managed one that requires it would.
    let plain = postgres_model(&env, &ns, "movies", over_tls(PgSslMode::Disable));
    apply_model(&client, &plain).await;
    let why = database_condition(&client, &ns.name, "False", "no encryption").await;
    println!("sslMode disable: {why}");

    // The run that tried without TLS failed; the next (after its backoff) trains over TLS.
    update_spec(&client, &ns.name, "movies", over_tls(PgSslMode::VerifyFull)).await;
    database_condition(&client, &ns.name, "True", "SELECT 1").await;
    let api = models(&client, &ns.name);
    let status = wait_status(&api, "movies", TRAIN, "a model served over TLS", |s| {
        serving_version(s).is_some_and(|v| serves(s, v))
    })
    .await;
    let served = status.serving.clone().unwrap();
    let jobs = job_names(&client, &ns.name).await;
    let (_, job) = kubectl(&[
        "get",
        "job",
        jobs.last().unwrap(),
        "-n",
        &ns.name,
        "-o",
        "json",
    ]);
    assert!(
        job.contains("--pg-sslmode") && job.contains("/etc/recommender/pg-ca/ca.crt"),
        "{job}"
    );

    // Another CA (the cluster's) did not sign the server's certificate: the probe and the next
    // run say so in words, and v1 keeps serving.
    set_ca(&client, &ns.name, &required_env("RECOMMENDER_CA_FILE")).await;
    let why = database_condition(&client, &ns.name, "False", "not signed by a trusted CA").await;
    println!("wrong CA: {why}");
    request_retrain(&client, &ns.name, "movies", "wrong-ca").await;
    let failed_after = |s: &recommender_operator::crd::RecommenderModelStatus| {
        s.history
            .iter()
            .rfind(|r| r.run > served.run && r.outcome == RunOutcome::Failed)
            .cloned()
    };
    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "the run with the wrong CA failed",
        |s| failed_after(s).is_some(),
    )
    .await;
    let failed = failed_after(&status).unwrap();
    assert!(
        failed.message.contains("not signed by a trusted CA"),
        "{failed:?}"
    );
    assert_eq!(serving_version(&status), Some(served.version.as_str()));
    assert_served_by(&client, &ns.name, "movies", &served.version).await;
}

/// The model's artifacts on the model store's folder, sorted.
fn store(ns: &TestNamespace) -> Vec<String> {
    let dir = ns.store.join("movies");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".model"));
    names.sort();
    names
}

async fn store_holds(ns: &TestNamespace, want: &[&str], what: &str) {
    wait_until(Duration::from_secs(120), what, || async {
        store(ns) == want
    })
    .await;
    println!("model store after {what}: {:?}", store(ns));
}

async fn retrain(client: &Client, ns: &str, token: &str, outcome: RunOutcome, run: u32) {
    request_retrain(client, ns, "movies", token).await;
    let what = format!("run {run} {outcome:?}");
    wait_status(&models(client, ns), "movies", TRAIN, &what, |s| {
        s.history
            .iter()
            .any(|r| r.run == run && r.outcome == outcome)
    })
    .await;
}

/// The logs of every pod of Job `name` once it has succeeded, each with its pod's name and, for
/// a pod that did not succeed, how it ended. A retry may find the work already done, so what a
/// Job did is in all its pods' logs, not only in the last one's.
async fn finished_job_logs(client: &Client, ns: &str, name: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    wait_until(
        Duration::from_secs(120),
        &format!("{name} succeeded"),
        || async {
            jobs.get(name)
                .await
                .ok()
                .and_then(|j| j.status?.succeeded)
                .is_some_and(|n| n >= 1)
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("job-name={name}");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    let mut all = String::new();
    for pod in list.items {
        let pod_name = pod.name_any();
        let status = pod.status.unwrap_or_default();
        if status.phase.as_deref() != Some("Succeeded") {
            let ended = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.state?.terminated)
                .map(|t| format!("exit {} {:?} {:?}", t.exit_code, t.reason, t.message))
                .collect::<Vec<_>>();
            println!("{pod_name}: phase {:?}, ended {ended:?}", status.phase);
        }
        let (_, logs) = kubectl(&["logs", "-n", ns, &pod_name]);
        all.push_str(&format!("--- {pod_name}\n{logs}\n"));
    }
    all
}

#[tokio::test]
async fn retention_keeps_the_serving_model_and_the_window_and_nothing_else() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-retention").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let keep_two = |s: &mut RecommenderModelSpec| s.model_store.keep = 2;
    apply_model(&client, &postgres_model(&env, &ns, "movies", keep_two)).await;
    serving(&client, &ns.name, "movies", "v1").await;
    store_holds(&ns, &["v1.model"], "v1 promoted").await;

    // A candidate the gate rejects is written, then deleted by a cleanup Job.
    update_spec(&client, &ns.name, "movies", |s| s.promotion.max_rmse = 0.5).await;
    retrain(&client, &ns.name, "r2", RunOutcome::Rejected, 2).await;
    store_holds(&ns, &["v1.model"], "v2 rejected").await;
    let logs = finished_job_logs(&client, &ns.name, "movies-cleanup-2").await;
    assert!(logs.contains("deleted v2.model"), "{logs}");

    update_spec(&client, &ns.name, "movies", |s| s.promotion.max_rmse = 1.0).await;
    retrain(&client, &ns.name, "r3", RunOutcome::Succeeded, 3).await;
    serving(&client, &ns.name, "movies", "v3").await;
    store_holds(
        &ns,
        &["v1.model", "v3.model"],
        "v3 promoted (the window holds two)",
    )
    .await;

    retrain(&client, &ns.name, "r4", RunOutcome::Succeeded, 4).await;
    serving(&client, &ns.name, "movies", "v4").await;
    store_holds(
        &ns,
        &["v3.model", "v4.model"],
        "v4 promoted (v1 superseded)",
    )
    .await;
    let status = models(&client, &ns.name)
        .get("movies")
        .await
        .unwrap()
        .status
        .unwrap();
    let window: Vec<&str> = status.models.iter().map(|m| m.version.as_str()).collect();
    assert_eq!(window, ["v3", "v4"], "what pinnedVersion can name");

    // Pinning: inside the window rolls back; outside it is refused and nothing is deleted.
    update_spec(&client, &ns.name, "movies", |s| {
        s.pinned_version = Some("v1".into())
    })
    .await;
    wait_status(
        &models(&client, &ns.name),
        "movies",
        Duration::from_secs(60),
        "v1 refused",
        |s| condition(s, "Serving").is_some_and(|c| c.reason == "PinnedVersionUnknown"),
    )
    .await;
    update_spec(&client, &ns.name, "movies", |s| {
        s.pinned_version = Some("v3".into())
    })
    .await;
    serving(&client, &ns.name, "movies", "v3").await;
    assert_served_by(&client, &ns.name, "movies", "v3").await;
    assert_eq!(store(&ns), ["v3.model", "v4.model"]);
}

/// The previous release of the chart, as `helm package` made it (tests/fixtures; replace it with
/// the outgoing version's package when the chart's version is bumped). A package rather than git
/// history, so a shallow clone runs the test too.
const PREVIOUS_CHART: &str = "tests/fixtures/recommender-operator-0.1.0.tgz";

fn chart_version(chart: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version:"))
        .expect("Chart.yaml has a version");
    version
        .trim()
        .split('.')
        .map(|n| n.parse().expect("a numeric version"))
        .collect()
}

/// The previous chart unpacked into `into`; returns its version and folder, after checking that
/// it is older than the chart in the tree.
fn previous_chart(repo: &Path, into: &Path) -> (Vec<u64>, PathBuf) {
    let untar = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(repo.join(PREVIOUS_CHART))
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(untar.success(), "unpacking {PREVIOUS_CHART}");
    let chart = into.join("recommender-operator");
    let (old, new) = (
        chart_version(&chart),
        chart_version(&repo.join("charts/recommender-operator")),
    );
    assert!(
        old < new,
        "{PREVIOUS_CHART} ({old:?}) is not older than the chart ({new:?})"
    );
    (old, chart)
}

/// Removes from `value` what `schema` does not declare, the way the API server would refuse
/// it; returns the removed fields' paths.
fn prune_to_schema(value: &mut Value, schema: &Value, path: &str) -> Vec<String> {
    let mut dropped = Vec::new();
    match value {
        Value::Object(map) if schema.get("properties").is_some() => {
            let props = &schema["properties"];
            map.retain(|key, _| {
                let known = props.get(key).is_some();
                if !known {
                    dropped.push(format!("{path}.{key}"));
                }
                known
            });
            for (key, v) in map.iter_mut() {
                dropped.extend(prune_to_schema(v, &props[key], &format!("{path}.{key}")));
            }
        }
        Value::Array(items) if schema.get("items").is_some() => {
            for (i, v) in items.iter_mut().enumerate() {
                dropped.extend(prune_to_schema(
                    v,
                    &schema["items"],
                    &format!("{path}[{i}]"),
                ));
            }
        }
        _ => {}
    }
    dropped
}

fn crd_has_scale() -> bool {
    let (_, out) = kubectl(&[
        "get",
        "crd",
        "recommendermodels.recommender.dev",
        "-o",
        "jsonpath={.spec.versions[0].subresources.scale.specReplicasPath}",
    ]);
    out.trim() == ".spec.predictor.replicas"
}

/// Every property path of `old` with its type, to compare two versions of the schema.
fn schema_paths(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let kind = schema["type"].as_str().unwrap_or("").to_string();
    out.push((path.to_string(), kind));
    if let Some(props) = schema["properties"].as_object() {
        for (key, sub) in props {
            schema_paths(sub, &format!("{path}.{key}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_paths(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        schema_paths(values, &format!("{path}{{}}"), out);
    }
}

/// The `required` lists of `schema`, by path.
fn required_fields(schema: &Value, path: &str, out: &mut Vec<String>) {
    for r in schema["required"].as_array().into_iter().flatten() {
        out.push(format!("{path}.{}", r.as_str().unwrap()));
    }
    if let Some(props) = schema["properties"].as_object() {
        for (key, sub) in props {
            required_fields(sub, &format!("{path}.{key}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        required_fields(items, &format!("{path}[]"), out);
    }
}

fn crd_schema(file: &Path) -> Value {
    let (ok, out) = kubectl(&[
        "create",
        "--dry-run=client",
        "-o",
        "json",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let crd: Value = serde_json::from_str(&out).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The upgrade path of the chart README: the previous release's CRD and templates installed and a
/// model stored under its schema, then the new CRD applied over it, then `helm upgrade` of that
/// release to this chart. The previous operator binary is not built here (only its chart is
/// kept), so the old release runs with `replicaCount=0`; what the old operator needs between the
/// two steps, a new CRD that only adds optional fields, is checked on the two schemas.
#[tokio::test]
async fn upgrading_from_the_previous_chart_applies_the_crd_first_and_models_keep_working() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-upgrade").await;
    let work = std::env::temp_dir().join(format!("e2e-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (version, old_chart) = previous_chart(&env.repo, &work);
    println!("previous chart: {version:?}");
    let crd_file = |chart: &Path| chart.join("crds/recommendermodels.yaml");
    let new_chart = env.repo.join("charts/recommender-operator");

    // The new schema only adds: every old path is still there with its type, and nothing the
    // old operator or an old manifest leaves out became required.
    let (old_schema, new_schema) = (
        crd_schema(&crd_file(&old_chart)),
        crd_schema(&crd_file(&new_chart)),
    );
    let (mut old_paths, mut new_paths) = (Vec::new(), Vec::new());
    schema_paths(&old_schema, "", &mut old_paths);
    schema_paths(&new_schema, "", &mut new_paths);
    let lost: Vec<_> = old_paths
        .iter()
        .filter(|p| !new_paths.contains(p))
        .collect();
    assert!(
        lost.is_empty(),
        "paths the new CRD dropped or retyped: {lost:?}"
    );
    assert!(
        new_paths.len() > old_paths.len(),
        "the CRD changed between the versions"
    );
    let (mut old_required, mut new_required) = (Vec::new(), Vec::new());
    required_fields(&old_schema, "", &mut old_required);
    required_fields(&new_schema, "", &mut new_required);
    let newly: Vec<_> = new_required
        .iter()
        .filter(|r| {
            // A field required inside an object the old schema had: an old manifest lacks it.
            let parent = &r[..r.rfind('.').unwrap()];
            !old_required.contains(r) && old_paths.iter().any(|(p, _)| p == parent)
        })
        .collect();
    assert!(newly.is_empty(), "fields that became required: {newly:?}");

    // The previous version as it was installed: its CRD and its templates.
    let (ok, out) = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd_file(&old_chart).to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(!crd_has_scale(), "the previous CRD is installed");
    Operator::install_chart(&client, &old_chart, &ns.name, &ns.name, &["replicaCount=0"]).await;
    // A manifest written for the previous version: today's spec less every field its schema
    // did not declare yet; the API server stores it under the old schema.
    let mut manifest = serde_json::to_value(postgres_model(&env, &ns, "movies", |_| {})).unwrap();
    manifest.as_object_mut().unwrap().remove("status");
    let old_spec = &old_schema["properties"]["spec"];
    let dropped = prune_to_schema(&mut manifest["spec"], old_spec, ".spec");
    println!("fields the previous CRD does not declare: {dropped:?}");
    assert!(!dropped.is_empty(), "the CRD changed between the versions");
    apply_json(&client, &manifest).await;

    // The documented path (charts/recommender-operator/README.md, "Upgrading"): the new CRD
    // first ...
    let (ok, out) = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd_file(&new_chart).to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(crd_has_scale(), "the new CRD is installed");
    // ... then `helm upgrade` of the old release, which replaces the operator's Deployment and
    // RBAC (never crds/).
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let (ok, values) = helm(&["get", "manifest", "rec", "-n", &ns.name]);
    assert!(
        ok && values.contains("horizontalpodautoscalers"),
        "the new RBAC: {values}"
    );
    let (ok, history) = helm(&["history", "rec", "-n", &ns.name, "-o", "json"]);
    let history: Value = serde_json::from_str(&history).unwrap_or(Value::Null);
    let charts: Vec<&str> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["chart"].as_str())
        .collect();
    assert!(
        ok && charts.len() == 2 && charts[0] != charts[1],
        "helm history: {history}"
    );

    // The model stored under the old schema is trained, served and gets the new status fields;
    // a retrain after the upgrade works and runs one Job.
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        TRAIN,
        "v1 served with status.url",
        |s| s.url.is_some() && serves(s, "v1"),
    )
    .await;
    assert_eq!(status.last_run, 1);
    assert_served_by(&client, &ns.name, "movies", "v1").await;
    request_retrain(&client, &ns.name, "movies", "after-upgrade").await;
    serving(&client, &ns.name, "movies", "v2").await;
    assert_eq!(
        job_names(&client, &ns.name).await.len(),
        2,
        "one Job per run"
    );
    let _ = std::fs::remove_dir_all(&work);
}

async fn lease_holder(client: &Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases
        .get_opt("rec-recommender-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test]
async fn a_rolling_update_of_two_operators_hands_the_lease_over_without_a_second_job() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-rolling").await;
    let two = ["replicaCount=2"];
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &two).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let operator_pods = || async {
        let lp = ListParams::default().labels("app.kubernetes.io/instance=rec");
        pods.list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.name_any())
            .collect::<Vec<_>>()
    };
    let before = operator_pods().await;
    let leader = wait_for(Duration::from_secs(60), "a Lease holder", || {
        lease_holder(&client, &ns.name)
    })
    .await;
    assert!(before.contains(&leader), "{leader} among {before:?}");

    apply_model(&client, &postgres_model(&env, &ns, "movies", slow_training)).await;
    wait_status(
        &models(&client, &ns.name),
        "movies",
        Duration::from_secs(90),
        "run 1 in flight",
        |s| s.active_run.is_some(),
    )
    .await;

    // A new pod template (as an upgrade makes): the Deployment replaces both pods one by one.
    Operator::install(
        &client,
        &env.repo,
        &ns.name,
        &ns.name,
        &["replicaCount=2", "podAnnotations.rolled=yes"],
    )
    .await;
    let after = wait_for(
        Duration::from_secs(180),
        "two new operator pods",
        || async {
            let now = operator_pods().await;
            (now.len() == 2 && now.iter().all(|p| !before.contains(p))).then_some(now)
        },
    )
    .await;
    let new_leader = wait_for(Duration::from_secs(60), "a new Lease holder", || async {
        lease_holder(&client, &ns.name)
            .await
            .filter(|h| after.contains(h))
    })
    .await;
    println!("Lease: {leader} -> {new_leader}");

    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        Duration::from_secs(600),
        "run 1 recorded",
        |s| s.last_completed_run >= 1 && s.active_run.is_none(),
    )
    .await;
    assert_eq!(
        job_names(&client, &ns.name).await,
        ["movies-train-1"],
        "exactly one Job"
    );
    assert_eq!(status.last_run, 1, "{status:?}");
    let runs: Vec<_> = status.history.iter().filter(|r| r.run == 1).collect();
    assert_eq!(runs.len(), 1, "recorded once: {:?}", status.history);
    assert_eq!(runs[0].outcome, RunOutcome::Succeeded);
    serving(&client, &ns.name, "movies", "v1").await;
}
