//! The S3 server integration tests use, for this crate and the ones built on it (feature
//! `testing`): tests/cluster/s3.sh's SeaweedFS, found through the variables `s3.sh env` prints.
//! Without RECOMMENDER_S3_ENDPOINT the tests say they are skipped and pass, except in CI (`CI`
//! set), where they fail so CI cannot pass by not testing; with it, every other variable they
//! need must be there too.

use crate::{Credentials, Store, StoreArgs, StoreConfig};

pub struct Server {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub rw: (String, String),
    pub readonly: (String, String),
    pub tls_endpoint: String,
    pub ca_file: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("RECOMMENDER_S3_ENDPOINT is set but {name} is not: eval \"$(bash tests/cluster/s3.sh env)\""))
}

/// The server, or `None` after saying why the test does not run.
pub fn server(test: &str) -> Option<Server> {
    if std::env::var_os("RECOMMENDER_S3_ENDPOINT").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: RECOMMENDER_S3_ENDPOINT must be set in CI (tests/cluster/s3.sh env)"
        );
        eprintln!(
            "{test}: skipped, RECOMMENDER_S3_ENDPOINT is not set (bash tests/cluster/s3.sh up && eval \"$(bash tests/cluster/s3.sh env)\")"
        );
        return None;
    }
    Some(Server {
        endpoint: var("RECOMMENDER_S3_ENDPOINT"),
        bucket: var("RECOMMENDER_S3_BUCKET"),
        region: var("RECOMMENDER_S3_REGION"),
        rw: (
            var("RECOMMENDER_S3_ACCESS_KEY_ID"),
            var("RECOMMENDER_S3_SECRET_ACCESS_KEY"),
        ),
        readonly: (
            var("RECOMMENDER_S3_READONLY_ACCESS_KEY_ID"),
            var("RECOMMENDER_S3_READONLY_SECRET_ACCESS_KEY"),
        ),
        tls_endpoint: var("RECOMMENDER_S3_TLS_ENDPOINT"),
        ca_file: var("RECOMMENDER_S3_CA_FILE"),
    })
}

impl Server {
    /// The environment a child process (a trainer, a predictor) needs for the key pair `keys`.
    pub fn key_env(keys: &(String, String)) -> [(&'static str, String); 2] {
        [
            (Credentials::ACCESS_KEY_ID_ENV, keys.0.clone()),
            (Credentials::SECRET_ACCESS_KEY_ENV, keys.1.clone()),
        ]
    }

    /// The flags of `s3://BUCKET/PREFIX` on this server, for a child process.
    pub fn flags(&self, prefix: &str) -> Vec<String> {
        vec![
            "--store".into(),
            format!("s3://{}/{prefix}", self.bucket),
            "--store-endpoint".into(),
            self.endpoint.clone(),
            "--store-region".into(),
            self.region.clone(),
            "--store-path-style".into(),
        ]
    }

    /// A prefix of the test bucket no other test or run uses.
    pub fn fresh_prefix(&self, test: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("tests/{test}-{}-{nanos}", std::process::id())
    }

    pub fn args(&self, bucket: &str, prefix: &str) -> StoreArgs {
        StoreArgs {
            store: Some(format!("s3://{bucket}/{prefix}")),
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            path_style: true,
            ca_file: None,
        }
    }

    pub fn config(&self, args: &StoreArgs, keys: &(String, String)) -> StoreConfig {
        args.config_with(|| Credentials::new(keys.0.clone(), keys.1.clone()))
            .unwrap()
    }

    /// The test bucket under a fresh prefix, with the read-write key pair.
    pub fn store(&self, test: &str) -> Store {
        let args = self.args(&self.bucket, &self.fresh_prefix(test));
        Store::open(&self.config(&args, &self.rw)).unwrap()
    }

    /// Fails if any secret of this server shows in `text`.
    pub fn assert_no_secrets(&self, text: &str) {
        for secret in [&self.rw.0, &self.rw.1, &self.readonly.0, &self.readonly.1] {
            assert!(
                !text.contains(secret.as_str()),
                "a credential shows in: {text}"
            );
        }
    }
}
