//! Suggestions ranked once per model load rather than once per request.
//!
//! Ranking all items for a user reads the whole item-factor matrix; for the models this serves
//! that is most of a request's cost, and the answer only changes when the model does. So each
//! load ranks the first `depth` suggestions of every known user (and the cold-start list) on the
//! blocking pool; requests for up to `depth` items slice that, deeper ones are ranked live.
//! Results are identical to [`Model::recommend_indices`] either way.

use recommender_model::{Model, Query, Ranker};

/// Bytes per stored suggestion: the item index and its score.
const ENTRY_BYTES: usize = size_of::<u32>() + size_of::<f64>();

pub struct TopIndex {
    depth: usize,
    /// `users × depth`; user `u`'s ranking starts at `u * depth` and has `lens[u]` entries.
    items: Vec<u32>,
    scores: Vec<f64>,
    lens: Vec<u32>,
    cold: Vec<(u32, f64)>,
}

impl TopIndex {
    /// Ranks every user's first `depth` items, or returns `None` when that would take more than
    /// `max_bytes` (or `depth` is 0): then every request is ranked live.
    pub fn build(
        model: &Model,
        ranker: &Ranker,
        depth: usize,
        max_bytes: usize,
    ) -> Option<TopIndex> {
        let users = model.users.len();
        let depth = depth.min(model.items.len());
        if depth == 0 || users.saturating_mul(depth).saturating_mul(ENTRY_BYTES) > max_bytes {
            return None;
        }
        let mut items = vec![0u32; users * depth];
        let mut scores = vec![0f64; users * depth];
        let mut lens = Vec::with_capacity(users);
        let queries: Vec<Query> = (0..users)
            .map(|u| Query {
                user: Some(u),
                exclude: model.rated.of(u as u32),
            })
            .collect();
        // Many users at once: the ranker reads each part of the item matrix once per block.
        let ranked = ranker.top_n_many(&model.factors, &queries, depth);
        for (u, ranked) in ranked.iter().enumerate() {
            let at = u * depth;
            for (k, (item, _)) in ranked.iter().enumerate() {
                items[at + k] = *item;
                scores[at + k] = model.predict_indices(Some(u as u32), Some(*item));
            }
            lens.push(ranked.len() as u32);
        }
        Some(TopIndex {
            depth,
            items,
            scores,
            lens,
            cold: model.recommend_ranked(ranker, None, depth),
        })
    }

    /// The first `n` suggestions for a user index (`None`: unknown user), if ranked in advance.
    #[inline]
    pub fn get(&self, user: Option<u32>, n: usize) -> Option<Ranked<'_>> {
        if n > self.depth {
            return None;
        }
        Some(match user {
            Some(u) => {
                let u = u as usize;
                let len = (*self.lens.get(u)? as usize).min(n);
                let at = u * self.depth;
                Ranked::Split {
                    items: &self.items[at..at + len],
                    scores: &self.scores[at..at + len],
                }
            }
            None => Ranked::Pairs(&self.cold[..n.min(self.cold.len())]),
        })
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    pub fn bytes(&self) -> usize {
        self.items.len() * ENTRY_BYTES + self.lens.len() * 4 + self.cold.len() * ENTRY_BYTES
    }
}

/// A ranked slice as stored: `(item index, score)` pairs, best first.
pub enum Ranked<'a> {
    Split { items: &'a [u32], scores: &'a [f64] },
    Pairs(&'a [(u32, f64)]),
}

impl Ranked<'_> {
    pub fn iter(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        let (split, pairs) = match self {
            Ranked::Split { items, scores } => (
                Some(items.iter().copied().zip(scores.iter().copied())),
                None,
            ),
            Ranked::Pairs(p) => (None, Some(p.iter().copied())),
        };
        split
            .into_iter()
            .flatten()
            .chain(pairs.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recommender_model::fixtures::{self, Shape};

    /// 15 users who rated between 2 and 8 of 40 items each.
    fn trained() -> Model {
        let rated =
            (0..15u32).flat_map(|u| (0..(2 + u % 7)).map(move |k| (u, (u * 5 + k * 3) % 40)));
        let shape = Shape {
            users: 15,
            items: 40,
            factors: 3,
            seed: 0,
        };
        fixtures::model(shape, rated)
    }

    #[test]
    fn stored_rankings_equal_live_rankings() {
        let model = trained();
        let index = TopIndex::build(&model, &Ranker::new(&model.factors), 8, usize::MAX).unwrap();
        for u in (0..model.users.len() as u32).map(Some).chain([None]) {
            for n in [1, 5, 8] {
                let stored: Vec<(u32, f64)> = index.get(u, n).unwrap().iter().collect();
                assert_eq!(stored, model.recommend_indices(u, n), "user {u:?}, n {n}");
            }
            assert!(
                index.get(u, 9).is_none(),
                "deeper than stored must be ranked live"
            );
        }
        assert!(index.get(Some(10_000), 3).is_none());
    }

    #[test]
    fn too_large_or_zero_depth_is_not_built() {
        let model = trained();
        let ranker = Ranker::new(&model.factors);
        assert!(TopIndex::build(&model, &ranker, 8, 100).is_none());
        assert!(TopIndex::build(&model, &ranker, 0, usize::MAX).is_none());
        let capped = TopIndex::build(&model, &ranker, 1000, usize::MAX).unwrap();
        assert_eq!(capped.depth(), model.items.len());
    }
}
