//! Surprise's `BaselineOnly` with its default ALS: r̂ = μ + b_u + b_i. The floor every model must
//! beat.

use ndarray::Array2;
use recommender_model::Factors;

use crate::error::{Error, Result};
use crate::kernel::Triple;
use crate::svd::mean_rating;

pub use recommender_model::BaselineParams;

/// Refuses hyperparameters training cannot use, naming the CLI flag.
pub fn validate(p: &BaselineParams) -> Result<()> {
    for (name, v) in [("reg-i", p.reg_i), ("reg-u", p.reg_u)] {
        if !v.is_finite() || v < 0.0 {
            return Err(Error::Config(format!(
                "--{name} must be a non-negative number, got {v}"
            )));
        }
    }
    Ok(())
}

/// Alternates closed-form item and user bias updates.
pub(crate) fn fit(
    params: &BaselineParams,
    n_users: usize,
    n_items: usize,
    train: &[Triple],
    on_epoch: &mut dyn FnMut(usize),
) -> Result<Factors> {
    validate(params)?;
    let mu = mean_rating(train);
    let mut bu = vec![0f64; n_users];
    let mut bi = vec![0f64; n_items];
    let mut n_u = vec![0f64; n_users];
    let mut n_i = vec![0f64; n_items];
    for t in train {
        n_u[t.user as usize] += 1.0;
        n_i[t.item as usize] += 1.0;
    }
    let mut sum_u = vec![0f64; n_users];
    let mut sum_i = vec![0f64; n_items];
    for epoch in 0..params.n_epochs {
        sum_i.fill(0.0);
        for t in train {
            sum_i[t.item as usize] += t.rating as f64 - mu - bu[t.user as usize];
        }
        for ((b, s), n) in bi.iter_mut().zip(&sum_i).zip(&n_i) {
            // An item without training ratings keeps 0 (0 / reg) unless reg is 0 too.
            *b = if *n > 0.0 {
                s / (params.reg_i + n)
            } else {
                0.0
            };
        }
        sum_u.fill(0.0);
        for t in train {
            sum_u[t.user as usize] += t.rating as f64 - mu - bi[t.item as usize];
        }
        for ((b, s), n) in bu.iter_mut().zip(&sum_u).zip(&n_u) {
            *b = if *n > 0.0 {
                s / (params.reg_u + n)
            } else {
                0.0
            };
        }
        on_epoch(epoch + 1);
    }
    Ok(Factors {
        global_mean: mu,
        biased: true,
        user_bias: bu.into_iter().map(|b| b as f32).collect(),
        item_bias: bi.into_iter().map(|b| b as f32).collect(),
        user_factors: Array2::zeros((n_users, 0)),
        item_factors: Array2::zeros((n_items, 0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_epoch_matches_closed_form() {
        // Users 0,1; items 0,1. Ratings: (0,0,5) (0,1,3) (1,0,4).
        let data = [
            Triple {
                user: 0,
                item: 0,
                rating: 5.0,
            },
            Triple {
                user: 0,
                item: 1,
                rating: 3.0,
            },
            Triple {
                user: 1,
                item: 0,
                rating: 4.0,
            },
        ];
        let p = BaselineParams {
            n_epochs: 1,
            reg_i: 1.0,
            reg_u: 2.0,
        };
        let f = fit(&p, 2, 2, &data, &mut |_| {}).unwrap();
        let mu = 4.0;
        let bi0 = ((5.0 - mu) + (4.0 - mu)) / (1.0 + 2.0);
        let bi1 = (3.0 - mu) / (1.0 + 1.0);
        let bu0 = ((5.0 - mu - bi0) + (3.0 - mu - bi1)) / (2.0 + 2.0);
        let bu1 = (4.0 - mu - bi0) / (2.0 + 1.0);
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
        assert!(close(f.item_bias[0], bi0) && close(f.item_bias[1], bi1));
        assert!(close(f.user_bias[0], bu0) && close(f.user_bias[1], bu1));
        assert_eq!(f.n_factors(), 0);
        assert!((f.estimate(Some(0), Some(1)) - (mu + bu0 + bi1)).abs() < 1e-6);
    }
}
