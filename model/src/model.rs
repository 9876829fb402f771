//! The trained model: id maps, biases and factors, and the two questions the predictor asks of
//! it (`predict` and `recommend`).
//!
//! Predictions follow Surprise's `SVD.estimate`: unknown ids fall back to the global mean plus
//! whatever biases are known, then clip to the rating scale.

use serde::{Deserialize, Serialize};

use crate::factors::Factors;
use crate::ids::IdMap;
use crate::rank::Ranker;
use crate::rated::RatedItems;

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
        self.recommend_ranked(&Ranker::new(&self.factors), user, n)
    }

    /// [`Model::recommend_indices`] with the model's [`Ranker`], built once for many calls.
    pub fn recommend_ranked(
        &self,
        ranker: &Ranker,
        user: Option<u32>,
        n: usize,
    ) -> Vec<(u32, f64)> {
        let exclude = user.map(|u| self.rated.of(u)).unwrap_or(&[]);
        ranker
            .top_n(&self.factors, user.map(|u| u as usize), exclude, n)
            .into_iter()
            .map(|(i, _)| (i, self.predict_indices(user, Some(i))))
            .collect()
    }
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

    /// The artifact fuzz target's finding: finite factors whose dot product overflows f32 made
    /// a prediction NaN (clamping NaN to the scale leaves it NaN) and the ranking scores
    /// infinite. Such a model is refused when loaded; one just inside the bound predicts within
    /// the scale.
    #[test]
    fn factors_whose_scores_overflow_are_refused() {
        let mut m = tiny_model();
        m.factors.user_factors = array![[1e20, -1e20], [0.0, 2.0]];
        m.factors.item_factors = array![[1e20, 1e20], [0.1, -0.1], [-1e20, 1e20]];
        let err = m.validate().unwrap_err();
        assert!(err.contains("scores could reach"), "{err}");
        m.factors.user_factors = array![[1e14, -1e14], [0.0, 2.0]];
        m.factors.item_factors = array![[1e14, 1e14], [0.1, -0.1], [-1e14, 1e14]];
        m.validate().unwrap();
        for item in ["x", "y", "z"] {
            let p = m.predict("a", item).rating;
            assert!((1.0..=5.0).contains(&p), "{item}: {p}");
        }
        let top = m.recommend("a", 3);
        assert!(top.items.iter().all(|s| s.score.is_finite()), "{top:?}");
    }

    /// The one-scan top list equals a full sort, ties included, for short and long lists.
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
}
