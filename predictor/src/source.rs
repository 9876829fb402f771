//! Where the served artifact comes from, and the checks it passes before it is used:
//!
//! - a version in the model store (`--store ... --model-version v3 --model-sha256 HEX`, what the
//!   operator passes): fetched into memory once at start, refused unless its bytes hash to the
//!   sha256 the operator recorded for the version. A new version arrives by a rollout, not by a
//!   reload, and a refusal ends the process (crate::server);
//! - a file (`--model PATH`, development use): loaded at start and again when it is replaced or on
//!   SIGHUP; with `--model-sha256`, a file with other bytes is refused and the model already
//!   served keeps serving.
//!
//! Either way the artifact's own format and checksum are checked too, and nothing larger than
//! `--max-model-bytes` is read.

use std::path::{Path, PathBuf};

use recommender_contract::refusal::{Refusal, RefusalReason};
use recommender_model::{Artifact, ArtifactError};
use recommender_store::{Reason, Sha256, Store, StoreConfig, StoreError};

use crate::config::Config;

/// The artifact's bytes as read, with their digest.
pub struct Fetched {
    pub artifact: Artifact,
    pub sha256: Sha256,
}

/// A refused load: why, in a word for the metric, the exit report and the operator's condition,
/// and the whole story for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub reason: RefusalReason,
    pub message: String,
}

impl LoadError {
    fn new(reason: RefusalReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl From<StoreError> for LoadError {
    fn from(e: StoreError) -> Self {
        let reason = match e.reason() {
            Reason::Corrupt => RefusalReason::Corrupt,
            Reason::NotFound => RefusalReason::NotFound,
            Reason::TooLarge => RefusalReason::TooLarge,
            Reason::Unreachable => RefusalReason::Unreachable,
            Reason::BucketMissing => RefusalReason::BucketMissing,
            Reason::CredentialsRefused => RefusalReason::CredentialsRefused,
            Reason::InvalidKey | Reason::InvalidConfig => RefusalReason::InvalidConfig,
            Reason::AlreadyExists | Reason::Full | Reason::ReadOnly | Reason::Other => {
                RefusalReason::Other
            }
        };
        Self::new(reason, e.to_string())
    }
}

impl From<ArtifactError> for LoadError {
    fn from(e: ArtifactError) -> Self {
        let reason = match &e {
            ArtifactError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                RefusalReason::NotFound
            }
            ArtifactError::Io { .. } | ArtifactError::NotAFilePath { .. } => RefusalReason::Other,
            _ => RefusalReason::InvalidArtifact,
        };
        Self::new(reason, e.to_string())
    }
}

/// Where the served model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A version in the model store, fetched once.
    Store {
        store: Store,
        config: StoreConfig,
        version: String,
        key: String,
        sha256: Option<Sha256>,
        limit: u64,
    },
    /// A file, loaded again whenever it is replaced.
    File {
        path: PathBuf,
        sha256: Option<Sha256>,
        limit: u64,
    },
}

impl ModelSource {
    /// The source the flags name. Opening a store makes no request; a refused key pair or a
    /// missing bucket shows on the fetch.
    pub fn from_config(config: &Config) -> Result<Self, LoadError> {
        let limit = config.max_model_bytes;
        let sha256 = config.model_sha256;
        if let Some(path) = &config.model {
            return Ok(Self::File {
                path: path.clone(),
                sha256,
                limit,
            });
        }
        let version = config.model_version.clone().ok_or_else(|| {
            LoadError::new(
                RefusalReason::InvalidConfig,
                "--model-version is required with --store (the version to serve, e.g. v3)",
            )
        })?;
        Self::store_version(config, "--model-version", version, sha256)
    }

    /// The rollout's candidate the flags name (`--candidate-version`), if any.
    pub fn candidate_from_config(config: &Config) -> Option<Result<Self, LoadError>> {
        let version = config.candidate_version.clone()?;
        Some(Self::store_version(
            config,
            "--candidate-version",
            version,
            config.candidate_sha256,
        ))
    }

