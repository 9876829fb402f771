//! The model store as the trainer sees it: one model's folder, a claim's `/models/<model>` or a
//! bucket's `s3://BUCKET/<prefix>`, reached through `recommender-store` (docs/model-store.md).
//!
//! | key | what | written |
//! |---|---|---|
//! | `<version>.model` | the artifact | by the run that trained it, at its end |
//! | `runs/<version>.json` | the run record ([`crate::history::RunRecord`]) | by the same run, succeeded or failed |
//! | `runs/<version>.verdict.json` | the operator's verdict on that run | by a later run (`--verdicts`) |
//! | `searches/<version>.json` | the tuning search whose best point the run trained (a `SearchRecord`, every trial) | by the same run (`--search-record`) |
//! | anything else | a ratings file (`--source store:KEY`), ... | not by the trainer |
//!
//! Every key is written once (`put_new`): an object appears complete or not at all and is never
//! rewritten, which is why a verdict is an object of its own rather than an edit of the record.
//! `prune` deletes a run's objects together (crate::retention).

use std::sync::Arc;

use bytes::Bytes;
use recommender_model::Artifact;
use recommender_store::{BlockingStore, ObjectInfo, Sha256, StoreConfig, StoreError, Written};

use crate::error::{Error, Result};

/// The folder of run records and verdicts.
pub const RUNS: &str = "runs";

/// The folder of tuning searches, one per run that trained a search's best point.
pub const SEARCHES: &str = "searches";

/// Reading an artifact (the champion, the model scored) never takes more memory than this.
pub const MAX_ARTIFACT_BYTES: u64 = 8 << 30;

/// A model's folder has at most this many objects for `prune` and `history` to look through; a
/// folder with more is refused rather than half-pruned.
pub const MAX_OBJECTS: usize = 100_000;

pub fn artifact_key(version: &str) -> String {
    format!("{version}.model")
}

pub fn record_key(version: &str) -> String {
    format!("{RUNS}/{version}.json")
}

pub fn verdict_key(version: &str) -> String {
    format!("{RUNS}/{version}.verdict.json")
}

pub fn search_key(version: &str) -> String {
    format!("{SEARCHES}/{version}.json")
}

/// What the trainer wrote under a key, and for which version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Artifact,
    Record,
    Verdict,
    Search,
}

/// The kind and version of one of the trainer's keys; `None` for anything else.
pub fn parse_key(key: &str) -> Option<(Kind, &str)> {
    let (kind, version) = if let Some(name) = key.strip_prefix("runs/") {
        match name.strip_suffix(".verdict.json") {
            Some(version) => (Kind::Verdict, version),
            None => (Kind::Record, name.strip_suffix(".json")?),
        }
    } else if let Some(name) = key.strip_prefix("searches/") {
        (Kind::Search, name.strip_suffix(".json")?)
    } else {
        (Kind::Artifact, key.strip_suffix(".model")?)
    };
    (check_version(version).is_ok()).then_some((kind, version))
}

/// A version label names keys, so it must be one key segment.
pub fn check_version(version: &str) -> Result<()> {
    let why = if version.contains('/') {
        Some("has a '/'".to_string())
    } else {
        recommender_store::key::check(version).err()
    };
    match why {
        Some(why) => Err(Error::Config(format!(
            "--version {version:?} cannot name a version in the model store: it {why}"
        ))),
        None => Ok(()),
    }
}

