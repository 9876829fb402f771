//! Database reachability: connect with the resource's credentials and run `SELECT 1`.

use super::DatabaseProbe;
use crate::crd::PostgresSource;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use std::time::Duration;

/// Probes `pg` within `timeout`; every failure becomes a message for the condition, naming
/// what failed (the Secret, the connection or the query) but never the password.
pub async fn probe_database(
    client: &Client,
    namespace: &str,
    pg: &PostgresSource,
    timeout: Duration,
) -> DatabaseProbe {
    match password(client, namespace, pg).await {
        Ok(password) => select_one(pg, &password, timeout).await,
        Err(why) => DatabaseProbe::Unreachable(why),
    }
}

/// The password from the Secret `pg` names; the error names the Secret, never its content.
pub(super) async fn password(
    client: &Client,
    namespace: &str,
    pg: &PostgresSource,
) -> Result<String, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let reference = &pg.password_secret_ref;
    match secrets.get_opt(&reference.name).await {
        Ok(Some(secret)) => match secret.data.as_ref().and_then(|d| d.get(&reference.key)) {
            Some(bytes) => Ok(String::from_utf8_lossy(&bytes.0).into_owned()),
            None => Err(format!(
                "Secret {namespace}/{} has no key {:?}",
                reference.name, reference.key
            )),
        },
        Ok(None) => Err(format!(
            "Secret {namespace}/{} (spec.source.postgres.passwordSecretRef) not found",
            reference.name
        )),
        Err(err) => Err(format!(
            "cannot read Secret {namespace}/{}: {err}",
            reference.name
        )),
    }
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
        .connect_timeout(timeout)
        .application_name(application);
    config
}

pub async fn select_one(pg: &PostgresSource, password: &str, timeout: Duration) -> DatabaseProbe {
    let target = format!("{}:{}/{}", pg.host, pg.port, pg.database);
    let config = connect_config(pg, password, timeout, "recommender-operator-probe");
    let attempt = async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let result = client.simple_query("SELECT 1").await.map(|_| ());
        drop(client);
        let _ = driver.await;
        result
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => DatabaseProbe::Reachable,
        Ok(Err(err)) => DatabaseProbe::Unreachable(format!("{target}: {}", describe(&err))),
        Err(_) => DatabaseProbe::Unreachable(format!(
            "{target}: no answer to SELECT 1 within {}s",
            timeout.as_secs_f64()
        )),
    }
}

pub(super) fn describe(err: &tokio_postgres::Error) -> String {
    // The top-level Display is often just "error connecting to server"; the source says why.
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SecretKeyRef;

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
        };
        match select_one(&pg, "secret", Duration::from_secs(2)).await {
            DatabaseProbe::Unreachable(why) => {
                assert!(
                    why.starts_with(&format!("127.0.0.1:{port}/ratings: ")),
                    "{why}"
                );
                assert!(!why.contains("secret"), "never the password: {why}");
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
