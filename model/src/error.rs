//! Why an artifact could not be written or read. Every variant names the file, because these
//! messages end up in the trainer's run report and the predictor's logs.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The target of a save is not a file path (a folder, `..`).
    #[error("{path}: not a file path")]
    NotAFilePath { path: PathBuf },

    #[error("{path}: not a model artifact (bad magic bytes)")]
    NotAnArtifact { path: PathBuf },

    #[error(
        "{path}: artifact format {found} is not supported (this build reads formats 1 to {supported})"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{path}: artifact is truncated or has trailing bytes ({detail})")]
    Truncated { path: PathBuf, detail: String },

    #[error("{path}: artifact checksum mismatch, the file is corrupt")]
    ChecksumMismatch { path: PathBuf },

    /// Checksum passed but the content does not decode or is inconsistent (a writer bug).
    #[error("{path}: artifact content is invalid: {detail}")]
    CorruptArtifact { path: PathBuf, detail: String },

    #[error("cannot encode the artifact: {0}")]
    Encode(String),
}

impl ArtifactError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArtifactError::Io {
            path: path.into(),
            source,
        }
    }
}
