//! k-fold cross-validation as Surprise's `KFold(shuffle=True)` + `cross_validate`, with the
//! folds trained in parallel and top-10 ranking quality measured on each test fold.

use std::ops::Range;
use std::sync::OnceLock;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use recommender_contract::metrics::{MeanStd, Measure, Metrics, Scores};
use recommender_model::{Factors, Hyperparameters, Query, Ranker, RatedItems};
use serde::{Deserialize, Serialize};

use crate::data::Ratings;
use crate::error::{Error, Result};
use crate::kernel::Triple;
use crate::svd::group_by_user;
use crate::train::fit_ordered;

/// Size of the suggestion lists scored by precision/recall/NDCG.
pub const TOP_K: usize = 10;
/// Users handed to one parallel ranking task: enough for the ranker's blocks, few enough that
/// both cores get work on a small fold.
const RANK_BLOCK: usize = 128;

#[derive(Clone, Debug)]
pub struct CvOptions {
    pub folds: usize,
    pub seed: u64,
    /// A test rating at or above this marks a relevant item for the ranking metrics.
    pub relevance_threshold: f64,
    /// Users per fold whose suggestion lists are scored (a seeded sample; 0 = all). Scoring a
    /// user ranks every item, so on large data this bounds the cost.
    pub ranking_users: usize,
    /// Score the top-10 lists at all: a tuning trial compares the rating errors only, and
    /// ranking is a tenth of a fold's time.
    pub rank: bool,
    /// Train folds concurrently (rayon's pool).
    pub parallel: bool,
    /// Threads of each fit (see [`crate::svd::fit`]). Above 1, folds are trained one after
    /// another, each fit on the pool's threads, instead of one fold per thread.
    pub fit_threads: usize,
}

impl Default for CvOptions {
    fn default() -> Self {
        Self {
            folds: 4,
            seed: 0,
            relevance_threshold: 4.0,
            ranking_users: 2000,
            rank: true,
            parallel: true,
            fit_threads: 1,
        }
    }
}

/// What one fold measured: what `evaluate --json` prints and the run history keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoldResult {
    pub fold: usize,
    pub n_train: usize,
    pub n_test: usize,
    #[serde(flatten)]
    pub scores: Scores,
    /// Users whose top-10 lists were scored.
    // Defaulted, like the test and rank times: run records written before they were kept lack
    // them.
    #[serde(default)]
    pub ranked_users: usize,
    pub fit_seconds: f64,
    #[serde(default)]
    pub test_seconds: f64,
    /// Wall time of ranking the sampled users' top-10 lists (spread over the pool's threads).
    #[serde(default)]
    pub rank_seconds: f64,
}

