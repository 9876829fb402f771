//! The run history on the model store: one JSON record per training run under
//! `runs/<version>.json` in the model's folder, what the old app kept in its ModelMetrics table
//! (hyperparameters, metrics mean ± std per fold, durations, outcome) and more. The trainer
//! writes its run's record at the end of the run; the operator's verdict on a candidate
//! (promoted or rejected) is written by the next run, which the operator tells (`--verdicts`),
//! as `runs/<version>.verdict.json`. A run that trained a tuning search's best point also keeps
//! the whole search (the contract's `SearchRecord`, every trial) as `searches/<version>.json`,
//! given by the operator (`--search-record`). All are written once (crate::model_store); `prune`
//! deletes them with the run's artifact.

use std::collections::{BTreeMap, BTreeSet};

use recommender_contract::metrics::{MeanStd, Metrics};
use recommender_contract::report::{DataFingerprint, Durations, Outcome, RunError};
use recommender_contract::tuning::SearchRecord;
use recommender_model::Hyperparameters;
use serde::{Deserialize, Serialize};

use crate::cv::{CvResult, FoldResult};
use crate::error::{Error, Result};
use crate::model_store::{self, Kind, ModelStore, RUNS, SEARCHES};

/// A record or verdict larger than this is not one the trainer wrote.
pub const MAX_RECORD_BYTES: u64 = 4 << 20;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub version: String,
    pub algorithm: String,
    pub hyperparameters: Hyperparameters,
    /// `--fit-threads` of an SVD run (the report's `fitThreads`): above 1 another model than
    /// the serial fit's for the same seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_threads: Option<u32>,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataFingerprint>,
    /// Means (and the RMSE/MAE standard deviations) over the folds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Mean and population standard deviation of every per-fold measure, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spread: BTreeMap<String, MeanStd>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folds: Vec<FoldResult>,
    pub durations: Durations,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactFile>,
    /// The operator's decision on this run, once a later run has been told it: read from
    /// `runs/<version>.verdict.json` (records of earlier trainers hold it themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The tuning search whose best point this run trained: read from `searches/<version>.json`
    /// (never part of the record's own object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchRecord>,
}

/// The artifact as written: where (a path, or `s3://BUCKET/PREFIX/KEY`), and what `ls -l` and
/// `sha256sum` would say of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The operator's verdict on a run: `Succeeded` (promoted), `Rejected` or `Failed`, with its
/// reason (`Promoted`, `GateFailed`, `OOMKilled`, ...).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: String,
    pub reason: String,
}

/// Parses `--verdicts v3=Rejected:GateFailed,v4=Succeeded:Promoted`.
pub fn parse_verdicts(text: &str) -> Result<Vec<(String, Verdict)>> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let bad = || {
                Error::Config(format!(
                    "--verdicts: {part:?} is not VERSION=OUTCOME:REASON (e.g. v3=Rejected:GateFailed)"
                ))
            };
            let (version, verdict) = part.trim().split_once('=').ok_or_else(bad)?;
            let (outcome, reason) = verdict.split_once(':').ok_or_else(bad)?;
            if version.is_empty() || outcome.is_empty() || reason.is_empty() {
                return Err(bad());
            }
            Ok((
                version.to_string(),
                Verdict {
                    outcome: outcome.to_string(),
                    reason: reason.to_string(),
                },
            ))
        })
        .collect()
}

impl RunRecord {
    /// Fills the per-fold figures and their spread from the cross-validation.
    pub fn with_cv(mut self, cv: &CvResult) -> Self {
        self.spread = cv.spread().map(|(m, s)| (m.name.into(), s)).collect();
        self.folds = cv.folds.clone();
        self
    }
}

/// Writes `record` as `runs/<version>.json`, once: a run's record is never rewritten.
pub fn write(store: &ModelStore, record: &RunRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::Config(format!("cannot serialise the run record: {e}")))?;
    store.put_new(&model_store::record_key(&record.version), json)?;
    Ok(())
}

/// Writes the search of run `version` as `searches/<version>.json`, once.
pub fn write_search(store: &ModelStore, version: &str, search: &SearchRecord) -> Result<()> {
    let json = serde_json::to_vec(search)
        .map_err(|e| Error::Config(format!("cannot serialise the search record: {e}")))?;
    store.put_new(&model_store::search_key(version), json)?;
    Ok(())
}

