//! A test namespace's S3 model store on the tests' S3 server (tests/cluster/s3.sh): the access
//! key pair in a Secret the operator may use, the server as a selectorless Service of the
//! namespace (as pods reach PostgreSQL), and a prefix of its own in the bucket. Listing what is
//! stored goes to the server from this host, signed with the same keys.

use crate::env::required_env;
use crate::models::models;
use crate::namespace::{TestNamespace, apply_json};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use recommender_operator::crd::RecommenderModel;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

/// The Secret holding the key pair (`accessKeyId`, `secretAccessKey`).
pub const S3_SECRET: &str = "model-store";
/// The Service in front of the S3 server, in each namespace.
pub const S3_SERVICE: &str = "s3";

pub struct S3Store {
    /// What a model's `spec.modelStore` says.
    pub spec: Value,
    bucket: String,
    prefix: String,
    client: kube::Client,
}

impl S3Store {
    /// The Secret, the Service and its EndpointSlice in `ns`; the namespace's name is the prefix,
    /// so that no test sees another's objects.
    pub async fn create(ns: &TestNamespace) -> Self {
        let (bucket, prefix) = (required_env("RECOMMENDER_S3_BUCKET"), ns.name.clone());
        let pod_port: u16 = required_env("RECOMMENDER_S3_POD_PORT")
            .parse()
            .expect("RECOMMENDER_S3_POD_PORT is a port number");
        for manifest in [
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": S3_SECRET, "namespace": ns.name,
                    "labels": {"recommender.dev/allow": "true"}},
                "stringData": {
                    "accessKeyId": required_env("RECOMMENDER_S3_ACCESS_KEY_ID"),
                    "secretAccessKey": required_env("RECOMMENDER_S3_SECRET_ACCESS_KEY"),
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": S3_SERVICE, "namespace": ns.name},
                "spec": {"ports": [{"name": "s3", "port": 8333}]},
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "s3-host", "namespace": ns.name,
                    "labels": {"kubernetes.io/service-name": S3_SERVICE}},
                "addressType": "IPv4",
                "ports": [{"name": "s3", "port": pod_port}],
                "endpoints": [{"addresses": [required_env("RECOMMENDER_S3_POD_HOST")],
                    "conditions": {"ready": true}}],
            }),
        ] {
            apply_json(&ns.client, &manifest).await;
        }
        let spec = json!({"s3": {
            "endpoint": format!("http://{S3_SERVICE}.{}.svc:8333", ns.name),
            "bucket": bucket,
            "prefix": prefix,
            "region": required_env("RECOMMENDER_S3_REGION"),
            "pathStyle": true,
            "credentialsSecret": S3_SECRET,
        }});
        Self {
            spec,
            bucket,
            prefix,
            client: ns.client.clone(),
        }
    }

    /// Server-side apply of `model` with this store as its `spec.modelStore`.
    pub async fn apply(&self, model: &RecommenderModel) {
        let ns = model.namespace().expect("a namespace");
        let mut manifest = serde_json::to_value(model).expect("a model serialises");
        manifest.as_object_mut().map(|o| o.remove("status"));
        manifest["spec"]["modelStore"] = self.spec.clone();
        models(&self.client, &ns)
            .patch(
                &model.name_any(),
                &PatchParams::apply("e2e-tests").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {} with an S3 store: {e}", model.name_any()));
    }

    /// The keys stored under the namespace's prefix (ListObjectsV2, first 1000), sorted.
    pub fn keys(&self) -> Vec<String> {
        let url = format!(
            "{}/{}?list-type=2&prefix={}/",
            required_env("RECOMMENDER_S3_ENDPOINT"),
            self.bucket,
            self.prefix
        );
        let xml = signed_get(&url);
        let mut keys: Vec<String> = xml
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }
}

/// A GET signed with the tests' key pair (curl's SigV4); the keys go to curl on stdin, not in
/// its command line, where `ps` would show them.
fn signed_get(url: &str) -> String {
    let region = required_env("RECOMMENDER_S3_REGION");
    let mut curl = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "10"])
        .args(["--aws-sigv4", &format!("aws:amz:{region}:s3")])
        .args(["--config", "-", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl");
    let user = format!(
        "user = \"{}:{}\"\n",
        required_env("RECOMMENDER_S3_ACCESS_KEY_ID"),
        required_env("RECOMMENDER_S3_SECRET_ACCESS_KEY")
    );
    curl.stdin
        .take()
        .unwrap()
        .write_all(user.as_bytes())
        .unwrap();
    let out = curl.wait_with_output().expect("curl's output");
    assert!(
        out.status.success(),
        "GET {url}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
