//! `recommender-predictor`: serves a trainer artifact over HTTP with predictions, suggestions,
//! a feedback loop, Prometheus metrics and hot reload. See `docs/predictor-api.md`.

pub mod auth;
pub mod config;
pub mod error;
pub mod feedback;
pub mod handlers;
pub mod input;
pub mod metrics;
pub mod reload;
pub mod routes;
pub mod server;
pub mod state;
pub mod top_index;

pub use config::Config;
pub use error::Error;
pub use routes::router;
pub use state::AppState;
