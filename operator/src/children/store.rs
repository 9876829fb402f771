//! Where a pod finds the model store, built in this one place for every pod the operator runs:
//! the `--store` flags naming the model's folder (a directory on the claim, or a prefix of an S3
//! bucket), the key pair's environment from the credentials Secret (never an argument), and the
//! volumes (the claim, or the CA bundle's Secret). docs/model-store.md describes the flags.

use super::MODELS_MOUNT;
use super::job::Args;
use crate::crd::{CaSecretRef, ModelStore, RecommenderModel, S3Store};
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaimVolumeSource, SecretKeySelector,
    SecretVolumeSource, Volume, VolumeMount,
};
use kube::ResourceExt;
use recommender_store::{Credentials, StoreArgs};

/// Where the S3 endpoint's CA bundle (`spec.modelStore.s3.caSecret`) is mounted.
const CA_MOUNT: &str = "/etc/recommender/store-ca";
const CA_FILE: &str = "ca.crt";

/// The store a model's spec names. `validate` refuses a spec naming neither or both; the
/// builders, which only see valid specs, read one naming both as the claim.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend<'a> {
    Claim(&'a str),
    S3(&'a S3Store),
}

impl ModelStore {
    pub fn backend(&self) -> Backend<'_> {
        match (&self.claim_name, &self.s3) {
            (None, Some(s3)) => Backend::S3(s3),
            (claim, _) => Backend::Claim(claim.as_deref().unwrap_or_default()),
        }
    }
}

/// The folder of the model `name` in its store: `/models/<name>` on the claim,
/// `s3://BUCKET/PREFIX/<name>` in a bucket.
pub fn store_location(store: &ModelStore, name: &str) -> String {
    match store.backend() {
        Backend::Claim(_) => format!("{MODELS_MOUNT}/{name}"),
        Backend::S3(s3) => {
            let prefix = s3.prefix.as_deref().unwrap_or_default().trim_matches('/');
            if prefix.is_empty() {
                format!("s3://{}/{name}", s3.bucket)
            } else {
                format!("s3://{}/{prefix}/{name}", s3.bucket)
            }
        }
    }
}

/// The store's settings as the trainer and the predictor take them (`StoreArgs`), for the
/// folder of the model `name`: what the pods are told, what `validate` checks, and what the
/// probe opens.
pub fn store_flags(spec: &ModelStore, name: &str) -> StoreArgs {
    let store = Some(store_location(spec, name));
    match spec.backend() {
        Backend::Claim(_) => StoreArgs {
            store,
            ..StoreArgs::default()
        },
        Backend::S3(s3) => StoreArgs {
            store,
            endpoint: s3
                .endpoint
                .as_deref()
                .map(|e| e.trim_end_matches('/').to_string()),
            region: Some(s3.region.clone()),
            path_style: s3.path_style,
            ca_file: s3
                .ca_secret
                .as_ref()
                .map(|_| format!("{CA_MOUNT}/{CA_FILE}").into()),
        },
    }
}

/// `store_flags` as arguments.
pub(super) fn store_args(model: &RecommenderModel, args: &mut Args) {
    let flags = store_flags(&model.spec.model_store, &model.name_any());
    if let Some(store) = flags.store {
        args.push("--store", store);
    }
    if let Some(endpoint) = flags.endpoint {
        args.push("--store-endpoint", endpoint);
    }
    if let Some(region) = flags.region {
        args.push("--store-region", region);
    }
    if flags.path_style {
        args.0.push("--store-path-style".into());
    }
    if let Some(ca) = flags.ca_file {
        args.push("--store-ca-file", ca.display());
    }
}

/// What a pod needs beside the flags to reach the store.
#[derive(Debug, Default)]
pub(super) struct StorePod {
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

/// The claim mounted at `/models` (read-only unless the pod writes), or the S3 key pair as
/// environment from the credentials Secret and the CA bundle mounted read-only. An S3 pod
/// mounts no claim: it fetches what it reads into memory.
pub(super) fn store_pod(model: &RecommenderModel, read_only: bool) -> StorePod {
    match model.spec.model_store.backend() {
        Backend::Claim(claim) => StorePod {
            env: Vec::new(),
            volumes: vec![Volume {
                name: "models".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    read_only: Some(read_only),
                }),
                ..Volume::default()
            }],
            mounts: vec![VolumeMount {
                name: "models".into(),
                mount_path: MODELS_MOUNT.into(),
                read_only: Some(read_only),
                ..VolumeMount::default()
            }],
        },
        Backend::S3(s3) => {
            let key = |env: &str, key: &str| EnvVar {
                name: env.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: s3.credentials_secret.clone(),
                        key: key.into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            };
            let env = vec![
                key(Credentials::ACCESS_KEY_ID_ENV, S3Store::ACCESS_KEY_ID_KEY),
                key(
                    Credentials::SECRET_ACCESS_KEY_ENV,
                    S3Store::SECRET_ACCESS_KEY_KEY,
                ),
            ];
            let (volumes, mounts) = s3.ca_secret.as_ref().map(ca).unzip();
            StorePod {
                env,
                volumes: volumes.into_iter().collect(),
                mounts: mounts.into_iter().collect(),
            }
        }
    }
}

