//! The model store cleanup Job: `recommender-trainer prune` deletes a model's artifacts outside
//! the retention window, in a pod like the trainer's (same image, identity, model store, pod
//! settings) but small.

use super::Defaults;
use super::job::{Args, BatchJob};
use super::pod::resources;
use super::store::store_args;
use crate::crd::RecommenderModel;
use crate::labels;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Finished cleanups are kept an hour for `kubectl logs`.
const FINISHED_CLEANUP_TTL_SECONDS: i32 = 3600;

pub fn cleanup_job_name(model: &str, through_run: u32) -> String {
    format!("{model}-cleanup-{through_run}")
}

/// The `recommender-trainer prune` arguments: delete the artifacts of runs up to `through_run`
/// except the versions in `keep`. Later runs' files are never touched, so a training run that
/// starts meanwhile is safe.
pub fn prune_args(model: &RecommenderModel, keep: &[String], through_run: u32) -> Vec<String> {
    let mut args = Args(vec!["prune".into()]);
    store_args(model, &mut args);
    args.push("--through-run", through_run);
    for version in keep {
        args.push("--keep", version);
    }
    args.0
}

pub fn cleanup_job(
    model: &RecommenderModel,
    keep: &[String],
    through_run: u32,
    defaults: &Defaults,
) -> Job {
    BatchJob {
        name: cleanup_job_name(&model.name_any(), through_run),
        component: labels::COMPONENT_CLEANUP,
        labels: Vec::new(),
        annotations: BTreeMap::new(),
        container: "cleanup",
        args: prune_args(model, keep, through_run),
        resources: resources(None, "10m", "16Mi", "64Mi"),
        source: None,
        writes_store: true,
        reports: false,
        spec: JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(300),
            ttl_seconds_after_finished: Some(FINISHED_CLEANUP_TTL_SECONDS),
            ..JobSpec::default()
        },
    }
    .build(model, defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{args, assert_locked_down, container, pod};
    use crate::decide::fixtures::{defaults, file_spec, model};

    #[test]
    fn the_cleanup_prunes_the_models_folder_keeping_the_window() {
        let mut spec = file_spec();
        spec.trainer.pod.node_selector = [("pool".to_string(), "batch".to_string())].into();
        let m = model(spec, None);
        let job = cleanup_job(&m, &["v3".into(), "v5".into()], 6, &defaults());
        assert_eq!(job.metadata.name.as_deref(), Some("movies-cleanup-6"));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[labels::COMPONENT], "cleanup");
        assert!(!labels.contains_key(labels::RUN), "not a training run");
        assert_eq!(
            args(&job),
            "prune --store /models/movies --through-run 6 --keep v3 --keep v5"
        );
        assert_locked_down(container(&job), false);
        assert_eq!(pod(&job).node_selector.as_ref().unwrap()["pool"], "batch");
        assert_eq!(
            container(&job).image.as_deref(),
            Some("registry.local/recommender-trainer:test")
        );
        assert_eq!(
            (
                container(&job).env.as_ref(),
                pod(&job).volumes.as_ref().map(Vec::len)
            ),
            (None, Some(1)),
            "no database access"
        );
    }
}
