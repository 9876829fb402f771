//! A model kept in an S3 bucket (issue 21) on the real S3 server of tests/cluster/s3.sh: trained,
//! promoted and served by replicas on two nodes with no claim anywhere; and the store's faults
//! (a wrong key pair, a Secret not opted in, a missing bucket, the server stopped during
//! training, a byte flipped in a stored artifact), each said by a condition or a refusal while
//! the serving model keeps serving.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use recommender_e2e::*;
use recommender_operator::crd::{RecommenderModelSpec, RecommenderModelStatus, RunOutcome};
use std::collections::BTreeSet;
use std::time::Duration;

/// The probe runs every 30 s (`decide::STORE_PROBE_INTERVAL`), within a 3 s timeout.
const PROBED: Duration = Duration::from_secs(90);

struct Setup {
    client: Client,
    ns: TestNamespace,
    s3: S3,
    bucket: String,
}

/// A namespace with its own bucket, the operator, and `movies` kept in the bucket, serving v1.
async fn serving_v1_from_s3(
    prefix: &str,
    customize: impl FnOnce(&mut RecommenderModelSpec),
) -> Setup {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, prefix).await;
    // The chart's RBAC names the Secrets the operator may read: the database's and the key pair's.
    let secrets = format!("rbac.secrets.resourceNames={{{DB_SECRET},{S3_SECRET}}}");
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[&secrets]).await;
    let s3 = S3::load();
    let store = ns.s3_store(&s3).await;
    let bucket = store.bucket.clone();
    let model = in_s3(postgres_model(&env, &ns, "movies", customize), store);
    apply_model(&client, &model).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;
    Setup {
        client,
        ns,
        s3,
        bucket,
    }
}

async fn pods(client: &Client, ns: &str, component: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/component={component}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
}

/// The claims a pod mounts.
fn claims(pod: &PodSpec) -> Vec<String> {
    pod.volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// Waits until `ModelStoreReachable` has `reason`; returns its message.
async fn store_condition(setup: &Setup, reason: &str) -> String {
    let status = wait_status(
        &models(&setup.client, &setup.ns.name),
        "movies",
        PROBED,
        &format!("ModelStoreReachable {reason}"),
        |s| condition(s, "ModelStoreReachable").is_some_and(|c| c.reason == reason),
    )
    .await;
    let c = condition(&status, "ModelStoreReachable").unwrap();
    println!(
        "ModelStoreReachable {} {}: {}",
        c.status, c.reason, c.message
    );
    setup.s3.assert_no_secret(&c.message);
    c.message.clone()
}

async fn run_recorded(setup: &Setup, run: u32) -> RecommenderModelStatus {
    wait_status(
        &models(&setup.client, &setup.ns.name),
        "movies",
        TRAIN_TIMEOUT,
        &format!("run {run} recorded"),
        |s| s.history.iter().any(|r| r.run == run),
    )
    .await
}

/// Waits for `run` to be recorded, and checks it failed for `reason`.
async fn run_failed(setup: &Setup, run: u32, reason: &str) -> RecommenderModelStatus {
    let status = run_recorded(setup, run).await;
    let record = status.history.iter().find(|r| r.run == run).unwrap();
    println!(
        "run {run}: {:?} {}: {}",
        record.outcome, record.reason, record.message
    );
    assert_eq!(
        (record.outcome, record.reason.as_str()),
        (RunOutcome::Failed, reason)
    );
    status
}

#[tokio::test]
async fn a_model_is_trained_promoted_and_served_from_s3_by_replicas_on_two_nodes() {
    let setup = serving_v1_from_s3("e2e-s3", |s| s.predictor.replicas = 2).await;
    let (client, ns) = (&setup.client, &setup.ns.name);
    let status = model_status(client, ns, "movies").await;
    let artifact = status.models[0].artifact.as_ref().expect("v1's artifact");
    assert_eq!(
        artifact.path,
        format!("s3://{}/movies/v1.model", setup.bucket)
    );
    assert_eq!(
        setup.s3.keys_of(&setup.bucket, "movies").await,
        ["runs/v1.json", "v1.model"],
        "the version and its run record, written once"
    );
    let stored = setup.s3.folder(&setup.bucket, "movies");
    let bytes = stored.get("v1.model", 1 << 30).await.unwrap();
    assert_eq!(bytes.len() as u64, artifact.bytes);
    assert!(
        condition_is(&status, "ModelStoreReachable", "True"),
        "{:?}",
        condition(&status, "ModelStoreReachable")
    );
    assert_eq!(
        condition(&status, "ModelStoreReachable").unwrap().reason,
        "Reachable"
    );
    assert!(
        condition_is(&status, "Ready", "True"),
        "{:?}",
        status.conditions
    );

    // Two ready replicas on two nodes, fetched into memory: no pod mounts a claim.
    let predictors: Vec<Pod> = pods(client, ns, "predictor")
        .await
        .into_iter()
        .filter(is_ready)
        .collect();
    assert_eq!(predictors.len(), 2, "two ready predictors");
    let nodes: BTreeSet<String> = predictors
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    println!("predictors on {nodes:?}");
    assert_eq!(nodes.len(), 2, "the replicas spread over two nodes");
    let mut all = predictors.clone();
    all.extend(pods(client, ns, "trainer").await);
    for pod in &all {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            claims(spec),
            Vec::<String>::new(),
            "{} mounts a claim",
            pod.name_any()
        );
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap_or_default().join(" ");
        setup.s3.assert_no_secret(&args);
        assert!(
            !args.contains(&setup.s3.keys.0),
            "the access key id in {args}"
        );
        assert!(
            args.contains(&format!("--store s3://{}/movies", setup.bucket)),
            "{args}"
        );
        for var in c
            .env
            .iter()
            .flatten()
            .filter(|e| e.name.starts_with("AWS_"))
        {
            assert!(var.value.is_none(), "{} is a literal", var.name);
            let from = var
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            assert_eq!(
                from.map(|s| s.name.as_str()),
                Some(S3_SECRET),
                "{}",
                var.name
            );
        }
    }
    let predictor = &predictors[0].spec.as_ref().unwrap().containers[0];
    let args = predictor.args.clone().unwrap().join(" ");
    assert!(
        args.contains(&format!(
            "--model-version v1 --model-sha256 {}",
            artifact.sha256
        )),
        "the predictor verifies the recorded digest: {args}"
    );
    assert_served_by(client, ns, "movies", "v1").await;

    // `kubectl get` reads as it does with a claim.
    let (ok, table) = kubectl(&["get", "rm", "movies", "-n", ns]);
    assert!(ok, "{table}");
    println!("{table}");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "PHASE", "READY", "VERSION", "ROLLOUT", "RMSE", "MAE", "ACCURACY", "STALE",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["movies", "Serving", "True", "v1"]);
}