/// The run number of a version `v<N>`, as the operator labels them.
pub fn run_number(version: &str) -> Option<u32> {
    let digits = version.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One model's folder in the store. Cheap to share: the trainer opens it once per command.
#[derive(Debug)]
pub struct ModelStore {
    store: BlockingStore,
    config: StoreConfig,
}

impl ModelStore {
    /// Opens the folder without a request (a refused key pair shows on the first operation).
    pub fn open(config: StoreConfig) -> Result<Arc<Self>> {
        let store = BlockingStore::open(&config)?;
        Ok(Arc::new(Self { store, config }))
    }

    /// As [`open`](Self::open), creating a directory store's folder first: a model's first
    /// version goes into a folder nothing has created yet (a bucket prefix needs no creating).
    pub fn create(config: StoreConfig) -> Result<Arc<Self>> {
        if let StoreConfig::Local { root } = &config {
            std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        }
        Self::open(config)
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Where `key` is, as reports and records name it (a path, or `s3://BUCKET/PREFIX/KEY`).
    pub fn location(&self, key: &str) -> String {
        self.config.location(key)
    }

    /// Writes `artifact` under `key`, which must not exist yet.
    pub fn write_artifact(&self, key: &str, artifact: &Artifact) -> Result<Written> {
        let bytes = artifact.to_bytes()?;
        Ok(self.store.put_new(key, bytes)?)
    }

    /// Reads and checks the artifact under `key`: its sha256 when one is given (what the
    /// operator recorded for the version), and always the artifact's own checksum and format.
    pub fn read_artifact(&self, key: &str, sha256: Option<Sha256>) -> Result<Artifact> {
        let bytes = match sha256 {
            Some(expected) => self.store.get_verified(key, expected, MAX_ARTIFACT_BYTES)?,
            None => self.store.get(key, MAX_ARTIFACT_BYTES)?,
        };
        Ok(Artifact::from_bytes(
            &bytes,
            std::path::Path::new(&self.location(key)),
        )?)
    }

    /// Refuses a key that already holds an object, as `put_new` would, but before the work
    /// that makes the object: a run asked for a version that exists fails in seconds.
    pub fn ensure_absent(&self, key: &str) -> Result<()> {
        match self.store.head(key) {
            Ok(_) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
                store: self.config.to_string(),
                words: "an earlier run wrote this version".into(),
            }
            .into()),
            Err(e) if e.reason() == recommender_store::Reason::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn put_new(&self, key: &str, bytes: impl Into<Bytes>) -> Result<Written, StoreError> {
        self.store.put_new(key, bytes)
    }

    pub fn get(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        self.store.get(key, limit)
    }

    /// The objects under `prefix` (everything for `""`), at most [`MAX_OBJECTS`].
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.store.list(prefix, MAX_OBJECTS)
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete(key)
    }
}

/// An artifact to read from the store: the serving model for `score` and `--challenge`.
#[derive(Clone, Debug)]
pub struct StoredArtifact {
    pub store: Arc<ModelStore>,
    pub key: String,
    /// The digest the operator recorded for this version; checked before the artifact is used.
    pub sha256: Option<Sha256>,
}

impl StoredArtifact {
    pub fn read(&self) -> Result<Artifact> {
        self.store.read_artifact(&self.key, self.sha256)
    }

    pub fn location(&self) -> String {
        self.store.location(&self.key)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use recommender_model::artifact::{ArtifactMeta, CvMetrics, FORMAT_VERSION, TrainingData};
    use recommender_model::fixtures::{self, Shape};
    use recommender_model::{Hyperparameters, SvdParams};

    /// A small artifact labelled `version`, without training one.
    pub(crate) fn artifact(version: &str) -> Artifact {
        let shape = Shape {
            users: 4,
            items: 5,
            factors: 2,
            seed: 7,
        };
        Artifact {
            meta: ArtifactMeta {
                format_version: FORMAT_VERSION,
                version: version.into(),
                created_at: "2026-11-27T22:00:00Z".into(),
                algorithm: "svd".into(),
                hyperparameters: Hyperparameters::Svd(SvdParams::default()),
                data: TrainingData {
                    rows: 8,
                    users: 4,
                    items: 5,
                    max_timestamp: Some(100),
                    content_hash: "ab".repeat(32),
                    skipped: 0,
                },
                metrics: CvMetrics {
                    folds: 4,
                    rmse: 0.9,
                    rmse_std: 0.01,
                    mae: 0.7,
                    mae_std: 0.01,
                    accuracy: 0.7,
                    precision_at_10: 0.1,
                    recall_at_10: 0.1,
                    ndcg_at_10: 0.1,
                },
                trainer_version: "test".into(),
                fit_threads: Some(1),
            },
            model: fixtures::model(shape, [(0u32, 1u32), (1, 2)].into_iter()),
        }
    }

    #[test]
    fn keys_parse_back_to_their_kind_and_version() {
        for version in ["v1", "v12", "t20261109T100000Z"] {
            assert_eq!(
                parse_key(&artifact_key(version)),
                Some((Kind::Artifact, version))
            );
            assert_eq!(
                parse_key(&record_key(version)),
                Some((Kind::Record, version))
            );
            assert_eq!(
                parse_key(&verdict_key(version)),
                Some((Kind::Verdict, version))
            );
            assert_eq!(
                parse_key(&search_key(version)),
                Some((Kind::Search, version))
            );
        }
        for other in [
            "ratings.csv",
            "runs/notes.txt",
            "runs/a/v1.json",
            "searches/a/v1.json",
            "searches/v1.model",
            "data/v1.model",
            ".model",
        ] {
            assert_eq!(parse_key(other), None, "{other}");
        }
        assert_eq!(run_number("v12"), Some(12));
        for no in ["v", "12", "vx", "v1a", "t2026"] {
            assert_eq!(run_number(no), None, "{no}");
        }
    }

    #[test]
    fn a_version_is_one_key_segment() {
        check_version("v3").unwrap();
        for (bad, why) in [
            ("v3/x", "has a '/'"),
            ("", "is empty"),
            ("..", "has a segment \"..\""),
            ("v 3", "has the character ' '"),
        ] {
            let err = check_version(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn artifacts_are_written_once_and_read_verified() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("movies");
        let store = ModelStore::create(StoreConfig::Local { root: root.clone() }).unwrap();
        let artifact = artifact("v1");
        let written = store.write_artifact("v1.model", &artifact).unwrap();
        assert_eq!(
            written.sha256,
            Sha256::of(&std::fs::read(root.join("v1.model")).unwrap())
        );
        let again = store.write_artifact("v1.model", &artifact).unwrap_err();
        assert_eq!(again.reason(), "StoreAlreadyExists", "{again}");
        let taken = store.ensure_absent("v1.model").unwrap_err();
        assert_eq!(taken.reason(), "StoreAlreadyExists", "{taken}");
        store.ensure_absent("v2.model").unwrap();

        assert_eq!(
            store
                .read_artifact("v1.model", Some(written.sha256))
                .unwrap(),
            artifact
        );
        let wrong = store
            .read_artifact("v1.model", Some(Sha256::of(b"other")))
            .unwrap_err();
        assert_eq!(wrong.reason(), "StoreCorrupt");
        assert!(wrong.to_string().contains(&written.sha256.to_string()));
        let missing = store.read_artifact("v2.model", None).unwrap_err();
        assert_eq!(missing.reason(), "StoreNotFound");
    }
}
