//! What the integration tests share: the backend contract, and the S3 server from the crate's
//! `testing` feature.

#![allow(dead_code, unused_imports)] // Each test binary uses a part of this.

pub mod contract;

pub use recommender_store::testing::{Server, server};
