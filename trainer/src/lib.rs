//! Surprise-compatible recommender training: SVD by SGD and BaselineOnly by ALS, rating loaders,
//! cross-validation and the model artifact the predictor serves.

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
pub mod pg;
pub mod retention;
pub mod run;
pub mod score;
pub mod svd;
pub mod train;

pub use error::{Error, Result};
// The model and its artifact live in `recommender-model` (shared with the predictor); re-exported
// so the trainer's callers need only this crate.
pub use recommender_model::{
    Artifact, ArtifactError, ArtifactMeta, Hyperparameters, IdMap, Model, Prediction, RatingScale,
    Recommendations, Scored, artifact,
};
