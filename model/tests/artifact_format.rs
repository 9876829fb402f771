//! The artifact's bytes, pinned by a golden file per format version (`model/testdata/`).
//!
//! The writer must reproduce the golden of [`FORMAT_VERSION`] byte for byte, so a change to the
//! encoding (the layout, the metadata's JSON, the model's postcard) fails here until the version
//! is bumped; and every golden must still load, so no build stops reading a format it once
//! wrote. A new version's golden is written, never overwritten, by
//! `RECOMMENDER_WRITE_GOLDEN=1 cargo test -p recommender-model --test artifact_format`.

use std::path::{Path, PathBuf};
use std::sync::Once;

use ndarray::array;
use recommender_model::artifact::{CvMetrics, TrainingData};
use recommender_model::{
    Artifact, ArtifactMeta, FORMAT_VERSION, Factors, Hyperparameters, IdMap, Model, RatedItems,
    RatingScale, SvdParams, artifact,
};

/// A tiny model with every part of the format in it: string ids, biases, factors, rated items
/// and metadata with each optional field present. Every value is spelled out (no `Default`), so
/// only a change of encoding changes the bytes.
fn golden() -> Artifact {
    let factors = Factors {
        global_mean: 3.5,
        biased: true,
        user_bias: vec![0.5, -0.25],
        item_bias: vec![0.125, 0.375, -0.25],
        user_factors: array![[1.0, 0.0], [0.0, 2.0]],
        item_factors: array![[0.25, 0.5], [0.125, -0.125], [1.0, 0.5]],
    };
    let model = Model {
        users: IdMap::from_ids(vec!["alice".into(), "bob".into()]).unwrap(),
        items: IdMap::from_ids(vec!["x".into(), "y".into(), "z".into()]).unwrap(),
        scale: RatingScale { lo: 1.0, hi: 5.0 },
        factors,
        rated: RatedItems::from_pairs(2, [(0u32, 0u32), (0, 2), (1, 1)].into_iter()),
    };
    let meta = ArtifactMeta {
        format_version: FORMAT_VERSION,
        version: "v7".into(),
        created_at: "2026-11-27T23:00:00Z".into(),
        algorithm: "svd".into(),
        hyperparameters: Hyperparameters::Svd(SvdParams {
            n_factors: 2,
            n_epochs: 20,
            biased: true,
            init_mean: 0.0,
            init_std: 0.1,
            lr_bu: 0.005,
            lr_bi: 0.005,
            lr_pu: 0.005,
            lr_qi: 0.005,
            reg_bu: 0.02,
            reg_bi: 0.02,
            reg_pu: 0.02,
            reg_qi: 0.02,
            seed: 42,
        }),
        data: TrainingData {
            rows: 3,
            users: 2,
            items: 3,
            max_timestamp: Some(893_286_638),
            content_hash: "ab".repeat(32),
            skipped: 1,
        },
        metrics: CvMetrics {
            folds: 4,
            rmse: 0.9387,
            rmse_std: 0.0031,
            mae: 0.7403,
            mae_std: 0.0022,
            accuracy: 0.7415,
            precision_at_10: 0.25,
            recall_at_10: 0.125,
            ndcg_at_10: 0.375,
        },
        trainer_version: "0.1.0".into(),
        fit_threads: Some(2),
    };
    Artifact { meta, model }
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn golden_path(version: u32) -> PathBuf {
    testdata().join(format!("artifact-v{version}.model"))
}

/// With `RECOMMENDER_WRITE_GOLDEN` set, writes the current version's golden if it has none yet
/// (once per test process, before either test reads the folder).
fn write_a_missing_golden() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let path = golden_path(FORMAT_VERSION);
        if std::env::var_os("RECOMMENDER_WRITE_GOLDEN").is_some() && !path.exists() {
            std::fs::write(&path, golden().to_bytes().unwrap()).unwrap();
        }
    });
}

#[test]
fn the_writer_reproduces_the_golden_of_its_format_version() {
    write_a_missing_golden();
    let bytes = golden().to_bytes().unwrap();
    let path = golden_path(FORMAT_VERSION);
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; a new format version needs its golden file: \
             RECOMMENDER_WRITE_GOLDEN=1 cargo test -p recommender-model --test artifact_format",
            path.display()
        )
    });
    assert!(
        bytes == expected,
        "the artifact's bytes differ from {} ({} bytes written, {} in the golden): the format \
         changed, so bump FORMAT_VERSION (it is {FORMAT_VERSION}), keep a reader for format \
         {FORMAT_VERSION} and write the new version's golden",
        path.display(),
        bytes.len(),
        expected.len()
    );
}

#[test]
fn every_golden_still_loads() {
    write_a_missing_golden();
    let mut versions: Vec<u32> = std::fs::read_dir(testdata())
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().ok()?;
            name.strip_prefix("artifact-v")?
                .strip_suffix(".model")?
                .parse()
                .ok()
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions.last(),
        Some(&FORMAT_VERSION),
        "a golden for every format up to the current one"
    );
    let expected = golden();
    for version in versions {
        let path = golden_path(version);
        let loaded = artifact::load(&path).unwrap_or_else(|e| panic!("format {version}: {e}"));
        assert_eq!(loaded.model, expected.model, "format {version}");
        // What each format added reads as absent from the formats before it.
        let mut meta = expected.meta.clone();
        meta.format_version = version;
        if version < 2 {
            meta.fit_threads = None;
        }
        assert_eq!(loaded.meta, meta, "format {version}");
        let p = loaded.model.predict("alice", "y");
        assert!(p.user_known && p.item_known, "format {version}");
    }
}