/// Progress callbacks from the folds (called from worker threads).
#[derive(Clone, Debug)]
pub enum Progress {
    Epoch {
        fold: usize,
        epoch: usize,
    },
    FoldDone(FoldResult),
    /// An epoch of the final fit on all the data.
    FinalEpoch {
        epoch: usize,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct CvResult {
    pub folds: Vec<FoldResult>,
}

impl CvResult {
    pub fn metrics(&self) -> Metrics {
        let scores: Vec<Scores> = self.folds.iter().map(|f| f.scores).collect();
        Metrics::over(&scores)
    }

    /// Each measure with its mean and standard deviation over the folds.
    pub fn spread(&self) -> impl Iterator<Item = (Measure, MeanStd)> + '_ {
        Scores::MEASURES.into_iter().map(|m| {
            (
                m,
                MeanStd::of(self.folds.iter().map(move |f| (m.of)(&f.scores))),
            )
        })
    }

    /// A table in the spirit of Surprise's `cross_validate(verbose=True)`.
    pub fn table(&self, algorithm: &str) -> String {
        let mut out = format!(
            "Evaluating RMSE, MAE, accuracy and top-10 ranking of {algorithm} on {} split(s).\n\n",
            self.folds.len()
        );
        out += &format!("{:<20}", "");
        for f in &self.folds {
            out += &format!("{:>9}", format!("Fold {}", f.fold + 1));
        }
        out += &format!("{:>9}{:>9}\n", "Mean", "Std");
        let mut row = |label: &str, values: Vec<f64>, prec: usize| {
            out += &format!("{label:<20}");
            for v in &values {
                out += &format!("{v:>9.prec$}");
            }
            let s = MeanStd::of(values.into_iter());
            out += &format!("{:>9.prec$}{:>9.prec$}\n", s.mean, s.std);
        };
        for m in Scores::MEASURES {
            row(
                m.label,
                self.folds.iter().map(|f| (m.of)(&f.scores)).collect(),
                4,
            );
        }
        type Time = (&'static str, fn(&FoldResult) -> f64);
        let times: [Time; 3] = [
            ("Fit time (s)", |f| f.fit_seconds),
            ("Test time (s)", |f| f.test_seconds),
            ("Rank time (s)", |f| f.rank_seconds),
        ];
        for (label, get) in times {
            row(label, self.folds.iter().map(get).collect(), 3);
        }
        out
    }
}

/// Fold boundaries over `n` shuffled ratings: `k` contiguous runs of `n / k`, the first `n % k`
/// one longer (Surprise's `KFold`).
pub fn fold_bounds(n: usize, k: usize) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    for f in 0..k {
        let len = n / k + usize::from(f < n % k);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// A seeded permutation of `0..n`.
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    perm.shuffle(&mut StdRng::seed_from_u64(seed));
    perm
}

/// Runs k-fold cross-validation of `hp` on `data`.
pub fn cross_validate(
    data: &Ratings,
    hp: &Hyperparameters,
    opts: &CvOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<CvResult> {
    let n = data.triples.len();
    if opts.folds < 2 {
        return Err(Error::Config(format!(
            "--folds must be at least 2, got {}",
            opts.folds
        )));
    }
    if n < opts.folds {
        return Err(Error::InvalidData(format!(
            "{n} rating(s) cannot be split into {} folds; need at least one rating per fold",
            opts.folds
        )));
    }
    let perm = permutation(n, opts.seed);
    let bounds = fold_bounds(n, opts.folds);
    let fit = |fold: usize| fit_fold(data, hp, opts, &perm, fold, &bounds[fold], progress);
    let evaluate = |fold: usize, (factors, fit_seconds): (Factors, f64)| {
        let test = bounds[fold].clone();
        evaluate_fold(
            data,
            opts,
            &perm,
            fold,
            test,
            &factors,
            fit_seconds,
            progress,
        )
    };
    // One thread gains nothing from queueing fits ahead, and fitted models waiting for their
    // evaluation cost memory (88 MB each at 10M ratings): fit and evaluate fold by fold.
    // Likewise when each fit spreads over the threads itself: two at once would share the cores
    // for nothing and hold two folds' ratings.
    if !opts.parallel || rayon::current_num_threads() == 1 || opts.fit_threads > 1 {
        let folds = (0..opts.folds)
            .map(|f| fit(f).and_then(|fitted| evaluate(f, fitted)))
            .collect::<Result<Vec<_>>>()?;
        return Ok(CvResult { folds });
    }
    // Every fit is queued before any evaluation (FIFO): a fit is one long sequential task, so
    // starting the last one early and evaluating folds on whichever core is free meanwhile keeps
    // both cores busy until the end, where fold-sized tasks would leave one idle.
    let slots: Vec<OnceLock<Result<FoldResult>>> =
        (0..opts.folds).map(|_| OnceLock::new()).collect();
    let (fit, evaluate, slots_ref) = (&fit, &evaluate, &slots);
    rayon::scope_fifo(|scope| {
        for (fold, slot) in slots_ref.iter().enumerate() {
            scope.spawn_fifo(move |scope| match fit(fold) {
                Ok(fitted) => scope.spawn_fifo(move |_| {
                    let _ = slot.set(evaluate(fold, fitted));
                }),
                Err(e) => {
                    let _ = slot.set(Err(e));
                }
            });
        }
    });
    let folds = slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("every fold task stores its result")
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CvResult { folds })
}

/// The fold's training ratings (all but `perm[test]`).
fn train_of<'a>(
    data: &'a Ratings,
    perm: &'a [u32],
    test: &Range<usize>,
) -> impl Iterator<Item = Triple> + Clone + 'a {
    perm[..test.start]
        .iter()
        .chain(&perm[test.end..])
        .map(|&j| data.triples[j as usize])
}

