//! The `RecommenderModel` custom resource (`recommender.dev/v1alpha1`).
//!
//! Hyperparameter defaults come from `recommender_contract::defaults`, the table the trainer CLI
//! reads too, so a minimal manifest trains exactly what `recommender-trainer train` would.
//! Validation lives in the schema (ranges, patterns, CEL rules) so the API server rejects a bad
//! manifest naming the field; `validate` re-checks what the decision relies on.

mod autoscaling;
mod pod;
mod rollout;
mod status;
mod tuning;

pub use autoscaling::*;
pub use pod::*;
pub use rollout::*;
pub use status::*;
pub use tuning::*;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use recommender_contract::defaults::{FOLDS, SVD};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "recommender.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "RecommenderModel";

/// A recommender model that the operator trains, evaluates, promotes, serves and watches.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "recommender.dev",
    version = "v1alpha1",
    kind = "RecommenderModel",
    namespaced,
    status = "RecommenderModelStatus",
    derive = "PartialEq",
    shortname = "rm",
    shortname = "recmodel",
    category = "recommender",
    scale(
        spec_replicas_path = ".spec.predictor.replicas",
        status_replicas_path = ".status.predictor.availableReplicas",
        label_selector_path = ".status.predictor.selector"
    ),
    validation = Rule::new("self.metadata.name.size() <= 40")
        .message("metadata.name must be at most 40 characters: Job and Deployment names derive from it"),
    doc = "A recommender model trained from ratings, gated on its metrics, served and kept fresh.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.serving.version"),
    printcolumn(name = "Rollout", type_ = "string", json_path = ".status.rollout.stage"),
    printcolumn(
        name = "RMSE",
        type_ = "number",
        json_path = ".status.serving.metrics.rmse"
    ),
    printcolumn(name = "MAE", type_ = "number", json_path = ".status.serving.metrics.mae"),
    printcolumn(
        name = "Accuracy",
        type_ = "number",
        json_path = ".status.serving.metrics.accuracy"
    ),
    printcolumn(name = "Stale", type_ = "boolean", json_path = ".status.stale"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Tuned",
        type_ = "number",
        json_path = ".status.tuning.best.score.rmse",
        priority = 1
    ),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct RecommenderModelSpec {
    /// Where the ratings come from: exactly one of `postgres` or `file`.
    pub source: Source,
    /// `svd` (matrix factorisation) or `baseline` (biases only).
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    /// Cross-validation folds used to measure a candidate.
    #[serde(default = "default_folds")]
    #[schemars(range(min = 2, max = 20))]
    pub folds: u32,
    /// Random seed for reproducible training; random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub promotion: Promotion,
    #[serde(default)]
    pub freshness: Freshness,
    #[serde(default)]
    pub trainer: TrainerSettings,
    #[serde(default)]
    pub predictor: PredictorSettings,
    pub model_store: ModelStore,
    /// Serve this earlier promoted version (e.g. `v3`) instead of the newest: a one-line rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^v[1-9][0-9]*$"))]
    pub pinned_version: Option<String>,
    /// Start no new training runs; what serves keeps serving.
    #[serde(default)]
    pub suspend: bool,
    /// Search the hyperparameters before each training run: trials run as pods (one Indexed Job
    /// per rung), and the run trains the best trial's parameters instead of `algorithm` and
    /// `hyperparameters`. A retrain whose space is unchanged starts from the previous search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.strategy == 'halving' || (!has(self.minEpochs) && !has(self.maxEpochs) && !has(self.eta))")
        .message("spec.tuning: minEpochs, maxEpochs and eta are used with strategy halving only"))]
    #[x_kube(validation = Rule::new("self.strategy != 'halving' || !has(self.space.epochs)")
        .message("spec.tuning.space.epochs: halving sets the epochs itself (minEpochs, maxEpochs)"))]
    pub tuning: Option<recommender_contract::tuning::TuningSpec>,
    /// How a candidate that passed the gate reaches the users: at once (`Immediate`, the
    /// default) or through a shadow stage and canary steps judged on live feedback
    /// (`Progressive`, docs/rollout.md).
    #[serde(default)]
    pub rollout: RolloutSpec,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.postgres) != has(self.file)")
    .message("spec.source: exactly one of spec.source.postgres or spec.source.file must be set"))]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || self.sslMode == 'verify-full'")
    .message("spec.source.postgres.caSecretRef is used with sslMode verify-full"))]
