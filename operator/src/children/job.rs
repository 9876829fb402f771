//! One builder for every Job the operator runs in the trainer image: training runs, forward
//! evaluations and model store cleanups (and the tuning trials to come: an Indexed Job is a
//! `JobSpec` with its completion mode, which the builder keeps). Each pod is built the same way:
//! non-root and read-only, the model store reachable (the claim mounted, or the S3 key pair and
//! CA), the database's password and CA when it reads the ratings, and `spec.trainer.pod`
//! (scheduling, identity, pull secrets, metadata, env) merged in, since a claim may only mount
//! where the trainer runs.

use super::pod::{container_security, merge_pod_settings, pod_security};
use super::store::{Backend, store_pod};
use super::{Defaults, MODELS_MOUNT, TERMINATION_LOG, common_labels, meta};
use crate::crd::RecommenderModel;
use crate::validate::{Config, SourceConfig};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, KeyToPath, PodSpec, PodTemplateSpec, ResourceRequirements,
    SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Where the database's CA bundle (`spec.source.postgres.caSecretRef`) is mounted.
const PG_CA_MOUNT: &str = "/etc/recommender/pg-ca";
const PG_CA_FILE: &str = "ca.crt";

/// What differs between the operator's Jobs.
pub(super) struct BatchJob<'a> {
    pub name: String,
    /// `app.kubernetes.io/component` of the Job and its pods.
    pub component: &'static str,
    /// Labels beside the common ones, on the Job and its pods.
    pub labels: Vec<(&'static str, String)>,
    pub annotations: BTreeMap<String, String>,
    /// The container's name.
    pub container: &'static str,
    pub args: Vec<String>,
    pub resources: ResourceRequirements,
    /// Set when the pod reads the ratings: a PostgreSQL source gets its password and CA.
    pub source: Option<&'a Config>,
    /// Whether the pod writes to the model store (else it is mounted read-only).
    pub writes_store: bool,
    /// Whether the pod reports in its termination message.
    pub reports: bool,
    /// Backoff limit, deadline, TTL, failure policy, completion mode: everything but the pod.
    pub spec: JobSpec,
}

impl BatchJob<'_> {
    pub(super) fn build(self, model: &RecommenderModel, defaults: &Defaults) -> Job {
        let trainer = &model.spec.trainer;
        let mut labels = common_labels(model, self.component);
        labels.extend(self.labels.into_iter().map(|(k, v)| (k.to_string(), v)));
        let mut metadata = meta(model, self.name, labels.clone());
        metadata.annotations = (!self.annotations.is_empty()).then_some(self.annotations);
        let store = store_pod(model, !self.writes_store);
        let env: Vec<EnvVar> = store
            .env
            .into_iter()
            .chain(self.source.and_then(password_env).into_iter().flatten())
            .collect();
        let container = Container {
            name: self.container.into(),
            image: Some(
                trainer
                    .image
                    .clone()
                    .unwrap_or_else(|| defaults.trainer_image.clone()),
            ),
            args: Some(self.args),
            env: (!env.is_empty()).then_some(env),
            resources: Some(self.resources),
            security_context: Some(container_security()),
            volume_mounts: non_empty(
                store
                    .mounts
                    .into_iter()
                    .chain(self.source.and_then(ca_mount))
                    .collect(),
            ),
            termination_message_path: self.reports.then(|| TERMINATION_LOG.into()),
            // The message must be the report alone: logs would corrupt the JSON.
            termination_message_policy: self.reports.then(|| "File".into()),
            ..Container::default()
        };
        let mut template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                security_context: Some(pod_security()),
                automount_service_account_token: Some(false),
                containers: vec![container],
                volumes: non_empty(
                    store
                        .volumes
                        .into_iter()
                        .chain(self.source.and_then(ca_volume))
                        .collect(),
                ),
                ..PodSpec::default()
            }),
        };
        merge_pod_settings(&mut template, &trainer.pod);
        Job {
            metadata,
            spec: Some(JobSpec {
                template,
                ..self.spec
            }),
            status: None,
        }
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// Collects `--flag value` pairs.
pub(super) struct Args(pub Vec<String>);

impl Args {
    pub(super) fn push(&mut self, flag: &str, value: impl ToString) {
        self.0.push(flag.into());
        self.0.push(value.to_string());
    }
}

