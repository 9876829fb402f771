//! Every label and annotation key the operator reads or writes, in one place: the Job and
//! Deployment builders, the watches' selectors and the observers must agree on them.

/// The field manager of every server-side apply, and the `managed-by` label's value.
pub const MANAGER: &str = "recommender-operator";
/// The field manager that holds a predictor's replica count while it passes from the operator
/// to an autoscaler (see `decide::scaling`).
pub const HANDOVER_MANAGER: &str = "recommender-operator-handover";

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const INSTANCE: &str = "app.kubernetes.io/instance";

/// The `RecommenderModel` a child belongs to.
pub const MODEL: &str = "recommender.dev/model";
/// The training run number of a trainer Job and its pods.
pub const RUN: &str = "recommender.dev/run";
/// The forward-evaluation number of an evaluation Job and its pods.
pub const EVALUATION: &str = "recommender.dev/evaluation";
/// The search number of a tuning search's trial Jobs, their pods and plan ConfigMaps.
pub const SEARCH: &str = "recommender.dev/search";
/// The rung (0, 1, ...) of a search a trial Job runs.
pub const RUNG: &str = "recommender.dev/rung";
/// The model version a trainer Job produces or a predictor pod serves.
pub const VERSION: &str = "recommender.dev/version";

/// Set by the Job controller on its pods (the unprefixed key on older API servers).
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const JOB_NAME_LEGACY: &str = "job-name";

pub const COMPONENT_TRAINER: &str = "trainer";
pub const COMPONENT_PREDICTOR: &str = "predictor";
/// The model store cleanup Jobs (not training runs: they carry no run label).
pub const COMPONENT_CLEANUP: &str = "cleanup";
/// Forward-evaluation Jobs (the trainer image's `score`).
pub const COMPONENT_EVALUATOR: &str = "evaluator";

/// Tuning trial Jobs (one Indexed Job per rung of a search) and their plan ConfigMaps.
pub const COMPONENT_TRIAL: &str = "trial";

/// Set by the Job controller on the pods of an Indexed Job: which index (trial) the pod runs.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Job annotations that let a restarted operator adopt a run intact.
pub const ANNOTATION_TRIGGER: &str = "recommender.dev/trigger";
pub const ANNOTATION_STARTED_AT: &str = "recommender.dev/started-at";
pub const ANNOTATION_SPEC_HASH: &str = "recommender.dev/spec-hash";
/// On a trainer Job: the tuning search whose best parameters it trains.
pub const ANNOTATION_SEARCH: &str = "recommender.dev/search";
/// On an evaluation Job: the scored model's snapshot (epoch seconds).
pub const ANNOTATION_SINCE: &str = "recommender.dev/since";

/// On a predictor pod template: the `resourceVersion` of the write token's Secret, so that a
/// rotated token rolls the pods.
pub const WRITE_TOKEN_VERSION: &str = "recommender.dev/write-token-version";
/// On a predictor Deployment: the name of the NetworkPolicy the operator applied beside it, so
/// that it is deleted when `spec.predictor.networkPolicy` goes (the policy itself is never read).
pub const NETWORK_POLICY: &str = "recommender.dev/network-policy";

/// Annotation on a `RecommenderModel` whose value, when changed, requests one training run.
pub const RETRAIN_ANNOTATION: &str = "recommender.dev/retrain";
/// Annotation on a `RecommenderModel` promoting the rollout in progress at once (skipping its
/// remaining stages) when its value is that rollout's `status.rollout.id`; any other value is
/// ignored, so a stale request never promotes the next candidate.
pub const PROMOTE_ANNOTATION: &str = "recommender.dev/promote";
/// Annotation on a `RecommenderModel` aborting the rollout in progress when its value is that
/// rollout's `status.rollout.id`; any other value is ignored.
pub const ABORT_ANNOTATION: &str = "recommender.dev/abort";

/// The rollout config's ConfigMap is `<model>-rollout`, with this key, mounted in the predictor
/// pods at this folder (a folder, not the file: a file mounted by `subPath` never sees updates).
pub const ROLLOUT_CONFIG_KEY: &str = "rollout.json";
pub const ROLLOUT_CONFIG_DIR: &str = "/etc/recommender/rollout";

/// The label a user puts on a Secret (value `true`) to let the operator read it and send its value
/// to the database a spec names. Without it, a spec could make the operator read any Secret of its
/// namespace and send it to any host.
pub const ALLOW_SECRET: &str = "recommender.dev/allow";

/// `key=value` for label selectors.
pub fn selector(key: &str, value: &str) -> String {
    format!("{key}={value}")
}