pub struct PostgresSource {
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[serde(default = "default_pg_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    /// The Secret (in the resource's namespace) holding the password; passed as `PGPASSWORD`.
    pub password_secret_ref: SecretKeyRef,
    /// SQL returning user, item, rating[, timestamp as epoch seconds].
    #[x_kube(validation = Rule::new("self.trim().size() > 0")
        .message("spec.source.postgres.query must not be blank"))]
    pub query: String,
    /// How often the operator checks the database is reachable (`SELECT 1`).
    #[serde(default = "default_probe_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub probe_interval_seconds: u32,
    /// TLS to the database, for the trainer and the operator's probe: `disable`, `require`
    /// (encrypted, the certificate not checked) or `verify-full` (the certificate must chain to
    /// `caSecretRef`, or the images' system roots, and name `host`).
    #[serde(default, skip_serializing_if = "PgSslMode::is_disable")]
    pub ssl_mode: PgSslMode,
    /// The PEM CA bundle (a Secret in the resource's namespace, key `ca.crt` by default) the
    /// server's certificate must chain to with `verify-full`. The operator reads it (so it must
    /// be among the chart's `rbac.secrets.resourceNames` when those are set); trainers mount it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgSslMode {
    #[default]
    #[serde(rename = "disable")]
    Disable,
    #[serde(rename = "require")]
    Require,
    #[serde(rename = "verify-full")]
    VerifyFull,
}

impl PgSslMode {
    pub fn is_disable(&self) -> bool {
        *self == Self::Disable
    }

    pub fn tls(self) -> recommender_pgtls::SslMode {
        match self {
            Self::Disable => recommender_pgtls::SslMode::Disable,
            Self::Require => recommender_pgtls::SslMode::Require,
            Self::VerifyFull => recommender_pgtls::SslMode::VerifyFull,
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.format == 'delimited' || (!has(self.delimiter) && !has(self.columns) && !has(self.header))")
    .message("spec.source.file: delimiter, header and columns apply only to format 'delimited'"))]
pub struct FileSource {
    /// On a claim, a path relative to its root (mounted at `/models`); in a bucket, a key of the
    /// model's folder (`s3://<bucket>/<prefix>/<model name>/<path>`).
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(p, p == '..')")
        .message("spec.source.file.path must be relative to the model store and must not contain '..'"))]
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    #[serde(default)]
    pub format: FileFormat,
    /// Single-character field delimiter for `delimited` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: Option<String>,
    /// Whether a `delimited` file has a header line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    /// `user,item,rating[,timestamp]` as column names or 0-based indices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub columns: Option<String>,
    /// Skip malformed lines instead of failing the run.
    #[serde(default)]
    pub skip_bad_lines: bool,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileFormat {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "ml-100k")]
    Ml100k,
    #[serde(rename = "ml-1m")]
    Ml1m,
    #[serde(rename = "ml-latest")]
    MlLatest,
    #[serde(rename = "delimited")]
    Delimited,
}

impl FileFormat {
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Ml100k => "ml-100k",
            Self::Ml1m => "ml-1m",
            Self::MlLatest => "ml-latest",
            Self::Delimited => "delimited",
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Svd,
    Baseline,
}

impl Algorithm {
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::Svd => "svd",
            Self::Baseline => "baseline",
        }
    }
}

/// Hyperparameters, named and defaulted as Surprise's `SVD` and `BaselineOnly` (and the
/// trainer's CLI). `factors`, `lrAll`, `initMean`, `initStd` and `biased` apply to `svd`;
/// `regU` and `regI` to `baseline`; `epochs` to both, with each algorithm's own default.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hyperparameters {
    #[serde(default = "default_factors")]
    #[schemars(range(min = 1, max = 1000))]
    pub factors: u32,
    /// Passes over the data; 20 for `svd` and 10 for `baseline` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub epochs: Option<u32>,
    #[serde(default = "default_lr_all")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("spec.hyperparameters.lrAll must be in (0, 1]"))]
    pub lr_all: f64,
    #[serde(default = "default_reg_all")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 10.0")
        .message("spec.hyperparameters.regAll must be in [0, 10]"))]
    pub reg_all: f64,
    #[serde(default = "default_init_mean")]
    pub init_mean: f64,
    #[serde(default = "default_init_std")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 10.0")
        .message("spec.hyperparameters.initStd must be in [0, 10]"))]
    pub init_std: f64,
    #[serde(default = "default_biased")]
    pub biased: bool,
    /// `baseline`: user bias regularisation (15 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000.0")
        .message("spec.hyperparameters.regU must be in [0, 1000]"))]
    pub reg_u: Option<f64>,
    /// `baseline`: item bias regularisation (10 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000.0")
        .message("spec.hyperparameters.regI must be in [0, 1000]"))]
    pub reg_i: Option<f64>,
    /// `[low, high]` rating bounds predictions are clipped to; inferred from the data if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating_scale: Option<RatingScale>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.low < self.high")
    .message("spec.hyperparameters.ratingScale.low must be below high"))]
