//! Forward accuracy of a trained model: it predicts every rating that arrived after its
//! snapshot (its `maxTimestamp`), which it never saw, and the errors are reported as RMSE, MAE
//! and accuracy (share within one star) with the count. Cross-validation says how a model does on
//! ratings like those it was trained on; this says how it does on what users rate now.

use std::time::Instant;

use recommender_contract::report::{Forward, Outcome, TrainingReport};

use crate::data::{Ratings, Selection};
use crate::error::{Error, Result};
use crate::model_store::StoredArtifact;
use crate::run::Source;

/// What `recommender-trainer score` is asked to do.
#[derive(Clone, Debug)]
pub struct ScoreConfig {
    /// The model scored: the serving version's artifact, checked against its recorded sha256.
    pub model: StoredArtifact,
    /// Score ratings newer than this; default: the artifact's `maxTimestamp`.
    pub since: Option<i64>,
    /// Where the ratings come from; its selection is set here.
    pub source: Source,
}

/// Scores the model; failures are folded into a `Failed` report rather than returned.
pub fn score(cfg: &ScoreConfig) -> TrainingReport {
    let started = Instant::now();
    // The version and algorithm are the model's, once it is read. The artifact is the model
    // scored, not one written: its size and checksum are its training run's.
    let mut report = TrainingReport {
        artifact: Some(cfg.model.location()),
        ..TrainingReport::failed(String::new(), String::new())
    };
    match stages(cfg, &mut report) {
        Ok(forward) => {
            tracing::info!(
                ratings = forward.ratings,
                rmse = forward.rmse,
                mae = forward.mae,
                "forward evaluation finished"
            );
            report.forward = Some(forward);
            report.outcome = Outcome::Succeeded;
        }
        Err(e) => {
            tracing::error!(error = %e, "forward evaluation failed");
            report.error = Some(e.to_run_error());
        }
    }
    report.durations.total_seconds = started.elapsed().as_secs_f64();
    report.finished_at = jiff::Timestamp::now().to_string();
    report
}

fn stages(cfg: &ScoreConfig, report: &mut TrainingReport) -> Result<Forward> {
    let model = cfg.model.read()?;
    report.version = model.meta.version.clone();
    report.algorithm = model.meta.algorithm.clone();
    let since = cfg.since.or(model.meta.data.max_timestamp).ok_or_else(|| {
        Error::Config(format!(
            "{} records no newest rating time; pass --since",
            cfg.model.location()
        ))
    })?;
    let t = Instant::now();
    let data = with_selection(&cfg.source, since).load()?;
    report.durations.load_seconds = t.elapsed().as_secs_f64();
    report.data = Some(data.fingerprint.clone());
    Ok(forward(&model.model, &data, since))
}

/// The source restricted to ratings newer than `since`.
fn with_selection(source: &Source, since: i64) -> Source {
    let select = Selection {
        after: Some(since),
        timestamps: false,
    };
    let mut source = source.clone();
    match &mut source {
        Source::File(_, opts) | Source::Stored { opts, .. } => opts.select = select,
        Source::Postgres(opts) => opts.select = select,
    }
    source
}

