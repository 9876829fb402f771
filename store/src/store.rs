//! The store: one API over a directory and an S3 bucket, through `object_store`.
//!
//! Writes are whole objects under keys written once ([`Store::put_new`]): the object appears
//! under its key complete or not at all, and a key that already holds an object is refused.
//! - S3: one `PutObject` (atomic by S3's contract) with `If-None-Match: *`, which the server
//!   evaluates under its own lock: of two racing writers exactly one wins, the other gets 412,
//!   reported as [`StoreError::AlreadyExists`]. A server that ignored the header would overwrite;
//!   SeaweedFS (tested here) and Amazon S3 honour it, and `object_store` names R2 and MinIO.
//! - Directory: `object_store` writes `key#N` beside the target, fsyncs it, hard-links it to
//!   the key (which fails if the key exists) and fsyncs the folder; listings never show the
//!   `key#N` staging files, and a writer that dies leaves only such a file behind.
//!
//! Reads are bounded by the caller ([`Store::get`]): the size the store announces is checked
//! before any byte is read, and the bytes received are counted against the same bound.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::limit::LimitStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, RetryConfig,
};

use crate::config::{ConfigError, S3Config, StoreConfig};
use crate::digest::Sha256;
use crate::error::{Operation, Reason, StoreError, classify};
use crate::key;

/// Requests in flight at once per store (and idle connections kept per host).
pub const MAX_CONCURRENT_REQUESTS: usize = 8;
/// Giving up on a host that does not accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A response that stops sending bytes for this long is abandoned.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// One whole request, body included (an artifact of a few hundred MB on a slow link).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Transport failures and 5xx answers are retried this many times, within [`RETRY_TIMEOUT`];
/// a store that stays down is reported as [`Reason::Unreachable`] after about a second.
pub const MAX_RETRIES: usize = 3;
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a write stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    pub size: u64,
    pub sha256: Sha256,
}

/// An object as a listing or `head` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the store's root, as given to [`Store::put_new`].
    pub key: String,
    pub size: u64,
    pub last_modified: jiff::Timestamp,
    pub e_tag: Option<String>,
}

impl From<ObjectMeta> for ObjectInfo {
    fn from(meta: ObjectMeta) -> Self {
        let at = meta.last_modified;
        Self {
            key: meta.location.to_string(),
            size: meta.size,
            last_modified: jiff::Timestamp::new(at.timestamp(), at.timestamp_subsec_nanos() as i32)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            e_tag: meta.e_tag,
        }
    }
}

/// A model store. Cheap to clone; its `Debug` and `Display` are its description, which never
/// holds a credential.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    description: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.description)
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Store {
    /// Opens the store without a request: a missing bucket or refused key pair shows on the first
    /// operation. A directory must exist.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        Self::open_with_ca(config, None)
    }

    /// As [`open`](Self::open), trusting the PEM bundle `ca` (rather than the S3 settings'
    /// `ca_file`) for the endpoint's certificate: for a caller that holds the bundle in memory,
    /// as the operator does after reading it from a Secret.
    pub fn open_with_ca(config: &StoreConfig, ca: Option<&[u8]>) -> Result<Self, StoreError> {
        let description: Arc<str> = config.to_string().into();
        let failed = |reason, words: String| StoreError::Failed {
            op: Operation::Open,
            reason,
            key: String::new(),
            store: description.to_string(),
            words,
        };
        let backend: Arc<dyn ObjectStore> = match config {
            StoreConfig::Local { root } => {
                if let Err(e) = std::fs::read_dir(root) {
                    return Err(failed(Reason::Unreachable, e.to_string()));
                }
                let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| {
                    let (reason, words) = classify(Operation::Open, &e);
                    failed(reason, words)
                })?;
                Arc::new(fs.with_fsync(true))
            }
            StoreConfig::S3(s3) => {
                let bucket = s3_store(s3, ca).map_err(|e| match e {
                    Opened::Config(e) => StoreError::Config(e),
                    Opened::Builder(e) => failed(Reason::InvalidConfig, e.to_string()),
                })?;
                if s3.prefix.is_empty() {
                    Arc::new(bucket)
                } else {
                    Arc::new(PrefixStore::new(bucket, s3.prefix.as_str()))
                }
            }
        };
        let inner = Arc::new(LimitStore::new(backend, MAX_CONCURRENT_REQUESTS));
        Ok(Self { inner, description })
    }

    /// Stores `bytes` under `key`, which must not exist yet (see the module's comment).
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<Written, StoreError> {
        let path = self.path(key)?;
        let written = Written {
            key: key.to_string(),
            size: bytes.len() as u64,
            sha256: Sha256::of(&bytes),
        };
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.inner.put_opts(&path, bytes.into(), create).await {
            Ok(_) => Ok(written),
            Err(e) => match classify(Operation::Put, &e) {
                (Reason::AlreadyExists, words) => Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                    store: self.description.to_string(),
                    words,
                }),
                (reason, words) => Err(self.failed(Operation::Put, key, reason, words)),
            },
        }
    }

    /// The whole object, if it has at most `limit` bytes.
    pub async fn get(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let result = self
            .inner
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| self.error(Operation::Get, key, &e))?;
        let too_large = |size| StoreError::TooLarge {
            key: key.to_string(),
            store: self.description.to_string(),
            size,
            limit,
        };
        let announced = result.meta.size;
        if announced > limit {
            return Err(too_large(announced));
        }
        let mut buffer = BytesMut::with_capacity(announced as usize);
        let mut chunks = result.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| self.error(Operation::Get, key, &e))?;
            let size = (buffer.len() + chunk.len()) as u64;
            if size > limit {
                return Err(too_large(size));
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    }

    /// As [`get`](Self::get), refused as [`StoreError::Corrupt`] unless its sha256 is `expected`.
    pub async fn get_verified(
        &self,
        key: &str,
        expected: Sha256,
        limit: u64,
    ) -> Result<Bytes, StoreError> {
        let bytes = self.get(key, limit).await?;
        let actual = Sha256::of(&bytes);
        if actual != expected {
            return Err(StoreError::Corrupt {
                key: key.to_string(),
                store: self.description.to_string(),
                expected,
                actual,
            });
        }
        Ok(bytes)
    }

    pub async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let path = self.path(key)?;
        match self.inner.head(&path).await {
            Ok(meta) => Ok(meta.into()),
            Err(e) => match classify(Operation::Head, &e) {
                // A HEAD answer has no body, so a 404 does not say whether the key or the bucket is
                // missing; a listing does.
                (Reason::NotFound, words) => match self.inner.list(Some(&path)).next().await {
                    Some(Err(e)) => Err(self.error(Operation::Head, key, &e)),
                    _ => Err(self.failed(Operation::Head, key, Reason::NotFound, words)),
                },
                (reason, words) => Err(self.failed(Operation::Head, key, reason, words)),
            },
        }
    }

    /// The objects under `prefix/` (every object for `""`), sorted by key; more than `limit` is
    /// refused as [`StoreError::TooMany`] rather than cut short.
    pub async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        let path = if prefix.is_empty() {
            None
        } else {
            Some(self.path(prefix)?)
        };
        let mut objects = Vec::new();
        let mut listing = self.inner.list(path.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.error(Operation::List, prefix, &e))?;
            if objects.len() == limit {
                return Err(StoreError::TooMany {
                    prefix: prefix.to_string(),
                    store: self.description.to_string(),
                    limit,
                });
            }
            objects.push(ObjectInfo::from(meta));
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Removes `key`; a key that is already gone is not an error (S3 does not tell).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) => match classify(Operation::Delete, &e) {
                (Reason::NotFound, _) => Ok(()),
                (reason, words) => Err(self.failed(Operation::Delete, key, reason, words)),
            },
        }
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        key::path(key).map_err(|why| StoreError::InvalidKey {
            key: key.to_string(),
            why,
        })
    }

    fn error(&self, op: Operation, key: &str, e: &object_store::Error) -> StoreError {
        let (reason, words) = classify(op, e);
        self.failed(op, key, reason, words)
    }

    fn failed(&self, op: Operation, key: &str, reason: Reason, words: String) -> StoreError {
        StoreError::Failed {
            op,
            reason,
            key: key.to_string(),
            store: self.description.to_string(),
            words,
        }
    }
}