pub struct RatingScale {
    pub low: f64,
    pub high: f64,
}

/// What a candidate must achieve to replace the serving model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    #[serde(default = "default_max_rmse")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.promotion.maxRmse must be positive"))]
    pub max_rmse: f64,
    #[serde(default = "default_max_mae")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.promotion.maxMae must be positive"))]
    pub max_mae: f64,
    /// Share of predictions within one star of the actual rating the candidate must reach.
    #[serde(default = "default_min_accuracy")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0")
        .message("spec.promotion.minAccuracy must be in [0, 1]"))]
    pub min_accuracy: f64,
    /// Cross-validation stability: the largest standard deviation of RMSE over the folds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.promotion.maxRmseStd must be positive"))]
    pub max_rmse_std: Option<f64>,
    /// Also require the candidate to beat the model now serving: on the newest ratings neither
    /// was trained on when enough exist (see `challenge`), else on cross-validated RMSE.
    #[serde(default)]
    pub must_beat_serving: bool,
    /// How `mustBeatServing` compares a candidate with the serving model.
    #[serde(default)]
    pub challenge: Challenge,
}

/// The champion/challenger test of `mustBeatServing`: the ratings after the serving model's
/// snapshot are split by time; the candidate trains on the earlier part, and both models predict
/// the newest part. The candidate wins when the paired bootstrap interval of its RMSE minus the
/// serving model's lies below zero.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// Share of the new ratings, the newest, that both models predict.
    #[serde(default = "default_holdout")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("spec.promotion.challenge.holdout must be in (0, 1]"))]
    pub holdout: f64,
    /// Fewest ratings to compare on; with fewer, the cross-validated RMSEs are compared and the
    /// `Promoted` condition says so.
    #[serde(default = "default_challenge_min")]
    #[schemars(range(min = 1))]
    pub min_ratings: u64,
    /// Confidence of the interval, e.g. 0.95.
    #[serde(default = "default_confidence")]
    #[x_kube(validation = Rule::new("self >= 0.5 && self < 1.0")
        .message("spec.promotion.challenge.confidence must be in [0.5, 1)"))]
    pub confidence: f64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    /// The serving model is `Stale` once it is older than this (Go duration, e.g. `168h`).
    #[serde(default = "default_max_age")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')")
        .message("spec.freshness.maxAge must be a duration of at least 1s, e.g. 168h"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub max_age: String,
    /// Train a new candidate as soon as the serving model turns stale.
    #[serde(default = "default_true")]
    pub retrain_when_stale: bool,
    /// Also retrain on this fixed interval (Go duration), whatever the model's age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("spec.freshness.retrainInterval must be a duration of at least 1m"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub retrain_interval: Option<String>,
    /// The serving model is also `Stale` (reason `NewData`) once this many ratings newer than
    /// its snapshot exist: a count (`5000`) or a share of the snapshot's ratings (`"10%"`).
    /// Counted from a PostgreSQL source whose query returns a timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_ratings: Option<IntOrString>,
    /// Score the serving model on the ratings that arrived after its snapshot (PostgreSQL
    /// sources with a timestamp); absent: no forward evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_evaluation: Option<ForwardEvaluation>,
}

/// Forward accuracy: a Job of the trainer image predicts every rating newer than the serving
/// model's snapshot and reports RMSE, MAE and accuracy (`status.serving.forward`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ForwardEvaluation {
    /// Evaluate once at least this many new ratings exist.
    #[serde(default = "default_forward_min")]
    #[schemars(range(min = 1))]
    pub min_ratings: u64,
    /// Evaluate at most this often (Go duration).
    #[serde(default = "default_forward_interval")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("spec.freshness.forwardEvaluation.interval must be a duration of at least 1m"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub interval: String,
    /// `AccuracyDegraded` turns true when the forward RMSE exceeds `spec.promotion.maxRmse`,
    /// or the model's cross-validated RMSE by more than this.
    #[serde(default = "default_rmse_increase")]
    #[x_kube(validation = Rule::new("self >= 0.0")
        .message("spec.freshness.forwardEvaluation.maxRmseIncrease must not be negative"))]
    pub max_rmse_increase: f64,
    /// Train a new candidate when `AccuracyDegraded` turns true.
    #[serde(default = "default_true")]
    pub retrain_when_degraded: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// Exact name matches written as a prefix of the right length, priced by the literal (see pod.rs).
