//! A tuning search's children: per rung, the trial plan in a ConfigMap and one Indexed Job whose
//! index *i* runs trial *i* of the plan (`recommender-trainer trial`, which reads its index from
//! `JOB_COMPLETION_INDEX`). `backoffLimitPerIndex: 0` with `maxFailedIndexes` set to every index
//! lets a trial fail (diverge, run out of memory) without stopping the others: the search is
//! judged on the trials that scored. When a search ends with a best point, the whole search (a
//! `SearchRecord`) goes to the run that trains it in one more ConfigMap, owned by that run's Job,
//! which the trainer keeps in the model store's run history.

use super::job::{Args, BatchJob, source_args};
use super::pod::resources;
use super::store::store_args;
use super::{Defaults, TERMINATION_LOG, common_labels, meta};
use crate::crd::RecommenderModel;
use crate::labels;
use crate::validate::{Config, SourceConfig};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Where a trial pod finds its rung's plan.
const PLAN_MOUNT: &str = "/etc/recommender/plan";
const PLAN_FILE: &str = "plan.json";
/// Where the trainer Job of a searched run finds its search's record.
const RECORD_MOUNT: &str = "/etc/recommender/search";
const RECORD_FILE: &str = "record.json";
/// Trial Jobs are read while their search runs (bounded by its time limit) and kept a while for
/// inspection.
const FINISHED_TRIAL_TTL_SECONDS: i32 = 24 * 3600;

/// The name of rung `rung` of search `search`: its Job and its plan's ConfigMap.
pub fn rung_name(model: &str, search: u32, rung: u32) -> String {
    format!("{model}-search-{search}-{rung}")
}

/// The ConfigMap of search `search`'s record, for the run that trains its best point.
pub fn record_name(model: &str, search: u32) -> String {
    format!("{model}-search-{search}-record")
}

/// One rung of a search to start.
#[derive(Debug, Clone)]
pub struct NewRung<'a> {
    pub search: u32,
    pub rung: u32,
    /// The rung's `TrialPlan` as JSON, what `trial --plan` reads.
    pub plan: &'a str,
    pub trials: u32,
    pub parallelism: u32,
    /// What is left of the search's time limit: the Job's deadline.
    pub deadline_seconds: i64,
    /// The trial pods' resources (`spec.tuning.resources`, else the trainer's).
    pub resources: Option<&'a ResourceRequirements>,
    /// `--fit-threads` for each trial.
    pub fit_threads: Option<u32>,
}

fn rung_labels(new: &NewRung) -> Vec<(&'static str, String)> {
    vec![
        (labels::SEARCH, new.search.to_string()),
        (labels::RUNG, new.rung.to_string()),
    ]
}

/// The ConfigMap holding the rung's plan (`owned_by_job` gives it its owner once the Job
/// exists).
pub fn plan_config_map(model: &RecommenderModel, new: &NewRung) -> ConfigMap {
    let mut labels = common_labels(model, labels::COMPONENT_TRIAL);
    labels.extend(rung_labels(new).into_iter().map(|(k, v)| (k.into(), v)));
    ConfigMap {
        metadata: meta(
            model,
            rung_name(&model.name_any(), new.search, new.rung),
            labels,
        ),
        data: Some(BTreeMap::from([(PLAN_FILE.into(), new.plan.into())])),
        ..ConfigMap::default()
    }
}

/// The record of search `search` (a `SearchRecord` as JSON, within the contract's
/// `MAX_PASSED_RECORD_BYTES`), for the trainer Job that trains its best point
/// ([`mount_search_record`]).
pub fn record_config_map(model: &RecommenderModel, search: u32, record: &str) -> ConfigMap {
    let mut labels = common_labels(model, labels::COMPONENT_TRAINER);
    labels.insert(labels::SEARCH.into(), search.to_string());
    ConfigMap {
        metadata: meta(model, record_name(&model.name_any(), search), labels),
        data: Some(BTreeMap::from([(RECORD_FILE.into(), record.into())])),
        ..ConfigMap::default()
    }
}

