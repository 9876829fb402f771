//! The model store cleanup Job: `recommender-trainer prune` deletes a model's artifacts outside
//! the retention window, in a pod like the trainer's (same image, identity, model store, pod
//! settings) but small.

use super::pod::{
    container_security, merge_pod_settings, model_store_mount, model_store_volume, pod_security,
    resources,
};
use super::{Defaults, MODELS_MOUNT, common_labels, meta};
use crate::crd::RecommenderModel;
use crate::labels;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

/// Finished cleanups are kept an hour for `kubectl logs`.
const FINISHED_CLEANUP_TTL_SECONDS: i32 = 3600;

pub fn cleanup_job_name(model: &str, through_run: u32) -> String {
    format!("{model}-cleanup-{through_run}")
}

/// The `recommender-trainer prune` arguments: delete the artifacts of runs up to `through_run`
/// except the versions in `keep`. Later runs' files are never touched, so a training run that
/// starts meanwhile is safe.
pub fn prune_args(model: &RecommenderModel, keep: &[String], through_run: u32) -> Vec<String> {
    let mut args = vec![
        "prune".to_string(),
        "--dir".into(),
        format!("{MODELS_MOUNT}/{}", model.name_any()),
        "--through-run".into(),
        through_run.to_string(),
    ];
    for version in keep {
        args.push("--keep".into());
        args.push(version.clone());
    }
    args
}

pub fn cleanup_job(
    model: &RecommenderModel,
    keep: &[String],
    through_run: u32,
    defaults: &Defaults,
) -> Job {
    let labels = common_labels(model, labels::COMPONENT_CLEANUP);
    let trainer = &model.spec.trainer;
    let container = Container {
        name: "cleanup".into(),
        image: Some(
            trainer
                .image
                .clone()
                .unwrap_or_else(|| defaults.trainer_image.clone()),
        ),
        args: Some(prune_args(model, keep, through_run)),
        resources: Some(resources(None, "10m", "16Mi", "64Mi")),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![model_store_mount(false)]),
        ..Container::default()
    };
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            security_context: Some(pod_security()),
            automount_service_account_token: Some(false),
            containers: vec![container],
            volumes: Some(vec![model_store_volume(model, false)]),
            ..PodSpec::default()
        }),
    };
    // The same nodes and identity as the trainer: the model store may only mount there.
    merge_pod_settings(&mut template, &trainer.pod);
    Job {
        metadata: meta(
            model,
            cleanup_job_name(&model.name_any(), through_run),
            labels,
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(300),
            ttl_seconds_after_finished: Some(FINISHED_CLEANUP_TTL_SECONDS),
            template,
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::{defaults, file_spec, model};

    #[test]
    fn the_cleanup_prunes_the_models_folder_keeping_the_window() {
        let mut spec = file_spec();
        spec.trainer.pod.node_selector = [("pool".to_string(), "batch".to_string())].into();
        let m = model(spec, None);
        let job = cleanup_job(&m, &["v3".into(), "v5".into()], 6, &defaults());
        assert_eq!(job.metadata.name.as_deref(), Some("movies-cleanup-6"));
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()[labels::COMPONENT],
            "cleanup"
        );
        assert!(
            !job.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(labels::RUN),
            "not a training run"
        );
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.clone().unwrap().join(" "),
            "prune --dir /models/movies --through-run 6 --keep v3 --keep v5"
        );
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].read_only, Some(false));
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "batch");
        assert_eq!(
            c.image.as_deref(),
            Some("registry.local/recommender-trainer:test")
        );
    }
}