#[x_kube(validation = Rule::new("!has(self.env) || self.env.all(e, !(e.name.startsWith('PGPASSWORD') && size(e.name) == 10))")
    .message("spec.trainer.env: PGPASSWORD is set by the operator from spec.source.postgres.passwordSecretRef"))]
pub struct TrainerSettings {
    /// Trainer image; the operator's `--trainer-image` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Seconds a training run may take before it is failed.
    #[serde(default = "default_deadline")]
    #[schemars(range(min = 10, max = 604800))]
    pub active_deadline_seconds: i64,
    /// Resources of each tuning trial pod (`spec.tuning`); `resources` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_resources: Option<ResourceRequirements>,
    /// Threads within one SVD fit (`--fit-threads` of training runs and tuning trials alike).
    /// Above 1 the ratings are trained in blocks: another model than the serial fit's for the
    /// same seed, within noise of it. Absent: the whole cores of `resources.limits.cpu`, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub fit_threads: Option<u32>,
    /// Pod retries inside one run (the Job's `backoffLimit`), for crashes only: a run the
    /// trainer judged failed (exit 1 or 2) or whose pod the cluster disrupted (lost node, drain)
    /// ends, and the operator's backoff decides the next run.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,
    /// Scheduling, identity and metadata of trainer (and model store cleanup) pods.
    #[serde(flatten)]
    pub pod: PodSettings,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.env) || self.env.all(e, !(e.name.startsWith('MODEL_PATH') && size(e.name) == 10) && !(e.name.startsWith('LISTEN_ADDR') && size(e.name) == 11))")
    .message("spec.predictor.env: MODEL_PATH and LISTEN_ADDR are set by the operator (--model, --listen)"))]
pub struct PredictorSettings {
    /// Predictor image; the operator's `--predictor-image` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    #[serde(default = "default_replicas")]
    /// Predictor pods (`kubectl scale rm NAME --replicas N` sets it); ignored while
    /// `autoscaling` is set.
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Scale on load with a HorizontalPodAutoscaler instead of the fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Scheduling, identity and metadata of predictor pods.
    #[serde(flatten)]
    pub pod: PodSettings,
    /// Server-side p99 latency the predictors should stay under (Go duration); `Serving` says
    /// when the replicas of the serving version miss it.
    #[serde(default = "default_latency_objective")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')")
        .message("spec.predictor.latencyObjective must be a positive duration, e.g. 5ms"))]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub latency_objective: String,
    /// The bearer token `POST /v1/feedback` requires (reads stay open): a key of a Secret in
    /// the resource's namespace, mounted read-only into the predictor pods. The Secret must be
    /// opted in like a database Secret (label `recommender.dev/allow=true`, or the operator's
    /// allow list). Absent: anyone who reaches the port may write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_token: Option<WriteTokenRef>,
    /// A NetworkPolicy, owned by the model, admitting to the predictor port only the peers listed
    /// here and the operator's own pods. Absent: none is created (the namespace's own policies,
    /// if any, apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<PredictorNetworkPolicy>,
}

/// A key of a Secret holding the predictor's write token (at least 16 printable ASCII
/// characters; the predictor refuses to start with a shorter one).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WriteTokenRef {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Who may reach the predictor port when the model has its own NetworkPolicy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PredictorNetworkPolicy {
    /// Peers admitted to the predictor port, as in a NetworkPolicy rule's `from`: a
    /// `namespaceSelector`, a `podSelector` (pods of this namespace), both (those pods of those
    /// namespaces) or an `ipBlock`. Include your Prometheus if it scrapes the predictors. Empty:
    /// the operator's pods only.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

/// Where a model's versions are kept: a PersistentVolumeClaim (`claimName`) or an S3-compatible
/// bucket (`s3`), exactly one (docs/model-store.md).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.claimName) != has(self.s3)")
    .message("spec.modelStore: exactly one of spec.modelStore.claimName or spec.modelStore.s3 must be set"))]
