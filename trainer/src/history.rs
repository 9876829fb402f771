//! The run history on the model store: one JSON record per training run in
//! `<model folder>/runs/<version>.json`, what the old app kept in its ModelMetrics table
//! (hyperparameters, metrics mean ± std per fold, durations, outcome) and more. The trainer
//! writes its run's record at the end of the run; the operator's verdict on a candidate
//! (promoted or rejected) is added by the next run, which the operator tells (`--verdicts`).
//! Nothing else writes there, and records are never deleted with artifacts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use recommender_contract::metrics::{MeanStd, Metrics};
use recommender_contract::report::{DataFingerprint, Durations, Outcome, RunError};
use recommender_model::Hyperparameters;
use serde::{Deserialize, Serialize};

use crate::cv::{CvResult, FoldResult};
use crate::error::{Error, Result};

/// The folder of run records beside the artifacts.
pub const RUNS_DIR: &str = "runs";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub version: String,
    pub algorithm: String,
    pub hyperparameters: Hyperparameters,
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
    /// The operator's decision on this run, once a later run has been told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// The artifact as written: what `sha256sum` and `ls -l` would say of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl ArtifactFile {
    pub fn of(path: &Path) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.display().to_string(),
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        })
    }
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

/// `<artifact's folder>/runs`.
pub fn runs_dir(artifact: &Path) -> PathBuf {
    artifact
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(RUNS_DIR)
}

/// Writes `record` as `<dir>/<version>.json`, atomically (a reader never sees half a record).
pub fn write(dir: &Path, record: &RunRecord) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(format!("{}.json", record.version));
    let tmp = dir.join(format!(".{}.json.tmp", record.version));
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::Config(format!("cannot serialise the run record: {e}")))?;
    std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// Every record in `dir`, oldest run first; a file that is not a record is an error naming it.
pub fn read(dir: &Path) -> Result<Vec<RunRecord>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut records = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let record: RunRecord = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidData(format!("{}: not a run record: {e}", path.display()))
        })?;
        records.push(record);
    }
    records.sort_by_key(|r| version_number(&r.version));
    Ok(records)
}

fn version_number(version: &str) -> (u64, String) {
    let n = version.trim_start_matches('v').parse().unwrap_or(u64::MAX);
    (n, version.to_string())
}

/// Adds verdicts to the records that lack one; returns how many it added.
pub fn record_verdicts(dir: &Path, verdicts: &[(String, Verdict)]) -> Result<usize> {
    let mut added = 0;
    for (version, verdict) in verdicts {
        let path = dir.join(format!("{version}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // a run that left no record (its pod never started, say)
        };
        let mut record: RunRecord = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidData(format!("{}: not a run record: {e}", path.display()))
        })?;
        if record.verdict.is_none() {
            record.verdict = Some(verdict.clone());
            write(dir, &record)?;
            added += 1;
        }
    }
    Ok(added)
}

/// The records as a table, one run a line.
pub fn table(records: &[RunRecord]) -> String {
    let mut out = format!(
        "{:<8} {:<20} {:<9} {:>7} {:>6} {:>16} {:>16} {:>8} {:>8}  {:<10} {}\n",
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
        "VERDICT"
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
        out += &format!(
            "{:<8} {:<20} {:<9} {:>7} {:>6} {:>16} {:>16} {:>8} {:>8.1}  {:<10} {}\n",
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
            verdict
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svd::SvdParams;

    fn record(version: &str) -> RunRecord {
        RunRecord {
            version: version.into(),
            algorithm: "svd".into(),
            hyperparameters: Hyperparameters::Svd(SvdParams::default()),
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
        }
    }

    #[test]
    fn records_round_trip_in_run_order_and_take_verdicts_once() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["v10", "v2", "v1"] {
            write(dir.path(), &record(v)).unwrap();
        }
        let verdicts =
            parse_verdicts("v2=Rejected:GateFailed,v10=Succeeded:Promoted,v9=Failed:OOMKilled")
                .unwrap();
        assert_eq!(
            record_verdicts(dir.path(), &verdicts).unwrap(),
            2,
            "v9 left no record"
        );
        let again = parse_verdicts("v2=Succeeded:Promoted").unwrap();
        assert_eq!(
            record_verdicts(dir.path(), &again).unwrap(),
            0,
            "a verdict is not rewritten"
        );
        let records = read(dir.path()).unwrap();
        let versions: Vec<_> = records.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v2", "v10"]);
        assert_eq!(records[1].verdict.as_ref().unwrap().reason, "GateFailed");
        let table = table(&records);
        assert!(table.contains("Rejected (GateFailed)"), "{table}");
    }

    /// A record as the previous trainer wrote it (folds without the ranking and test times)
    /// still reads, and the history table shows its spread.
    #[test]
    fn records_of_the_previous_trainer_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"version":"v1","algorithm":"svd","hyperparameters":{"algorithm":"baseline",
            "n_epochs":10,"reg_i":10.0,"reg_u":15.0},"startedAt":"2026-12-01T10:00:00Z",
            "finishedAt":"2026-12-01T10:00:05Z","outcome":"Succeeded",
            "spread":{"rmse":{"mean":0.94,"std":0.01},"mae":{"mean":0.74,"std":0.005}},
            "folds":[{"fold":0,"nTrain":75,"nTest":25,"rmse":0.93,"mae":0.735,"accuracy":0.7,
            "precisionAt10":0.1,"recallAt10":0.2,"ndcgAt10":0.3,"fitSeconds":0.5}],
            "durations":{"loadSeconds":0.1,"cvSeconds":1.0,"fitSeconds":0.5,"totalSeconds":2.0}}"#;
        std::fs::write(dir.path().join("v1.json"), old).unwrap();
        let records = read(dir.path()).unwrap();
        let fold = &records[0].folds[0];
        assert_eq!((fold.n_test, fold.scores.ndcg_at_10), (25, 0.3));
        assert_eq!((fold.ranked_users, fold.rank_seconds), (0, 0.0));
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v1.json"), "{").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("v1.json: not a run record"), "{err}");
    }
}