#[tokio::test]
async fn wrong_keys_a_secret_not_allowed_and_a_missing_bucket_are_said_while_the_model_serves() {
    let setup = serving_v1_from_s3("e2e-s3-faults", |_| {}).await;
    let (client, ns) = (&setup.client, &setup.ns.name);
    let keys = setup.s3.keys.clone();

    // A wrong secret key: the probe says the server refused it, in its words; a run started
    // now fails on the store in seconds; v1 keeps serving from memory.
    setup.ns.set_s3_secret(&keys.0, "not-the-secret-access-key");
    let message = store_condition(&setup, "CredentialsRefused").await;
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    request_retrain(client, ns, "movies", "wrong-keys").await;
    let status = run_failed(&setup, 2, "StoreCredentialsRefused").await;
    setup
        .s3
        .assert_no_secret(&status.history.iter().find(|r| r.run == 2).unwrap().message);
    assert_eq!(serving_version(&status), Some("v1"));
    assert_served_by(client, ns, "movies", "v1").await;
    setup.ns.set_s3_secret(&keys.0, &keys.1);
    store_condition(&setup, "Reachable").await;

    // The Secret without the opt-in label: not read, and no pod would be given it.
    let (ok, out) = kubectl(&[
        "label",
        "secret",
        S3_SECRET,
        "-n",
        ns,
        "recommender.dev/allow-",
    ]);
    assert!(ok, "{out}");
    let message = store_condition(&setup, "SecretNotAllowed").await;
    assert!(message.contains(S3_SECRET), "{message}");
    let before = job_names(client, ns).await;
    request_retrain(client, ns, "movies", "not-allowed").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        job_names(client, ns).await,
        before,
        "no run with a Secret not allowed"
    );
    let (ok, out) = kubectl(&[
        "label",
        "secret",
        S3_SECRET,
        "-n",
        ns,
        "recommender.dev/allow=true",
    ]);
    assert!(ok, "{out}");
    store_condition(&setup, "Reachable").await;
    // Allowed again, the run asked for starts (after the failed run's backoff) and is promoted.
    wait_serving(client, ns, "movies", "v3").await;

    // A bucket that does not exist: said by the probe; the predictor rolled out with it refuses
    // to start, and the pods of v3 keep serving.
    let gone = format!("{}-gone", setup.bucket);
    update_spec(client, ns, "movies", |s| {
        s.model_store.s3.as_mut().unwrap().bucket = gone.clone();
    })
    .await;
    let message = store_condition(&setup, "BucketMissing").await;
    assert!(message.contains("NoSuchBucket"), "{message}");
    assert_served_by(client, ns, "movies", "v3").await;
}

