//! The trained model: id maps, biases and factors, and the two questions the predictor asks of
//! it (`predict` and `recommend`).
//!
//! Training works on dense indices; users and items keep the string ids of the data (Surprise's
//! convention) and are mapped at the edge. Predictions follow Surprise's `SVD.estimate`: unknown
//! ids fall back to the global mean plus whatever biases are known, then clip to the rating scale.

use std::collections::HashMap;

use ndarray::Array2;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kernel;

type FastMap = HashMap<String, u32, foldhash::fast::RandomState>;

/// Bidirectional map between external string ids and dense indices `0..len`.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    ids: Vec<String>,
    index: FastMap,
}

impl IdMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from ids in index order; `None` if an id repeats.
    pub fn from_ids(ids: Vec<String>) -> Option<Self> {
        let mut index = FastMap::with_capacity_and_hasher(ids.len(), Default::default());
        for (i, id) in ids.iter().enumerate() {
            if index.insert(id.clone(), i as u32).is_some() {
                return None;
            }
        }
        Some(Self { ids, index })
    }

    /// The index of `id`, adding it at the end if it is new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), i);
        i
    }

    #[inline]
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The id at `index`; panics if out of range, like slice indexing.
    #[inline]
    pub fn id(&self, index: u32) -> &str {
        &self.ids[index as usize]
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl PartialEq for IdMap {
    fn eq(&self, other: &Self) -> bool {
        self.ids == other.ids
    }
}

impl Serialize for IdMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ids.serialize(s)
    }
}

impl<'de> Deserialize<'de> for IdMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ids = Vec::<String>::deserialize(d)?;
        IdMap::from_ids(ids).ok_or_else(|| serde::de::Error::custom("duplicate id in id map"))
    }
}

/// Inclusive bounds of the ratings; predictions are clipped to them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatingScale {
    pub lo: f64,
    pub hi: f64,
}

impl RatingScale {
    #[inline]
    pub fn clip(&self, r: f64) -> f64 {
        r.clamp(self.lo, self.hi)
    }
}

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
    fn user_row(&self, u: usize) -> &[f32] {
        let k = self.n_factors();
        &self
            .user_factors
            .as_slice()
            .expect("validated standard layout")[u * k..(u + 1) * k]
    }

    #[inline]
    fn item_row(&self, i: usize) -> &[f32] {
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
            (Some(u), Some(i)) => Some(kernel::dot(self.user_row(u), self.item_row(i)) as f64),
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
    fn score_base(&self, user: Option<usize>) -> f32 {
        if !self.biased {
            return 0.0;
        }
        self.global_mean as f32 + user.map_or(0.0, |u| self.user_bias[u])
    }

    /// The `n` best items for `user` (or for an unknown user, by item bias), skipping the sorted
    /// indices in `exclude`. Ranked by the unclipped estimate, best first; ties by index.
    pub fn top_n(&self, user: Option<usize>, exclude: &[u32], n: usize) -> Vec<(u32, f32)> {
        let n_items = self.n_items();
        if n == 0 || n_items == 0 {
            return Vec::new();
        }
        let mut scores = vec![0f32; n_items];
        let base = self.score_base(user);
        match user {
            Some(u) => {
                let k = self.n_factors();
                let rows = self
                    .item_factors
                    .as_slice()
                    .expect("validated standard layout");
                kernel::scores(
                    self.user_row(u),
                    rows,
                    k,
                    &self.item_bias,
                    base,
                    &mut scores,
                );
            }
            None => {
                for (s, b) in scores.iter_mut().zip(&self.item_bias) {
                    *s = base + b;
                }
            }
        }
        best_of(scores, exclude, n)
    }

    fn validate(&self) -> Result<(), String> {
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
        Ok(())
    }
}

/// Each user's rated item indices, sorted, in one flat array (CSR).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RatedItems {
    offsets: Vec<u64>,
    items: Vec<u32>,
}