/// The arguments that say where the ratings come from, as the trainer's `train` and `score`
/// read them. A file is a path on the claim (relative to its root), or an object in the model's
/// folder of an S3 store (`store:KEY`).
pub(super) fn source_args(model: &RecommenderModel, source: &SourceConfig, args: &mut Args) {
    match source {
        SourceConfig::Postgres(pg) => {
            args.push("--source", "postgres");
            args.push("--pg-host", &pg.host);
            args.push("--pg-port", pg.port);
            args.push("--pg-database", &pg.database);
            args.push("--pg-user", &pg.user);
            args.push("--pg-query", &pg.query);
            if !pg.ssl_mode.is_disable() {
                args.push("--pg-sslmode", pg.ssl_mode.tls());
            }
            if pg.ca_secret_ref.is_some() {
                args.push("--pg-ca-file", format!("{PG_CA_MOUNT}/{PG_CA_FILE}"));
            }
        }
        SourceConfig::File(f) => {
            match model.spec.model_store.backend() {
                Backend::Claim(_) => args.push("--source", format!("{MODELS_MOUNT}/{}", f.path)),
                Backend::S3(_) => args.push("--source", format!("store:{}", f.path)),
            }
            args.push("--format", f.format.as_arg());
            if let Some(d) = &f.delimiter {
                args.push("--delimiter", d);
            }
            if let Some(h) = f.header {
                args.push("--header", h);
            }
            if let Some(c) = &f.columns {
                args.push("--columns", c);
            }
        }
    }
}

/// `PGPASSWORD` from the Secret, for a PostgreSQL source.
fn password_env(config: &Config) -> Option<Vec<EnvVar>> {
    let SourceConfig::Postgres(pg) = &config.source else {
        return None;
    };
    Some(vec![EnvVar {
        name: "PGPASSWORD".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: pg.password_secret_ref.name.clone(),
                key: pg.password_secret_ref.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }])
}

/// The database's CA bundle from its Secret, as the one file `--pg-ca-file` names.
fn ca_volume(config: &Config) -> Option<Volume> {
    let SourceConfig::Postgres(pg) = &config.source else {
        return None;
    };
    let ca = pg.ca_secret_ref.as_ref()?;
    Some(Volume {
        name: "pg-ca".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(ca.name.clone()),
            items: Some(vec![KeyToPath {
                key: ca.key.clone(),
                path: PG_CA_FILE.into(),
                ..KeyToPath::default()
            }]),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    })
}

fn ca_mount(config: &Config) -> Option<VolumeMount> {
    ca_volume(config).map(|v| VolumeMount {
        name: v.name,
        mount_path: PG_CA_MOUNT.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::pod::resources;
    use crate::children::testing::{container, pod};
    use crate::decide::fixtures::{defaults, file_spec, model};

    /// An Indexed Job (as tuning trials will be) keeps its completion mode and counts, and its
    /// pods get what every Job's pods get.
    #[test]
    fn the_callers_job_spec_is_kept_around_the_pod() {
        let mut spec = file_spec();
        spec.trainer.pod.node_selector = [("pool".to_string(), "batch".to_string())].into();
        let m = model(spec, None);
        let job = BatchJob {
            name: "movies-trial-1".into(),
            component: "trial",
            labels: vec![("recommender.dev/trial", "1".into())],
            annotations: BTreeMap::new(),
            container: "trial",
            args: vec!["train".into()],
            resources: resources(None, "1", "1Gi", "2Gi"),
            source: None,
            writes_store: true,
            reports: true,
            spec: JobSpec {
                completion_mode: Some("Indexed".into()),
                completions: Some(4),
                parallelism: Some(2),
                ..JobSpec::default()
            },
        }
        .build(&m, &defaults());
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(
            (
                spec.completion_mode.as_deref(),
                spec.completions,
                spec.parallelism
            ),
            (Some("Indexed"), Some(4), Some(2))
        );
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()["recommender.dev/trial"],
            "1"
        );
        assert_eq!(job.metadata.annotations, None);
        assert_eq!(pod(&job).node_selector.as_ref().unwrap()["pool"], "batch");
        assert_eq!(
            container(&job).termination_message_policy.as_deref(),
            Some("File")
        );
    }
}