pub struct ModelStore {
    /// A PersistentVolumeClaim in the resource's namespace, mounted by trainer and predictor pods
    /// (`/models/<model name>` holds the versions). Pods on several nodes need `ReadWriteMany`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: Option<String>,
    /// An S3-compatible bucket: the versions live under `s3://<bucket>/<prefix>/<model name>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Store>,
    /// Promoted models whose artifacts stay on the store: the newest `keep`, the rollback window
    /// `pinnedVersion` can name (the pinned one is kept too). Older ones and rejected candidates
    /// are deleted by a small cleanup Job once no predictor may load them.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1, max = 10))]
    pub keep: u32,
}

/// An S3-compatible bucket. The schema's patterns are the store's own rules
/// (`recommender_store::StoreArgs`), which `validate` applies again.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Store {
    /// `http://host[:port]` or `https://host[:port]`, nothing else; absent: Amazon S3 in
    /// `region`. An IP address needs `pathStyle: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^https?://[^/@?#\s]+/?$")
    )]
    pub endpoint: Option<String>,
    /// The bucket (3 to 63 lowercase letters, digits, `.` and `-`, beginning and ending with a
    /// letter or digit).
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// Keys live under `<prefix>/<model name>/`: letters, digits and `/ . _ = + -`, no `.` or
    /// `..` segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 512),
        regex(pattern = r"^/?([A-Za-z0-9._=+-]+/)*[A-Za-z0-9._=+-]*$")
    )]
    #[x_kube(validation = Rule::new("!self.split('/').exists(p, p == '.' || p == '..')")
        .message("spec.modelStore.s3.prefix must not have a '.' or '..' segment"))]
    pub prefix: Option<String>,
    /// Signed into every request.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: String,
    /// `http://host/bucket/key` rather than `http://bucket.host/key`: what SeaweedFS, MinIO and
    /// Ceph without wildcard DNS need.
    #[serde(default)]
    pub path_style: bool,
    /// A Secret in the resource's namespace with the keys `accessKeyId` and `secretAccessKey`,
    /// labelled `recommender.dev/allow=true`; pods get them as `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// A PEM CA bundle trusted for an `https://` endpoint's certificate, besides the system's
    /// roots (a Secret key, `ca.crt` by default, labelled like `credentialsSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<CaSecretRef>,
}

impl S3Store {
    /// The Secret keys `credentialsSecret` must hold.
    pub const ACCESS_KEY_ID_KEY: &str = "accessKeyId";
    pub const SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";
}

fn default_region() -> String {
    recommender_store::DEFAULT_REGION.into()
}

fn default_folds() -> u32 {
    FOLDS
}
fn default_pg_port() -> u16 {
    5432
}
fn default_probe_interval() -> u32 {
    15
}
fn default_secret_key() -> String {
    "password".into()
}
fn default_ca_key() -> String {
    "ca.crt".into()
}
fn default_token_key() -> String {
    "token".into()
}
fn default_factors() -> u32 {
    SVD.factors
}
fn default_lr_all() -> f64 {
    SVD.lr_all
}
fn default_reg_all() -> f64 {
    SVD.reg_all
}
fn default_init_mean() -> f64 {
    SVD.init_mean
}
fn default_init_std() -> f64 {
    SVD.init_std
}
fn default_biased() -> bool {
    SVD.biased
}
fn default_true() -> bool {
    true
}
fn default_max_rmse() -> f64 {
    1.0
}
fn default_max_mae() -> f64 {
    0.8
}
/// The old app's target: more than 70% of predictions within one star.
fn default_min_accuracy() -> f64 {
    0.70
}
fn default_max_age() -> String {
    "168h".into()
}
/// The whole rollback window `status.models` can hold (`decide::MODELS_LIMIT`).
fn default_keep() -> u32 {
    10
}
fn default_holdout() -> f64 {
    0.5
}
fn default_challenge_min() -> u64 {
    1000
}
fn default_confidence() -> f64 {
    0.95
}
fn default_forward_min() -> u64 {
    100
}
fn default_forward_interval() -> String {
    "1h".into()
}
fn default_rmse_increase() -> f64 {
    0.1
}
fn default_deadline() -> i64 {
    3600
}
fn default_replicas() -> i32 {
    1
}
/// The old app's target: predictions in under 5 ms.
fn default_latency_objective() -> String {
    "5ms".into()
}
fn default_service_port() -> i32 {
    8080
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            factors: SVD.factors,
            epochs: None,
            lr_all: SVD.lr_all,
            reg_all: SVD.reg_all,
            init_mean: SVD.init_mean,
            init_std: SVD.init_std,
            biased: SVD.biased,
            reg_u: None,
            reg_i: None,
            rating_scale: None,
        }
    }
}

