//! The S3 server of tests/cluster/s3.sh as a test's namespace uses it: the server reached by
//! pods through a Service `s3` (as they reach PostgreSQL), the key pair in an opted-in Secret, a
//! bucket of the namespace's own, and what a test does behind the store's back (listing a
//! model's folder, overwriting an object, stopping the server).

use crate::command::kubectl;
use crate::env::required_env;
use crate::namespace::{TestNamespace, apply_json};
use recommender_operator::crd::{RecommenderModel, RecommenderModelSpec, S3Store};
use recommender_store::{Credentials, Store, StoreArgs};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// The Secret holding the key pair, as `spec.modelStore.s3.credentialsSecret`.
pub const S3_SECRET: &str = "model-store";
/// The selectorless Service in front of the host's S3 server.
pub const S3_SERVICE: &str = "s3";

/// The server's settings, from what `s3.sh env` exported.
#[derive(Clone)]
pub struct S3 {
    /// The host side, for the test's own requests.
    pub endpoint: String,
    pub region: String,
    pub pod_host: String,
    pub pod_port: u16,
    /// The read-write key pair the pods get.
    pub keys: (String, String),
}

impl S3 {
    pub fn load() -> Self {
        let port = |var: &str| -> u16 {
            required_env(var)
                .parse()
                .unwrap_or_else(|_| panic!("{var} is a port number"))
        };
        Self {
            endpoint: required_env("RECOMMENDER_S3_ENDPOINT"),
            region: required_env("RECOMMENDER_S3_REGION"),
            pod_host: required_env("RECOMMENDER_S3_POD_HOST"),
            pod_port: port("RECOMMENDER_S3_POD_PORT"),
            keys: (
                required_env("RECOMMENDER_S3_ACCESS_KEY_ID"),
                required_env("RECOMMENDER_S3_SECRET_ACCESS_KEY"),
            ),
        }
    }

    /// The server's endpoint for pods of `ns`: the Service's name.
    pub fn pod_endpoint(ns: &str) -> String {
        format!("http://{S3_SERVICE}.{ns}.svc.cluster.local")
    }

    /// `tests/cluster/s3.sh ARGS`, which must succeed; its output.
    pub fn sh(args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/s3.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running s3.sh {args:?}: {e}"));
        assert!(
            out.status.success(),
            "s3.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The model `model`'s folder in `bucket`, opened from the host with the read-write keys.
    pub fn folder(&self, bucket: &str, model: &str) -> Store {
        let args = StoreArgs {
            store: Some(format!("s3://{bucket}/{model}")),
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            path_style: true,
            ca_file: None,
        };
        let keys = || Credentials::new(self.keys.0.clone(), self.keys.1.clone());
        Store::open(&args.config_with(keys).expect("the test server's settings"))
            .expect("the test bucket opens")
    }

    /// The keys under `model`'s folder in `bucket`, sorted.
    pub async fn keys_of(&self, bucket: &str, model: &str) -> Vec<String> {
        let listed = self.folder(bucket, model).list("", 1000).await;
        listed
            .unwrap_or_else(|e| panic!("listing s3://{bucket}/{model}: {e}"))
            .into_iter()
            .map(|o| o.key)
            .collect()
    }

    /// Flips one bit of the object `key` in place (a plain overwrite, which the store itself
    /// never does): its bytes no longer hash to what the operator recorded.
    pub fn flip_a_byte(&self, bucket: &str, key: &str) {
        let dir = std::env::temp_dir().join(format!("e2e-s3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("object");
        let file_str = file.to_str().unwrap();
        let path = format!("{bucket}/{key}");
        Self::sh(&["get", &path, file_str]);
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
        Self::sh(&["put", file_str, &path]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Fails if a credential of the server shows in `text`.
    pub fn assert_no_secret(&self, text: &str) {
        assert!(
            !text.contains(&self.keys.1),
            "the secret access key shows in: {text}"
        );
    }
}

impl TestNamespace {
    /// What a platform team sets up for a model kept in S3: the server as the Service `s3`, the
    /// key pair in the Secret `model-store` (labelled `recommender.dev/allow=true`), and a fresh
    /// bucket named after the namespace. Returns the `spec.modelStore.s3` naming them.
    pub async fn s3_store(&self, s3: &S3) -> S3Store {
        let ns = &self.name;
        // The namespace's name is a DNS label and unique per test run: a valid, fresh bucket.
        S3::sh(&["mb", ns]);
        for manifest in [
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": S3_SECRET, "namespace": ns,
                    "labels": {"recommender.dev/allow": "true"}},
                "stringData": {"accessKeyId": s3.keys.0, "secretAccessKey": s3.keys.1},
            }),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": S3_SERVICE, "namespace": ns},
                "spec": {"ports": [{"name": "s3", "port": 80}]},
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "s3-host", "namespace": ns,
                    "labels": {"kubernetes.io/service-name": S3_SERVICE}},
                "addressType": "IPv4",
                "ports": [{"name": "s3", "port": s3.pod_port}],
                "endpoints": [{"addresses": [s3.pod_host], "conditions": {"ready": true}}],
            }),
        ] {
            apply_json(&self.client, &manifest).await;
        }
        serde_json::from_value(json!({
            "endpoint": S3::pod_endpoint(ns),
            "bucket": ns,
            "pathStyle": true,
            "credentialsSecret": S3_SECRET,
        }))
        .expect("an S3 store spec")
    }

    /// Replaces the Secret's secret access key with `secret` (a wrong one, or the right one
    /// back).
    pub fn set_s3_secret(&self, access_key_id: &str, secret: &str) {
        let patch =
            json!({"stringData": {"accessKeyId": access_key_id, "secretAccessKey": secret}})
                .to_string();
        let (ok, out) = kubectl(&[
            "patch",
            "secret",
            S3_SECRET,
            "-n",
            &self.name,
            "--type=merge",
            "-p",
            &patch,
        ]);
        assert!(ok, "patching the Secret: {out}");
    }
}

/// `model` kept in `store` instead of the namespace's claim.
pub fn in_s3(mut model: RecommenderModel, store: S3Store) -> RecommenderModel {
    let spec: &mut RecommenderModelSpec = &mut model.spec;
    spec.model_store.claim_name = None;
    spec.model_store.s3 = Some(store);
    model
}
