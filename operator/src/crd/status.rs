//! What the operator reports on a `RecommenderModel`: typed, so a decision never formats and
//! re-parses its own words (timestamps are `jiff::Timestamp`, triggers and reasons enums).

use crate::time::{Rfc3339, whole_seconds, whole_seconds_opt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Coarse summary for `kubectl get`; the conditions carry the detail.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Pending,
    Training,
    Serving,
    Degraded,
    Failed,
    Suspended,
}

/// What a person (and `kubectl get`) reads at the top; the controller's own bookkeeping is in
/// the two ledgers, `runs` and `evaluations`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecommenderModelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The model the predictor serves (the newest promoted, or the pinned one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ModelRecord>,
    /// Promoted models, oldest first, bounded: what `pinnedVersion` can name.
    #[serde(default)]
    pub models: Vec<ModelRecord>,
    /// Recent training runs, oldest first, bounded.
    #[serde(default)]
    pub history: Vec<RunRecord>,
    /// Finished runs by outcome since creation.
    #[serde(default)]
    pub run_counts: RunCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<PredictorStatus>,
    /// How the serving version does in production, over all its replicas (written by the
    /// operator's collector on its own interval, with its own field manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<OnlineStatus>,
    /// The predictor Service's in-cluster URL, once a model serves: where to call it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The same endpoint as KServe's `status.address` (an Addressable), for tools that read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// Ratings newer than the serving model's snapshot, as last counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataStatus>,
    /// The training runs' ledger: numbering, the run in flight, retries.
    #[serde(default)]
    pub runs: RunLedger,
    /// The forward evaluations' ledger.
    #[serde(default)]
    pub evaluations: EvaluationLedger,
    /// The latest hyperparameter search (`spec.tuning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<super::TuningStatus>,
    /// The progressive rollout in progress (`spec.rollout.strategy: Progressive`), or the last
    /// one in its terminal stage until the next starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<super::RolloutStatus>,
    /// The same bookkeeping where operator versions before the ledgers wrote it: read, never
    /// written.
    #[serde(default, flatten, skip_serializing)]
    pub previous: PreviousLedger,
}

impl RecommenderModelStatus {
    /// Moves bookkeeping written by an operator version before the ledgers (top-level
    /// `lastRun`, `activeRun`, `retryAfter`, ...) into them, where the ledger records nothing
    /// newer: run numbers take the larger, the rest fills what the ledger leaves unset. The next
    /// status apply leaves the old fields out, and server-side apply removes them.
    pub fn adopt_previous(&mut self) {
        let p = std::mem::take(&mut self.previous);
        let runs = &mut self.runs;
        runs.last = runs.last.max(p.last_run.unwrap_or_default());
        runs.last_completed = runs
            .last_completed
            .max(p.last_completed_run.unwrap_or_default());
        runs.cleaned_through = runs
            .cleaned_through
            .max(p.cleaned_through_run.unwrap_or_default());
        runs.active = runs.active.take().or(p.active_run);
        runs.trained_spec_hash = runs.trained_spec_hash.take().or(p.trained_spec_hash);
        runs.last_attempt_started_at = runs.last_attempt_started_at.or(p.last_attempt_started_at);
        if runs.consecutive_failures == 0 {
            runs.consecutive_failures = p.consecutive_failures.unwrap_or_default();
        }
        runs.retry_after = runs.retry_after.or(p.retry_after);
        runs.handled_retrain_request = runs
            .handled_retrain_request
            .take()
            .or(p.handled_retrain_request);
        let evaluations = &mut self.evaluations;
        evaluations.last = evaluations.last.max(p.last_evaluation.unwrap_or_default());
        evaluations.active = evaluations.active.take().or(p.active_evaluation);
        evaluations.last_started_at = evaluations.last_started_at.or(p.last_evaluation_started_at);
        evaluations.last_error = evaluations.last_error.take().or(p.last_evaluation_error);
    }
}

