//! One trainer run end to end: load, cross-validate, fit on everything, write the artifact to
//! the model store, and describe the result as the operator's [`TrainingReport`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use recommender_contract::report::{Outcome, TrainingReport};
use recommender_contract::tuning::SearchRecord;
use recommender_model::Hyperparameters;
use recommender_model::artifact::{
    Artifact, ArtifactMeta, CvMetrics, FORMAT_VERSION, TrainingData,
};

use crate::challenge::{self, ChallengeOptions};
use crate::cv::{self, CvOptions, CvResult, Progress};
use crate::data::Ratings;
use crate::error::{Error, Result};
use crate::history::{self, ArtifactFile, Verdict};
use crate::loaders::{self, FileOptions};
use crate::model_store::ModelStore;
use crate::pg::{self, PgOptions};
use crate::train;

/// Where the ratings come from.
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf, FileOptions),
    /// An object of the model store (`--source store:KEY`), read whole into memory, so at most
    /// `limit` bytes (compressed, for a gzip file).
    Stored {
        store: Arc<ModelStore>,
        key: String,
        limit: u64,
        opts: FileOptions,
    },
    Postgres(PgOptions),
}

impl Source {
    pub fn load(&self) -> Result<Ratings> {
        match self {
            Source::File(path, opts) => loaders::load_file(path, opts),
            Source::Stored {
                store,
                key,
                limit,
                opts,
            } => {
                let bytes = store.get(key, *limit)?;
                loaders::load_bytes(&bytes, &store.location(key), opts)
            }
            Source::Postgres(opts) => pg::load_postgres(opts),
        }
    }
}

/// Where a training run puts what it made: the artifact under `artifact` and the run record
/// under `runs/<version>.json`, both in `store`.
#[derive(Clone, Debug)]
pub struct Output {
    pub store: Arc<ModelStore>,
    /// The artifact's key, `<version>.model`.
    pub artifact: String,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub source: Source,
    pub hyperparameters: Hyperparameters,
    pub cv: CvOptions,
    /// Where the artifact and the run record go; `None` evaluates only.
    pub output: Option<Output>,
    /// Version label recorded in the artifact and the report.
    pub version: String,
    /// The operator's verdicts on earlier runs, for their records in the run history.
    pub verdicts: Vec<(String, Verdict)>,
    /// The tuning search whose best point this run trains, kept beside its record.
    pub search: Option<SearchRecord>,
    /// Compare with the serving model on the ratings after its snapshot; the source must then
    /// keep timestamps ([`crate::data::Selection::timestamps`]).
    pub challenge: Option<ChallengeOptions>,
}

