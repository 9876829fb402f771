//! Surprise's `SVD`: biased matrix factorisation trained by plain SGD.
//!
//! Same defaults (the table in `recommender_contract::defaults`), initialisation order (every user's factors, then every item's), rating order
//! (grouped by user in order of first appearance, no reshuffle between epochs), update rule and
//! `biased=false` behaviour as Surprise; the arithmetic is f32 with a vectorised inner loop.
//! A fit on several threads keeps all of that but the rating order ([`crate::blocked`]).

use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use recommender_model::Factors;

use crate::blocked::{Grid, MAX_FIT_THREADS};
use crate::error::{Error, Result};
use crate::kernel::{self, Params, StepRates, Triple};

pub use recommender_model::SvdParams;

/// Refuses hyperparameters training cannot use, naming the CLI flag.
pub fn validate(p: &SvdParams) -> Result<()> {
    let named = [
        ("init-mean", p.init_mean),
        ("init-std", p.init_std),
        ("lr-bu", p.lr_bu),
        ("lr-bi", p.lr_bi),
        ("lr-pu", p.lr_pu),
        ("lr-qi", p.lr_qi),
        ("reg-bu", p.reg_bu),
        ("reg-bi", p.reg_bi),
        ("reg-pu", p.reg_pu),
        ("reg-qi", p.reg_qi),
    ];
    for (name, v) in named {
        if !v.is_finite() {
            return Err(Error::Config(format!(
                "--{name} must be a finite number, got {v}"
            )));
        }
    }
    if p.init_std < 0.0 {
        return Err(Error::Config(format!(
            "--init-std must not be negative, got {}",
            p.init_std
        )));
    }
    if p.n_factors > 10_000 {
        return Err(Error::Config(format!(
            "--factors {} is unreasonably large (max 10000)",
            p.n_factors
        )));
    }
    Ok(())
}

fn rates(p: &SvdParams) -> StepRates {
    StepRates {
        biased: p.biased,
        lr_bu: p.lr_bu as f32,
        lr_bi: p.lr_bi as f32,
        lr_pu: p.lr_pu as f32,
        lr_qi: p.lr_qi as f32,
        reg_bu: p.reg_bu as f32,
        reg_bi: p.reg_bi as f32,
        reg_pu: p.reg_pu as f32,
        reg_qi: p.reg_qi as f32,
    }
}

/// Mean rating, 0 for no ratings.
pub(crate) fn mean_rating(train: &[Triple]) -> f64 {
    if train.is_empty() {
        return 0.0;
    }
    train.iter().map(|t| t.rating as f64).sum::<f64>() / train.len() as f64
}

/// Reorders ratings the way Surprise's trainset iterates them: grouped by user, users in order of
/// first appearance, each user's ratings in their original order.
pub(crate) fn group_by_user(
    train: impl Iterator<Item = Triple> + Clone,
    n_users: usize,
) -> Vec<Triple> {
    let mut rank = vec![u32::MAX; n_users];
    let mut counts: Vec<usize> = Vec::new();
    for t in train.clone() {
        let r = &mut rank[t.user as usize];
        if *r == u32::MAX {
            *r = counts.len() as u32;
            counts.push(0);
        }
        counts[*r as usize] += 1;
    }
    let mut start = Vec::with_capacity(counts.len());
    let mut acc = 0;
    for c in &counts {
        start.push(acc);
        acc += c;
    }
    let mut out = vec![
        Triple {
            user: 0,
            item: 0,
            rating: 0.0
        };
        acc
    ];
    for t in train {
        let s = &mut start[rank[t.user as usize] as usize];
        out[*s] = t;
        *s += 1;
    }
    out
}