    /// `version` of the store the flags name; `flag` is where the version came from.
    fn store_version(
        config: &Config,
        flag: &str,
        version: String,
        sha256: Option<Sha256>,
    ) -> Result<Self, LoadError> {
        let invalid = |message: String| LoadError::new(RefusalReason::InvalidConfig, message);
        let store_config = config.store.config().map_err(|e| invalid(e.to_string()))?;
        if version.contains('/') {
            return Err(invalid(format!(
                "{flag} {version:?} must name a version (e.g. v3), not a path"
            )));
        }
        let key = format!("{version}.model");
        recommender_store::key::check(&key)
            .map_err(|why| invalid(format!("{flag} {version:?}: the key {key:?} {why}")))?;
        Ok(Self::Store {
            store: Store::open(&store_config)?,
            config: store_config,
            version,
            key,
            sha256,
            limit: config.max_model_bytes,
        })
    }

    /// Whether a replaced file is loaded again (a store's version never changes).
    pub fn watched_file(&self) -> Option<&Path> {
        match self {
            Self::File { path, .. } => Some(path),
            Self::Store { .. } => None,
        }
    }

    /// Where the artifact is, as logs, `/v1/model` and the refusal name it.
    pub fn location(&self) -> String {
        match self {
            Self::Store { config, key, .. } => config.location(key),
            Self::File { path, .. } => path.display().to_string(),
        }
    }

    /// The version the source was told to serve; a file's is whatever it holds.
    pub fn version(&self) -> Option<&str> {
        match self {
            Self::Store { version, .. } => Some(version),
            Self::File { .. } => None,
        }
    }

    /// The bytes, checked against the digest when one is given.
    pub async fn read(&self) -> Result<(Vec<u8>, Sha256), LoadError> {
        match self {
            Self::Store {
                store,
                key,
                sha256,
                limit,
                ..
            } => {
                let bytes = match sha256 {
                    Some(expected) => store.get_verified(key, *expected, *limit).await?,
                    None => store.get(key, *limit).await?,
                };
                let digest = Sha256::of(&bytes);
                Ok((bytes.into(), digest))
            }
            Self::File {
                path,
                sha256,
                limit,
            } => {
                let read = |e: std::io::Error| {
                    LoadError::from(ArtifactError::Io {
                        path: path.clone(),
                        source: e,
                    })
                };
                let size = tokio::fs::metadata(path).await.map_err(read)?.len();
                if size > *limit {
                    return Err(too_large(path, size, *limit));
                }
                let bytes = tokio::fs::read(path).await.map_err(read)?;
                if bytes.len() as u64 > *limit {
                    return Err(too_large(path, bytes.len() as u64, *limit));
                }
                let digest = Sha256::of(&bytes);
                if let Some(expected) = sha256
                    && *expected != digest
                {
                    return Err(LoadError::new(
                        RefusalReason::Corrupt,
                        format!(
                            "{} is corrupt: its sha256 is {digest}, expected {expected}",
                            path.display()
                        ),
                    ));
                }
                Ok((bytes, digest))
            }
        }
    }

    /// Reads and parses the artifact. Parsing (hashing, decoding a large model) runs on the
    /// blocking pool.
    pub async fn fetch(&self) -> Result<Fetched, LoadError> {
        let (bytes, sha256) = self.read().await?;
        let location = self.location();
        let artifact =
            tokio::task::spawn_blocking(move || Artifact::from_bytes(&bytes, Path::new(&location)))
                .await
                .map_err(|e| {
                    LoadError::new(RefusalReason::Other, format!("loading panicked: {e}"))
                })??;
        if let Some(version) = self.version()
            && artifact.meta.version != version
        {
            return Err(LoadError::new(
                RefusalReason::InvalidArtifact,
                format!(
                    "{} holds version {:?}, not {version:?}",
                    self.location(),
                    artifact.meta.version
                ),
            ));
        }
        Ok(Fetched { artifact, sha256 })
    }

    /// What the predictor writes to its termination-message path when it refuses to start.
    pub fn refusal(&self, error: &LoadError) -> Refusal {
        Refusal {
            format: recommender_contract::refusal::REFUSAL_FORMAT,
            reason: error.reason,
            version: self.version().unwrap_or_default().to_string(),
            artifact: self.location(),
            message: error.message.clone(),
        }
    }
}

fn too_large(path: &Path, size: u64, limit: u64) -> LoadError {
    LoadError::new(
        RefusalReason::TooLarge,
        format!(
            "{} is {size} bytes, more than --max-model-bytes {limit}",
            path.display()
        ),
    )
}
