//! Database reachability: connect with the resource's credentials (and TLS settings) and run
//! `SELECT 1`. The connection settings are shared with the count of new ratings (`data`).

use super::DatabaseProbe;
use crate::crd::PostgresSource;
use crate::labels::ALLOW_SECRET;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::{Api, Client};
use recommender_pgtls::MakeRustlsConnect;
pub(super) use recommender_pgtls::describe_error as describe;
use std::time::Duration;

/// What the operator needs from Secrets to connect as the trainer does.
pub struct Credentials {
    pub password: String,
    /// The CA of `sslMode: verify-full`, from `caSecretRef`.
    pub ca: Option<Vec<u8>>,
}

/// Probes `pg` within `timeout`; every failure becomes a message for the condition, naming
/// what failed (a Secret, TLS, the connection or the query) but never the password.
pub async fn probe_database(
    client: &Client,
    namespace: &str,
    pg: &PostgresSource,
    timeout: Duration,
) -> DatabaseProbe {
    match credentials(client, namespace, pg).await {
        Ok(c) => select_one(pg, &c.password, c.ca.as_deref(), timeout).await,
        Err(refused) => refused,
    }
}

/// The password and CA from the Secrets `pg` names, if the user opted them in; an error (as the
/// probe's outcome) names the Secret, never its content.
pub async fn credentials(
    client: &Client,
    namespace: &str,
    pg: &PostgresSource,
) -> Result<Credentials, DatabaseProbe> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let reference = &pg.password_secret_ref;
    let field = "spec.source.postgres.passwordSecretRef";
    let password = secret_value(&secrets, namespace, &reference.name, &reference.key, field)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())?;
    let ca = match &pg.ca_secret_ref {
        Some(ca) => {
            let field = "spec.source.postgres.caSecretRef";
            Some(secret_value(&secrets, namespace, &ca.name, &ca.key, field).await?)
        }
        None => None,
    };
    Ok(Credentials { password, ca })
}

/// One key of a Secret, or why it cannot be had.
async fn secret_value(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
    key: &str,
    field: &str,
) -> Result<Vec<u8>, DatabaseProbe> {
    let unreachable = DatabaseProbe::Unreachable;
    match secrets.get_opt(name).await {
        Ok(Some(secret)) => {
            allowed(&secret, namespace, field)?;
            secret
                .data
                .and_then(|mut d| d.remove(key))
                .map(|bytes| bytes.0)
                .ok_or_else(|| {
                    unreachable(format!(
                        "Secret {namespace}/{name} ({field}) has no key {key:?}"
                    ))
                })
        }
        Ok(None) => Err(unreachable(format!(
            "Secret {namespace}/{name} ({field}) not found"
        ))),
        Err(err) => Err(unreachable(format!(
            "cannot read Secret {namespace}/{name} ({field}): {err}"
        ))),
    }
}

/// Whether the user opted `secret` in (label `recommender.dev/allow: "true"`).
fn allowed(secret: &Secret, namespace: &str, field: &str) -> Result<(), DatabaseProbe> {
    if secret.labels().get(ALLOW_SECRET).map(String::as_str) == Some("true") {
        return Ok(());
    }
    Err(DatabaseProbe::SecretNotAllowed(format!(
        "Secret {namespace}/{name} ({field}) is not labelled {ALLOW_SECRET}=true, so the \
         operator neither reads it nor sends it anywhere, and starts no Job that mounts it; \
         label it to allow its use",
        name = secret.name_any()
    )))
}

/// The TLS connector for `pg`'s `sslMode`, or why the CA cannot be used.
pub(super) fn tls(pg: &PostgresSource, ca: Option<&[u8]>) -> Result<MakeRustlsConnect, String> {
    recommender_pgtls::connector(pg.ssl_mode.tls(), ca).map_err(|err| {
        let source = match &pg.ca_secret_ref {
            Some(ca) => format!(
                "Secret {} key {:?} (spec.source.postgres.caSecretRef)",
                ca.name, ca.key
            ),
            None => "sslMode verify-full without caSecretRef".into(),
        };
        format!("{}:{}/{}: {source}: {err}", pg.host, pg.port, pg.database)
    })
}

/// How the operator connects to `pg` (the probe and the count of new ratings alike).
pub(super) fn connect_config(
    pg: &PostgresSource,
    password: &str,
    timeout: Duration,
    application: &str,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&pg.host)
        .port(pg.port)
        .dbname(&pg.database)
        .user(&pg.user)
        .password(password)
        .ssl_mode(pg.ssl_mode.tls().postgres())
        .connect_timeout(timeout)
        .application_name(application);
    config
}

/// Connects as the trainer would (same TLS mode and CA) and runs `SELECT 1`.
pub async fn select_one(
    pg: &PostgresSource,
    password: &str,
    ca: Option<&[u8]>,
    timeout: Duration,
) -> DatabaseProbe {
    let target = format!("{}:{}/{}", pg.host, pg.port, pg.database);
    let mode = pg.ssl_mode.tls();
    let tls = match tls(pg, ca) {
        Ok(tls) => tls,
        Err(why) => return DatabaseProbe::Unreachable(why),
    };
    let config = connect_config(pg, password, timeout, "recommender-operator-probe");
    let attempt = async {
        let (client, connection) = config.connect(tls).await?;
        let driver = tokio::spawn(connection);
        let result = client.simple_query("SELECT 1").await.map(|_| ());
        drop(client);
        let _ = driver.await;
        result
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => DatabaseProbe::Reachable,
        Ok(Err(err)) => {
            DatabaseProbe::Unreachable(format!("{target} (sslMode {}): {}", mode, describe(&err)))
        }
        Err(_) => DatabaseProbe::Unreachable(format!(
            "{target}: no answer to SELECT 1 within {}s",
            timeout.as_secs_f64()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SecretKeyRef;

    #[test]
    fn only_secrets_labelled_allow_true_are_used() {
        let secret = |labels: serde_json::Value| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db", "namespace": "ml", "labels": labels},
                "data": {"password": "c2VjcmV0"}
            }))
            .unwrap()
        };
        let field = "spec.source.postgres.passwordSecretRef";
        assert!(
            allowed(
                &secret(serde_json::json!({ALLOW_SECRET: "true"})),
                "ml",
                field
            )
            .is_ok()
        );
        for labels in [
            serde_json::json!({}),
            serde_json::json!({ALLOW_SECRET: "yes"}),
            serde_json::json!({"app": "db"}),
        ] {
            match allowed(&secret(labels.clone()), "ml", field) {
                Err(DatabaseProbe::SecretNotAllowed(why)) => {
                    assert!(
                        why.starts_with(&format!(
                            "Secret ml/db ({field}) is not labelled {ALLOW_SECRET}=true"
                        )),
                        "{why}"
                    );
                    assert!(!why.contains("secret\""), "never the value: {why}");
                }
                other => panic!("{labels}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn closed_port_is_unreachable_with_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pg = PostgresSource {
            host: "127.0.0.1".into(),
            port,
            database: "ratings".into(),
            user: "reader".into(),
            password_secret_ref: SecretKeyRef {
                name: "db".into(),
                key: "password".into(),
            },
            query: "SELECT 1".into(),
            probe_interval_seconds: 15,
            ssl_mode: Default::default(),
            ca_secret_ref: None,
        };
        match select_one(&pg, "secret", None, Duration::from_secs(2)).await {
            DatabaseProbe::Unreachable(why) => {
                assert!(
                    why.starts_with(&format!("127.0.0.1:{port}/ratings (sslMode disable): ")),
                    "{why}"
                );
                assert!(!why.contains("secret"), "never the password: {why}");
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