/// The controller's bookkeeping of training runs: enough to number the next run, adopt the one
/// in flight after a restart, retry with backoff and not retrain what was already tried.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunLedger {
    /// Highest run number ever started; the next run is this plus one.
    #[serde(default)]
    pub last: u32,
    /// Highest run number whose outcome has been recorded.
    #[serde(default)]
    pub last_completed: u32,
    /// Runs up to this one have had the model store cleaned of what they left outside the
    /// retention window (a cleanup Job started for them).
    #[serde(default)]
    pub cleaned_through: u32,
    /// The training run in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveRun>,
    /// Training-spec hash of the last run that produced a model (promoted or rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_spec_hash: Option<String>,
    /// Start of the last run that produced a model (promoted or rejected).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub last_attempt_started_at: Option<Timestamp>,
    /// Failed runs in a row; drives the retry backoff.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// No new run starts before this time after failures.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub retry_after: Option<Timestamp>,
    /// The last value of the retrain annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_retrain_request: Option<String>,
}

/// The controller's bookkeeping of forward evaluations.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationLedger {
    /// Highest forward-evaluation number ever started.
    #[serde(default)]
    pub last: u32,
    /// The forward evaluation in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveEvaluation>,
    /// Start of the last forward evaluation: the next waits `forwardEvaluation.interval`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub last_started_at: Option<Timestamp>,
    /// Why the last forward evaluation failed; cleared by the next that succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The ledgers' fields where operator versions before them wrote them, at the top of the status.
/// Still in the schema, so that an object stored by such a version keeps them until this version
/// has read them ([`RecommenderModelStatus::adopt_previous`]); never written.
#[derive(JsonSchema, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PreviousLedger {
    /// Replaced by `runs.last`.
    pub last_run: Option<u32>,
    /// Replaced by `runs.lastCompleted`.
    pub last_completed_run: Option<u32>,
    /// Replaced by `runs.cleanedThrough`.
    pub cleaned_through_run: Option<u32>,
    /// Replaced by `runs.active`.
    pub active_run: Option<ActiveRun>,
    /// Replaced by `runs.trainedSpecHash`.
    pub trained_spec_hash: Option<String>,
    /// Replaced by `runs.lastAttemptStartedAt`.
    #[serde(with = "whole_seconds_opt")]
    #[schemars(with = "Option<Rfc3339>")]
    pub last_attempt_started_at: Option<Timestamp>,
    /// Replaced by `runs.consecutiveFailures`.
    pub consecutive_failures: Option<u32>,
    /// Replaced by `runs.retryAfter`.
    #[serde(with = "whole_seconds_opt")]
    #[schemars(with = "Option<Rfc3339>")]
    pub retry_after: Option<Timestamp>,
    /// Replaced by `runs.handledRetrainRequest`.
    pub handled_retrain_request: Option<String>,
    /// Replaced by `evaluations.last`.
    pub last_evaluation: Option<u32>,
    /// Replaced by `evaluations.active`.
    pub active_evaluation: Option<ActiveEvaluation>,
    /// Replaced by `evaluations.lastStartedAt`.
    #[serde(with = "whole_seconds_opt")]
    #[schemars(with = "Option<Rfc3339>")]
    pub last_evaluation_started_at: Option<Timestamp>,
    /// Replaced by `evaluations.lastError`.
    pub last_evaluation_error: Option<String>,
}

/// New ratings: those newer than the serving model's snapshot (its fingerprint's
/// `maxTimestamp`), which the model has never seen.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataStatus {
    /// The model counted against and its snapshot (epoch seconds).
    pub version: String,
    pub since: i64,
    pub new_ratings: u64,
    /// Distinct users and items of the new ratings that the snapshot does not have.
    pub new_users: u64,
    pub new_items: u64,
    /// Newest rating time (epoch seconds), when there are new ratings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<i64>,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub counted_at: Timestamp,
    /// When the count first reached `freshness.maxNewRatings` for this snapshot.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "whole_seconds_opt"
    )]
    #[schemars(with = "Option<Rfc3339>")]
    pub exceeded_at: Option<Timestamp>,
    /// Why the last count failed (the numbers are the last good count's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A forward-evaluation Job in flight.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActiveEvaluation {
    pub number: u32,
    pub job: String,
    /// The model being scored and its snapshot.
    pub version: String,
    pub since: i64,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub started_at: Timestamp,
}

