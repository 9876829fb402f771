//! The numeric part of a model: global mean, biases and factor matrices, indexed densely.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::rank::Ranker;
use crate::simd;

/// The largest score magnitude a loadable model can produce (see `Factors::validate`): far below
/// f32::MAX, so sums of a few such terms in f32 stay finite.
const MAX_SCORE: f64 = 1e30;

/// The numeric part of a model, indexed densely. Shared by [`Model`] and cross-validation, where
/// "known" depends on the fold rather than on an id map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    /// Mean of the training ratings (used even when `biased` is false, as the fallback).
    pub global_mean: f64,
    /// `false`: no global mean or biases in the estimate (Surprise's `biased=False`).
    pub biased: bool,
    pub user_bias: Vec<f32>,
    pub item_bias: Vec<f32>,
    /// `users × k`, standard (row-major) layout; `k = 0` for BaselineOnly.
    pub user_factors: Array2<f32>,
    /// `items × k`, standard layout.
    pub item_factors: Array2<f32>,
}

impl Factors {
    pub fn n_users(&self) -> usize {
        self.user_bias.len()
    }

    pub fn n_items(&self) -> usize {
        self.item_bias.len()
    }

    pub fn n_factors(&self) -> usize {
        self.user_factors.ncols()
    }

    #[inline]
    pub(crate) fn user_row(&self, u: usize) -> &[f32] {
        let k = self.n_factors();
        &self
            .user_factors
            .as_slice()
            .expect("validated standard layout")[u * k..(u + 1) * k]
    }

    #[inline]
    pub(crate) fn item_row(&self, i: usize) -> &[f32] {
        let k = self.n_factors();
        &self
            .item_factors
            .as_slice()
            .expect("validated standard layout")[i * k..(i + 1) * k]
    }

    /// Unclipped estimate; `None` marks an id the model has not seen.
    #[inline]
    pub fn estimate(&self, user: Option<usize>, item: Option<usize>) -> f64 {
        let both = match (user, item) {
            (Some(u), Some(i)) => Some(simd::dot(self.user_row(u), self.item_row(i)) as f64),
            _ => None,
        };
        if !self.biased {
            // Surprise raises PredictionImpossible here and falls back to the global mean.
            return both.unwrap_or(self.global_mean);
        }
        let mut est = self.global_mean;
        if let Some(u) = user {
            est += self.user_bias[u] as f64;
        }
        if let Some(i) = item {
            est += self.item_bias[i] as f64;
        }
        est + both.unwrap_or(0.0)
    }

    /// What every item's ranking score starts from before its bias and dot product: the global
    /// mean and the user's bias when the model is biased, else nothing.
    pub(crate) fn score_base(&self, user: Option<usize>) -> f32 {
        if !self.biased {
            return 0.0;
        }
        self.global_mean as f32 + user.map_or(0.0, |u| self.user_bias[u])
    }

    /// The `n` best items for `user` (or for an unknown user, by item bias), skipping the sorted
    /// indices in `exclude`. Ranked by the unclipped estimate, best first; ties by index. Packs
    /// the item matrix for this one call: to rank many users, keep a [`Ranker`].
    pub fn top_n(&self, user: Option<usize>, exclude: &[u32], n: usize) -> Vec<(u32, f32)> {
        Ranker::new(self).top_n(self, user, exclude, n)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let (nu, ni) = (self.n_users(), self.n_items());
        if self.user_factors.nrows() != nu || self.item_factors.nrows() != ni {
            return Err(format!(
                "factor rows ({}, {}) do not match bias lengths ({nu}, {ni})",
                self.user_factors.nrows(),
                self.item_factors.nrows()
            ));
        }
        if self.user_factors.ncols() != self.item_factors.ncols() {
            return Err("user and item factors differ in width".into());
        }
        if !self.user_factors.is_standard_layout() || !self.item_factors.is_standard_layout() {
            return Err("factor matrices are not row-major".into());
        }
        if !self.global_mean.is_finite() {
            return Err("global mean is not finite".into());
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let uf = self.user_factors.as_slice().unwrap_or_default();
        let itf = self.item_factors.as_slice().unwrap_or_default();
        if !finite(&self.user_bias) || !finite(&self.item_bias) || !finite(uf) || !finite(itf) {
            return Err("a bias or factor is not finite".into());
        }
        if !self.biased
            && (self
                .user_bias
                .iter()
                .chain(&self.item_bias)
                .any(|b| *b != 0.0))
        {
            return Err("an unbiased model has non-zero biases".into());
        }
        // Finite parameters can still make an infinite or NaN score: a dot product overflows f32
        // (found by the artifact fuzz target), and clamping NaN to the scale leaves it NaN. A dot
        // product is at most the product of its rows' norms (Cauchy-Schwarz), so bounding that
        // plus the biases keeps every estimate and every f32 ranking score finite. A trained
        // model is many orders of magnitude below the bound.
        let max_abs = |v: &[f32]| v.iter().fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
        let max_norm = |m: &Array2<f32>| {
            m.rows()
                .into_iter()
                .map(|r| r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt())
                .fold(0.0f64, f64::max)
        };
        let bound = self.global_mean.abs()
            + max_abs(&self.user_bias)
            + max_abs(&self.item_bias)
            + max_norm(&self.user_factors) * max_norm(&self.item_factors);
        if bound > MAX_SCORE {
            return Err(format!(
                "scores could reach {bound:e}, beyond {MAX_SCORE:e}: not the factors of a trained model"
            ));
        }
        Ok(())
    }
}