/// Every record in the store with its verdict, oldest run first; an object under `runs/` that
/// should be a record or verdict and is not is an error naming it.
pub fn read(store: &ModelStore) -> Result<Vec<RunRecord>> {
    let mut records = Vec::new();
    let mut verdicts = BTreeMap::new();
    let mut searches = BTreeMap::new();
    let mut objects = store.list(RUNS)?;
    objects.extend(store.list(SEARCHES)?);
    for object in objects {
        let Some((kind, version)) = model_store::parse_key(&object.key) else {
            continue;
        };
        let bytes = store.get(&object.key, MAX_RECORD_BYTES)?;
        let not_one = |what: &str, e: serde_json::Error| {
            Error::InvalidData(format!(
                "{}: not a {what}: {e}",
                store.location(&object.key)
            ))
        };
        match kind {
            Kind::Record => records.push(
                serde_json::from_slice::<RunRecord>(&bytes)
                    .map_err(|e| not_one("run record", e))?,
            ),
            Kind::Verdict => {
                let verdict: Verdict =
                    serde_json::from_slice(&bytes).map_err(|e| not_one("verdict", e))?;
                verdicts.insert(version.to_string(), verdict);
            }
            Kind::Search => {
                let text = std::str::from_utf8(&bytes).map_err(|e| {
                    Error::InvalidData(format!(
                        "{}: not a search record: {e}",
                        store.location(&object.key)
                    ))
                })?;
                let search = SearchRecord::parse(text).map_err(|e| {
                    Error::InvalidData(format!(
                        "{}: not a search record: {e}",
                        store.location(&object.key)
                    ))
                })?;
                searches.insert(version.to_string(), search);
            }
            Kind::Artifact => {}
        }
    }
    for record in &mut records {
        if record.verdict.is_none() {
            record.verdict = verdicts.remove(&record.version);
        }
        record.search = searches.remove(&record.version);
    }
    records.sort_by_key(|r| version_number(&r.version));
    Ok(records)
}

fn version_number(version: &str) -> (u64, String) {
    let n = version.trim_start_matches('v').parse().unwrap_or(u64::MAX);
    (n, version.to_string())
}

