//! The trainer Job of one training run: `recommender-trainer train` with every hyperparameter
//! explicit (the spec's, or a tuning search's best point), its annotations (trigger, start, spec
//! hash, search) for adopting it after a restart, and the champion/challenger arguments under
//! `mustBeatServing`.

use super::job::{Args, BatchJob, source_args};
use super::pod::resources;
use super::store::{digest_args, store_args};
use super::{Defaults, TERMINATION_LOG, job_name};
use super::{training_spec_hash, version_label};
use crate::crd::{RecommenderModel, RunRecord, RunTrigger};
use crate::labels;
use crate::validate::{Config, Hyperparameters, SourceConfig, Training};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use kube::ResourceExt;
use recommender_contract::tuning::Params;
use std::collections::BTreeMap;

/// Finished Jobs (and their pods' termination messages) are kept this long for inspection.
const FINISHED_JOB_TTL_SECONDS: i32 = 24 * 3600;

/// A training run to start.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub run: u32,
    pub trigger: RunTrigger,
    pub started_at: Timestamp,
    /// The recorded runs so far, whose verdicts the trainer adds to the run history.
    pub earlier: &'a [RunRecord],
    /// The tuning search whose best point the run trains instead of the spec's hyperparameters.
    pub searched: Option<Searched<'a>>,
}

/// The best point of a tuning search, for the run that trains it (and keeps the search's
/// record, mounted from `record_config_map`, in the run history).
#[derive(Debug, Clone, Copy)]
pub struct Searched<'a> {
    pub search: u32,
    pub params: &'a Params,
    /// The search's seed: with the same folds the run measures exactly what the trial did, which
    /// the next search (started from this point) compares with.
    pub seed: u64,
}

/// The `recommender-trainer train` arguments for one run (docs/contracts.md, "Trainer CLI"):
/// every hyperparameter explicit, resolved by `validate` from the one defaults table.
pub fn trainer_args(model: &RecommenderModel, config: &Config, new: &NewRun) -> Vec<String> {
    let version = version_label(new.run);
    let mut args = Args(vec!["train".into()]);
    source_args(model, &config.source, &mut args);
    store_args(model, &mut args);
    args.push("--version", version);
    args.push("--report", TERMINATION_LOG);
    match new.searched {
        Some(searched) => searched_args(&config.training, &searched, &mut args),
        None => training_args(&config.training, &mut args),
    }
    if let SourceConfig::File(f) = &config.source
        && f.skip_bad_lines
    {
        args.0.push("--skip-bad-lines".into());
    }
    let verdicts: Vec<String> = new
        .earlier
        .iter()
        .map(|r| format!("{}={}:{}", r.version, r.outcome.as_str(), r.reason))
        .collect();
    if !verdicts.is_empty() {
        args.push("--verdicts", verdicts.join(","));
    }
    args.0
}

fn training_args(training: &Training, args: &mut Args) {
    args.push("--algorithm", training.hyperparameters.algorithm().as_arg());
    args.push("--folds", training.folds);
    args.push("--fit-threads", training.fit_threads);
    if let Some(seed) = training.seed {
        args.push("--seed", seed);
    }
    match training.hyperparameters {
        Hyperparameters::Svd(h) => {
            args.push("--factors", h.factors);
            args.push("--epochs", h.epochs);
            args.push("--lr-all", h.lr_all);
            args.push("--reg-all", h.reg_all);
            args.push("--init-mean", h.init_mean);
            args.push("--init-std", h.init_std);
            args.push("--biased", h.biased);
        }
        Hyperparameters::Baseline(h) => {
            args.push("--epochs", h.epochs);
            args.push("--reg-u", h.reg_u);
            args.push("--reg-i", h.reg_i);
        }
    }
    if let Some(scale) = training.rating_scale {
        args.push("--rating-scale", format!("{},{}", scale.low, scale.high));
    }
}

/// The hyperparameters of a search's best point, as the trial ran them (`Params::train_args`).
fn searched_args(training: &Training, searched: &Searched, args: &mut Args) {
    args.0.extend(searched.params.train_args());
    args.push("--folds", training.folds);
    args.push("--fit-threads", training.fit_threads);
    args.push("--seed", searched.seed);
    if let Some(scale) = training.rating_scale {
        args.push("--rating-scale", format!("{},{}", scale.low, scale.high));
    }
}