fn ca(ca: &CaSecretRef) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: "store-ca".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(ca.name.clone()),
            items: Some(vec![KeyToPath {
                key: ca.key.clone(),
                path: CA_FILE.into(),
                ..KeyToPath::default()
            }]),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "store-ca".into(),
        mount_path: CA_MOUNT.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// The arguments that name a version's recorded sha256 for a reader that verifies it.
pub(super) fn digest_args(flag: &str, sha256: Option<&str>, args: &mut Args) {
    if let Some(sha256) = sha256 {
        args.push(flag, sha256);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::{file_spec, model};

    pub(crate) fn s3_spec(yaml: &str) -> crate::crd::RecommenderModelSpec {
        let mut spec = file_spec();
        spec.model_store = serde_yaml::from_str(yaml).unwrap();
        spec
    }

    fn line(m: &RecommenderModel) -> String {
        let mut args = Args(Vec::new());
        store_args(m, &mut args);
        args.0.join(" ")
    }

    #[test]
    fn the_claim_is_a_directory_mounted_at_models() {
        let m = model(file_spec(), None);
        assert_eq!(line(&m), "--store /models/movies");
        let pod = store_pod(&m, true);
        assert!(pod.env.is_empty());
        let claim = pod.volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("models", Some(true))
        );
        assert_eq!(
            (pod.mounts[0].mount_path.as_str(), pod.mounts[0].read_only),
            ("/models", Some(true))
        );
        assert_eq!(store_pod(&m, false).mounts[0].read_only, Some(false));
    }

    #[test]
    fn an_s3_store_is_flags_secret_env_and_no_claim() {
        let m = model(
            s3_spec(
                "{keep: 3, s3: {endpoint: 'http://s3.store.svc:8333/', bucket: models,
                  prefix: /team-a/, pathStyle: true, credentialsSecret: model-store}}",
            ),
            None,
        );
        assert_eq!(
            line(&m),
            "--store s3://models/team-a/movies --store-endpoint http://s3.store.svc:8333 \
             --store-region us-east-1 --store-path-style"
        );
        let pod = store_pod(&m, false);
        assert!(pod.volumes.is_empty() && pod.mounts.is_empty(), "no claim");
        let refs: Vec<(&str, &str, &str)> = pod
            .env
            .iter()
            .map(|e| {
                let r = e
                    .value_from
                    .as_ref()
                    .unwrap()
                    .secret_key_ref
                    .as_ref()
                    .unwrap();
                (e.name.as_str(), r.name.as_str(), r.key.as_str())
            })
            .collect();
        assert_eq!(
            refs,
            [
                ("AWS_ACCESS_KEY_ID", "model-store", "accessKeyId"),
                ("AWS_SECRET_ACCESS_KEY", "model-store", "secretAccessKey")
            ]
        );
        assert!(pod.env.iter().all(|e| e.value.is_none()), "never a literal");
    }

    #[test]
    fn amazon_s3_with_a_ca_mounts_the_bundle_read_only() {
        let m = model(
            s3_spec(
                "{s3: {bucket: models, region: eu-west-1, credentialsSecret: store,
                  caSecret: {name: store-ca}}}",
            ),
            None,
        );
        assert_eq!(
            line(&m),
            "--store s3://models/movies --store-region eu-west-1 \
             --store-ca-file /etc/recommender/store-ca/ca.crt"
        );
        let pod = store_pod(&m, true);
        let secret = pod.volumes[0].secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("store-ca"));
        assert_eq!(secret.items.as_ref().unwrap()[0].key, "ca.crt");
        assert_eq!(
            (pod.mounts[0].mount_path.as_str(), pod.mounts[0].read_only),
            ("/etc/recommender/store-ca", Some(true))
        );
    }
}