/// Forward accuracy: how a model predicted the ratings newer than its snapshot (rounded to 4
/// decimals).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ForwardRecord {
    pub since: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    pub ratings: u64,
    pub rmse: f64,
    pub mae: f64,
    pub accuracy: f64,
    pub unknown_users: u64,
    pub unknown_items: u64,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub evaluated_at: Timestamp,
}

impl ForwardRecord {
    pub fn from_report(f: &recommender_contract::report::Forward, evaluated_at: Timestamp) -> Self {
        Self {
            since: f.since,
            until: f.until,
            ratings: f.ratings,
            rmse: round4(f.rmse),
            mae: round4(f.mae),
            accuracy: round4(f.accuracy),
            unknown_users: f.unknown_users,
            unknown_items: f.unknown_items,
            evaluated_at: crate::time::whole(evaluated_at),
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// How a candidate was compared with the serving model under `mustBeatServing`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComparisonBasis {
    /// Paired errors on the newest ratings, which neither model was trained on.
    NewestRatings,
    /// Cross-validated RMSEs (too few new ratings, or no comparison was possible).
    CrossValidation,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComparisonVerdict {
    Better,
    NotBetter,
}

/// The champion/challenger comparison of a run (full precision: the numbers the gate used).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// The serving model's version.
    pub champion: String,
    pub basis: ComparisonBasis,
    pub champion_rmse: f64,
    pub challenger_rmse: f64,
    /// challenger − champion (negative: the challenger is better).
    pub difference: f64,
    /// The paired bootstrap interval of `difference` at `confidence` (newest-ratings basis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Ratings both models predicted (0 for cross-validation).
    pub ratings: u64,
    pub verdict: ComparisonVerdict,
    /// Why the cross-validated RMSEs were compared instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// An endpoint other workloads call, shaped like Knative's and KServe's `Addressable`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub url: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    pub version: String,
    pub run: u32,
    pub metrics: ModelMetrics,
    /// When training finished.
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub trained_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// The latest forward evaluation of this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardRecord>,
    /// The artifact file on the model store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactFile>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactFile {
    pub path: String,
    pub bytes: u64,
    /// Hex SHA-256 of the file, as `sha256sum` prints it.
    pub sha256: String,
}

/// Cross-validated quality, as the trainer measured it and the status shows it (rounded to 4
/// decimals: `Metrics::rounded`).
pub use recommender_contract::metrics::Metrics as ModelMetrics;

/// Finished runs by outcome since the resource was created (the history keeps only the last
/// few).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub rejected: u64,
}

impl RunCounts {
    pub fn count(&mut self, outcome: RunOutcome) {
        match outcome {
            RunOutcome::Succeeded => self.succeeded += 1,
            RunOutcome::Failed => self.failed += 1,
            RunOutcome::Rejected => self.rejected += 1,
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    pub rows: u64,
    pub users: u64,
    pub items: u64,
    pub content_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timestamp: Option<i64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRun {
    pub run: u32,
    pub job: String,
    pub trigger: RunTrigger,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub started_at: Timestamp,
    pub spec_hash: String,
}

/// Why a training run started.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunTrigger {
    /// No model has been trained yet.
    NoModel,
    /// The training spec changed since the last model.
    SpecChanged,
    /// The serving model passed `maxAge`.
    Stale,
    /// `freshness.maxNewRatings` new ratings arrived after the serving model's snapshot.
    NewData,
    /// The serving model's forward accuracy turned `AccuracyDegraded`.
    AccuracyDegraded,
    /// `retrainInterval` elapsed.
    Interval,
    /// The retrain annotation changed.
    Requested,
    /// A Job whose trigger annotation is missing or unknown (made by another version or a person).
    Unknown,
}

impl RunTrigger {
    pub const ALL: [Self; 8] = [
        Self::NoModel,
        Self::SpecChanged,
        Self::Stale,
        Self::NewData,
        Self::AccuracyDegraded,
        Self::Interval,
        Self::Requested,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoModel => "NoModel",
            Self::SpecChanged => "SpecChanged",
            Self::Stale => "Stale",
            Self::NewData => "NewData",
            Self::AccuracyDegraded => "AccuracyDegraded",
            Self::Interval => "Interval",
            Self::Requested => "Requested",
            Self::Unknown => "Unknown",
        }
    }

    /// Reads a Job's trigger annotation; anything unrecognised is `Unknown`.
    pub fn from_annotation(text: Option<&str>) -> Self {
        Self::ALL
            .into_iter()
            .find(|t| Some(t.as_str()) == text)
            .unwrap_or(Self::Unknown)
    }
}

impl fmt::Display for RunTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Failed,
    Rejected,
}

impl RunOutcome {
    pub const ALL: [Self; 3] = [Self::Succeeded, Self::Failed, Self::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Rejected => "Rejected",
        }
    }
}