impl RatedItems {
    /// Builds from `(user, item)` pairs; duplicates are kept once.
    pub fn from_pairs(n_users: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Self {
        let mut counts = vec![0u64; n_users + 1];
        for (u, _) in pairs.clone() {
            counts[u as usize + 1] += 1;
        }
        for j in 1..counts.len() {
            counts[j] += counts[j - 1];
        }
        let mut fill = counts.clone();
        let mut items = vec![0u32; *counts.last().unwrap_or(&0) as usize];
        for (u, i) in pairs {
            let at = &mut fill[u as usize];
            items[*at as usize] = i;
            *at += 1;
        }
        // Sort and dedup each row, compacting in place.
        let mut offsets = Vec::with_capacity(n_users + 1);
        offsets.push(0u64);
        let mut write = 0usize;
        for u in 0..n_users {
            let (s, e) = (counts[u] as usize, counts[u + 1] as usize);
            items[s..e].sort_unstable();
            let mut last = None;
            for r in s..e {
                let it = items[r];
                if last != Some(it) {
                    items[write] = it;
                    write += 1;
                    last = Some(it);
                }
            }
            offsets.push(write as u64);
        }
        items.truncate(write);
        Self { offsets, items }
    }

    /// Sorted item indices the user rated; empty for an out-of-range user.
    #[inline]
    pub fn of(&self, user: u32) -> &[u32] {
        let u = user as usize;
        match (self.offsets.get(u), self.offsets.get(u + 1)) {
            (Some(&s), Some(&e)) => &self.items[s as usize..e as usize],
            _ => &[],
        }
    }

    pub fn n_users(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn validate(&self, n_users: usize, n_items: usize) -> Result<(), String> {
        if self.offsets.len() != n_users + 1 || self.offsets.first() != Some(&0) {
            return Err("rated-items offsets do not match the user count".into());
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1])
            || self.offsets.last().copied() != Some(self.items.len() as u64)
        {
            return Err("rated-items offsets are not monotone".into());
        }
        for u in 0..n_users as u32 {
            let row = self.of(u);
            if row.windows(2).any(|w| w[0] >= w[1]) || row.iter().any(|&i| i as usize >= n_items) {
                return Err(format!(
                    "rated items of user {u} are unsorted or out of range"
                ));
            }
        }
        Ok(())
    }
}

/// Result of [`Model::predict`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Clipped to the rating scale.
    pub rating: f64,
    pub user_known: bool,
    pub item_known: bool,
}

/// One recommended item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub item: String,
    /// The clipped predicted rating, as [`Model::predict`] would return it.
    pub score: f64,
}

/// Result of [`Model::recommend`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    /// The user is unknown: these are the items with the highest bias.
    pub cold_start: bool,
    pub items: Vec<Scored>,
}

/// A trained model, as stored in the artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub users: IdMap,
    pub items: IdMap,
    pub scale: RatingScale,
    pub factors: Factors,
    /// Per user, the items they rated (excluded from their recommendations).
    pub rated: RatedItems,
}

impl Model {
    /// Checks that every index the fast paths use is in range, so they cannot panic.
    pub fn validate(&self) -> Result<(), String> {
        if self.users.len() != self.factors.n_users() || self.items.len() != self.factors.n_items()
        {
            return Err("id maps do not match the factor sizes".into());
        }
        if !(self.scale.lo.is_finite()
            && self.scale.hi.is_finite()
            && self.scale.lo <= self.scale.hi)
        {
            return Err(format!("invalid rating scale {:?}", self.scale));
        }
        self.factors.validate()?;
        self.rated.validate(self.users.len(), self.items.len())
    }

    #[inline]
    pub fn user_index(&self, user: &str) -> Option<u32> {
        self.users.get(user)
    }

    #[inline]
    pub fn item_index(&self, item: &str) -> Option<u32> {
        self.items.get(item)
    }

    /// Clipped prediction for dense indices (`None` = unknown).
    #[inline]
    pub fn predict_indices(&self, user: Option<u32>, item: Option<u32>) -> f64 {
        let est = self
            .factors
            .estimate(user.map(|u| u as usize), item.map(|i| i as usize));
        self.scale.clip(est)
    }

    /// Predicted rating of `item` by `user`, with Surprise's fallback for unknown ids.
    pub fn predict(&self, user: &str, item: &str) -> Prediction {
        let (u, i) = (self.user_index(user), self.item_index(item));
        Prediction {
            rating: self.predict_indices(u, i),
            user_known: u.is_some(),
            item_known: i.is_some(),
        }
    }

    /// Up to `n` items `user` has not rated, best first; for an unknown user, the items with the
    /// highest bias.
    pub fn recommend(&self, user: &str, n: usize) -> Recommendations {
        let u = self.user_index(user);
        let items = self
            .recommend_indices(u, n)
            .into_iter()
            .map(|(i, score)| Scored {
                item: self.items.id(i).to_owned(),
                score,
            })
            .collect();
        Recommendations {
            cold_start: u.is_none(),
            items,
        }
    }

    /// [`Model::recommend`] on dense indices: `(item index, clipped score)`, best first.
    pub fn recommend_indices(&self, user: Option<u32>, n: usize) -> Vec<(u32, f64)> {
        let exclude = user.map(|u| self.rated.of(u)).unwrap_or(&[]);
        self.factors
            .top_n(user.map(|u| u as usize), exclude, n)
            .into_iter()
            .map(|(i, _)| (i, self.predict_indices(user, Some(i))))
            .collect()
    }
}