/// `train --search-record`, and the record's ConfigMap mounted where it points.
pub fn mount_search_record(job: &mut Job, model: &str, search: u32) {
    let path = format!("{RECORD_MOUNT}/{RECORD_FILE}");
    let volume = ("search-record", record_name(model, search), RECORD_MOUNT);
    mount_config_map(job, volume);
    if let Some(container) = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
    {
        let args = container.args.get_or_insert_with(Vec::new);
        args.extend(["--search-record".to_string(), path]);
    }
}

/// A ConfigMap (the plan, a search record), owned by the Job that reads it as the API server
/// returned the Job (with its uid): removed with the Job when its TTL expires, or with the
/// model, which owns the Job.
pub fn owned_by_job(plan: &ConfigMap, job: &Job) -> ConfigMap {
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
        ..OwnerReference::default()
    };
    let mut plan = plan.clone();
    plan.metadata.owner_references = Some(vec![owner]);
    plan
}

/// The `recommender-trainer trial` arguments (the index comes from the Job controller): the
/// run's folds, so a trial measures what the run that trains its point will.
pub fn trial_args(
    model: &RecommenderModel,
    config: &Config,
    fit_threads: Option<u32>,
) -> Vec<String> {
    let mut args = Args(vec!["trial".into()]);
    args.push("--plan", format!("{PLAN_MOUNT}/{PLAN_FILE}"));
    source_args(model, &config.source, &mut args);
    // A `store:KEY` source is read from the model's store, as the run that trains the best point reads it.
    store_args(model, &mut args);
    args.push("--report", TERMINATION_LOG);
    args.push("--folds", config.training.folds);
    if let Some(scale) = config.training.rating_scale {
        args.push("--rating-scale", format!("{},{}", scale.low, scale.high));
    }
    if let Some(threads) = fit_threads {
        args.push("--fit-threads", threads);
    }
    if let SourceConfig::File(f) = &config.source
        && f.skip_bad_lines
    {
        args.0.push("--skip-bad-lines".into());
    }
    args.0
}

/// The Indexed Job of one rung: the trainer's pod settings (so trials can go to another node
/// pool), the plan mounted read-only, the model store read-only (a trial writes nothing).
pub fn trial_job(
    model: &RecommenderModel,
    config: &Config,
    new: &NewRung,
    defaults: &Defaults,
) -> Job {
    let trainer = &model.spec.trainer;
    let name = rung_name(&model.name_any(), new.search, new.rung);
    let chosen = new.resources.or(trainer.resources.as_ref());
    let mut job = BatchJob {
        name: name.clone(),
        component: labels::COMPONENT_TRIAL,
        labels: rung_labels(new),
        annotations: BTreeMap::new(),
        container: "trial",
        args: trial_args(model, config, new.fit_threads),
        resources: resources(chosen, "500m", "512Mi", "2Gi"),
        source: Some(config),
        writes_store: false,
        reports: true,
        spec: JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(new.trials as i32),
            parallelism: Some(new.parallelism.min(new.trials) as i32),
            backoff_limit_per_index: Some(0),
            // Every trial runs whatever the others do; a rung fails only as a whole.
            max_failed_indexes: Some(new.trials as i32),
            active_deadline_seconds: Some(new.deadline_seconds.max(1)),
            ttl_seconds_after_finished: Some(FINISHED_TRIAL_TTL_SECONDS),
            ..JobSpec::default()
        },
    }
    .build(model, defaults);
    mount_config_map(&mut job, ("plan", name, PLAN_MOUNT));
    job
}