/// Why a run ended as it did. The operator's own reasons are variants; reasons from elsewhere
/// (the Job controller's `DeadlineExceeded`, the trainer's `InvalidData`, ...) are kept as
/// written. Serialised as the plain reason string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RunReason {
    /// The candidate passed the gate and serves.
    Promoted,
    /// A metric missed its threshold.
    GateFailed,
    /// `mustBeatServing` and the candidate did not beat the serving model.
    NotBetter,
    /// The Job disappeared before it finished.
    JobMissing,
    /// The Job succeeded but left no readable report.
    NoReport,
    /// The report has no metrics.
    NoMetrics,
    /// The trainer reported failure without a reason.
    TrainerFailed,
    /// Every trial of the run's tuning search failed: nothing was trained.
    AllTrialsFailed,
    /// The run's tuning search found nothing better than the serving model: nothing was trained.
    WorseThanServing,
    /// The trainer's node stopped answering and the control plane deleted its pod (the taint
    /// manager's eviction): the run cannot finish there, and is retried on a live node.
    NodeLost,
    /// The candidate passed the gate and is being rolled out progressively (`spec.rollout`):
    /// the record is final once the rollout ends.
    RollingOut,
    /// The candidate passed the gate but was aborted on live traffic (a failed test or
    /// guardrail, an inconclusive stage, a manual abort, a refused artifact): the message says.
    RejectedOnline,
    /// The candidate's rollout was stopped before it decided: a newer candidate superseded it or
    /// `pinnedVersion` was set.
    RolloutStopped,
    Other(String),
}

impl RunReason {
    /// The operator's own reasons.
    pub const OWN: [Self; 13] = [
        Self::Promoted,
        Self::GateFailed,
        Self::NotBetter,
        Self::JobMissing,
        Self::NoReport,
        Self::NoMetrics,
        Self::TrainerFailed,
        Self::AllTrialsFailed,
        Self::WorseThanServing,
        Self::NodeLost,
        Self::RollingOut,
        Self::RejectedOnline,
        Self::RolloutStopped,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Promoted => "Promoted",
            Self::GateFailed => "GateFailed",
            Self::NotBetter => "NotBetter",
            Self::JobMissing => "JobMissing",
            Self::NoReport => "NoReport",
            Self::NoMetrics => "NoMetrics",
            Self::TrainerFailed => "TrainerFailed",
            Self::AllTrialsFailed => "AllTrialsFailed",
            Self::WorseThanServing => "WorseThanServing",
            Self::NodeLost => "NodeLost",
            Self::RollingOut => "RollingOut",
            Self::RejectedOnline => "RejectedOnline",
            Self::RolloutStopped => "RolloutStopped",
            Self::Other(reason) => reason,
        }
    }
}

impl From<String> for RunReason {
    fn from(text: String) -> Self {
        Self::OWN
            .into_iter()
            .find(|r| r.as_str() == text)
            .unwrap_or(Self::Other(text))
    }
}

