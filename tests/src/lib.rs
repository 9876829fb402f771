//! End-to-end test support for recommender-operator: the test-only node agent that runs pods as
//! local processes (the control plane and PostgreSQL fixture are the scripts in tests/cluster).

pub mod agent;
mod error;

pub use error::Error;
