//! Surprise-compatible recommender training: SVD by SGD and BaselineOnly by ALS, rating loaders,
//! cross-validation and the model artifact the predictor serves.

pub mod artifact;
pub mod baseline;
pub mod cv;
pub mod data;
pub mod error;
pub mod generate;
pub mod kernel;
pub mod loaders;
pub mod model;
pub mod pg;
pub mod run;
pub mod svd;
pub mod train;

pub use artifact::{Artifact, ArtifactError, ArtifactMeta, Hyperparameters};
pub use error::{Error, Result};
pub use model::{IdMap, Model, Prediction, RatingScale, Recommendations, Scored};
