//! Properties of the artifact file over generated models (proptest): whatever the writer makes
//! reads back equal, through memory and through `save`/`load`; and a file that is cut short,
//! has bytes after its end or has any one byte changed is refused, naming the file, so a
//! predictor never serves a damaged model. The fuzz target `fuzz/fuzz_targets/artifact.rs`
//! searches the same reader with coverage guidance (docs/fuzzing.md); these run in the unit suite.

use std::path::Path;

use ndarray::Array2;
use proptest::prelude::*;
use recommender_model::artifact::{self, CvMetrics, TrainingData};
use recommender_model::{
    Artifact, ArtifactError, ArtifactMeta, BaselineParams, FORMAT_VERSION, Factors,
    Hyperparameters, IdMap, Model, RatedItems, RatingScale, SvdParams,
};

/// `n` distinct ids of any text, multi-byte characters and control characters included.
fn ids(n: usize) -> impl Strategy<Value = IdMap> {
    proptest::collection::hash_set(".{1,12}", n).prop_map(|set| {
        IdMap::from_ids(set.into_iter().collect()).expect("a set's ids are distinct")
    })
}

fn finite(range: f32) -> impl Strategy<Value = f32> {
    -range..range
}

fn model() -> impl Strategy<Value = Model> {
    (1usize..6, 1usize..8, 0usize..4, any::<bool>()).prop_flat_map(|(nu, ni, k, biased)| {
        let bias = move |n| {
            proptest::collection::vec(finite(2.0), n)
                .prop_map(move |v| if biased { v } else { vec![0.0; n] })
        };
        let factors = move |rows| proptest::collection::vec(finite(1.0), rows * k);
        let rated = proptest::collection::vec((0..nu as u32, 0..ni as u32), 0..12);
        (
            ids(nu),
            ids(ni),
            (0.0f64..3.0, 0.5f64..5.0),
            -5.0f64..5.0,
            (bias(nu), bias(ni), factors(nu), factors(ni)),
            rated,
        )
            .prop_map(
                move |(users, items, (lo, width), global_mean, (ub, ib, uf, itf), rated)| Model {
                    users,
                    items,
                    scale: RatingScale { lo, hi: lo + width },
                    factors: Factors {
                        global_mean,
                        biased,
                        user_bias: ub,
                        item_bias: ib,
                        user_factors: Array2::from_shape_vec((nu, k), uf).expect("nu * k"),
                        item_factors: Array2::from_shape_vec((ni, k), itf).expect("ni * k"),
                    },
                    rated: RatedItems::from_pairs(nu, rated.into_iter()),
                },
            )
    })
}

fn meta(model: &Model) -> impl Strategy<Value = ArtifactMeta> + use<> {
    let (users, items) = (model.users.len() as u64, model.items.len() as u64);
    let metric = || 0.0f64..10.0;
    (
        (".{0,20}", ".{0,20}", ".{0,20}", "[0-9a-f]{64}"),
        (any::<bool>(), 0u32..64, any::<u64>()),
        (
            any::<u64>(),
            proptest::option::of(any::<i64>()),
            any::<u64>(),
        ),
        (
            1u32..10,
            [metric(), metric(), metric(), metric(), metric()],
            [metric(), metric(), metric(), metric()],
        ),
    )
        .prop_map(
            move |(
                (version, created_at, trainer_version, content_hash),
                (svd, n_factors, seed),
                (rows, max_timestamp, skipped),
                (folds, [rmse, rmse_std, mae, mae_std, accuracy], [p, r, ndcg, _]),
            )| ArtifactMeta {
                format_version: FORMAT_VERSION,
                version,
                created_at,
                algorithm: if svd { "svd" } else { "baseline" }.into(),
                hyperparameters: if svd {
                    Hyperparameters::Svd(SvdParams {
                        n_factors: n_factors as usize,
                        seed,
                        ..SvdParams::default()
                    })
                } else {
                    Hyperparameters::Baseline(BaselineParams::default())
                },
                data: TrainingData {
                    rows,
                    users,
                    items,
                    max_timestamp,
                    content_hash,
                    skipped,
                },
                metrics: CvMetrics {
                    folds,
                    rmse,
                    rmse_std,
                    mae,
                    mae_std,
                    accuracy,
                    precision_at_10: p,
                    recall_at_10: r,
                    ndcg_at_10: ndcg,
                },
                trainer_version,
                fit_threads: svd.then_some((seed % 8) as u32 + 1),
            },
        )
}

fn artifacts() -> impl Strategy<Value = Artifact> {
    model().prop_flat_map(|model| {
        meta(&model).prop_map(move |meta| Artifact {
            meta,
            model: model.clone(),
        })
    })
}

/// Refused, and the message names the file: it goes to the predictor's log and the run report.
fn assert_refused(result: Result<Artifact, ArtifactError>, path: &Path) {
    let err = result.expect_err("a damaged artifact was accepted");
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
}

proptest! {
    #[test]
    fn every_artifact_reads_back_equal(artifact in artifacts()) {
        let bytes = artifact.to_bytes().unwrap();
        let back = Artifact::from_bytes(&bytes, Path::new("m.model")).unwrap();
        prop_assert_eq!(&back, &artifact);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes, "the encoding is deterministic");
    }

    #[test]
    fn a_cut_or_extended_file_is_refused(
        artifact in artifacts(),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..40),
    ) {
        let bytes = artifact.to_bytes().unwrap();
        let path = Path::new("models/cut.model");
        let at = cut.index(bytes.len());
        assert_refused(Artifact::from_bytes(&bytes[..at], path), path);
        let longer = [&bytes[..], &extra].concat();
        assert_refused(Artifact::from_bytes(&longer, path), path);
    }

    #[test]
    fn any_changed_byte_is_refused(
        artifact in artifacts(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut bytes = artifact.to_bytes().unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        let path = Path::new("models/flipped.model");
        assert_refused(Artifact::from_bytes(&bytes, path), path);
    }
}

proptest! {
    // Each case writes a file and fsyncs it and its folder: fewer cases than the in-memory ones.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn saved_artifacts_load_equal_and_leave_no_temp_file(artifact in artifacts()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("movies").join("v1.model");
        artifact::save(&path, &artifact).unwrap();
        prop_assert_eq!(artifact::load(&path).unwrap(), artifact);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        prop_assert_eq!(names, vec![std::ffi::OsString::from("v1.model")]);
    }
}

/// The first finding of `every_artifact_reads_back_equal`: serde_json's default float parser read
/// this RMSE back one unit in the last place off, so the metadata of an artifact was not what the
/// trainer wrote (fixed by its `float_roundtrip` feature, Cargo.toml).
#[test]
fn metrics_read_back_to_the_last_bit() {
    let rmse = 9.872395674174493;
    let metrics = CvMetrics {
        folds: 4,
        rmse,
        rmse_std: 0.0,
        mae: 0.0,
        mae_std: 0.0,
        accuracy: 0.0,
        precision_at_10: 0.0,
        recall_at_10: 0.0,
        ndcg_at_10: 0.0,
    };
    let json = serde_json::to_string(&metrics).unwrap();
    let back: CvMetrics = serde_json::from_str(&json).unwrap();
    assert_eq!(back.rmse.to_bits(), rmse.to_bits(), "{json}");
}