/// The S3 server of every test stopped: alone, after the others.
#[tokio::test]
async fn cluster_wide_the_s3_server_stopped_during_training_fails_the_run_while_v1_serves() {
    let setup = serving_v1_from_s3("e2e-s3-outage", slow_training).await;
    let (client, ns) = (&setup.client, &setup.ns.name);
    request_retrain(client, ns, "movies", "outage").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    wait_until(
        Duration::from_secs(120),
        "run 2's trainer running",
        || async {
            jobs.get_opt("movies-train-2")
                .await
                .ok()
                .flatten()
                .and_then(|j| j.status?.active)
                .is_some_and(|a| a >= 1)
                && pods(client, ns, "trainer").await.iter().any(|p| {
                    p.labels().get("recommender.dev/run").map(String::as_str) == Some("2")
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
        },
    )
    .await;
    // The trainer has listed the store and is training: the server goes away under it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart = Restart;
    S3::sh(&["stop"]);
    let message = store_condition(&setup, "Unreachable").await;
    println!("store down: {message}");
    run_failed(&setup, 2, "StoreUnreachable").await;
    assert_served_by(client, ns, "movies", "v1").await;
    drop(restart);
    store_condition(&setup, "Reachable").await;
    // The data is there; a later run trains and is promoted.
    request_retrain(client, ns, "movies", "after-outage").await;
    wait_serving(client, ns, "movies", "v3").await;
    let keys = setup.s3.keys_of(&setup.bucket, "movies").await;
    assert!(
        !keys.iter().any(|k| k == "v2.model"),
        "no partial v2: {keys:?}"
    );
    assert!(keys.iter().any(|k| k == "v3.model"), "{keys:?}");
}

/// Starts the S3 server again, even when the test fails.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        S3::sh(&["start"]);
    }
}

#[tokio::test]
async fn a_byte_flipped_in_a_new_versions_artifact_is_refused_while_the_old_pods_serve() {
    let setup = serving_v1_from_s3("e2e-s3-corrupt", |s| s.predictor.replicas = 2).await;
    let (client, ns) = (&setup.client, &setup.ns.name);
    // v2 is promoted while v1 stays pinned, so its artifact can be spoilt before a pod reads it.
    update_spec(client, ns, "movies", |s| {
        s.pinned_version = Some("v1".into())
    })
    .await;
    request_retrain(client, ns, "movies", "v2").await;
    let status = run_recorded(&setup, 2).await;
    let run = status.history.iter().find(|r| r.run == 2).unwrap();
    assert_eq!(run.outcome, RunOutcome::Succeeded, "{}", run.message);
    setup.s3.flip_a_byte(&setup.bucket, "movies/v2.model");

    update_spec(client, ns, "movies", |s| s.pinned_version = None).await;
    let message = store_condition(&setup, "ArtifactRefused").await;
    assert!(message.contains("refused v2 (Corrupt)"), "{message}");
    assert!(message.contains("sha256"), "{message}");

    // The refusing pod's last words: its termination message, and the ERROR line of the log of
    // a container that exited (the one before the running one, or itself while it waits to
    // restart; a container replaced twice since has no log left, so the next one is read).
    let (name, words) = wait_for(
        Duration::from_secs(120),
        "a v2 pod that refused",
        || async {
            pods(client, ns, "predictor")
                .await
                .into_iter()
                .find_map(|p| {
                    if p.labels()
                        .get("recommender.dev/version")
                        .map(String::as_str)
                        != Some("v2")
                    {
                        return None;
                    }
                    let container = p
                        .status
                        .as_ref()?
                        .container_statuses
                        .as_ref()?
                        .first()?
                        .clone();
                    let ended = container.last_state.and_then(|s| s.terminated);
                    let ended = ended.or(container.state.and_then(|s| s.terminated))?;
                    Some((p.name_any(), ended.message.unwrap_or_default()))
                })
        },
    )
    .await;
    println!("{name} ended with: {words}");
    assert!(words.contains("Corrupt"), "{words}");
    let logs = wait_for(
        Duration::from_secs(60),
        "the refusing pod's log",
        || async {
            [["--previous"].as_slice(), [].as_slice()]
                .iter()
                .find_map(|extra| {
                    let mut args = vec!["logs", "-n", ns.as_str(), name.as_str()];
                    args.extend_from_slice(extra);
                    let (ok, logs) = kubectl(&args);
                    (ok && logs.contains("Corrupt")).then_some(logs)
                })
        },
    )
    .await;
    println!("{name}: {logs}");
    assert!(logs.contains("ERROR"), "{logs}");
    let ready_v1 = pods(client, ns, "predictor")
        .await
        .into_iter()
        .filter(|p| {
            is_ready(p)
                && p.labels()
                    .get("recommender.dev/version")
                    .map(String::as_str)
                    == Some("v1")
        })
        .count();
    assert_eq!(ready_v1, 2, "the old pods keep serving");
    assert_served_by(client, ns, "movies", "v1").await;
}