impl Default for Promotion {
    fn default() -> Self {
        Self {
            max_rmse: default_max_rmse(),
            max_mae: default_max_mae(),
            min_accuracy: default_min_accuracy(),
            max_rmse_std: None,
            must_beat_serving: false,
            challenge: Challenge::default(),
        }
    }
}

impl Default for Challenge {
    fn default() -> Self {
        Self {
            holdout: default_holdout(),
            min_ratings: default_challenge_min(),
            confidence: default_confidence(),
        }
    }
}

impl Default for ForwardEvaluation {
    fn default() -> Self {
        Self {
            min_ratings: default_forward_min(),
            interval: default_forward_interval(),
            max_rmse_increase: default_rmse_increase(),
            retrain_when_degraded: true,
        }
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            retrain_when_stale: true,
            retrain_interval: None,
            max_new_ratings: None,
            forward_evaluation: None,
        }
    }
}

impl Default for TrainerSettings {
    fn default() -> Self {
        Self {
            image: None,
            resources: None,
            trial_resources: None,
            fit_threads: None,
            active_deadline_seconds: default_deadline(),
            retries: 0,
            pod: PodSettings::default(),
        }
    }
}

impl Default for PredictorSettings {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_replicas(),
            resources: None,
            port: default_service_port(),
            autoscaling: None,
            pod: PodSettings::default(),
            latency_objective: default_latency_objective(),
            write_token: None,
            network_policy: None,
        }
    }
}

impl RecommenderModel {
    /// The CRD as YAML, as `crdgen` prints it and `crds/` stores it, readable alike by YAML 1.2
    /// and YAML 1.1 parsers (Helm's, PyYAML): see [`quote_yaml11_booleans`].
    pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(&Self::crd()).map(|yaml| quote_yaml11_booleans(&yaml))
    }
}

/// Words that YAML 1.1 reads as booleans and YAML 1.2 as strings (serde_yaml writes YAML 1.2
/// and quotes only `true`/`false`). Unquoted, Helm's parser turned the field name `n` of the
/// feedback sums into `false`, and refused the CRD.
const YAML11_BOOLEANS: [&str; 16] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// Quotes those words where serde_yaml writes them plain: as a mapping key (`n:`), a sequence
/// item (`- n`) or a mapping value (`key: n`).
fn quote_yaml11_booleans(yaml: &str) -> String {
    let quote = |word: &str| {
        if YAML11_BOOLEANS.contains(&word) {
            format!("\"{word}\"")
        } else {
            word.to_string()
        }
    };
    let mut out = String::with_capacity(yaml.len() + 64);
    for line in yaml.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let (dash, rest) = match body.strip_prefix("- ") {
            Some(rest) => ("- ", rest),
            None => ("", body),
        };
        let rewritten = if let Some(key) = rest.strip_suffix(':') {
            format!("{indent}{dash}{}:", quote(key))
        } else if let Some((key, value)) = rest.split_once(": ") {
            format!("{indent}{dash}{}: {}", quote(key), quote(value))
        } else if !dash.is_empty() {
            format!("{indent}{dash}{}", quote(rest))
        } else {
            line.to_string()
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod yaml_tests {
    use super::*;

    #[test]
    fn yaml11_booleans_are_quoted_where_they_stand_plain() {
        let yaml = "properties:\n  n:\n    type: integer\n  mode:\n    default: off\nrequired:\n- n\n- nothing\n";
        assert_eq!(
            quote_yaml11_booleans(yaml),
            "properties:\n  \"n\":\n    type: integer\n  mode:\n    default: \"off\"\nrequired:\n- \"n\"\n- nothing\n"
        );
    }

    #[test]
    fn the_quoted_crd_reads_back_as_the_crd() {
        let yaml = RecommenderModel::crd_yaml().unwrap();
        let read: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let written = serde_yaml::to_value(RecommenderModel::crd()).unwrap();
        assert_eq!(read, written);
        assert!(yaml.contains("- \"n\"\n"), "the sums' field `n` is quoted");
    }
}
