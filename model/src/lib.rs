//! The trained recommender model, shared by the trainer that writes it and the predictor that
//! serves it: the artifact file (its versioned format and its own metadata types), id maps,
//! factors, predictions and ranking, and the hyperparameters a model records.
//!
//! Nothing here trains or loads ratings, so serving pulls in none of the trainer's dependencies.

pub mod artifact;
pub mod error;
pub mod factors;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod ids;
pub mod model;
pub mod params;
pub mod rank;
pub mod rated;
pub mod simd;

pub use artifact::{Artifact, ArtifactMeta, FORMAT_VERSION};
pub use error::ArtifactError;
pub use factors::Factors;
pub use ids::IdMap;
pub use model::{Model, Prediction, RatingScale, Recommendations, Scored};
pub use params::{BaselineParams, Hyperparameters, SvdParams};
pub use rank::{Query, Ranker, best_of};
pub use rated::RatedItems;
