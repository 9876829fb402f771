//! The report a trainer run leaves behind: the contract between `recommender-trainer` and the
//! operator.
//!
//! The trainer writes it as compact JSON to the container's termination-message path, which
//! Kubernetes caps at 4096 bytes, so the type is kept small and [`TrainingReport::to_json`]
//! guarantees the bound.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// Bumped when a field changes meaning or a required field is added.
pub const REPORT_FORMAT: u32 = 1;

/// Kubernetes truncates termination messages beyond this many bytes.
pub const MAX_REPORT_BYTES: usize = 4096;

/// How a trainer run ended.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// The final word of one trainer run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainingReport {
    /// [`REPORT_FORMAT`] of the writer.
    pub format: u32,
    pub outcome: Outcome,
    /// Model version label the run was asked to produce (e.g. `v3`).
    pub version: String,
    /// `svd` or `baseline`.
    pub algorithm: String,
    /// Where the artifact was written; absent when the run failed or only evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The artifact file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_bytes: Option<u64>,
    /// Hex SHA-256 of the artifact file (what `sha256sum` prints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_sha256: Option<String>,
    /// Cross-validated quality; absent when the run failed before evaluating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// What the model was trained on; absent when loading the data failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataFingerprint>,
    pub durations: Durations,
    /// RFC 3339 UTC time the run finished.
    pub finished_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// A scoring run (`recommender-trainer score`): how the model predicts the ratings that
    /// arrived after its snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
    /// A training run asked to challenge the serving model (`--challenge`): how the candidate
    /// and the champion compare on ratings neither was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
    /// Threads each SVD fit ran on (`--fit-threads`). Above 1 the ratings are trained in blocks,
    /// another order of the same updates, so the model is not the serial fit's (its RMSE is, within
    /// noise). Absent from reports of earlier trainers and of runs that fit nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_threads: Option<u32>,
}

/// Identifies the data a model was trained on, so two runs can be told apart.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DataFingerprint {
    pub rows: u64,
    pub users: u64,
    pub items: u64,
    /// Newest rating timestamp (seconds since the epoch), when the data has timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timestamp: Option<i64>,
    /// Hex SHA-256 over the ratings in load order.
    pub content_hash: String,
    /// Malformed input lines skipped (only non-zero with `--skip-bad-lines`).
    #[serde(default)]
    pub skipped: u64,
}

/// Wall-clock seconds per stage.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    pub load_seconds: f64,
    pub cv_seconds: f64,
    pub fit_seconds: f64,
    pub total_seconds: f64,
}

/// Why a run failed, in words meant for `kubectl describe`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    /// A short CamelCase reason such as `InvalidData` or `SourceUnavailable`.
    pub reason: String,
    pub message: String,
}

/// Forward accuracy: a model's errors on ratings newer than its snapshot, which it never saw.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Forward {
    /// Ratings strictly newer than this (epoch seconds): the model's `maxTimestamp`.
    pub since: i64,
    /// Newest rating scored (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    pub ratings: u64,
    pub rmse: f64,
    pub mae: f64,
    /// Share within one star of the actual rating.
    pub accuracy: f64,
    /// Distinct users and items of those ratings the model does not know.
    pub unknown_users: u64,
    pub unknown_items: u64,
}

/// The champion/challenger comparison of a training run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// The serving model's version label.
    pub champion: String,
    /// The champion's snapshot (its `maxTimestamp`): only newer ratings are compared.
    pub since: i64,
    /// Ratings newer than `since`.
    pub new_ratings: u64,
    /// Present when the paired comparison ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<Paired>,
    /// Why no paired comparison ran (too few new ratings, champion unreadable, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// Both models' errors on the newest ratings, paired rating by rating.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Paired {
    /// Ratings at or before this time (and after the champion's snapshot) were the challenger's
    /// to train on; newer ones were held out and predicted by both.
    pub split_at: i64,
    /// New ratings the challenger trained on.
    pub train_ratings: u64,
    /// Held-out ratings both models predicted.
    pub ratings: u64,
    pub champion_rmse: f64,
    pub challenger_rmse: f64,
    /// challenger RMSE − champion RMSE (negative: the challenger is better).
    pub difference: f64,
    /// Paired bootstrap percentile interval of `difference` at `confidence`.
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
    pub resamples: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("report format {found} is newer than this reader understands ({REPORT_FORMAT})")]
    UnsupportedFormat { found: u32 },
    #[error("report does not fit in {MAX_REPORT_BYTES} bytes even with its error message cut")]
    TooLarge,
}

impl TrainingReport {
    /// A report that says the run failed until the run marks it `Succeeded`: a run fills it in
    /// stage by stage, so one that stops early still reports what it got to.
    pub fn failed(version: String, algorithm: String) -> Self {
        Self {
            format: REPORT_FORMAT,
            outcome: Outcome::Failed,
            version,
            algorithm,
            artifact: None,
            artifact_bytes: None,
            artifact_sha256: None,
            metrics: None,
            data: None,
            durations: Durations::default(),
            finished_at: String::new(),
            error: None,
            forward: None,
            challenge: None,
            fit_threads: None,
        }
    }

