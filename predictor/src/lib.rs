//! `recommender-predictor`: serves a trainer artifact over HTTP with predictions, suggestions,
//! a feedback loop and Prometheus metrics: a version fetched from the model store and verified
//! against the sha256 the operator recorded, or a file reloaded when it is replaced. During a
//! rollout it holds a candidate version too and answers each user from their arm's model
//! (`rollout`). See `docs/predictor-api.md`.

pub mod auth;
pub mod config;
pub mod error;
pub mod feedback;
pub mod handlers;
pub mod input;
pub mod metrics;
pub mod reload;
pub mod rollout;
pub mod routes;
pub mod server;
pub mod source;
pub mod state;
pub mod top_index;

pub use config::Config;
pub use error::Error;
pub use routes::router;
pub use state::AppState;