/// Adds the champion/challenger arguments to a trainer Job: compare with `champion` (the
/// serving model, whose artifact is on the store, verified against the `sha256` recorded for it)
/// on the ratings after `since`.
pub fn challenge_serving(
    job: &mut Job,
    champion: &str,
    sha256: Option<&str>,
    since: i64,
    challenge: &crate::crd::Challenge,
) {
    let Some(container) = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
    else {
        return;
    };
    let mut args = Args(container.args.take().unwrap_or_default());
    args.push("--challenge", champion);
    digest_args("--challenge-sha256", sha256, &mut args);
    args.push("--challenge-since", since);
    args.push("--holdout", challenge.holdout);
    args.push("--min-compared", challenge.min_ratings);
    args.push("--confidence", challenge.confidence);
    container.args = Some(args.0);
}

/// The trainer Job for `run`, named deterministically so a restarted operator adopts it.
pub fn trainer_job(
    model: &RecommenderModel,
    config: &Config,
    new: &NewRun,
    defaults: &Defaults,
) -> Job {
    let trainer = &model.spec.trainer;
    let mut job = BatchJob {
        name: job_name(&model.name_any(), new.run),
        component: labels::COMPONENT_TRAINER,
        labels: vec![
            (labels::RUN, new.run.to_string()),
            (labels::VERSION, version_label(new.run)),
        ],
        annotations: BTreeMap::from([
            (labels::ANNOTATION_TRIGGER.into(), new.trigger.to_string()),
            (
                labels::ANNOTATION_STARTED_AT.into(),
                crate::time::whole(new.started_at).to_string(),
            ),
            (
                labels::ANNOTATION_SPEC_HASH.into(),
                training_spec_hash(&model.spec),
            ),
        ])
        .into_iter()
        .chain(
            new.searched
                .map(|s| (labels::ANNOTATION_SEARCH.into(), s.search.to_string())),
        )
        .collect(),
        container: "trainer",
        args: trainer_args(model, config, new),
        resources: resources(trainer.resources.as_ref(), "500m", "512Mi", "2Gi"),
        source: Some(config),
        writes_store: true,
        reports: true,
        spec: JobSpec {
            backoff_limit: Some(trainer.retries),
            active_deadline_seconds: Some(trainer.active_deadline_seconds),
            ttl_seconds_after_finished: Some(FINISHED_JOB_TTL_SECONDS),
            pod_failure_policy: Some(fail_job_on_trainer_verdict()),
            ..JobSpec::default()
        },
    }
    .build(model, defaults);
    if let Some(searched) = new.searched {
        super::mount_search_record(&mut job, &model.name_any(), searched.search);
    }
    job
}

