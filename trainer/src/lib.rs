//! Surprise-compatible recommender training, everything the `recommender-trainer` binary runs:
//! rating loaders (files and PostgreSQL), SVD by SGD and BaselineOnly by ALS, k-fold
//! cross-validation with top-10 ranking quality, hyperparameter search (one trial, or a whole
//! search), the champion/challenger comparison, forward scoring of a model on newer ratings,
//! synthetic ratings, and the model's folder in the model store (`recommender-store`): artifacts
//! written once, the run history, pruning.
//!
//! The model and its artifact file are `recommender-model`'s and the report a run leaves is
//! `recommender-contract`'s, so nothing but the trainer's own binary depends on this crate.

pub mod baseline;
pub mod blocked;
pub mod challenge;
pub mod cv;
pub mod data;
pub mod error;
pub mod generate;
pub mod history;
pub mod kernel;
mod lanes;
pub mod loaders;
pub mod model_store;
pub mod pg;
pub mod retention;
pub mod run;
pub mod score;
pub mod svd;
pub mod train;
pub mod tune;

pub use error::{Error, Result};
// The model and its artifact live in `recommender-model` (shared with the predictor); re-exported
// so the trainer's callers need only this crate.
pub use recommender_model::{
    Artifact, ArtifactError, ArtifactMeta, Hyperparameters, IdMap, Model, Prediction, RatingScale,
    Recommendations, Scored, artifact,
};
