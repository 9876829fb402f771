//! The crate's one error type. Every variant says what went wrong and where, because these
//! messages end up in `kubectl describe` via the run report.

use std::path::PathBuf;

use recommender_contract::report::RunError;
use recommender_model::ArtifactError;
use recommender_store::{Reason, StoreError};

/// Everything the trainer library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A data line that could not be parsed; `line` is 1-based.
    #[error("{file}:{line}: {problem}")]
    BadLine {
        file: String,
        line: u64,
        problem: String,
    },

    /// The data as a whole cannot be trained on (empty, too few ratings for the folds, ...).
    #[error("invalid data: {0}")]
    InvalidData(String),

    /// A flag or hyperparameter that makes no sense.
    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("PostgreSQL source: {0}")]
    Postgres(String),

    /// Writing (or, in tests, reading back) the model artifact.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),

    #[error("cannot write the report: {0}")]
    Report(#[from] recommender_contract::report::ReportError),

    /// The model store refused or failed an operation; the store says why in its own words.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The fit's parameters left the finite numbers (a learning rate too high for the data):
    /// nothing it produced is written.
    #[error(
        "the fit diverged at epoch {epoch}: its parameters are no longer finite numbers (lower \
         the learning rate, lrAll)"
    )]
    Diverged { epoch: usize },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Short CamelCase reason for the run report.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Io { .. } => "IoError",
            Error::BadLine { .. } | Error::InvalidData(_) => "InvalidData",
            Error::Config(_) => "InvalidConfiguration",
            Error::Postgres(_) => "SourceUnavailable",
            Error::Artifact(e) => match e {
                ArtifactError::Io { .. } => "IoError",
                ArtifactError::NotAFilePath { .. } => "InvalidConfiguration",
                ArtifactError::Encode(_) => "InternalError",
                ArtifactError::NotAnArtifact { .. }
                | ArtifactError::UnsupportedFormat { .. }
                | ArtifactError::Truncated { .. }
                | ArtifactError::ChecksumMismatch { .. }
                | ArtifactError::CorruptArtifact { .. } => "InvalidArtifact",
            },
            Error::Report(_) => "InternalError",
            Error::Store(e) => store_reason(e.reason()),
            Error::Diverged { .. } => "Diverged",
        }
    }

    /// The error as the run report states it.
    pub fn to_run_error(&self) -> RunError {
        RunError {
            reason: self.reason().to_owned(),
            message: self.to_string(),
        }
    }
}

/// A store failure's run reason: `Store` and the store's own reason (`StoreUnreachable`,
/// `StoreCredentialsRefused`, `StoreFull`, ...), so the operator can name the store as the cause
/// and tell its reasons apart (docs/contracts.md).
pub fn store_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::Unreachable => "StoreUnreachable",
        Reason::BucketMissing => "StoreBucketMissing",
        Reason::CredentialsRefused => "StoreCredentialsRefused",
        Reason::NotFound => "StoreNotFound",
        Reason::AlreadyExists => "StoreAlreadyExists",
        Reason::Corrupt => "StoreCorrupt",
        Reason::TooLarge => "StoreTooLarge",
        Reason::Full => "StoreFull",
        Reason::ReadOnly => "StoreReadOnly",
        Reason::InvalidKey => "StoreInvalidKey",
        Reason::InvalidConfig => "StoreInvalidConfig",
        Reason::Other => "StoreOther",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator reads a store failure back as `Store` + the store's reason.
    #[test]
    fn store_reasons_are_the_stores_own_prefixed() {
        for reason in Reason::ALL {
            assert_eq!(store_reason(reason), format!("Store{}", reason.as_str()));
        }
    }
}