/// Errors of `model` on every rating of `data`, as a user of the predictor would have seen them
/// (unknown users and items fall back as `Model::predict` does).
pub fn forward(model: &recommender_model::Model, data: &Ratings, since: i64) -> Forward {
    let (mut se, mut ae, mut within) = (0f64, 0f64, 0u64);
    for t in &data.triples {
        let predicted = model
            .predict(data.users.id(t.user), data.items.id(t.item))
            .rating;
        let e = t.rating as f64 - predicted;
        se += e * e;
        ae += e.abs();
        within += u64::from(e.abs() <= 1.0);
    }
    let n = data.triples.len().max(1) as f64;
    let unknown = |ids: &[String], known: &dyn Fn(&str) -> bool| {
        ids.iter().filter(|id| !known(id)).count() as u64
    };
    Forward {
        since,
        until: data.fingerprint.max_timestamp,
        ratings: data.triples.len() as u64,
        rmse: (se / n).sqrt(),
        mae: ae / n,
        accuracy: within as f64 / n,
        unknown_users: unknown(data.users.ids(), &|id| model.user_index(id).is_some()),
        unknown_items: unknown(data.items.ids(), &|id| model.item_index(id).is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cv::CvOptions;
    use crate::loaders::FileOptions;
    use crate::model_store::ModelStore;
    use crate::run::{Output, RunConfig, run};
    use crate::svd::SvdParams;
    use recommender_model::Hyperparameters;
    use recommender_store::{Sha256, StoreConfig};
    use std::sync::Arc;

    /// Trains on ratings up to t=1000 and scores ratings after it: a copy of the training
    /// ratings (error as in training), the same copy with `6 - rating` (error far higher), and
    /// a new user.
    #[test]
    fn scores_only_ratings_after_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = String::new();
        for u in 0..30 {
            for i in 0..20 {
                if (u + i) % 4 != 0 {
                    old += &format!("{u}\t{i}\t{}\t{}\n", 1 + (u + 2 * i) % 5, 1 + u * 20 + i);
                }
            }
        }
        let train = dir.path().join("old.data");
        std::fs::write(&train, &old).unwrap();
        let store = ModelStore::open(StoreConfig::Local {
            root: dir.path().to_path_buf(),
        })
        .unwrap();
        let stored = |key: &str, sha256: Option<Sha256>| StoredArtifact {
            store: Arc::clone(&store),
            key: key.into(),
            sha256,
        };
        let hp = Hyperparameters::Svd(SvdParams {
            n_factors: 8,
            n_epochs: 40,
            ..Default::default()
        });
        let cfg = RunConfig {
            source: Source::File(train, FileOptions::default()),
            hyperparameters: hp,
            cv: CvOptions::default(),
            output: Some(Output {
                store: Arc::clone(&store),
                artifact: "v1.model".into(),
            }),
            version: "v1".into(),
            challenge: None,
            verdicts: Vec::new(),
            search: None,
        };
        let trained = run(&cfg, &|_| {}).report;
        assert_eq!(trained.outcome, Outcome::Succeeded);
        let sha256: Sha256 = trained.artifact_sha256.unwrap().parse().unwrap();

        let shifted = |flip: bool| -> String {
            old.lines()
                .map(|l| {
                    let f: Vec<i64> = l.split('\t').map(|x| x.parse().unwrap()).collect();
                    let r = if flip { 6 - f[2] } else { f[2] };
                    format!("{}\t{}\t{r}\t{}\n", f[0], f[1], f[3] + 5000)
                })
                .collect()
        };
        let scored = |extra: String| {
            let all = dir.path().join("all.data");
            std::fs::write(&all, format!("{old}{extra}")).unwrap();
            score(&ScoreConfig {
                model: stored("v1.model", Some(sha256)),
                since: None,
                source: Source::File(all, FileOptions::default()),
            })
        };
        let clean = scored(shifted(false));
        assert_eq!(clean.outcome, Outcome::Succeeded, "{:?}", clean.error);
        assert_eq!(clean.version, "v1");
        let f = clean.forward.unwrap();
        assert_eq!(f.since, 599, "the artifact's newest rating");
        assert_eq!(f.ratings, old.lines().count() as u64, "only the new copy");
        assert_eq!((f.unknown_users, f.unknown_items), (0, 0));

        let flipped = scored(shifted(true) + "99\t3\t5\t9000\n").forward.unwrap();
        assert_eq!(flipped.ratings, f.ratings + 1);
        assert_eq!((flipped.unknown_users, flipped.unknown_items), (1, 0));
        assert_eq!(flipped.until, Some(9000));
        assert!(flipped.rmse > f.rmse + 0.5, "{flipped:?} vs {f:?}");
        assert!(flipped.accuracy < f.accuracy, "{flipped:?} vs {f:?}");

        let missing = score(&ScoreConfig {
            model: stored("v7.model", None),
            since: Some(0),
            source: Source::File(dir.path().join("all.data"), FileOptions::default()),
        });
        assert_eq!(missing.outcome, Outcome::Failed);
        assert_eq!(missing.error.unwrap().reason, "StoreNotFound");

        // A model whose bytes are not the ones recorded for it is not scored.
        let corrupt = score(&ScoreConfig {
            model: stored("v1.model", Some(Sha256::of(b"another model"))),
            since: None,
            source: Source::File(dir.path().join("all.data"), FileOptions::default()),
        });
        let error = corrupt.error.unwrap();
        assert_eq!(error.reason, "StoreCorrupt");
        assert!(
            error.message.contains(&sha256.to_string()),
            "{}",
            error.message
        );
        assert_eq!(corrupt.forward, None);
    }
}
