//! The forward-evaluation Job: the trainer image's `score` predicts every rating newer than the
//! serving model's snapshot and reports the errors in its termination message.

use super::job::{Args, ca_mount, ca_volume, password_env, source_args};
use super::pod::{
    container_security, model_store_mount, model_store_volume, pod_security, resources,
};
use super::{Defaults, TERMINATION_LOG, artifact_path, common_labels, meta};
use crate::crd::RecommenderModel;
use crate::labels;
use crate::validate::Config;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Evaluations are short and repeat; their Jobs need not stay long.
const FINISHED_EVALUATION_TTL_SECONDS: i32 = 3600;

pub fn evaluation_job_name(model: &str, number: u32) -> String {
    format!("{model}-eval-{number}")
}

/// `recommender-trainer score` of `version` on the ratings after `since`.
pub fn evaluation_args(
    model: &RecommenderModel,
    config: &Config,
    version: &str,
    since: i64,
) -> Vec<String> {
    let mut args = Args(vec!["score".into()]);
    args.push("--model", artifact_path(&model.name_any(), version));
    args.push("--since", since);
    source_args(&config.source, &mut args);
    args.push("--report", TERMINATION_LOG);
    args.0
}

/// Evaluation `number` of the serving model `version` (snapshot `since`).
pub fn evaluation_job(
    model: &RecommenderModel,
    config: &Config,
    number: u32,
    version: &str,
    since: i64,
    started_at: Timestamp,
    defaults: &Defaults,
) -> Job {
    let mut labels = common_labels(model, labels::COMPONENT_EVALUATOR);
    labels.insert(labels::EVALUATION.into(), number.to_string());
    labels.insert(labels::VERSION.into(), version.into());
    let mut metadata = meta(
        model,
        evaluation_job_name(&model.name_any(), number),
        labels.clone(),
    );
    metadata.annotations = Some(BTreeMap::from([
        (labels::ANNOTATION_SINCE.into(), since.to_string()),
        (
            labels::ANNOTATION_STARTED_AT.into(),
            crate::time::whole(started_at).to_string(),
        ),
    ]));
    let trainer = &model.spec.trainer;
    let container = Container {
        name: "evaluator".into(),
        image: Some(
            trainer
                .image
                .clone()
                .unwrap_or_else(|| defaults.trainer_image.clone()),
        ),
        args: Some(evaluation_args(model, config, version, since)),
        env: password_env(config),
        resources: Some(resources(
            trainer.resources.as_ref(),
            "100m",
            "256Mi",
            "2Gi",
        )),
        security_context: Some(container_security()),
        // Scoring reads the artifact and writes nothing to the store.
        volume_mounts: Some(
            [Some(model_store_mount(true)), ca_mount(config)]
                .into_iter()
                .flatten()
                .collect(),
        ),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("File".into()),
        ..Container::default()
    };
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(trainer.active_deadline_seconds),
            ttl_seconds_after_finished: Some(FINISHED_EVALUATION_TTL_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    security_context: Some(pod_security()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(
                        [Some(model_store_volume(model, true)), ca_volume(config)]
                            .into_iter()
                            .flatten()
                            .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PostgresSource, SecretKeyRef, Source};
    use crate::decide::fixtures::{NOW, at, config, defaults, file_spec, model};

    #[test]
    fn scores_the_serving_artifact_read_only() {
        let mut spec = file_spec();
        spec.source = Source {
            postgres: Some(PostgresSource {
                ssl_mode: Default::default(),
                ca_secret_ref: None,
                host: "db".into(),
                port: 5432,
                database: "shop".into(),
                user: "reader".into(),
                password_secret_ref: SecretKeyRef {
                    name: "shop-db".into(),
                    key: "pw".into(),
                },
                query: "SELECT u, i, r, t FROM ratings".into(),
                probe_interval_seconds: 15,
            }),
            file: None,
        };
        let m = model(spec, None);
        let job = evaluation_job(&m, &config(&m), 4, "v2", 893_286_638, at(NOW), &defaults());
        assert_eq!(job.metadata.name.as_deref(), Some("movies-eval-4"));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[labels::EVALUATION], "4");
        assert_eq!(labels[labels::COMPONENT], "evaluator");
        assert!(!labels.contains_key(labels::RUN), "not a training run");
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "score --model /models/movies/v2.model --since 893286638 --source postgres \
             --pg-host db --pg-port 5432 --pg-database shop --pg-user reader \
             --pg-query SELECT u, i, r, t FROM ratings --report /dev/termination-log"
        );
        assert_eq!(c.env.as_ref().unwrap()[0].name, "PGPASSWORD");
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].read_only, Some(true));
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
    }
}
