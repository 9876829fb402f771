//! Ranking: the best items for a user out of the whole catalogue.

use crate::factors::Factors;
use crate::simd;

/// Top-N lists for many users of one model (cross-validation ranks thousands): keeps the item
/// matrix transposed for [`simd::scores_transposed`].
pub struct Scorer<'a> {
    factors: &'a Factors,
    item_cols: Vec<f32>,
}

impl<'a> Scorer<'a> {
    pub fn new(factors: &'a Factors) -> Self {
        let item_cols = factors.item_factors.t().iter().copied().collect();
        Scorer { factors, item_cols }
    }

    /// What [`Factors::top_n`] answers, up to float rounding in the scores.
    pub fn top_n(&self, user: Option<usize>, exclude: &[u32], n: usize) -> Vec<(u32, f32)> {
        let f = self.factors;
        let (Some(u), true) = (user, n > 0 && f.n_factors() > 0) else {
            return f.top_n(user, exclude, n);
        };
        let mut scores = vec![0f32; f.n_items()];
        simd::scores_transposed(
            f.user_row(u),
            &self.item_cols,
            &f.item_bias,
            f.score_base(user),
            &mut scores,
        );
        best_of(scores, exclude, n)
    }
}

/// The `n` highest `scores` (ties: lower index first), best first, skipping the indices in
/// `exclude`. Short lists are kept by insertion during one scan, which beats a full selection when
/// `n` is much smaller than the catalogue (top-10 out of thousands).
pub fn best_of(mut scores: Vec<f32>, exclude: &[u32], n: usize) -> Vec<(u32, f32)> {
    for &i in exclude {
        if let Some(s) = scores.get_mut(i as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
    let better = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if n <= 32 {
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
        for (i, &s) in scores.iter().enumerate() {
            if s == f32::NEG_INFINITY {
                continue;
            }
            // Indices only grow, so an equal score never beats the last kept one.
            if best.len() == n && s.total_cmp(&best[n - 1].1).is_le() {
                continue;
            }
            let cand = (i as u32, s);
            let at = best.partition_point(|b| better(b, &cand).is_lt());
            best.insert(at, cand);
            best.truncate(n);
        }
        return best;
    }
    let mut cand: Vec<(u32, f32)> = scores
        .into_iter()
        .enumerate()
        .filter(|(_, s)| *s != f32::NEG_INFINITY)
        .map(|(i, s)| (i as u32, s))
        .collect();
    if n < cand.len() {
        cand.select_nth_unstable_by(n - 1, better);
        cand.truncate(n);
    }
    cand.sort_unstable_by(better);
    cand
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn best_of_equals_a_full_sort() {
        // Scores with many ties, some items excluded.
        let scores: Vec<f32> = (0..500).map(|j| ((j * 37) % 23) as f32 * 0.5).collect();
        let exclude: Vec<u32> = (0..500).filter(|j| j % 7 == 0).collect();
        let mut full: Vec<(u32, f32)> = scores
            .iter()
            .enumerate()
            .filter(|(j, _)| j % 7 != 0)
            .map(|(j, s)| (j as u32, *s))
            .collect();
        full.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for n in [1, 10, 32, 33, 100, 1000] {
            let got = best_of(scores.clone(), &exclude, n);
            assert_eq!(got, full[..n.min(full.len())], "n = {n}");
        }
    }

    /// Cross-validation ranks with the transposed scorer; it must pick what `top_n` picks.
    #[test]
    fn scorer_ranks_like_top_n() {
        let (nu, ni, k) = (6usize, 300usize, 37usize);
        let factors = Factors {
            global_mean: 3.5,
            biased: true,
            user_bias: (0..nu).map(|u| u as f32 * 0.1 - 0.2).collect(),
            item_bias: (0..ni).map(|i| ((i * 13) % 17) as f32 * 0.05).collect(),
            user_factors: Array2::from_shape_fn((nu, k), |(u, f)| ((u * k + f) as f32 * 0.7).sin()),
            item_factors: Array2::from_shape_fn((ni, k), |(i, f)| ((i * k + f) as f32 * 0.3).cos()),
        };
        let scorer = Scorer::new(&factors);
        let exclude: Vec<u32> = vec![3, 50, 51, 299];
        for user in [None, Some(0), Some(5)] {
            let (a, b) = (
                factors.top_n(user, &exclude, 10),
                scorer.top_n(user, &exclude, 10),
            );
            let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
            assert_eq!(ids(&a), ids(&b), "user {user:?}");
            for (x, y) in a.iter().zip(&b) {
                assert!((x.1 - y.1).abs() < 1e-4);
            }
        }
    }
}