fn fit_fold(
    data: &Ratings,
    hp: &Hyperparameters,
    opts: &CvOptions,
    perm: &[u32],
    fold: usize,
    test: &Range<usize>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Factors, f64)> {
    let (nu, ni) = (data.users.len(), data.items.len());
    let t0 = Instant::now();
    let ordered = group_by_user(train_of(data, perm, test), nu);
    let factors = fit_ordered(hp, nu, ni, ordered, opts.fit_threads, &mut |epoch| {
        progress(Progress::Epoch { fold, epoch })
    })?;
    Ok((factors, t0.elapsed().as_secs_f64()))
}

#[allow(clippy::too_many_arguments)]
fn evaluate_fold(
    data: &Ratings,
    opts: &CvOptions,
    perm: &[u32],
    fold: usize,
    test: Range<usize>,
    factors: &Factors,
    fit_seconds: f64,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<FoldResult> {
    let (nu, ni) = (data.users.len(), data.items.len());
    let all = &data.triples;
    let train_iter = train_of(data, perm, &test);

    let mut user_known = vec![false; nu];
    let mut item_known = vec![false; ni];
    for t in train_iter.clone() {
        user_known[t.user as usize] = true;
        item_known[t.item as usize] = true;
    }

    let t1 = Instant::now();
    let test_set = &perm[test.clone()];
    let (mut se, mut ae, mut within) = (0f64, 0f64, 0usize);
    for &j in test_set {
        let t = all[j as usize];
        let u = user_known[t.user as usize].then_some(t.user as usize);
        let i = item_known[t.item as usize].then_some(t.item as usize);
        let est = data.scale.clip(factors.estimate(u, i));
        let e = t.rating as f64 - est;
        se += e * e;
        ae += e.abs();
        within += usize::from(e.abs() <= 1.0);
    }
    let test_seconds = t1.elapsed().as_secs_f64();
    let m = test_set.len() as f64;

    let t2 = Instant::now();
    let ranking = if opts.rank {
        let rated = RatedItems::from_pairs(nu, train_iter.map(|t| (t.user, t.item)));
        rank_fold(
            data,
            factors,
            opts,
            fold,
            test_set,
            &rated,
            &user_known,
            &item_known,
        )
    } else {
        Ranking::default()
    };
    let rank_seconds = t2.elapsed().as_secs_f64();
    let result = FoldResult {
        fold,
        n_train: perm.len() - test_set.len(),
        n_test: test_set.len(),
        scores: Scores {
            rmse: (se / m).sqrt(),
            mae: ae / m,
            accuracy: within as f64 / m,
            precision_at_10: ranking.precision,
            recall_at_10: ranking.recall,
            ndcg_at_10: ranking.ndcg,
        },
        ranked_users: ranking.users,
        fit_seconds,
        test_seconds,
        rank_seconds,
    };
    progress(Progress::FoldDone(result.clone()));
    Ok(result)
}

#[derive(Default)]
struct Ranking {
    precision: f64,
    recall: f64,
    ndcg: f64,
    users: usize,
}

/// Scores each sampled test user's top-10 (from all items the fold's training data knows,
/// minus the ones they rated in training) against their test items rated at or above the
/// threshold. Users unknown to the fold get the cold-start list, as they would in production.
#[allow(clippy::too_many_arguments)]
fn rank_fold(
    data: &Ratings,
    factors: &Factors,
    opts: &CvOptions,
    fold: usize,
    test_set: &[u32],
    rated: &RatedItems,
    user_known: &[bool],
    item_known: &[bool],
) -> Ranking {
    let mut relevant: Vec<(u32, u32)> = test_set
        .iter()
        .map(|&j| data.triples[j as usize])
        .filter(|t| t.rating as f64 >= opts.relevance_threshold)
        .map(|t| (t.user, t.item))
        .collect();
    relevant.sort_unstable();
    relevant.dedup();
    let mut groups: Vec<&[(u32, u32)]> = relevant.chunk_by(|a, b| a.0 == b.0).collect();
    if opts.ranking_users > 0 && groups.len() > opts.ranking_users {
        let mut rng = StdRng::seed_from_u64(opts.seed ^ (fold as u64).wrapping_mul(0x9E37_79B9));
        groups.shuffle(&mut rng);
        groups.truncate(opts.ranking_users);
    }
    let unknown_items: Vec<u32> = (0..item_known.len() as u32)
        .filter(|&i| !item_known[i as usize])
        .collect();
    let idcg: Vec<f64> = (0..TOP_K)
        .scan(0.0, |acc, j| {
            *acc += 1.0 / (j as f64 + 2.0).log2();
            Some(*acc)
        })
        .collect();
    let ranker = Ranker::new(factors);
    // Users in parallel (this also fills cores left idle when folds do not divide evenly), in
    // blocks so the ranker scores several against each part of the item matrix it reads;
    // per-user results are summed in order so the metrics do not depend on scheduling.
    let per_user: Vec<(f64, f64, f64)> = groups
        .par_chunks(RANK_BLOCK)
        .flat_map_iter(|block| {
            let excludes: Vec<Vec<u32>> = block
                .iter()
                .map(|g| {
                    let mut exclude = Vec::new();
                    merge_sorted(rated.of(g[0].0), &unknown_items, &mut exclude);
                    exclude
                })
                .collect();
            let queries: Vec<Query> = block
                .iter()
                .zip(&excludes)
                .map(|(g, exclude)| Query {
                    user: user_known[g[0].0 as usize].then_some(g[0].0 as usize),
                    exclude,
                })
                .collect();
            let tops = ranker.top_n_many(factors, &queries, TOP_K);
            block
                .iter()
                .zip(tops)
                .map(|(g, top)| list_quality(g, &top, &idcg))
                .collect::<Vec<_>>()
        })
        .collect();
    Ranking::mean(per_user)
}

impl Ranking {
    /// The mean of per-user `(precision, recall, NDCG)`, summed in order.
    fn mean(per_user: Vec<(f64, f64, f64)>) -> Ranking {
        let mut r = Ranking::default();
        for (p, rec, ndcg) in per_user {
            r.precision += p;
            r.recall += rec;
            r.ndcg += ndcg;
            r.users += 1;
        }
        if r.users > 0 {
            let n = r.users as f64;
            r.precision /= n;
            r.recall /= n;
            r.ndcg /= n;
        }
        r
    }
}

/// Precision, recall and NDCG of one user's `top` against their relevant test items `g`
/// (`(user, item)`, sorted by item).
fn list_quality(g: &[(u32, u32)], top: &[(u32, f32)], idcg: &[f64]) -> (f64, f64, f64) {
    let mut hits = 0usize;
    let mut dcg = 0.0;
    for (pos, (item, _)) in top.iter().enumerate() {
        if g.binary_search_by_key(item, |p| p.1).is_ok() {
            hits += 1;
            dcg += 1.0 / (pos as f64 + 2.0).log2();
        }
    }
    (
        hits as f64 / TOP_K as f64,
        hits as f64 / g.len() as f64,
        dcg / idcg[g.len().min(TOP_K) - 1],
    )
}

fn merge_sorted(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::BaselineParams;
    use crate::data::RatingsBuilder;

    #[test]
    fn fold_sizes_follow_surprise() {
        let sizes: Vec<usize> = fold_bounds(10, 4).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        let sizes: Vec<usize> = fold_bounds(100_000, 5).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [20_000; 5]);
    }

    #[test]
    fn folds_are_disjoint_and_cover_everything() {
        let n = 1003;
        let perm = permutation(n, 7);
        let mut seen = vec![0u8; n];
        for r in fold_bounds(n, 4) {
            for &j in &perm[r] {
                seen[j as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert_eq!(permutation(n, 7), perm);
        assert_ne!(permutation(n, 8), perm);
    }

    fn grid() -> Ratings {
        let mut b = RatingsBuilder::new(None);
        for u in 0..30 {
            for i in 0..20 {
                if (u * 7 + i * 3) % 4 != 0 {
                    let r = 1 + ((u + 2 * i) % 5);
                    b.push(&format!("u{u}"), &format!("i{i}"), r as f64, None)
                        .unwrap();
                }
            }
        }
        b.finish("grid").unwrap()
    }

    #[test]
    fn cv_is_deterministic_and_measures_every_rating() {
        let data = grid();
        let hp = Hyperparameters::Baseline(BaselineParams::default());
        let opts = CvOptions {
            folds: 3,
            seed: 5,
            ..CvOptions::default()
        };
        let a = cross_validate(&data, &hp, &opts, &|_| {}).unwrap();
        let b = cross_validate(
            &data,
            &hp,
            &CvOptions {
                parallel: false,
                ..opts
            },
            &|_| {},
        )
        .unwrap();
        assert_eq!(a.folds.len(), 3);
        let tested: usize = a.folds.iter().map(|f| f.n_test).sum();
        assert_eq!(tested, data.triples.len());
        for (x, y) in a.folds.iter().zip(&b.folds) {
            assert_eq!(x.scores, y.scores);
            let x = x.scores;
            assert!(x.rmse.is_finite() && x.rmse > 0.0);
            assert!((0.0..=1.0).contains(&x.accuracy));
            assert!((0.0..=1.0).contains(&x.precision_at_10));
            assert!((0.0..=1.0).contains(&x.ndcg_at_10));
        }
        let table = a.table("BaselineOnly");
        assert!(table.contains("RMSE (testset)") && table.contains("Fold 3"));
    }

    #[test]
    fn too_few_ratings_for_the_folds_is_an_error() {
        let mut b = RatingsBuilder::new(None);
        b.push("u", "i", 3.0, None).unwrap();
        let data = b.finish("one").unwrap();
        let hp = Hyperparameters::Baseline(BaselineParams::default());
        let err = cross_validate(&data, &hp, &CvOptions::default(), &|_| {}).unwrap_err();
        assert!(matches!(err, Error::InvalidData(_)), "{err}");
    }

    #[test]
    fn all_equal_ratings_give_zero_error_not_nan() {
        let mut b = RatingsBuilder::new(None);
        for u in 0..10 {
            for i in 0..10 {
                b.push(&u.to_string(), &i.to_string(), 4.0, None).unwrap();
            }
        }
        let data = b.finish("flat").unwrap();
        let hp = Hyperparameters::Svd(crate::svd::SvdParams {
            n_factors: 4,
            ..Default::default()
        });
        let m = cross_validate(&data, &hp, &CvOptions::default(), &|_| {})
            .unwrap()
            .metrics();
        assert_eq!((m.rmse, m.mae, m.accuracy), (0.0, 0.0, 1.0));
        assert!(m.ndcg_at_10.is_finite());
    }

    #[test]
    fn merge_keeps_order() {
        let mut out = Vec::new();
        merge_sorted(&[1, 4, 9], &[2, 3, 10], &mut out);
        assert_eq!(out, [1, 2, 3, 4, 9, 10]);
    }
}