/// The report (always) and the CV details (when CV ran).
pub struct RunOutput {
    pub report: TrainingReport,
    pub cv: Option<CvResult>,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Runs the whole pipeline; failures are folded into a `Failed` report rather than returned.
/// A run that writes an artifact also leaves its record in the run history beside it, whether
/// it succeeded or failed.
pub fn run(cfg: &RunConfig, progress: &(dyn Fn(Progress) + Sync)) -> RunOutput {
    let started = Instant::now();
    let started_at = now();
    let mut report = TrainingReport::failed(
        cfg.version.clone(),
        cfg.hyperparameters.algorithm().to_owned(),
    );
    let mut cv_out = None;
    let result = stages(cfg, progress, &mut report, &mut cv_out);
    report.durations.total_seconds = started.elapsed().as_secs_f64();
    report.finished_at = now();
    match result {
        Ok(()) => report.outcome = Outcome::Succeeded,
        Err(e) => {
            tracing::error!(error = %e, "training run failed");
            report.error = Some(e.to_run_error());
        }
    }
    if let Some(output) = &cfg.output {
        keep_history(cfg, &output.store, &report, cv_out.as_ref(), started_at);
    }
    RunOutput { report, cv: cv_out }
}

/// Records this run in the run history. The history is a record, not the run's purpose: a store
/// that refuses it is logged, and the run stands.
fn keep_history(
    cfg: &RunConfig,
    store: &ModelStore,
    report: &TrainingReport,
    cv: Option<&CvResult>,
    started_at: String,
) {
    let record = history::RunRecord {
        version: report.version.clone(),
        algorithm: report.algorithm.clone(),
        hyperparameters: cfg.hyperparameters.clone(),
        fit_threads: report.fit_threads,
        started_at,
        finished_at: report.finished_at.clone(),
        outcome: report.outcome,
        error: report.error.clone(),
        data: report.data.clone(),
        metrics: report.metrics.clone(),
        spread: Default::default(),
        folds: Vec::new(),
        durations: report.durations.clone(),
        artifact: report.artifact.as_ref().map(|path| ArtifactFile {
            path: path.clone(),
            bytes: report.artifact_bytes.unwrap_or_default(),
            sha256: report.artifact_sha256.clone().unwrap_or_default(),
        }),
        verdict: None,
        search: None,
    };
    let record = match cv {
        Some(cv) => record.with_cv(cv),
        None => record,
    };
    // The search first: a record that names a run is there when its search is.
    if let Some(search) = &cfg.search
        && let Err(e) = history::write_search(store, &record.version, search)
    {
        tracing::warn!(error = %e, "cannot keep the search record");
    }
    if let Err(e) = history::write(store, &record) {
        tracing::warn!(error = %e, "cannot keep the run record");
    }
}

fn stages(
    cfg: &RunConfig,
    progress: &(dyn Fn(Progress) + Sync),
    report: &mut TrainingReport,
    cv_out: &mut Option<CvResult>,
) -> Result<()> {
    train::validate(&cfg.hyperparameters)?;
    if let Some(output) = &cfg.output {
        // Before any work: a store that does not answer, or refuses the key pair or writes,
        // fails the run in seconds rather than after the training.
        let added = history::record_verdicts(&output.store, &cfg.verdicts)?;
        output.store.ensure_absent(&output.artifact)?;
        tracing::info!(verdicts = added, "model store answers");
    }
    let t = Instant::now();
    let data = cfg.source.load()?;
    report.durations.load_seconds = t.elapsed().as_secs_f64();
    report.data = Some(data.fingerprint.clone());

    if let Some(opts) = &cfg.challenge {
        let t = Instant::now();
        let result = challenge::challenge(opts, &data, &cfg.hyperparameters);
        tracing::info!(
            seconds = t.elapsed().as_secs_f64(),
            champion = result.champion,
            paired = ?result.paired,
            fallback = ?result.fallback,
            "champion/challenger comparison finished"
        );
        report.challenge = Some(result);
    }

    if let Hyperparameters::Svd(_) = cfg.hyperparameters {
        // Above 1 the fits are another order of the same updates: the report says which.
        report.fit_threads = Some(cfg.cv.fit_threads as u32);
    }
    let t = Instant::now();
    let cv = cv::cross_validate(&data, &cfg.hyperparameters, &cfg.cv, progress)?;
    report.durations.cv_seconds = t.elapsed().as_secs_f64();
    let metrics = cv.metrics();
    report.metrics = Some(metrics.clone());
    tracing::info!(
        rmse = metrics.rmse,
        rmse_std = metrics.rmse_std,
        mae = metrics.mae,
        mae_std = metrics.mae_std,
        "cross-validation finished"
    );
    *cv_out = Some(cv);

    let Some(output) = &cfg.output else {
        return Ok(());
    };
    let t = Instant::now();
    let model = train::fit_model(
        &data,
        &cfg.hyperparameters,
        cfg.cv.fit_threads,
        &mut |epoch| progress(Progress::FinalEpoch { epoch }),
    )?;
    report.durations.fit_seconds = t.elapsed().as_secs_f64();
    drop(data);
    let artifact = Artifact {
        meta: ArtifactMeta {
            format_version: FORMAT_VERSION,
            version: cfg.version.clone(),
            created_at: now(),
            algorithm: cfg.hyperparameters.algorithm().to_owned(),
            hyperparameters: cfg.hyperparameters.clone(),
            data: report
                .data
                .as_ref()
                .map(TrainingData::from)
                .ok_or_else(|| Error::InvalidData("no data".into()))?,
            metrics: CvMetrics::from(&metrics),
            trainer_version: env!("CARGO_PKG_VERSION").to_owned(),
            fit_threads: report.fit_threads,
        },
        model,
    };
    let written = output.store.write_artifact(&output.artifact, &artifact)?;
    let location = output.store.location(&written.key);
    tracing::info!(artifact = %location, bytes = written.size, sha256 = %written.sha256, "artifact written");
    report.artifact = Some(location);
    report.artifact_bytes = Some(written.size);
    report.artifact_sha256 = Some(written.sha256.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svd::SvdParams;
    use recommender_model::artifact::Artifact;
    use recommender_store::StoreConfig;

    fn output(root: &std::path::Path, version: &str) -> Option<Output> {
        Some(Output {
            store: ModelStore::create(StoreConfig::Local {
                root: root.to_path_buf(),
            })
            .unwrap(),
            artifact: format!("{version}.model"),
        })
    }

    /// Writes a small ml-100k style file; returns its path and newest timestamp.
    fn write_data(dir: &std::path::Path) -> (PathBuf, i64) {
        let mut text = String::new();
        let mut newest = 0;
        for u in 0..40 {
            for i in 0..25 {
                if (u * 5 + i * 3) % 3 != 0 {
                    newest = 1000 + u * 25 + i;
                    text += &format!("{u}\t{i}\t{}\t{newest}\n", 1 + (u + i) % 5);
                }
            }
        }
        let p = dir.join("u.data");
        std::fs::write(&p, text).unwrap();
        (p, newest)
    }

    /// Run v1: SVD with `params` on the file `data`, the artifact to `out`.
    fn svd_run(data: PathBuf, folder: &std::path::Path, params: SvdParams) -> RunConfig {
        RunConfig {
            source: Source::File(data, FileOptions::default()),
            hyperparameters: Hyperparameters::Svd(params),
            cv: CvOptions::default(),
            output: output(folder, "v1"),
            version: "v1".into(),
            verdicts: Vec::new(),
            search: None,
            challenge: None,
        }
    }

    #[test]
    fn successful_run_writes_a_loadable_artifact_and_fitting_report() {
        let dir = tempfile::tempdir().unwrap();
        // The model's first version: nothing has created its folder yet.
        let folder = dir.path().join("movies");
        let out = folder.join("v1.model");
        let (data, newest) = write_data(dir.path());
        let cfg = svd_run(
            data,
            &folder,
            SvdParams {
                n_factors: 5,
                n_epochs: 5,
                ..Default::default()
            },
        );
        let r = run(&cfg, &|_| {});
        assert_eq!(r.report.outcome, Outcome::Succeeded, "{:?}", r.report.error);
        let json = r.report.to_json().unwrap();
        assert!(json.len() <= recommender_contract::report::MAX_REPORT_BYTES);
        let bytes = std::fs::read(&out).unwrap();
        let a = Artifact::from_bytes(&bytes, &out).unwrap();
        assert_eq!(a.meta.version, "v1");
        assert_eq!(
            a.meta.metrics,
            CvMetrics::from(r.report.metrics.as_ref().unwrap())
        );
        assert_eq!(
            a.meta.data,
            TrainingData::from(r.report.data.as_ref().unwrap())
        );
        assert_eq!(a.meta.data.max_timestamp, Some(newest));
        assert!(a.model.predict("1", "4").user_known);
        assert!(!a.model.predict("3", "4").user_known);
        assert_eq!(r.report.artifact.as_deref(), Some(out.to_str().unwrap()));
        assert_eq!(r.report.artifact_bytes, Some(bytes.len() as u64));
        assert_eq!(
            r.report.artifact_sha256,
            Some(recommender_store::Sha256::of(&bytes).to_string())
        );

        // The run left its record beside the artifact, with every fold.
        let store = &cfg.output.as_ref().unwrap().store;
        let records = history::read(store).unwrap();
        assert_eq!(records.len(), 1);
        let rec = &records[0];
        assert_eq!(
            (rec.version.as_str(), rec.outcome),
            ("v1", Outcome::Succeeded)
        );
        assert_eq!(rec.folds.len(), 4);
        assert_eq!((r.report.fit_threads, rec.fit_threads), (Some(1), Some(1)));
        assert_eq!(
            rec.spread["rmse"].mean,
            r.report.metrics.as_ref().unwrap().rmse
        );
        assert_eq!(
            rec.artifact.as_ref().unwrap().sha256,
            *r.report.artifact_sha256.as_ref().unwrap()
        );

        // The version is written once: a second run under the same label fails before it
        // trains, and the first artifact and record are what they were.
        let again = run(&cfg, &|_| {});
        assert_eq!(
            again.report.error.as_ref().unwrap().reason,
            "StoreAlreadyExists"
        );
        assert_eq!(
            again.report.data, None,
            "refused before loading the ratings"
        );
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
        assert_eq!(history::read(store).unwrap(), records);

        // The next run records the operator's verdict on this one, and its own failure.
        let next = RunConfig {
            source: Source::File(dir.path().join("gone.data"), FileOptions::default()),
            output: output(&folder, "v2"),
            version: "v2".into(),
            verdicts: history::parse_verdicts("v1=Succeeded:Promoted").unwrap(),
            search: Some(history::tests::search()),
            ..cfg
        };
        assert_eq!(run(&next, &|_| {}).report.outcome, Outcome::Failed);
        let records = history::read(store).unwrap();
        // A run keeps its search whatever its outcome.
        assert_eq!(records[0].search, None);
        assert_eq!(records[1].search, next.search);
        assert_eq!(records[0].verdict.as_ref().unwrap().reason, "Promoted");
        assert_eq!(
            (records[1].version.as_str(), records[1].outcome),
            ("v2", Outcome::Failed)
        );
        assert_eq!(records[1].error.as_ref().unwrap().reason, "IoError");
    }

    #[test]
    fn a_diverged_run_fails_with_its_reason_and_writes_no_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("v1.model");
        let (data, _) = write_data(dir.path());
        let cfg = svd_run(
            data,
            dir.path(),
            SvdParams {
                n_factors: 5,
                n_epochs: 100,
                lr_bu: 1.0,
                lr_bi: 1.0,
                lr_pu: 1.0,
                lr_qi: 1.0,
                ..Default::default()
            },
        );
        let r = run(&cfg, &|_| {});
        assert_eq!(r.report.outcome, Outcome::Failed);
        let err = r.report.error.as_ref().unwrap();
        assert_eq!(err.reason, "Diverged");
        assert!(err.message.contains("diverged at epoch"), "{}", err.message);
        // The report is JSON the operator can read (no NaN turned into null).
        let json = r.report.to_json().unwrap();
        let back = TrainingReport::parse(&json).unwrap();
        assert_eq!(back.error.unwrap().reason, "Diverged");
        assert!(!out.exists(), "no artifact");
        assert!(r.report.artifact.is_none());
    }

    #[test]
    fn failed_run_reports_why() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RunConfig {
            source: Source::File(dir.path().join("missing.csv"), FileOptions::default()),
            hyperparameters: Hyperparameters::Svd(SvdParams::default()),
            cv: CvOptions::default(),
            output: None,
            version: "v2".into(),
            verdicts: Vec::new(),
            search: None,
            challenge: None,
        };
        let r = run(&cfg, &|_| {});
        assert_eq!(r.report.outcome, Outcome::Failed);
        let err = r.report.error.unwrap();
        assert_eq!(err.reason, "IoError");
        assert!(err.message.contains("missing.csv"));
    }
}