/// Top-N lists for many users of one model (cross-validation ranks thousands): keeps the item
/// matrix transposed for [`kernel::scores_transposed`].
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
        kernel::scores_transposed(
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
pub(crate) mod tests {
    use super::*;
    use ndarray::array;

    /// Two users, three items, two factors; user "a" rated item "x".
    pub(crate) fn tiny_model() -> Model {
        let users = IdMap::from_ids(vec!["a".into(), "b".into()]).unwrap();
        let items = IdMap::from_ids(vec!["x".into(), "y".into(), "z".into()]).unwrap();
        let factors = Factors {
            global_mean: 3.0,
            biased: true,
            user_bias: vec![0.5, -0.25],
            item_bias: vec![0.1, 0.3, -0.2],
            user_factors: array![[1.0, 0.0], [0.0, 2.0]],
            item_factors: array![[0.2, 0.2], [0.1, -0.1], [1.0, 0.5]],
        };
        let rated = RatedItems::from_pairs(2, [(0u32, 0u32)].into_iter());
        Model {
            users,
            items,
            scale: RatingScale { lo: 1.0, hi: 5.0 },
            factors,
            rated,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// The one-scan top list equals a full sort, ties included, for short and long lists.
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

    #[test]
    fn predicts_known_pair_with_dot_product() {
        let m = tiny_model();
        m.validate().unwrap();
        let p = m.predict("a", "z");
        // 3 + 0.5 - 0.2 + (1*1 + 0*0.5)
        assert!(close(p.rating, 4.3), "{p:?}");
        assert!(p.user_known && p.item_known);
    }

    #[test]
    fn unknown_ids_fall_back_like_surprise() {
        let m = tiny_model();
        let p = m.predict("nobody", "y");
        assert!(
            close(p.rating, 3.3) && !p.user_known && p.item_known,
            "{p:?}"
        );
        let p = m.predict("b", "nothing");
        assert!(
            close(p.rating, 2.75) && p.user_known && !p.item_known,
            "{p:?}"
        );
        let p = m.predict("nobody", "nothing");
        assert!(
            close(p.rating, 3.0) && !p.user_known && !p.item_known,
            "{p:?}"
        );
    }

    #[test]
    fn unbiased_unknown_falls_back_to_global_mean() {
        let mut m = tiny_model();
        m.factors.biased = false;
        m.factors.user_bias = vec![0.0; 2];
        m.factors.item_bias = vec![0.0; 3];
        m.validate().unwrap();
        assert!(close(m.predict("a", "z").rating, 1.0));
        assert!(close(m.predict("a", "nothing").rating, 3.0));
    }

    #[test]
    fn predictions_are_clipped() {
        let mut m = tiny_model();
        m.factors.user_factors[[0, 0]] = 10.0;
        assert_eq!(m.predict("a", "z").rating, 5.0);
        m.factors.user_factors[[0, 0]] = -10.0;
        assert_eq!(m.predict("a", "z").rating, 1.0);
    }

    #[test]
    fn recommend_excludes_rated_and_orders_by_estimate() {
        let m = tiny_model();
        let r = m.recommend("a", 10);
        assert!(!r.cold_start);
        let ids: Vec<&str> = r.items.iter().map(|s| s.item.as_str()).collect();
        // a: y = 3.5+0.3+0.1 = 3.9, z = 4.3; x is rated.
        assert_eq!(ids, ["z", "y"]);
        assert!(close(r.items[0].score, m.predict("a", "z").rating));
        assert_eq!(m.recommend("a", 1).items.len(), 1);
        assert!(m.recommend("a", 0).items.is_empty());
    }

    #[test]
    fn cold_start_uses_item_bias() {
        let m = tiny_model();
        let r = m.recommend("stranger", 2);
        assert!(r.cold_start);
        let ids: Vec<&str> = r.items.iter().map(|s| s.item.as_str()).collect();
        assert_eq!(ids, ["y", "x"]);
    }

    #[test]
    fn rated_items_are_sorted_and_deduplicated() {
        let r = RatedItems::from_pairs(3, [(2u32, 5u32), (0, 3), (2, 1), (2, 5)].into_iter());
        assert_eq!(r.of(0), &[3]);
        assert_eq!(r.of(1), &[] as &[u32]);
        assert_eq!(r.of(2), &[1, 5]);
        assert_eq!(r.of(7), &[] as &[u32]);
        r.validate(3, 6).unwrap();
        assert!(r.validate(3, 5).is_err());
    }

    #[test]
    fn id_map_rejects_duplicates() {
        assert!(IdMap::from_ids(vec!["a".into(), "a".into()]).is_none());
        let mut m = IdMap::new();
        assert_eq!(m.intern("q"), 0);
        assert_eq!(m.intern("r"), 1);
        assert_eq!(m.intern("q"), 0);
        assert_eq!(m.id(1), "r");
    }
}