impl From<&str> for RunReason {
    fn from(text: &str) -> Self {
        Self::from(text.to_string())
    }
}

impl From<RunReason> for String {
    fn from(reason: RunReason) -> Self {
        match reason {
            RunReason::Other(text) => text,
            own => own.as_str().to_string(),
        }
    }
}

impl fmt::Display for RunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JsonSchema for RunReason {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RunReason".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run: u32,
    pub version: String,
    pub trigger: RunTrigger,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub started_at: Timestamp,
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub finished_at: Timestamp,
    pub outcome: RunOutcome,
    pub reason: RunReason,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ModelMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// The champion/challenger comparison, under `mustBeatServing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// The tuning search the run came from (`status.tuning`, and `searches/<version>.json`
    /// on the model store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<u32>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PredictorStatus {
    pub version: String,
    pub desired_replicas: i32,
    pub available_replicas: i32,
    /// The predictor pods' label selector, for the scale subresource (and autoscalers of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// The serving version in production, aggregated over its replicas: counters are summed before
/// any ratio is taken; distinct users are merged sketches (`userCountRelativeError`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OnlineStatus {
    #[serde(with = "whole_seconds")]
    #[schemars(with = "Rfc3339")]
    pub observed_at: Timestamp,
    /// The version these figures are about.
    pub version: String,
    /// Replicas of that version that answered.
    pub replicas: u32,
    /// Inference requests per second over the last collection interval (absent without requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Server-side latency over the last collection interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_seconds: Option<f64>,
    /// Feedback ratings on this version's predictions, behind the error figures.
    pub feedback: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    /// Share of feedback ratings within one star of the prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_predicted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_actual: Option<f64>,
    /// Average predicted minus average actual: the model's bias in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_difference: Option<f64>,
    pub suggestions_shown: u64,
    /// Suggestions the user went on to rate.
    pub suggestions_rated: u64,
    /// Rated suggestions at or above the predictors' acceptance threshold.
    pub suggestions_accepted: u64,
    /// Suggestions rated ÷ suggestions shown (the old app's acceptance rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance_rate: Option<f64>,
    /// Accepted ÷ rated suggestions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_of_rated: Option<f64>,
    /// Distinct users with feedback in the window.
    pub active_users: u64,
    /// Distinct users who rated a suggestion in the window (the old app's engaged users).
    pub engaged_users: u64,
    /// Engaged ÷ active users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement_rate: Option<f64>,
    pub users_window_seconds: u64,
    /// Relative standard error of the user counts (HyperLogLog++; small counts are exact).
    pub user_count_relative_error: f64,
    /// During a progressive rollout: the per-arm figures and paired errors of the replicas that
    /// report `status.rollout.id` with its versions, summed (counters since each replica took the
    /// rollout's config; latency since it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<recommender_contract::stats::RolloutStats>,
}

