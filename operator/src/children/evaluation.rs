//! The forward-evaluation Job: the trainer image's `score` predicts every rating newer than the
//! serving model's snapshot and reports the errors in its termination message.

use super::job::{Args, BatchJob, source_args};
use super::pod::resources;
use super::store::{digest_args, store_args};
use super::{Defaults, TERMINATION_LOG};
use crate::crd::RecommenderModel;
use crate::labels;
use crate::validate::Config;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Evaluations are short and repeat; their Jobs need not stay long.
const FINISHED_EVALUATION_TTL_SECONDS: i32 = 3600;

pub fn evaluation_job_name(model: &str, number: u32) -> String {
    format!("{model}-eval-{number}")
}

/// `recommender-trainer score` of `version` (whose artifact must hash to `sha256`, the digest
/// recorded for it) on the ratings after `since`.
pub fn evaluation_args(
    model: &RecommenderModel,
    config: &Config,
    version: &str,
    sha256: Option<&str>,
    since: i64,
) -> Vec<String> {
    let mut args = Args(vec!["score".into()]);
    store_args(model, &mut args);
    args.push("--model", version);
    digest_args("--model-sha256", sha256, &mut args);
    args.push("--since", since);
    source_args(model, &config.source, &mut args);
    args.push("--report", TERMINATION_LOG);
    args.0
}

/// Evaluation `number` of the serving model `version` (artifact digest `sha256`, snapshot
/// `since`).
#[allow(clippy::too_many_arguments)]
pub fn evaluation_job(
    model: &RecommenderModel,
    config: &Config,
    number: u32,
    version: &str,
    sha256: Option<&str>,
    since: i64,
    started_at: Timestamp,
    defaults: &Defaults,
) -> Job {
    let trainer = &model.spec.trainer;
    BatchJob {
        name: evaluation_job_name(&model.name_any(), number),
        component: labels::COMPONENT_EVALUATOR,
        labels: vec![
            (labels::EVALUATION, number.to_string()),
            (labels::VERSION, version.into()),
        ],
        annotations: BTreeMap::from([
            (labels::ANNOTATION_SINCE.into(), since.to_string()),
            (
                labels::ANNOTATION_STARTED_AT.into(),
                crate::time::whole(started_at).to_string(),
            ),
        ]),
        container: "evaluator",
        args: evaluation_args(model, config, version, sha256, since),
        resources: resources(trainer.resources.as_ref(), "100m", "256Mi", "2Gi"),
        source: Some(config),
        // Scoring reads the artifact and writes nothing to the store.
        writes_store: false,
        reports: true,
        spec: JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(trainer.active_deadline_seconds),
            ttl_seconds_after_finished: Some(FINISHED_EVALUATION_TTL_SECONDS),
            ..JobSpec::default()
        },
    }
    .build(model, defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{args, assert_locked_down, container, pod, pod_meta};
    use crate::crd::{PostgresSource, SecretKeyRef, Source};
    use crate::decide::fixtures::{NOW, at, config, defaults, file_spec, model};

    fn evaluation(spec: crate::crd::RecommenderModelSpec) -> Job {
        let m = model(spec, None);
        let sha256 = "ab".repeat(32);
        evaluation_job(
            &m,
            &config(&m),
            4,
            "v2",
            Some(&sha256),
            893_286_638,
            at(NOW),
            &defaults(),
        )
    }

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
        let job = evaluation(spec);
        assert_eq!(job.metadata.name.as_deref(), Some("movies-eval-4"));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[labels::EVALUATION], "4");
        assert_eq!(labels[labels::COMPONENT], "evaluator");
        assert!(!labels.contains_key(labels::RUN), "not a training run");
        assert_eq!(
            args(&job),
            format!(
                "score --store /models/movies --model v2 --model-sha256 {} --since 893286638 \
                 --source postgres \
             --pg-host db --pg-port 5432 --pg-database shop --pg-user reader \
                 --pg-query SELECT u, i, r, t FROM ratings --report /dev/termination-log",
                "ab".repeat(32)
            )
        );
        assert_eq!(container(&job).env.as_ref().unwrap()[0].name, "PGPASSWORD");
        assert_locked_down(container(&job), true);
    }

    /// The evaluation pod runs where the trainer's may (the model store may mount only there),
    /// with the same identity, pull secrets and metadata.
    #[test]
    fn the_evaluation_pod_gets_the_trainers_pod_settings() {
        let mut spec = file_spec();
        spec.trainer.pod = serde_json::from_value(serde_json::json!({
            "nodeSelector": {"pool": "batch"},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "imagePullSecrets": [{"name": "regcred"}],
            "serviceAccountName": "trainer",
            "priorityClassName": "batch-low",
            "labels": {"team": "recs"},
            "annotations": {"cost-center": "42"},
            "env": [{"name": "RUST_LOG", "value": "debug"}],
        }))
        .unwrap();
        let job = evaluation(spec);
        let pod = pod(&job);
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "batch");
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].effect.as_deref(),
            Some("NoSchedule")
        );
        assert!(pod.affinity.as_ref().unwrap().node_affinity.is_some());
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
        assert_eq!(pod.service_account_name.as_deref(), Some("trainer"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("batch-low"));
        let meta = pod_meta(&job);
        assert_eq!(meta.labels.as_ref().unwrap()["team"], "recs");
        assert_eq!(
            meta.labels.as_ref().unwrap()[labels::COMPONENT],
            "evaluator"
        );
        assert_eq!(meta.annotations.as_ref().unwrap()["cost-center"], "42");
        assert_eq!(container(&job).env.as_ref().unwrap()[0].name, "RUST_LOG");
    }
}
