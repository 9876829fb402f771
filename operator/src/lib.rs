//! The recommender operator: the `RecommenderModel` resource and the controller that trains,
//! promotes, serves and watches each model. A reconcile runs four stages, each a module:
//! `observe` → `validate` → `decide` → `apply`.

pub mod apply;
pub mod children;
pub mod condition;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod error;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod online;
pub mod secrets;
pub mod server;
pub mod time;
pub mod validate;
pub mod vocabulary;

pub use error::{Error, Result};
