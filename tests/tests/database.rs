//! The ratings database over TLS (issue 14): `sslMode: verify-full` with the server's CA trains
//! and serves as the role that the database admits over TLS only; without TLS the refusal, and
//! with a CA that did not sign the server's certificate the failure, say why in words, while the
//! model already served keeps serving.

use kube::Client;
use recommender_e2e::*;
use recommender_operator::crd::{CaSecretRef, PgSslMode, RecommenderModelSpec, RunOutcome};
use serde_json::json;
use std::time::Duration;

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
            "metadata": {"name": "ratings-db-ca", "namespace": ns,
                "labels": {"recommender.dev/allow": "true"}},
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
    let status = wait_status(
        &api,
        "movies",
        TRAIN_TIMEOUT,
        "a model served over TLS",
        |s| serving_version(s).is_some_and(|v| serves(s, v)),
    )
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
        TRAIN_TIMEOUT,
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
