//! The contracts between the parts of recommender-operator, in a crate of their own so each side
//! compiles them without the other's code (the operator reads reports without the numeric code,
//! the predictor serves without the trainer):
//!
//! - [`report`]: the trainer's run report, which the operator reads from the Job's
//!   termination message;
//! - [`metrics`]: the quality measures, per test fold and cross-validated, which the report, the
//!   trainer's folds and the `RecommenderModel` status carry;
//! - [`refusal`]: why a predictor refused the version it was told to serve, which the operator
//!   reads from the pod's termination message;
//! - [`stats`]: what a predictor replica answers on `GET /v1/stats` for the operator's collector;
//! - [`rollout`]: the rollout config the operator mounts into predictor pods (stage, share);
//! - [`defaults`]: the hyperparameter defaults the CRD, the trainer CLI and the operator's Job
//!   arguments share;
//! - [`tuning`]: a hyperparameter search: its spec, its plan of trials, what a trial reports and
//!   the record of the whole search.
//!
//! A change here changes what another part reads: change it together with every part that uses
//! it (docs/contracts.md).

pub mod defaults;
pub mod metrics;
pub mod refusal;
pub mod report;
pub mod rollout;
pub mod stats;
pub mod tuning;