    /// Compact JSON of at most [`MAX_REPORT_BYTES`]; an over-long error message is cut (on a
    /// character boundary) rather than letting Kubernetes truncate the JSON itself.
    pub fn to_json(&self) -> Result<String, ReportError> {
        let json = serde_json::to_string(self)?;
        if json.len() <= MAX_REPORT_BYTES {
            return Ok(json);
        }
        let Some(err) = &self.error else {
            return Err(ReportError::TooLarge);
        };
        let excess = json.len() - MAX_REPORT_BYTES;
        let marker = "…";
        let keep = err.message.len().saturating_sub(excess + marker.len() + 8);
        let mut cut = keep;
        while cut > 0 && !err.message.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut shorter = self.clone();
        shorter.error = Some(RunError {
            reason: err.reason.clone(),
            message: format!("{}{marker}", &err.message[..cut]),
        });
        let json = serde_json::to_string(&shorter)?;
        if json.len() <= MAX_REPORT_BYTES {
            Ok(json)
        } else {
            Err(ReportError::TooLarge)
        }
    }

    /// Parses a report, refusing formats newer than this build knows.
    pub fn parse(text: &str) -> Result<Self, ReportError> {
        let report: TrainingReport = serde_json::from_str(text.trim())?;
        if report.format > REPORT_FORMAT {
            return Err(ReportError::UnsupportedFormat {
                found: report.format,
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TrainingReport {
        TrainingReport {
            format: REPORT_FORMAT,
            outcome: Outcome::Succeeded,
            version: "v3".into(),
            algorithm: "svd".into(),
            artifact: Some("/models/movies/v3.model".into()),
            artifact_bytes: Some(1_234_567),
            artifact_sha256: Some("cd".repeat(32)),
            metrics: Some(Metrics {
                folds: 4,
                rmse: 0.9387,
                rmse_std: 0.003,
                mae: 0.7403,
                mae_std: 0.002,
                accuracy: 0.74,
                precision_at_10: 0.6,
                recall_at_10: 0.5,
                ndcg_at_10: 0.7,
            }),
            data: Some(DataFingerprint {
                rows: 100_000,
                users: 943,
                items: 1682,
                max_timestamp: Some(893_286_638),
                content_hash: "ab".repeat(32),
                skipped: 0,
            }),
            durations: Durations {
                load_seconds: 0.05,
                cv_seconds: 0.4,
                fit_seconds: 0.1,
                total_seconds: 0.6,
            },
            finished_at: "2026-11-27T23:00:00Z".into(),
            error: None,
            forward: None,
            challenge: None,
            fit_threads: Some(1),
        }
    }

    #[test]
    fn round_trips_through_compact_json() {
        let report = sample();
        let json = report.to_json().unwrap();
        assert!(!json.contains('\n'));
        assert!(
            json.len() < 1024,
            "a full report is far below the cap: {}",
            json.len()
        );
        assert_eq!(TrainingReport::parse(&json).unwrap(), report);
    }

    #[test]
    fn long_error_message_is_cut_to_fit() {
        let mut report = sample();
        report.outcome = Outcome::Failed;
        report.error = Some(RunError {
            reason: "InvalidData".into(),
            message: "é".repeat(5000),
        });
        let json = report.to_json().unwrap();
        assert!(json.len() <= MAX_REPORT_BYTES);
        let back = TrainingReport::parse(&json).unwrap();
        let msg = back.error.unwrap().message;
        assert!(msg.ends_with('…'));
        assert!(msg.len() > 3000, "cut no more than needed: {}", msg.len());
    }

    /// The largest report a challenging run writes still fits, and one without the new fields
    /// (an older trainer's) still parses.
    #[test]
    fn challenge_and_forward_fit_and_are_optional() {
        let mut report = sample();
        report.forward = Some(Forward {
            since: i64::MAX,
            until: Some(i64::MAX),
            ratings: u64::MAX,
            rmse: -1.234_567_890_123_4e-300,
            mae: -1.234_567_890_123_4e-300,
            accuracy: -1.234_567_890_123_4e-300,
            unknown_users: u64::MAX,
            unknown_items: u64::MAX,
        });
        let long = -1.234_567_890_123_4e-300;
        report.challenge = Some(Challenge {
            champion: "v4294967295".into(),
            since: i64::MIN,
            new_ratings: u64::MAX,
            paired: Some(Paired {
                split_at: i64::MIN,
                train_ratings: u64::MAX,
                ratings: u64::MAX,
                champion_rmse: long,
                challenger_rmse: long,
                difference: long,
                low: long,
                high: long,
                confidence: long,
                resamples: u32::MAX,
            }),
            fallback: Some("x".repeat(200)),
        });
        let json = report.to_json().unwrap();
        assert!(json.len() < 2048, "{} bytes", json.len());
        assert_eq!(TrainingReport::parse(&json).unwrap(), report);

        let old = serde_json::to_string(&sample()).unwrap();
        assert!(!old.contains("forward") && !old.contains("challenge"));
        assert_eq!(TrainingReport::parse(&old).unwrap().challenge, None);
    }

    #[test]
    fn newer_format_is_refused() {
        let mut report = sample();
        report.format = REPORT_FORMAT + 1;
        let json = serde_json::to_string(&report).unwrap();
        assert!(matches!(
            TrainingReport::parse(&json),
            Err(ReportError::UnsupportedFormat { .. })
        ));
    }
}
