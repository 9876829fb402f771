//! The recommender operator: the `RecommenderModel` resource and the controller that trains,
//! promotes, serves and watches each model.

pub mod children;
pub mod clock;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod error;
pub mod gate;
pub mod metrics;
pub mod observe;
pub mod probe;
pub mod server;

pub use error::{Error, Result};
