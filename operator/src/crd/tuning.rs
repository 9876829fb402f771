//! `status.tuning`: the latest hyperparameter search (`spec.tuning`), every trial it ran with
//! its parameters and score or why it failed, and the best one; what a retrain with the same
//! space starts from.

use super::RunTrigger;
use crate::time::{Rfc3339, whole_seconds, whole_seconds_opt};
use jiff::Timestamp;
use recommender_contract::tuning::{Metric, TrialParams, TrialResult};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Trials kept in `status.tuning.trials` once a search is over (the best first): a search may
/// run up to 500, and the whole of it is in the run history on the model store. While it runs,
/// every trial is kept (the next rung is chosen from them), bounded by the budget's maximum.
pub const TRIALS_KEPT: usize = 10;

/// Where a search is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchState {
    /// Trials are running.
    Searching,
    /// Over, with a best trial: the run trains it.
    BestFound,
    /// Over, and no trial scored: no run on searched parameters.
    AllTrialsFailed,
    /// Over, and the best trial scored worse than the serving model's CV: no run.
    WorseThanServing,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TuningStatus {
    pub state: SearchState,
    /// The search's number: its rungs are Jobs and ConfigMaps `<name>-search-<search>-<rung>`.
    pub search: u32,
    /// The training run the search is for (and trains the best of).
    pub run: u32,
    /// What called for that run.
    pub trigger: RunTrigger,
    /// The training spec the search was started for: a change starts another.
    pub spec_hash: String,
    /// `space_fingerprint` of `spec.tuning`: a search whose fingerprint is the same starts from
    /// this one's best trials.
    pub space_fingerprint: String,
    /// Whether this search started from the previous one's best trials.
    #[serde(default)]
    pub warm: bool,
    /// What `score` is: `cvRmse` or `cvMae`.
    pub metric: Metric,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub started_at: Timestamp,
    /// `startedAt` plus `spec.tuning.timeLimit`: no rung starts after it, and a running one is
    /// stopped at it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub deadline: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub finished_at: Option<Timestamp>,
    /// The rung running or last run (0 unless `halving`).
    pub rung: u32,
    /// Trials that ended, and of those, the ones that failed.
    pub trials_done: u32,
    pub trials_failed: u32,
    /// The best trial so far (`best_of`: the lowest score of the highest rung that scored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<TrialResult>,
    /// The trials that ended: every one while the search runs, the best few once it is over.
    #[serde(default)]
    pub trials: Vec<TrialResult>,
    /// The trials of the rung in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<TrialParams>,
    /// How the search ended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
