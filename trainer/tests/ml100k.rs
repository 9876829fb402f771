//! Quality on MovieLens 100k, read from the shared data folder next to the repository.

use std::path::PathBuf;

use recommender_trainer::Hyperparameters;
use recommender_trainer::cv::{CvOptions, cross_validate};
use recommender_trainer::loaders::{FileOptions, Format, load_file};
use recommender_trainer::svd::SvdParams;

fn u_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/ml-100k/u.data")
}

#[test]
fn svd_five_fold_matches_surprise_quality() {
    let path = u_data();
    assert!(
        path.exists(),
        "MovieLens 100k not found at {}",
        path.display()
    );
    let data = load_file(
        &path,
        &FileOptions {
            format: Format::Ml100k,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(data.fingerprint.rows, 100_000);
    assert_eq!(
        (data.fingerprint.users, data.fingerprint.items),
        (943, 1682)
    );
    let hp = Hyperparameters::Svd(SvdParams::default());
    let opts = CvOptions {
        folds: 5,
        seed: 1,
        ..CvOptions::default()
    };
    let cv = cross_validate(&data, &hp, &opts, &|_| {}).unwrap();
    let m = cv.metrics();
    println!("{}", cv.table("SVD"));
    assert!(m.rmse < 0.945, "RMSE {}", m.rmse);
    assert!(m.mae < 0.745, "MAE {}", m.mae);
    assert!(m.accuracy > 0.7, "accuracy {}", m.accuracy);
    assert!(m.ndcg_at_10 > 0.0 && m.precision_at_10 > 0.0);

    // Each fit on two threads, in blocks: another order of the same updates, the same quality
    // (Surprise's RMSE moves by about 0.002 between seeds).
    let blocked = cross_validate(
        &data,
        &hp,
        &CvOptions {
            fit_threads: 2,
            ..opts
        },
        &|_| {},
    )
    .unwrap()
    .metrics();
    println!(
        "RMSE serial {}, blocked on 2 threads {}",
        m.rmse, blocked.rmse
    );
    assert!(
        (blocked.rmse - m.rmse).abs() < 0.005,
        "RMSE {}",
        blocked.rmse
    );
    assert!((blocked.mae - m.mae).abs() < 0.005, "MAE {}", blocked.mae);
}
