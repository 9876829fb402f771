//! The model store behind one API, for the trainer (which writes versions), the predictor (which
//! reads the version it is told, verified against the sha256 the operator recorded) and the
//! operator (which lists, inspects and deletes them): a directory (a PersistentVolumeClaim's
//! mount) or an S3-compatible bucket, through the Apache Arrow project's `object_store`.
//!
//! - [`StoreArgs`] / [`StoreConfig`]: where the store is, from flags, with the S3 key pair from
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; credentials never print.
//! - [`Store`]: write-once puts, bounded and sha256-verified gets, head, list, delete (async);
//!   [`BlockingStore`] the same for callers without a runtime.
//! - [`StoreError`] and its [`Reason`]: why an operation failed, in the server's own words.
//!
//! docs/model-store.md describes the store for users. Feature `testing`: the S3 server the
//! integration tests of this crate and those built on it use ([`testing`]).

mod blocking;
mod config;
mod digest;
mod error;
pub mod key;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use blocking::BlockingStore;
pub use config::{ConfigError, Credentials, DEFAULT_REGION, S3Config, StoreArgs, StoreConfig};
pub use digest::Sha256;
pub use error::{Operation, Reason, StoreError};
pub use store::{
    CONNECT_TIMEOUT, MAX_CONCURRENT_REQUESTS, MAX_RETRIES, ObjectInfo, READ_TIMEOUT,
    REQUEST_TIMEOUT, RETRY_TIMEOUT, Store, Written,
};
