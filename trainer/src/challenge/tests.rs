use super::*;
use crate::cv::CvOptions;
use crate::data::Selection;
use crate::loaders::{FileOptions, load_file};
use crate::model_store::ModelStore;
use crate::run::{Output, RunConfig, Source, run};
use crate::svd::SvdParams;
use recommender_store::StoreConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[test]
fn split_by_time_keeps_ties_together() {
    let times = [5, 10, 11, 12, 12, 13, 20];
    let s = split(&times, 10, 0.5);
    // Five new ratings, three asked for; the tie at 12 stays on the training side.
    assert_eq!((s.cut, s.earlier, s.held), (12, vec![2, 3, 4], vec![5, 6]));

    let all = split(&times, 10, 1.0);
    assert_eq!((all.cut, all.earlier.len(), all.held.len()), (10, 0, 5));
    let none = split(&times, 20, 0.5);
    assert_eq!((none.new_ratings(), none.cut), (0, 20));
    // Load order does not matter, time does.
    let s = split(&[40, 30, 20, 10], 0, 0.5);
    assert_eq!((s.earlier, s.held), (vec![3, 2], vec![1, 0]));
}

/// Squared errors around `level` that vary rating by rating.
fn noisy(level: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| level * rng.random_range(0.0..2.0f64))
        .collect()
}

#[test]
fn paired_bootstrap_decides_on_the_pairs() {
    let champion = noisy(1.0, 2000, 1);
    let same = paired_bootstrap(&champion, &champion, 0.95, 500, 7);
    assert_eq!((same.difference, same.low, same.high), (0.0, 0.0, 0.0));

    // The challenger errs 20% less on every rating: clearly better, even though the errors
    // themselves vary far more than the difference between the models.
    let better: Vec<f64> = champion.iter().map(|e| e * 0.8).collect();
    let i = paired_bootstrap(&champion, &better, 0.95, 500, 7);
    assert!(i.difference < 0.0 && i.high < 0.0, "{i:?}");
    assert!(i.low <= i.difference && i.difference <= i.high, "{i:?}");

    // Another model as good on average but not on the same ratings: the interval spans 0.
    let other = noisy(1.0, 2000, 2);
    let i = paired_bootstrap(&champion, &other, 0.95, 500, 7);
    assert!(i.low < 0.0 && i.high > 0.0, "{i:?}");
    // The same seed gives the same interval.
    assert_eq!(i, paired_bootstrap(&champion, &other, 0.95, 500, 7));
    // A higher confidence widens it.
    let wide = paired_bootstrap(&champion, &other, 0.99, 500, 7);
    assert!(
        wide.low <= i.low && wide.high >= i.high,
        "{wide:?} vs {i:?}"
    );
}

/// Old users rate items around the item's level until t=1000; then new users, who rate
/// everything 1.5 stars higher, arrive from t=2000. Returns the file of all ratings and the
/// file of the old ones.
fn write_data(dir: &Path) -> (PathBuf, PathBuf) {
    let (mut all, mut old) = (String::new(), String::new());
    for u in 0..60u32 {
        for i in 0..30u32 {
            if (u * 7 + i * 3) % 5 == 0 {
                continue;
            }
            let (t, lift) = if u < 40 {
                (1 + u * 30 + i, 0.0)
            } else {
                (2000 + i * 40 + u, 1.5)
            };
            let r = (1.0 + f64::from(i % 3) + lift).min(5.0);
            let line = format!("{u}\t{i}\t{r}\t{t}\n");
            if u < 40 {
                old += &line;
            }
            all += &line;
        }
    }
    let (a, o) = (dir.join("all.data"), dir.join("old.data"));
    std::fs::write(&a, all).unwrap();
    std::fs::write(&o, old).unwrap();
    (a, o)
}

fn hp() -> Hyperparameters {
    Hyperparameters::Svd(SvdParams {
        n_factors: 4,
        n_epochs: 30,
        ..Default::default()
    })
}

fn options(store: &Arc<ModelStore>, key: &str, min_ratings: u64) -> ChallengeOptions {
    ChallengeOptions {
        champion: StoredArtifact {
            store: Arc::clone(store),
            key: key.into(),
            sha256: None,
        },
        since: None,
        holdout: 0.5,
        min_ratings,
        confidence: 0.95,
        resamples: 300,
        seed: 3,
    }
}

#[test]
fn a_challenger_that_knows_the_new_users_wins_on_the_newest_ratings() {
    let dir = tempfile::tempdir().unwrap();
    let (all, old) = write_data(dir.path());
    let store = ModelStore::open(StoreConfig::Local {
        root: dir.path().to_path_buf(),
    })
    .unwrap();
    let trained = run(
        &RunConfig {
            source: Source::File(old, FileOptions::default()),
            hyperparameters: hp(),
            cv: CvOptions::default(),
            output: Some(Output {
                store: Arc::clone(&store),
                artifact: "v1.model".into(),
            }),
            version: "v1".into(),
            challenge: None,
            verdicts: Vec::new(),
            search: None,
        },
        &|_| {},
    );
    assert!(trained.report.error.is_none(), "{:?}", trained.report.error);
    let select = Selection {
        timestamps: true,
        ..Selection::default()
    };
    let data = load_file(
        &all,
        &FileOptions {
            select,
            ..FileOptions::default()
        },
    )
    .unwrap();

    let report = challenge(&options(&store, "v1.model", 50), &data, &hp());
    assert_eq!((report.champion.as_str(), report.since), ("v1", 1199));
    let paired = report.paired.expect("a paired comparison");
    assert_eq!(report.fallback, None);
    assert_eq!(paired.train_ratings + paired.ratings, report.new_ratings);
    assert!(paired.ratings >= report.new_ratings / 2 - 20, "{paired:?}");
    assert!(paired.champion_rmse > 1.0, "{paired:?}");
    assert!(paired.high < 0.0, "the challenger is better: {paired:?}");
    assert!((paired.difference - (paired.challenger_rmse - paired.champion_rmse)).abs() < 1e-12);

    let few = challenge(&options(&store, "v1.model", 100_000), &data, &hp());
    assert!(few.paired.is_none());
    let why = few.fallback.unwrap();
    assert!(why.contains("fewer than 100000"), "{why}");

    let missing = challenge(&options(&store, "v9.model", 1), &data, &hp());
    assert_eq!(missing.champion, "v9");
    let why = missing.fallback.unwrap();
    assert!(why.starts_with("cannot read the champion"), "{why}");

    // A champion whose bytes are not the ones the operator recorded is not compared with.
    let mut corrupt = options(&store, "v1.model", 1);
    corrupt.champion.sha256 = Some(recommender_store::Sha256::of(b"another artifact"));
    let why = challenge(&corrupt, &data, &hp()).fallback.unwrap();
    assert!(why.contains("is corrupt: its sha256 is"), "{why}");
}
