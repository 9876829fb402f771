//! Database reachability: connect with the resource's credentials (and TLS settings) and run
//! `SELECT 1`. The connection settings are shared with the count of new ratings (`data`).

use super::DatabaseProbe;
use crate::crd::PostgresSource;
use crate::secrets::{Refusal, SecretPolicy, secret_value};
use k8s_openapi::api::core::v1::Secret;
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
    policy: &SecretPolicy,
    namespace: &str,
    pg: &PostgresSource,
    timeout: Duration,
) -> DatabaseProbe {
    match credentials(client, policy, namespace, pg).await {
        Ok(c) => select_one(pg, &c.password, c.ca.as_deref(), timeout).await,
        Err(refused) => refused,
    }
}

/// The password and CA from the Secrets `pg` names, if the user opted them in; an error (as the
/// probe's outcome) names the Secret, never its content.
pub async fn credentials(
    client: &Client,
    policy: &SecretPolicy,
    namespace: &str,
    pg: &PostgresSource,
) -> Result<Credentials, DatabaseProbe> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let reference = &pg.password_secret_ref;
    let field = "spec.source.postgres.passwordSecretRef";
    let password = read_key(
        &secrets,
        policy,
        namespace,
        (reference.name.as_str(), reference.key.as_str()),
        field,
    )
    .await
    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())?;
    let ca = match &pg.ca_secret_ref {
        Some(ca) => {
            let field = "spec.source.postgres.caSecretRef";
            Some(
                read_key(
                    &secrets,
                    policy,
                    namespace,
                    (ca.name.as_str(), ca.key.as_str()),
                    field,
                )
                .await?,
            )
        }
        None => None,
    };
    Ok(Credentials { password, ca })
}

async fn read_key(
    secrets: &Api<Secret>,
    policy: &SecretPolicy,
    namespace: &str,
    reference: (&str, &str),
    field: &str,
) -> Result<Vec<u8>, DatabaseProbe> {
    secret_value(secrets, policy, namespace, reference, field)
        .await
        .map(|(bytes, _)| bytes)
        .map_err(refused)
}

/// The probe's outcome for a Secret that cannot be used.
fn refused(refusal: Refusal) -> DatabaseProbe {
    match refusal {
        Refusal::NotAllowed(why) => DatabaseProbe::SecretNotAllowed(format!(
            "{why}, so the operator neither reads it nor sends it anywhere, and starts no Job \
             that mounts it; label it to allow its use"
        )),
        Refusal::Unavailable(why) => DatabaseProbe::Unreachable(why),
    }
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
    fn a_refused_secret_says_what_the_operator_did_not_do() {
        let why = "Secret ml/db (spec.source.postgres.passwordSecretRef) is not labelled \
                   recommender.dev/allow=true nor on the operator's allow list";
        match refused(Refusal::NotAllowed(why.into())) {
            DatabaseProbe::SecretNotAllowed(text) => {
                assert!(text.starts_with(why), "{text}");
                assert!(text.contains("starts no Job that mounts it"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            refused(Refusal::Unavailable("Secret ml/db not found".into())),
            DatabaseProbe::Unreachable("Secret ml/db not found".into())
        );
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