/// Draws the initial factors: all users' rows, then all items' rows.
pub(crate) fn init_factors(
    params: &SvdParams,
    n_users: usize,
    n_items: usize,
) -> Result<(Array2<f32>, Array2<f32>)> {
    let k = params.n_factors;
    let normal = Normal::new(params.init_mean as f32, params.init_std as f32)
        .map_err(|e| Error::Config(format!("initial factor distribution: {e}")))?;
    let mut rng = StdRng::seed_from_u64(params.seed);
    let pu = Array2::from_shape_simple_fn((n_users, k), || normal.sample(&mut rng));
    let qi = Array2::from_shape_simple_fn((n_items, k), || normal.sample(&mut rng));
    Ok((pu, qi))
}

/// Whether every bias and factor is a finite number.
fn finite(p: &Params<'_>) -> bool {
    [&*p.bu, &*p.bi, &*p.pu, &*p.qi]
        .iter()
        .all(|values| values.iter().all(|x| x.is_finite()))
}

/// Trains on `train` (consumed, to bound peak memory), in the order given (see [`group_by_user`]); indices are below `n_users` /
/// `n_items`. With `threads` above 1 the ratings are trained in blocks on that many threads
/// ([`blocked`]): a model of the same quality, the same for the same seed and thread count, but
/// not the serial one. `on_epoch` is told after each finished epoch (for progress bars).
pub(crate) fn fit(
    params: &SvdParams,
    n_users: usize,
    n_items: usize,
    train: Vec<Triple>,
    threads: usize,
    on_epoch: &mut dyn FnMut(usize),
) -> Result<Factors> {
    validate(params)?;
    if !(1..=MAX_FIT_THREADS).contains(&threads) {
        return Err(Error::Config(format!(
            "--fit-threads must be 1 to {MAX_FIT_THREADS}, got {threads}"
        )));
    }
    let mu = mean_rating(&train);
    let (pu, qi) = init_factors(params, n_users, n_items)?;
    let k = params.n_factors;
    let (train, grid) = if threads > 1 {
        let grid = Grid::new(train, n_users, n_items, threads);
        (Vec::new(), Some(grid))
    } else {
        (train, None)
    };
    // In blocks, each block's rows are renumbered to be contiguous.
    let user_row = grid.as_ref().map(|g| &g.user_row[..]);
    let item_row = grid.as_ref().map(|g| &g.item_row[..]);
    // Rows padded with zeros, which the update rule keeps at zero, so the hot loop is all
    // full-width vectors.
    let kp = k.div_ceil(kernel::ROW_ALIGN) * kernel::ROW_ALIGN;
    let mut pu_pad = pad_rows(&pu, kp, user_row);
    let mut qi_pad = pad_rows(&qi, kp, item_row);
    let mut bu = vec![0f32; n_users];
    let mut bi = vec![0f32; n_items];
    let rates = rates(params);
    {
        let mut p = Params {
            mu: mu as f32,
            k: kp,
            bu: &mut bu,
            bi: &mut bi,
            pu: &mut pu_pad,
            qi: &mut qi_pad,
        };
        for epoch in 0..params.n_epochs {
            match &grid {
                Some(grid) => grid.epoch(&mut p, &rates),
                None => kernel::sgd_epoch(&train, &mut p, &rates),
            }
            // Once one value is NaN or infinite every later one it touches is too, and the JSON
            // of the metrics cannot say NaN: stop at the epoch it happened and say so.
            if !finite(&p) {
                return Err(Error::Diverged { epoch: epoch + 1 });
            }
            on_epoch(epoch + 1);
        }
    }
    // Freed before the unpadded copies are made: on large data this is the peak.
    drop(train);
    let (user_row, item_row) = match grid {
        Some(g) => (Some(g.user_row), Some(g.item_row)),
        None => (None, None),
    };
    Ok(Factors {
        global_mean: mu,
        biased: params.biased,
        user_bias: unpermute(bu, user_row.as_deref()),
        item_bias: unpermute(bi, item_row.as_deref()),
        user_factors: unpad_rows(&pu_pad, n_users, k, kp, user_row.as_deref()),
        item_factors: unpad_rows(&qi_pad, n_items, k, kp, item_row.as_deref()),
    })
}

