//! What an artifact says about itself: its metadata, as JSON in the file (formats 1 and 2: 2
//! added `fit_threads` at the end, which a format-1 file lacks and reads as absent).
//!
//! These types are the artifact's own, not the trainer report's it was filled from: the report
//! changes with the operator that reads it, while an artifact is read back by every predictor
//! for as long as it is kept. Their JSON is part of the format, so a change to it (a field
//! renamed, added or reordered) is a new format: bump [`FORMAT_VERSION`](super::FORMAT_VERSION),
//! keep these types as the reader of format 1 (converting to the new ones), and commit the new
//! version's golden file (`model/tests/artifact_format.rs` fails until then).

use recommender_contract::metrics::Metrics;
use recommender_contract::report::DataFingerprint;
use serde::{Deserialize, Serialize};

use crate::params::Hyperparameters;

/// The metadata, in the order it is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    pub format_version: u32,
    /// Version label given to the run (e.g. `v3`).
    pub version: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// `svd` or `baseline`.
    pub algorithm: String,
    pub hyperparameters: Hyperparameters,
    pub data: TrainingData,
    /// Cross-validated quality of this configuration on `data`.
    pub metrics: CvMetrics,
    /// Version of the trainer that wrote the file.
    pub trainer_version: String,
    /// Threads the SVD fit ran on (`--fit-threads`): above 1 the ratings were trained in blocks,
    /// another model than the serial fit's for the same seed. Absent for a baseline model and in
    /// format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_threads: Option<u32>,
}

/// The data the model was trained on: enough to tell two snapshots apart and to know which
/// ratings are newer than the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingData {
    pub rows: u64,
    pub users: u64,
    pub items: u64,
    /// Newest rating timestamp (seconds since the epoch), when the data has timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timestamp: Option<i64>,
    /// Hex SHA-256 over the ratings in load order.
    pub content_hash: String,
    /// Malformed input lines skipped.
    #[serde(default)]
    pub skipped: u64,
}

/// Mean (and population standard deviation) over the cross-validation folds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CvMetrics {
    pub folds: u32,
    pub rmse: f64,
    pub rmse_std: f64,
    pub mae: f64,
    pub mae_std: f64,
    /// Share of test predictions within one star of the actual rating.
    pub accuracy: f64,
    pub precision_at_10: f64,
    pub recall_at_10: f64,
    pub ndcg_at_10: f64,
}

impl From<&DataFingerprint> for TrainingData {
    fn from(d: &DataFingerprint) -> Self {
        Self {
            rows: d.rows,
            users: d.users,
            items: d.items,
            max_timestamp: d.max_timestamp,
            content_hash: d.content_hash.clone(),
            skipped: d.skipped,
        }
    }
}

impl From<&Metrics> for CvMetrics {
    fn from(m: &Metrics) -> Self {
        Self {
            folds: m.folds,
            rmse: m.rmse,
            rmse_std: m.rmse_std,
            mae: m.mae,
            mae_std: m.mae_std,
            accuracy: m.accuracy,
            precision_at_10: m.precision_at_10,
            recall_at_10: m.recall_at_10,
            ndcg_at_10: m.ndcg_at_10,
        }
    }
}
