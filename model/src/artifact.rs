//! The model artifact: one self-describing, versioned, checksummed file.
//!
//! Layout (integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `RECMODEL` |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 8 | length of the metadata |
//! | … | metadata as JSON ([`ArtifactMeta`], the artifact's own types), readable with `strings` |
//! | 8 | length of the model |
//! | … | the [`Model`] in postcard |
//! | 32 | SHA-256 of every byte before it |
//!
//! Format versions, each pinned by a golden file in `model/testdata/` that the writer of that
//! version reproduces byte for byte and every later reader still loads
//! (`model/tests/artifact_format.rs`):
//!
//! | version | what changed |
//! |---|---|
//! | 1 | the first format: the layout above, [`ArtifactMeta`] and [`Model`] as they are |
//! | 2 | [`ArtifactMeta`] ends with `fit_threads` (an SVD model's `--fit-threads`, absent for a baseline); a format-1 file reads with it absent |
//!
//! A reader loads every format from 1 to [`FORMAT_VERSION`] (a later one is refused as
//! unsupported); the writer writes [`FORMAT_VERSION`] only.
//!
//! [`load`] checks the magic, version, lengths and checksum before decoding anything, so a
//! truncated or corrupted file is refused as a whole; [`save`] writes a temp file in the target
//! folder, fsyncs it and renames it over the target, so readers never see half a file.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::ArtifactError;
use crate::model::Model;

mod meta;
pub use meta::{ArtifactMeta, CvMetrics, TrainingData};

pub const MAGIC: [u8; 8] = *b"RECMODEL";
/// Bumped whenever the layout or the encoding of [`ArtifactMeta`] / [`Model`] changes; the
/// golden file of each version (`model/testdata/artifact-v<N>.model`) pins its bytes.
pub const FORMAT_VERSION: u32 = 2;

const HEADER: usize = 8 + 4 + 8;
const CHECKSUM: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    pub meta: ArtifactMeta,
    pub model: Model,
}

impl Artifact {
    /// The complete file content.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ArtifactError> {
        let meta =
            serde_json::to_vec(&self.meta).map_err(|e| ArtifactError::Encode(e.to_string()))?;
        let model =
            postcard::to_stdvec(&self.model).map_err(|e| ArtifactError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(HEADER + meta.len() + 8 + model.len() + CHECKSUM);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&(model.len() as u64).to_le_bytes());
        out.extend_from_slice(&model);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        Ok(out)
    }

    /// Parses and verifies a complete file; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ArtifactError> {
        let truncated = |detail: String| ArtifactError::Truncated {
            path: path.to_owned(),
            detail,
        };
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(ArtifactError::NotAnArtifact {
                path: path.to_owned(),
            });
        }
        if bytes.len() < HEADER {
            return Err(truncated(format!(
                "{} bytes, header needs {HEADER}",
                bytes.len()
            )));
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(1..=FORMAT_VERSION).contains(&found) {
            return Err(ArtifactError::UnsupportedFormat {
                path: path.to_owned(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        let section = |at: usize| -> Result<(usize, usize), ArtifactError> {
            let len_bytes = bytes
                .get(at..at + 8)
                .ok_or_else(|| truncated(format!("length field at byte {at} is missing")))?;
            let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
            let start = at + 8;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| start.checked_add(l))
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| {
                    truncated(format!(
                        "section at byte {start} claims {len} bytes, file has {}",
                        bytes.len()
                    ))
                })?;
            Ok((start, end))
        };
        let (meta_start, meta_end) = section(12)?;
        let (model_start, model_end) = section(meta_end)?;
        if model_end + CHECKSUM != bytes.len() {
            return Err(truncated(format!(
                "expected {} bytes, file has {}",
                model_end + CHECKSUM,
                bytes.len()
            )));
        }
        let sum = Sha256::digest(&bytes[..model_end]);
        if sum.as_slice() != &bytes[model_end..] {
            return Err(ArtifactError::ChecksumMismatch {
                path: path.to_owned(),
            });
        }
        let corrupt = |detail: String| ArtifactError::CorruptArtifact {
            path: path.to_owned(),
            detail,
        };
        let meta: ArtifactMeta = serde_json::from_slice(&bytes[meta_start..meta_end])
            .map_err(|e| corrupt(format!("metadata: {e}")))?;
        if meta.format_version != found {
            return Err(corrupt(format!(
                "metadata says format {} but the header says {found}",
                meta.format_version
            )));
        }
        if found < 2 && meta.fit_threads.is_some() {
            return Err(corrupt(format!(
                "metadata of format {found} has fit_threads, which format 2 added"
            )));
        }
        let model: Model = postcard::from_bytes(&bytes[model_start..model_end])
            .map_err(|e| corrupt(format!("model: {e}")))?;
        model.validate().map_err(corrupt)?;
        Ok(Artifact { meta, model })
    }
}

/// Writes `artifact` to `path` atomically: temp file in the same folder, fsync, rename, fsync of
/// the folder.
pub fn save(path: impl AsRef<Path>, artifact: &Artifact) -> Result<(), ArtifactError> {
    let path = path.as_ref();
    let bytes = artifact.to_bytes()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| ArtifactError::NotAFilePath {
            path: path.to_owned(),
        })?;
    // A model's first version goes into a folder of its own on the model store that nothing has
    // created yet.
    std::fs::create_dir_all(dir).map_err(|e| ArtifactError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| ArtifactError::io(dir, e))?;
    // Temp files are created 0600; the predictor may run as another user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| ArtifactError::io(tmp.path(), e))?;
    }
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| ArtifactError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| ArtifactError::io(path, e.error))?;
    // The rename is durable only once the folder entry is on disk.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ArtifactError::io(dir, e))?;
    Ok(())
}