/// Writes the verdicts of runs that left a record and have no verdict yet; returns how many it
/// wrote. It lists `runs/` first, so it is also the run's first word with the store: a store
/// that does not answer, or refuses the key pair or a write, fails here, before any training.
pub fn record_verdicts(store: &ModelStore, verdicts: &[(String, Verdict)]) -> Result<usize> {
    let mut recorded = BTreeSet::new();
    let mut judged = BTreeSet::new();
    for object in store.list(RUNS)? {
        match model_store::parse_key(&object.key) {
            Some((Kind::Record, version)) => recorded.insert(version.to_string()),
            Some((Kind::Verdict, version)) => judged.insert(version.to_string()),
            _ => false,
        };
    }
    let mut added = 0;
    for (version, verdict) in verdicts {
        // A run that left no record (its pod never started, say) gets no verdict either.
        if !recorded.contains(version) || judged.contains(version) {
            continue;
        }
        let json = serde_json::to_vec(verdict)
            .map_err(|e| Error::Config(format!("cannot serialise a verdict: {e}")))?;
        match store.put_new(&model_store::verdict_key(version), json) {
            Ok(_) => added += 1,
            // Another run wrote it meanwhile: verdicts are not rewritten.
            Err(e) if e.reason() == recommender_store::Reason::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(added)
}

/// The records as a table, one run a line.
pub fn table(records: &[RunRecord]) -> String {
    let mut out = format!(
        "{:<8} {:<20} {:<9} {:>7} {:>6} {:>16} {:>16} {:>8} {:>8}  {:<10} {:<24} {}\n",
        "VERSION",
        "FINISHED",
        "ALGORITHM",
        "FACTORS",
        "EPOCHS",
        "RMSE",
        "MAE",
        "ACCURACY",
        "SECONDS",
        "OUTCOME",
        "VERDICT",
        "SEARCH"
    );
    for r in records {
        let (factors, epochs) = match &r.hyperparameters {
            Hyperparameters::Svd(p) => (p.n_factors.to_string(), p.n_epochs),
            Hyperparameters::Baseline(p) => ("-".to_string(), p.n_epochs),
        };
        let pm = |name: &str| r.spread.get(name).map_or("-".into(), |m| format!("{m:.4}"));
        let accuracy = r
            .metrics
            .as_ref()
            .map_or("-".into(), |m| format!("{:.4}", m.accuracy));
        let verdict = r
            .verdict
            .as_ref()
            .map_or("-".into(), |v| format!("{} ({})", v.outcome, v.reason));
        let search = r.search.as_ref().map_or("-".into(), search_summary);
        out += &format!(
            "{:<8} {:<20} {:<9} {:>7} {:>6} {:>16} {:>16} {:>8} {:>8.1}  {:<10} {:<24} {}\n",
            r.version,
            r.finished_at.get(..19).unwrap_or(&r.finished_at),
            r.algorithm,
            factors,
            epochs,
            pm("rmse"),
            pm("mae"),
            accuracy,
            r.durations.total_seconds,
            format!("{:?}", r.outcome),
            verdict,
            search
        );
    }
    out
}

/// A search in one cell: its trials, how many failed, the best's score (`12 trials, 4 failed,
/// best cvRmse 0.9211 (trial 7)`).
fn search_summary(search: &SearchRecord) -> String {
    let trials = search.trials.len() + search.omitted as usize;
    let best = search.best.as_ref().and_then(|b| {
        let value = b.value(search.spec.metric)?;
        Some(format!(
            "best {} {value:.4} (trial {})",
            search.spec.metric.as_str(),
            b.index
        ))
    });
    format!(
        "{trials} trials, {} failed, {}",
        search.failed(),
        best.unwrap_or_else(|| "none scored".into())
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::svd::SvdParams;

    fn record(version: &str) -> RunRecord {
        RunRecord {
            version: version.into(),
            algorithm: "svd".into(),
            hyperparameters: Hyperparameters::Svd(SvdParams::default()),
            fit_threads: Some(2),
            started_at: "2026-12-01T10:00:00Z".into(),
            finished_at: "2026-12-01T10:00:05Z".into(),
            outcome: Outcome::Succeeded,
            error: None,
            data: None,
            metrics: None,
            spread: BTreeMap::new(),
            folds: Vec::new(),
            durations: Durations::default(),
            artifact: None,
            verdict: None,
            search: None,
        }
    }

    fn store() -> (tempfile::TempDir, std::sync::Arc<ModelStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(recommender_store::StoreConfig::Local {
            root: dir.path().to_path_buf(),
        })
        .unwrap();
        (dir, store)
    }

    #[test]
    fn records_round_trip_in_run_order_and_take_verdicts_once() {
        let (dir, store) = store();
        for v in ["v10", "v2", "v1"] {
            write(&store, &record(v)).unwrap();
        }
        let again = write(&store, &record("v2")).unwrap_err();
        assert_eq!(again.reason(), "StoreAlreadyExists", "{again}");
        let verdicts =
            parse_verdicts("v2=Rejected:GateFailed,v10=Succeeded:Promoted,v9=Failed:OOMKilled")
                .unwrap();
        assert_eq!(
            record_verdicts(&store, &verdicts).unwrap(),
            2,
            "v9 left no record"
        );
        assert!(!dir.path().join("runs/v9.verdict.json").exists());
        let again = parse_verdicts("v2=Succeeded:Promoted").unwrap();
        assert_eq!(
            record_verdicts(&store, &again).unwrap(),
            0,
            "a verdict is not rewritten"
        );
        let records = read(&store).unwrap();
        let versions: Vec<_> = records.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v2", "v10"]);
        assert_eq!(records[1].verdict.as_ref().unwrap().reason, "GateFailed");
        assert_eq!(records[0].verdict, None);
        let table = table(&records);
        assert!(table.contains("Rejected (GateFailed)"), "{table}");
    }

    /// A search of 3 trials, one failed.
    pub(crate) fn search() -> SearchRecord {
        use recommender_contract::tuning::{
            Score, SearchEnd, SearchSpace, Strategy, TrialResult, TuningSpec, Values, plan,
        };
        let spec = TuningSpec {
            strategy: Strategy::Grid,
            trials: 3,
            ..TuningSpec::new(SearchSpace {
                lr_all: Some(Values::list(&[0.005, 0.01, 5.0])),
                ..SearchSpace::default()
            })
        };
        let trials = plan(&spec, &[])
            .iter()
            .map(|t| match t.params.lr_all {
                Some(lr) if lr > 1.0 => TrialResult::failed(
                    t,
                    RunError {
                        reason: "Diverged".into(),
                        message: "the fit diverged".into(),
                    },
                    0.5,
                ),
                lr => {
                    let rmse = if lr == Some(0.01) { 0.92 } else { 0.94 };
                    TrialResult::scored(t, Score { rmse, mae: 0.73 }, 1.0)
                }
            })
            .collect();
        SearchRecord::new(spec, false, SearchEnd::Completed, 3.0, trials)
    }

    /// A run's search is kept once beside its record and read back with it; history shows it.
    #[test]
    fn a_runs_search_is_written_once_and_read_with_its_record() {
        let (dir, store) = store();
        for v in ["v1", "v2"] {
            write(&store, &record(v)).unwrap();
        }
        let search = search();
        write_search(&store, "v2", &search).unwrap();
        let again = write_search(&store, "v2", &search).unwrap_err();
        assert_eq!(again.reason(), "StoreAlreadyExists", "{again}");
        assert!(dir.path().join("searches/v2.json").exists());
        let records = read(&store).unwrap();
        assert_eq!(records[0].search, None);
        assert_eq!(records[1].search.as_ref(), Some(&search));
        let json = serde_json::to_value(&records[1]).unwrap();
        assert_eq!(json["search"]["trials"].as_array().unwrap().len(), 3);
        let table = table(&records);
        let line = table.lines().find(|l| l.starts_with("v2")).unwrap();
        assert!(
            line.ends_with("3 trials, 1 failed, best cvRmse 0.9200 (trial 1)"),
            "{table}"
        );
        // The record's own object stays without it.
        let own = std::fs::read_to_string(dir.path().join("runs/v2.json")).unwrap();
        assert!(!own.contains("\"search\""), "{own}");

        std::fs::write(dir.path().join("searches/v1.json"), "{}").unwrap();
        let err = read(&store).unwrap_err().to_string();
        assert!(
            err.contains("searches/v1.json: not a search record"),
            "{err}"
        );
    }

    /// A record as the previous trainer wrote it (folds without the ranking and test times, the
    /// verdict inside the record) still reads, and the history table shows its spread.
    #[test]
    fn records_of_the_previous_trainer_still_read() {
        let (dir, store) = store();
        let old = r#"{"version":"v1","algorithm":"svd","hyperparameters":{"algorithm":"baseline",
            "n_epochs":10,"reg_i":10.0,"reg_u":15.0},"startedAt":"2026-12-01T10:00:00Z",
            "finishedAt":"2026-12-01T10:00:05Z","outcome":"Succeeded",
            "spread":{"rmse":{"mean":0.94,"std":0.01},"mae":{"mean":0.74,"std":0.005}},
            "folds":[{"fold":0,"nTrain":75,"nTest":25,"rmse":0.93,"mae":0.735,"accuracy":0.7,
            "precisionAt10":0.1,"recallAt10":0.2,"ndcgAt10":0.3,"fitSeconds":0.5}],
            "durations":{"loadSeconds":0.1,"cvSeconds":1.0,"fitSeconds":0.5,"totalSeconds":2.0},
            "verdict":{"outcome":"Succeeded","reason":"Promoted"}}"#;
        std::fs::create_dir(dir.path().join("runs")).unwrap();
        std::fs::write(dir.path().join("runs/v1.json"), old).unwrap();
        // What the previous trainer left when it died writing a record: not a record.
        std::fs::write(dir.path().join("runs/.v2.json.tmp"), "{").unwrap();
        let records = read(&store).unwrap();
        assert_eq!(records.len(), 1);
        let fold = &records[0].folds[0];
        assert_eq!((fold.n_test, fold.scores.ndcg_at_10), (25, 0.3));
        assert_eq!((fold.ranked_users, fold.rank_seconds), (0, 0.0));
        assert_eq!(records[0].verdict.as_ref().unwrap().reason, "Promoted");
        let table = table(&records);
        assert!(table.contains("0.9400 ± 0.0100"), "{table}");
    }

    #[test]
    fn bad_verdicts_and_records_are_named() {
        let err = parse_verdicts("v2=Rejected").unwrap_err().to_string();
        assert!(
            err.contains("\"v2=Rejected\" is not VERSION=OUTCOME:REASON"),
            "{err}"
        );
        let (dir, store) = store();
        std::fs::create_dir(dir.path().join("runs")).unwrap();
        std::fs::write(dir.path().join("runs/v1.json"), "{").unwrap();
        let err = read(&store).unwrap_err().to_string();
        assert!(err.contains("runs/v1.json: not a run record"), "{err}");
    }
}