/// Conditions are a map keyed by `type`, so server-side apply merges them per type.
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_triggers_serialise_as_the_plain_strings() {
        for (reason, text) in [
            (RunReason::GateFailed, "\"GateFailed\""),
            (
                RunReason::Other("DeadlineExceeded".into()),
                "\"DeadlineExceeded\"",
            ),
        ] {
            assert_eq!(serde_json::to_string(&reason).unwrap(), text);
            assert_eq!(serde_json::from_str::<RunReason>(text).unwrap(), reason);
        }
        assert_eq!(RunReason::from("NoReport"), RunReason::NoReport);
        assert_eq!(
            serde_json::to_string(&RunTrigger::SpecChanged).unwrap(),
            "\"SpecChanged\""
        );
        assert_eq!(
            RunTrigger::from_annotation(Some("Stale")),
            RunTrigger::Stale
        );
        assert_eq!(
            RunTrigger::from_annotation(Some("Cron")),
            RunTrigger::Unknown
        );
        assert_eq!(RunTrigger::from_annotation(None), RunTrigger::Unknown);
    }

    #[test]
    fn a_malformed_time_in_the_status_is_an_error_not_1970() {
        for status in [
            serde_json::json!({"runs": {"retryAfter": "soon"}}),
            serde_json::json!({"retryAfter": "soon"}),
        ] {
            let err = serde_json::from_value::<RecommenderModelStatus>(status).unwrap_err();
            assert!(
                err.to_string().contains("\"soon\" is not an RFC 3339 time"),
                "{err}"
            );
        }
    }

    /// A status as the operator wrote it before the ledgers (top-level `lastRun`,
    /// `activeRun`, ...): its bookkeeping moves into them, and writing it again leaves the old
    /// fields out.
    #[test]
    fn a_status_written_before_the_ledgers_is_adopted() {
        let stored = include_str!("testdata/status-before-ledgers.json");
        let mut status: RecommenderModelStatus = serde_json::from_str(stored).unwrap();
        let t = |text: &str| Some(text.parse::<Timestamp>().unwrap());
        status.adopt_previous();
        assert_eq!(
            status.runs,
            RunLedger {
                last: 4,
                last_completed: 3,
                cleaned_through: 2,
                active: Some(ActiveRun {
                    run: 4,
                    job: "movies-train-4".into(),
                    trigger: RunTrigger::Requested,
                    started_at: t("2026-11-27T11:50:00Z").unwrap(),
                    spec_hash: "0123456789abcdef".into(),
                }),
                trained_spec_hash: Some("0123456789abcdef".into()),
                last_attempt_started_at: t("2026-11-27T09:50:00Z"),
                consecutive_failures: 1,
                retry_after: t("2026-11-27T11:01:30Z"),
                handled_retrain_request: Some("2026-11-27T11:45".into()),
            }
        );
        assert_eq!(
            status.evaluations,
            EvaluationLedger {
                last: 5,
                active: Some(ActiveEvaluation {
                    number: 5,
                    job: "movies-eval-5".into(),
                    version: "v2".into(),
                    since: 893_286_638,
                    started_at: t("2026-11-27T11:40:00Z").unwrap(),
                }),
                last_started_at: t("2026-11-27T11:40:00Z"),
                last_error: Some(
                    "forward evaluation movies-eval-4 failed: DeadlineExceeded".into()
                ),
            }
        );
        assert_eq!(status.previous, PreviousLedger::default());
        assert_eq!((status.history.len(), status.run_counts.failed), (2, 2));

        let written = serde_json::to_value(&status).unwrap();
        let before: serde_json::Value = serde_json::from_str(stored).unwrap();
        let mut old_keys: Vec<&str> = before
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| written.get(k).is_none())
            .collect();
        old_keys.sort();
        assert_eq!(
            old_keys,
            [
                "activeEvaluation",
                "activeRun",
                "cleanedThroughRun",
                "consecutiveFailures",
                "handledRetrainRequest",
                "lastAttemptStartedAt",
                "lastCompletedRun",
                "lastEvaluation",
                "lastEvaluationError",
                "lastEvaluationStartedAt",
                "lastRun",
                "retryAfter",
                "trainedSpecHash",
            ],
            "only the moved fields are left out"
        );
        assert_eq!(written["runs"]["last"], 4);
        let mut again = serde_json::from_value::<RecommenderModelStatus>(written).unwrap();
        again.adopt_previous();
        assert_eq!(again, status, "adopting twice changes nothing");
    }

    /// What the ledger records wins over an old field left beside it; run numbers never go back.
    #[test]
    fn the_ledger_wins_over_an_old_field() {
        let mut status: RecommenderModelStatus = serde_json::from_value(serde_json::json!({
            "runs": {"last": 7, "lastCompleted": 7, "trainedSpecHash": "new"},
            "lastRun": 4, "lastCompletedRun": 9, "trainedSpecHash": "old", "consecutiveFailures": 2,
        }))
        .unwrap();
        status.adopt_previous();
        assert_eq!((status.runs.last, status.runs.last_completed), (7, 9));
        assert_eq!(status.runs.trained_spec_hash.as_deref(), Some("new"));
        assert_eq!(status.runs.consecutive_failures, 2);
    }
}