/// Reads and verifies the artifact at `path`.
pub fn load(path: impl AsRef<Path>) -> Result<Artifact, ArtifactError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ArtifactError::io(path, e))?;
    Artifact::from_bytes(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::tiny_model;
    use crate::params::{Hyperparameters, SvdParams};

    fn sample() -> Artifact {
        let model = tiny_model();
        Artifact {
            meta: crate::fixtures::meta(&model, Hyperparameters::Svd(SvdParams::default())),
            model,
        }
    }

    #[test]
    fn save_creates_the_model_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("movies").join("v1.model");
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), sample());
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v7.model");
        let a = sample();
        save(&path, &a).unwrap();
        let b = load(&path).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.model.predict("a", "z"), a.model.predict("a", "z"));
        // No temp file is left behind, and other users (the predictor) can read it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let bytes = sample().to_bytes().unwrap();
        let p = Path::new("x.model");
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                Artifact::from_bytes(&bad, p).is_err(),
                "flip at byte {at} accepted"
            );
        }
        let mut bad = bytes.clone();
        let mid = bytes.len() - 40;
        bad[mid] ^= 1;
        assert!(matches!(
            Artifact::from_bytes(&bad, p),
            Err(ArtifactError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn truncation_and_garbage_are_rejected() {
        let bytes = sample().to_bytes().unwrap();
        let p = Path::new("x.model");
        for len in 0..bytes.len() {
            assert!(Artifact::from_bytes(&bytes[..len], p).is_err(), "len {len}");
        }
        assert!(matches!(
            Artifact::from_bytes(&bytes[..bytes.len() - 1], p),
            Err(ArtifactError::Truncated { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Artifact::from_bytes(&longer, p).is_err());
        assert!(matches!(
            Artifact::from_bytes(b"hello world, not a model", p),
            Err(ArtifactError::NotAnArtifact { .. })
        ));
    }

    #[test]
    fn newer_format_is_refused() {
        let mut bytes = sample().to_bytes().unwrap();
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = Artifact::from_bytes(&bytes, Path::new("x.model")).unwrap_err();
        assert!(
            matches!(err, ArtifactError::UnsupportedFormat { found, .. } if found == FORMAT_VERSION + 1)
        );
    }

    /// A format-1 file is one whose header and metadata say 1 and whose metadata lacks
    /// `fit_threads`; one that claims it was not written by a format-1 writer.
    #[test]
    fn format_one_reads_without_fit_threads_and_refuses_them() {
        let as_format = |artifact: &Artifact, format: u32| {
            let mut bytes = artifact.to_bytes().unwrap();
            bytes[8..12].copy_from_slice(&format.to_le_bytes());
            let end = bytes.len() - CHECKSUM;
            let sum = Sha256::digest(&bytes[..end]);
            bytes[end..].copy_from_slice(&sum);
            bytes
        };
        let p = Path::new("x.model");
        let mut old = sample();
        (old.meta.format_version, old.meta.fit_threads) = (1, None);
        assert_eq!(Artifact::from_bytes(&as_format(&old, 1), p).unwrap(), old);
        old.meta.fit_threads = Some(2);
        let err = Artifact::from_bytes(&as_format(&old, 1), p).unwrap_err();
        assert!(err.to_string().contains("fit_threads"), "{err}");
        let err = Artifact::from_bytes(&as_format(&old, 0), p).unwrap_err();
        assert!(
            matches!(err, ArtifactError::UnsupportedFormat { found: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_folder_is_not_a_save_target() {
        let err = save("/tmp/..", &sample()).unwrap_err();
        assert!(matches!(err, ArtifactError::NotAFilePath { .. }), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load("/nonexistent/dir/v1.model").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/v1.model"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_model_is_refused_even_with_a_valid_checksum() {
        let mut a = sample();
        a.model.factors.item_bias.pop();
        let bytes = a.to_bytes().unwrap();
        assert!(matches!(
            Artifact::from_bytes(&bytes, Path::new("x.model")),
            Err(ArtifactError::CorruptArtifact { .. })
        ));
    }
}