/// Exit codes 1 and 2 are runs the trainer judged failed (bad data, unreachable source, usage):
/// retrying the same pod would only repeat them; the operator's backoff decides instead.
/// A pod the cluster disrupted (a lost node's taint, a drain, preemption) fails the Job too: the
/// operator records a lost pod's run as over at once (`NodeLost`) and starts the next run, so a
/// retry inside the old Job (`retries` > 0) when the node returns would train a version nobody
/// waits for.
fn fail_job_on_trainer_verdict() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some("trainer".into()),
                    operator: "In".into(),
                    values: vec![1, 2],
                }),
                ..PodFailurePolicyRule::default()
            },
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
                ..PodFailurePolicyRule::default()
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{args, assert_locked_down, container, pod};
    use crate::crd::{FileFormat, FileSource, ModelStore, PostgresSource, SecretKeyRef, Source};
    use crate::decide::fixtures::{NOW, at, config, defaults, file_spec, model};
    use recommender_contract::defaults::{BASELINE, FOLDS, SVD};

    fn first(run: u32) -> NewRun<'static> {
        NewRun {
            run,
            trigger: RunTrigger::NoModel,
            started_at: at(NOW),
            earlier: &[],
            searched: None,
        }
    }

    #[test]
    fn trainer_job_runs_the_contracted_cli_safely() {
        let mut spec = file_spec();
        spec.source.file = Some(FileSource {
            path: "movies/ratings.csv".into(),
            format: FileFormat::Delimited,
            delimiter: Some(",".into()),
            header: Some(true),
            columns: Some("userId,movieId,rating,timestamp".into()),
            skip_bad_lines: true,
        });
        spec.seed = Some(7);
        spec.model_store = ModelStore {
            claim_name: Some("store".into()),
            s3: None,
            keep: 3,
        };
        let m = model(spec, None);
        let job = trainer_job(&m, &config(&m), &first(3), &defaults());
        assert_eq!(job.metadata.name.as_deref(), Some("movies-train-3"));
        let annotations = job.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[labels::ANNOTATION_STARTED_AT], NOW);
        assert_eq!(annotations[labels::ANNOTATION_TRIGGER], "NoModel");
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("RecommenderModel", "uid-1", Some(true))
        );
        let (pod, c) = (pod(&job), container(&job));
        assert_eq!(
            args(&job),
            "train --source /models/movies/ratings.csv --format delimited --delimiter , --header true \
             --columns userId,movieId,rating,timestamp --store /models/movies --version v3 \
             --report /dev/termination-log --algorithm svd --folds 4 --fit-threads 1 --seed 7 --factors 100 --epochs 20 \
             --lr-all 0.005 --reg-all 0.02 --init-mean 0 --init-std 0.1 --biased true --skip-bad-lines"
        );
        assert_eq!(
            c.image.as_deref(),
            Some("registry.local/recommender-trainer:test")
        );
        assert_locked_down(c, false);
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.fs_group, Some(65532));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(
            pod.volumes.as_ref().unwrap()[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "store"
        );
        assert!(c.resources.as_ref().unwrap().requests.is_some());
    }

    /// With retries, a crash is retried inside the run, but neither the trainer's own verdict
    /// nor a pod the cluster disrupted is: the operator has already moved on from those runs.
    #[test]
    fn only_crashes_are_retried_inside_a_run() {
        let mut spec = file_spec();
        spec.trainer.retries = 2;
        let m = model(spec, None);
        let job = trainer_job(&m, &config(&m), &first(1), &defaults());
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        let rules = spec.pod_failure_policy.unwrap().rules;
        let summary: Vec<String> = rules
            .iter()
            .map(|r| match (&r.on_exit_codes, &r.on_pod_conditions) {
                (Some(codes), None) => format!("{} exit {:?}", r.action, codes.values),
                (None, Some(conditions)) => format!(
                    "{} {}={}",
                    r.action, conditions[0].type_, conditions[0].status
                ),
                _ => format!("{} ?", r.action),
            })
            .collect();
        assert_eq!(
            summary,
            ["FailJob exit [1, 2]", "FailJob DisruptionTarget=True"]
        );
    }

    /// The defaults a minimal manifest trains with are the table's, which the trainer CLI reads
    /// too (`trainer/tests` checks its side).
    #[test]
    fn minimal_manifests_pass_the_defaults_table() {
        let flag = |args: &[String], name: &str| -> Option<String> {
            let at = args.iter().position(|a| a == name)?;
            args.get(at + 1).cloned()
        };
        let m = model(file_spec(), None);
        let args = trainer_args(&m, &config(&m), &first(1));
        for (name, want) in [
            ("--folds", FOLDS.to_string()),
            ("--factors", SVD.factors.to_string()),
            ("--epochs", SVD.epochs.to_string()),
            ("--lr-all", SVD.lr_all.to_string()),
            ("--reg-all", SVD.reg_all.to_string()),
            ("--init-mean", SVD.init_mean.to_string()),
            ("--init-std", SVD.init_std.to_string()),
            ("--biased", SVD.biased.to_string()),
        ] {
            assert_eq!(flag(&args, name), Some(want), "svd {name}");
        }
        let mut baseline = file_spec();
        baseline.algorithm = crate::crd::Algorithm::Baseline;
        let m = model(baseline, None);
        let args = trainer_args(&m, &config(&m), &first(1));
        for (name, want) in [
            ("--algorithm", "baseline".to_string()),
            ("--epochs", BASELINE.epochs.to_string()),
            ("--reg-u", BASELINE.reg_u.to_string()),
            ("--reg-i", BASELINE.reg_i.to_string()),
        ] {
            assert_eq!(flag(&args, name), Some(want), "baseline {name}");
        }
        assert_eq!(
            flag(&args, "--factors"),
            None,
            "svd-only flags are not passed"
        );
    }

    #[test]
    fn a_verify_full_job_mounts_the_ca_and_says_so() {
        let mut spec: crate::crd::RecommenderModelSpec = serde_yaml::from_str(
            "source: {postgres: {host: db.ml.svc, database: shop, user: reader, query: SELECT 1,
               passwordSecretRef: {name: shop-db}, sslMode: verify-full,
               caSecretRef: {name: shop-db-ca}}}\nmodelStore: {claimName: models}",
        )
        .unwrap();
        let m = model(spec.clone(), None);
        let job = trainer_job(&m, &config(&m), &first(1), &defaults());
        let line = args(&job);
        assert!(
            line.contains("--pg-sslmode verify-full --pg-ca-file /etc/recommender/pg-ca/ca.crt"),
            "{line}"
        );
        let secret = pod(&job).volumes.as_ref().unwrap()[1]
            .secret
            .as_ref()
            .unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("shop-db-ca"));
        assert_eq!(secret.items.as_ref().unwrap()[0].key, "ca.crt");
        let mounts = container(&job).volume_mounts.clone().unwrap();
        assert_eq!(
            (mounts[1].mount_path.as_str(), mounts[1].read_only),
            ("/etc/recommender/pg-ca", Some(true))
        );

        // require: encrypted, no CA, nothing mounted; disable (the default): no flag at all.
        let pg = spec.source.postgres.as_mut().unwrap();
        pg.ssl_mode = crate::crd::PgSslMode::Require;
        pg.ca_secret_ref = None;
        let m = model(spec.clone(), None);
        let job = trainer_job(&m, &config(&m), &first(1), &defaults());
        let line = args(&job);
        assert!(line.contains("--pg-sslmode require") && !line.contains("--pg-ca-file"));
        assert_eq!(container(&job).volume_mounts.as_ref().unwrap().len(), 1);
        spec.source.postgres.as_mut().unwrap().ssl_mode = crate::crd::PgSslMode::Disable;
        let m = model(spec, None);
        let job = trainer_job(&m, &config(&m), &first(1), &defaults());
        assert!(!args(&job).contains("--pg-sslmode"));
    }

    #[test]
    fn earlier_verdicts_go_to_the_run_history() {
        let m = model(file_spec(), None);
        let earlier: Vec<RunRecord> = serde_json::from_value(serde_json::json!([
            {"run": 1, "version": "v1", "trigger": "NoModel", "startedAt": NOW, "finishedAt": NOW,
             "outcome": "Succeeded", "reason": "Promoted", "message": ""},
            {"run": 2, "version": "v2", "trigger": "Requested", "startedAt": NOW, "finishedAt": NOW,
             "outcome": "Rejected", "reason": "GateFailed", "message": "rmse over"},
        ]))
        .unwrap();
        let new = NewRun {
            earlier: &earlier,
            ..first(3)
        };
        let args = trainer_args(&m, &config(&m), &new);
        let at = args
            .iter()
            .position(|a| a == "--verdicts")
            .expect("--verdicts");
        assert_eq!(args[at + 1], "v1=Succeeded:Promoted,v2=Rejected:GateFailed");
        assert!(!trainer_args(&m, &config(&m), &first(1)).contains(&"--verdicts".to_string()));
    }

    #[test]
    fn postgres_job_gets_password_from_the_secret() {
        let mut spec = file_spec();
        spec.source = Source {
            postgres: Some(PostgresSource {
                host: "db.ml.svc".into(),
                port: 5433,
                database: "shop".into(),
                user: "reader".into(),
                password_secret_ref: SecretKeyRef {
                    name: "shop-db".into(),
                    key: "pw".into(),
                },
                query: "SELECT user_id, item_id, rating FROM ratings".into(),
                probe_interval_seconds: 15,
                ssl_mode: Default::default(),
                ca_secret_ref: None,
            }),
            file: None,
        };
        let m = model(spec, None);
        let job = trainer_job(&m, &config(&m), &first(1), &defaults());
        let c = container(&job);
        let line = args(&job);
        assert!(
            line.starts_with(
                "train --source postgres --pg-host db.ml.svc --pg-port 5433 --pg-database shop \
                 --pg-user reader --pg-query SELECT user_id, item_id, rating FROM ratings --store"
            ),
            "{line}"
        );
        let env = &c.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "PGPASSWORD");
        let secret = env
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("shop-db", "pw")
        );
    }
}
