//! `kubectl-recommender`: the kubectl plugin of RecommenderModels. It reads the model through the
//! operator crate's own types (a renamed field is a compile error here) and steers it only
//! through what the operator honours: annotations and spec fields, so RBAC decides who may.

pub mod actions;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod error;
pub mod render;
mod watch;

#[cfg(test)]
mod testing;

pub use error::{Error, Result};