/// Row `r` of `a` into row `row_of[r]` (or `r`) of a matrix of `kp`-wide rows.
fn pad_rows(a: &Array2<f32>, kp: usize, row_of: Option<&[u32]>) -> Vec<f32> {
    let mut out = vec![0f32; a.nrows() * kp];
    for (r, row) in a.rows().into_iter().enumerate() {
        let at = row_of.map_or(r, |m| m[r] as usize) * kp;
        for (d, s) in out[at..at + kp].iter_mut().zip(row) {
            *d = *s;
        }
    }
    out
}

/// The inverse of [`pad_rows`].
fn unpad_rows(v: &[f32], n: usize, k: usize, kp: usize, row_of: Option<&[u32]>) -> Array2<f32> {
    Array2::from_shape_fn((n, k), |(r, c)| {
        v[row_of.map_or(r, |m| m[r] as usize) * kp + c]
    })
}

/// Entry `row_of[r]` (or `r`) of `v` for every `r`.
fn unpermute(v: Vec<f32>, row_of: Option<&[u32]>) -> Vec<f32> {
    match row_of {
        Some(m) => m.iter().map(|&r| v[r as usize]).collect(),
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(user: u32, item: u32, rating: f32) -> Triple {
        Triple { user, item, rating }
    }

    /// One factor row padded with zeros to a whole chunk, as `fit` pads them.
    fn row(v: &[f32]) -> [f32; kernel::ROW_ALIGN] {
        let mut out = [0f32; kernel::ROW_ALIGN];
        out[..v.len()].copy_from_slice(v);
        out
    }

    /// One step worked out by hand (see the numbers in the comments), checking that both factor
    /// updates use the values from before the step.
    #[test]
    fn single_sgd_step_matches_hand_computation() {
        let mut bu = [0.1f32];
        let mut bi = [-0.2f32];
        let mut pu = row(&[0.5, -0.1]);
        let mut qi = row(&[0.2, 0.3]);
        let rates = rates(&SvdParams::default());
        let mut p = Params {
            mu: 3.0,
            k: kernel::ROW_ALIGN,
            bu: &mut bu,
            bi: &mut bi,
            pu: &mut pu,
            qi: &mut qi,
        };
        // dot = 0.07, estimate = 2.97, err = 1.03
        kernel::sgd_epoch(&[t(0, 0, 4.0)], &mut p, &rates);
        let close = |a: f32, b: f64| ((a as f64) - b).abs() < 2e-7;
        assert!(close(bu[0], 0.10514), "{}", bu[0]); // 0.1 + 0.005 (1.03 - 0.002)
        assert!(close(bi[0], -0.19483), "{}", bi[0]); // -0.2 + 0.005 (1.03 + 0.004)
        assert!(close(pu[0], 0.50098), "{}", pu[0]); // 0.5 + 0.005 (0.206 - 0.01)
        assert!(close(pu[1], -0.098445), "{}", pu[1]); // -0.1 + 0.005 (0.309 + 0.002)
        assert!(close(qi[0], 0.202555), "{}", qi[0]); // 0.2 + 0.005 (0.515 - 0.004)
        assert!(close(qi[1], 0.299455), "{}", qi[1]); // 0.3 + 0.005 (-0.103 - 0.006)
        // The padding stays zero, so it never reaches a dot product.
        assert!(pu[2..].iter().chain(&qi[2..]).all(|&x| x == 0.0));
    }

    #[test]
    fn unbiased_step_ignores_mean_and_biases() {
        let mut bu = [0f32];
        let mut bi = [0f32];
        let mut pu = row(&[1.0]);
        let mut qi = row(&[2.0]);
        let rates = rates(&SvdParams {
            biased: false,
            ..SvdParams::default()
        });
        let mut p = Params {
            mu: 3.0,
            k: kernel::ROW_ALIGN,
            bu: &mut bu,
            bi: &mut bi,
            pu: &mut pu,
            qi: &mut qi,
        };
        kernel::sgd_epoch(&[t(0, 0, 4.0)], &mut p, &rates);
        // err = 4 - 2 = 2: pu = 1 + 0.005 (4 - 0.02), qi = 2 + 0.005 (2 - 0.04)
        assert_eq!((bu[0], bi[0]), (0.0, 0.0));
        assert!((pu[0] - 1.0199).abs() < 1e-6, "{}", pu[0]);
        assert!((qi[0] - 2.0098).abs() < 1e-6, "{}", qi[0]);
    }

    #[test]
    fn a_diverging_fit_fails_naming_the_epoch() {
        // Ratings far from the mean and a learning rate the schema allows (1): the updates grow
        // without bound until they are no longer numbers.
        let data: Vec<Triple> = (0..40u32)
            .map(|i| t(i % 5, i % 7, if i % 2 == 0 { 1.0 } else { 5.0 }))
            .collect();
        let params = SvdParams {
            n_factors: 4,
            n_epochs: 200,
            lr_bu: 1.0,
            lr_bi: 1.0,
            lr_pu: 1.0,
            lr_qi: 1.0,
            ..SvdParams::default()
        };
        for threads in [1, 2] {
            let mut epochs = 0;
            let err = fit(&params, 5, 7, data.clone(), threads, &mut |e| epochs = e).unwrap_err();
            let Error::Diverged { epoch } = err else {
                panic!("{threads} threads: {err}")
            };
            assert!(
                epoch <= 200 && epoch == epochs + 1,
                "{epoch} after {epochs}"
            );
            assert_eq!(Error::Diverged { epoch }.reason(), "Diverged");
        }
        // The default rate on the same data converges.
        fit(
            &SvdParams {
                n_factors: 4,
                n_epochs: 200,
                ..SvdParams::default()
            },
            5,
            7,
            data,
            1,
            &mut |_| {},
        )
        .unwrap();
    }

    #[test]
    fn fit_runs_one_step_from_the_seeded_initialisation() {
        let params = SvdParams {
            n_factors: 3,
            n_epochs: 1,
            seed: 11,
            ..SvdParams::default()
        };
        let (pu0, qi0) = init_factors(&params, 1, 1).unwrap();
        let f = fit(&params, 1, 1, vec![t(0, 0, 4.0)], 1, &mut |_| {}).unwrap();
        assert_eq!(f.global_mean, 4.0);
        let dot: f32 = pu0.row(0).dot(&qi0.row(0));
        let err = 4.0 - (4.0 + dot);
        assert!((f.user_bias[0] - 0.005 * err).abs() < 1e-7);
        for j in 0..3 {
            let (p, q) = (pu0[[0, j]], qi0[[0, j]]);
            let want = p + 0.005 * (err * q - 0.02 * p);
            assert!((f.user_factors[[0, j]] - want).abs() < 1e-6);
        }
    }

    #[test]
    fn same_seed_same_model_other_seed_other_model() {
        let data: Vec<Triple> = (0..200)
            .map(|n| t(n % 13, (n * 7) % 17, 1.0 + (n % 5) as f32))
            .collect();
        let p = SvdParams {
            n_factors: 8,
            ..SvdParams::default()
        };
        let a = fit(&p, 13, 17, data.clone(), 1, &mut |_| {}).unwrap();
        let b = fit(&p, 13, 17, data.clone(), 1, &mut |_| {}).unwrap();
        assert_eq!(a, b);
        let c = fit(&SvdParams { seed: 1, ..p }, 13, 17, data, 1, &mut |_| {}).unwrap();
        assert_ne!(a.user_factors, c.user_factors);
    }

    /// A rank-2 pattern with noise-free ratings: 60 users x 40 items, three quarters rated.
    fn low_rank() -> Vec<Triple> {
        let mut out = Vec::new();
        for u in 0..60u32 {
            for i in 0..40u32 {
                if (u * 7 + i * 5) % 4 != 0 {
                    let (a, b) = ((u % 5) as f32 - 2.0, (i % 4) as f32 - 1.5);
                    out.push(t(u, i, (3.0 + 0.4 * a * b + 0.2 * a).clamp(1.0, 5.0)));
                }
            }
        }
        out
    }

    fn rmse(f: &Factors, data: &[Triple]) -> f64 {
        let se: f64 = data
            .iter()
            .map(|x| {
                let (u, i) = (x.user as usize, x.item as usize);
                let dot: f32 = f.user_factors.row(u).dot(&f.item_factors.row(i));
                let est = f.global_mean as f32 + f.user_bias[u] + f.item_bias[i] + dot;
                f64::from(est - x.rating).powi(2)
            })
            .sum();
        (se / data.len() as f64).sqrt()
    }

    /// The blocks of a stratum may run in any order on any thread: the model depends on the
    /// seed and the thread count of the fit only, not on the pool that runs it.
    #[test]
    fn blocked_fit_is_reproducible_for_a_seed_and_thread_count() {
        let data = low_rank();
        let p = SvdParams {
            n_factors: 20,
            n_epochs: 30,
            lr_bu: 0.01,
            lr_bi: 0.01,
            lr_pu: 0.01,
            lr_qi: 0.01,
            ..SvdParams::default()
        };
        let on_pool = |pool: usize, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(pool)
                .build()
                .unwrap();
            pool.install(|| fit(&p, 60, 40, data.clone(), threads, &mut |_| {}).unwrap())
        };
        let two = on_pool(2, 2);
        assert_eq!(two, on_pool(1, 2));
        assert_eq!(two, on_pool(3, 2));
        let three = on_pool(2, 3);
        assert_ne!(two.user_factors, three.user_factors);
        // Every model learns the pattern about equally well.
        let serial = fit(&p, 60, 40, data.clone(), 1, &mut |_| {}).unwrap();
        let (s, b2, b3) = (rmse(&serial, &data), rmse(&two, &data), rmse(&three, &data));
        assert!(s < 0.2, "serial {s}");
        assert!(
            (b2 - s).abs() < 0.02 && (b3 - s).abs() < 0.02,
            "{s} {b2} {b3}"
        );
    }

    #[test]
    fn fit_threads_are_bounded() {
        for threads in [0, crate::blocked::MAX_FIT_THREADS + 1] {
            let e = fit(
                &SvdParams::default(),
                1,
                1,
                vec![t(0, 0, 1.0)],
                threads,
                &mut |_| {},
            );
            assert!(matches!(e, Err(Error::Config(m)) if m.contains("--fit-threads")));
        }
    }

    #[test]
    fn grouping_keeps_first_appearance_and_inner_order() {
        let data = [
            t(2, 0, 1.0),
            t(0, 1, 2.0),
            t(2, 2, 3.0),
            t(1, 3, 4.0),
            t(0, 4, 5.0),
        ];
        let g = group_by_user(data.iter().copied(), 3);
        let order: Vec<(u32, u32)> = g.iter().map(|x| (x.user, x.item)).collect();
        assert_eq!(order, [(2, 0), (2, 2), (0, 1), (0, 4), (1, 3)]);
    }

    #[test]
    fn bad_hyperparameters_are_refused() {
        let p = SvdParams {
            init_std: -1.0,
            ..SvdParams::default()
        };
        assert!(matches!(validate(&p), Err(Error::Config(_))));
        let p = SvdParams {
            lr_pu: f64::NAN,
            ..SvdParams::default()
        };
        assert!(validate(&p).unwrap_err().to_string().contains("lr-pu"));
    }
}