/// Mounts a ConfigMap read-only: the volume's name, the ConfigMap's, the folder.
fn mount_config_map(job: &mut Job, (volume, config_map, folder): (&str, String, &str)) {
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: volume.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map,
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    for container in &mut pod.containers {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: volume.into(),
                mount_path: folder.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{args, assert_locked_down, container, pod, pod_meta};
    use crate::decide::fixtures::{config, defaults, file_spec, model};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn rung<'a>(plan: &'a str, limits: Option<&'a ResourceRequirements>) -> NewRung<'a> {
        NewRung {
            search: 3,
            rung: 1,
            plan,
            trials: 8,
            parallelism: 3,
            deadline_seconds: 1200,
            resources: limits,
            fit_threads: Some(2),
        }
    }

    #[test]
    fn a_rung_is_an_indexed_job_that_survives_failed_trials() {
        let mut spec = file_spec();
        spec.trainer.pod.node_selector = [("pool".to_string(), "batch".to_string())].into();
        let m = model(spec, None);
        let small = ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
            ..ResourceRequirements::default()
        };
        let job = trial_job(&m, &config(&m), &rung("{}", Some(&small)), &defaults());
        assert_eq!(job.metadata.name.as_deref(), Some("movies-search-3-1"));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(
            (
                spec.completion_mode.as_deref(),
                spec.completions,
                spec.parallelism,
                spec.backoff_limit_per_index,
                spec.max_failed_indexes,
                spec.active_deadline_seconds,
            ),
            (
                Some("Indexed"),
                Some(8),
                Some(3),
                Some(0),
                Some(8),
                Some(1200)
            )
        );
        let labels = pod_meta(&job).labels.as_ref().unwrap();
        assert_eq!(
            (
                labels[labels::SEARCH].as_str(),
                labels[labels::RUNG].as_str(),
                labels[labels::COMPONENT].as_str()
            ),
            ("3", "1", "trial")
        );
        assert_eq!(pod(&job).node_selector.as_ref().unwrap()["pool"], "batch");
        let c = container(&job);
        assert_locked_down(c, true);
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"],
            Quantity("64Mi".into())
        );
        assert_eq!(
            args(&job),
            "trial --plan /etc/recommender/plan/plan.json --source /models/movies/u.data \
             --format auto --store /models/movies --report /dev/termination-log --folds 4 --fit-threads 2"
        );
        let mount = c.volume_mounts.as_ref().unwrap().last().unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (PLAN_MOUNT, Some(true))
        );
        let volume = pod(&job).volumes.as_ref().unwrap().last().unwrap();
        assert_eq!(
            volume.config_map.as_ref().unwrap().name,
            "movies-search-3-1"
        );
    }

    #[test]
    fn parallelism_never_exceeds_the_trials_and_the_deadline_is_positive() {
        let m = model(file_spec(), None);
        let mut new = rung("{}", None);
        (new.trials, new.parallelism, new.deadline_seconds) = (2, 5, -4);
        let job = trial_job(&m, &config(&m), &new, &defaults());
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(
            (spec.parallelism, spec.active_deadline_seconds),
            (Some(2), Some(1))
        );
        assert_eq!(
            container(&job)
                .resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()["memory"],
            Quantity("2Gi".into()),
            "the trainer's defaults"
        );
    }

    #[test]
    fn the_plan_is_a_config_map_owned_by_its_job() {
        let m = model(file_spec(), None);
        let cm = plan_config_map(&m, &rung(r#"{"trials":[]}"#, None));
        assert_eq!(cm.metadata.name.as_deref(), Some("movies-search-3-1"));
        assert_eq!(cm.data.as_ref().unwrap()[PLAN_FILE], r#"{"trials":[]}"#);
        let mut job = trial_job(&m, &config(&m), &rung("{}", None), &defaults());
        job.metadata.uid = Some("job-uid".into());
        let owned = owned_by_job(&cm, &job);
        let owners = owned.metadata.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1, "the model would keep it alive");
        assert_eq!(
            (
                owners[0].kind.as_str(),
                owners[0].name.as_str(),
                owners[0].uid.as_str()
            ),
            ("Job", "movies-search-3-1", "job-uid")
        );
        assert_eq!(owned.data, cm.data);
    }

    #[test]
    fn a_searched_run_mounts_its_search_record() {
        let m = model(file_spec(), None);
        let cm = record_config_map(&m, 3, "{}");
        assert_eq!(cm.metadata.name.as_deref(), Some("movies-search-3-record"));
        assert_eq!(cm.data.as_ref().unwrap()[RECORD_FILE], "{}");
        let mut job = trial_job(&m, &config(&m), &rung("{}", None), &defaults());
        mount_search_record(&mut job, "movies", 3);
        assert!(
            args(&job).ends_with("--search-record /etc/recommender/search/record.json"),
            "{}",
            args(&job)
        );
        let volume = pod(&job).volumes.as_ref().unwrap().last().unwrap();
        let source = volume.config_map.as_ref().unwrap();
        assert_eq!(
            (source.name.as_str(), source.optional),
            ("movies-search-3-record", Some(false))
        );
        let mount = container(&job)
            .volume_mounts
            .as_ref()
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (RECORD_MOUNT, Some(true))
        );
    }
}