enum Opened {
    Config(ConfigError),
    Builder(object_store::Error),
}

fn s3_store(s3: &S3Config, ca: Option<&[u8]>) -> Result<object_store::aws::AmazonS3, Opened> {
    // reqwest is built without a bundled TLS provider (see the workspace's Cargo.toml) and takes
    // the process's default; ring is the one kube and pgtls use. Already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = ClientOptions::new()
        .with_allow_http(s3.allow_http())
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_read_timeout(READ_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_pool_max_idle_per_host(MAX_CONCURRENT_REQUESTS);
    let certificates = match (ca, &s3.ca_file) {
        (Some(pem), _) => pem_bundle(pem, "the CA bundle given").map_err(Opened::Config)?,
        (None, Some(file)) => ca_bundle(file).map_err(Opened::Config)?,
        (None, None) => Vec::new(),
    };
    for certificate in certificates {
        options = options.with_root_certificate(certificate);
    }
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_access_key_id(s3.credentials.access_key_id())
        .with_secret_access_key(s3.credentials.secret_access_key())
        .with_virtual_hosted_style_request(!s3.path_style)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(retry)
        .with_client_options(options);
    if let Some(endpoint) = &s3.endpoint {
        // object_store takes a virtual-hosted endpoint with the bucket already in the host name.
        let mut endpoint = endpoint.clone();
        if !s3.path_style {
            let host = format!("{}.{}", s3.bucket, endpoint.host_str().unwrap_or_default());
            endpoint.set_host(Some(&host)).map_err(|e| {
                Opened::Config(ConfigError {
                    field: "--store-endpoint",
                    value: Some(host.clone()),
                    why: format!("the virtual-hosted name is not a host name ({e})"),
                })
            })?;
        }
        builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/'));
    }
    builder.build().map_err(Opened::Builder)
}

fn ca_bundle(file: &std::path::Path) -> Result<Vec<Certificate>, ConfigError> {
    let fail = |why: String| ConfigError {
        field: "--store-ca-file",
        value: Some(file.display().to_string()),
        why,
    };
    let pem = std::fs::read(file).map_err(|e| fail(format!("cannot be read: {e}")))?;
    pem_bundle(&pem, &file.display().to_string())
}

/// The certificates of a PEM bundle; `what` names it in the error.
fn pem_bundle(pem: &[u8], what: &str) -> Result<Vec<Certificate>, ConfigError> {
    let fail = |why: String| ConfigError {
        field: "--store-ca-file",
        value: Some(what.to_string()),
        why,
    };
    let certificates =
        Certificate::from_pem_bundle(pem).map_err(|e| fail(format!("is not a PEM bundle: {e}")))?;
    if certificates.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests;
