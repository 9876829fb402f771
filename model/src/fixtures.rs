//! Deterministic synthetic models for tests and benchmarks of the crates that use this one, so
//! they need not depend on the trainer to get a model (feature `fixtures`).

use ndarray::Array2;

use crate::artifact::{ArtifactMeta, CvMetrics, FORMAT_VERSION, TrainingData};
use crate::factors::Factors;
use crate::ids::IdMap;
use crate::model::{Model, RatingScale};
use crate::params::Hyperparameters;
use crate::rated::RatedItems;

/// Shape of a synthetic model: users `u0..`, items `i0..`, rating scale 1 to 5.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub users: usize,
    pub items: usize,
    pub factors: usize,
    /// Different seeds give different biases and factors, hence different predictions.
    pub seed: u64,
}

/// SplitMix64: enough spread for distinct scores, and no dependency for a fixture.
struct Draws(u64);

impl Draws {
    /// Uniform in [-scale, scale).
    fn next(&mut self, scale: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}

/// A biased model of `shape` whose users rated the `(user, item)` index pairs in `rated`.
pub fn model(shape: Shape, rated: impl Iterator<Item = (u32, u32)> + Clone) -> Model {
    let Shape {
        users,
        items,
        factors: k,
        seed,
    } = shape;
    let mut draw = Draws(seed);
    // Factor entries of ±0.3 keep dot products, hence most scores, inside the rating scale.
    let user_bias = (0..users).map(|_| draw.next(0.3)).collect();
    let item_bias = (0..items).map(|_| draw.next(0.5)).collect();
    let user_factors = Array2::from_shape_simple_fn((users, k), || draw.next(0.3));
    let item_factors = Array2::from_shape_simple_fn((items, k), || draw.next(0.3));
    let ids = |prefix: &str, n: usize| {
        IdMap::from_ids((0..n).map(|j| format!("{prefix}{j}")).collect()).expect("distinct ids")
    };
    Model {
        users: ids("u", users),
        items: ids("i", items),
        scale: RatingScale { lo: 1.0, hi: 5.0 },
        factors: Factors {
            global_mean: 3.5,
            biased: true,
            user_bias,
            item_bias,
            user_factors,
            item_factors,
        },
        rated: RatedItems::from_pairs(users, rated),
    }
}

/// Metadata an artifact of `model` might carry: version `v1`, `hyperparameters`, the model's user
/// and item counts, plausible metrics.
pub fn meta(model: &Model, hyperparameters: Hyperparameters) -> ArtifactMeta {
    ArtifactMeta {
        format_version: FORMAT_VERSION,
        version: "v1".into(),
        created_at: "2026-11-27T22:00:00Z".into(),
        algorithm: hyperparameters.algorithm().into(),
        hyperparameters,
        data: TrainingData {
            rows: (0..model.users.len() as u32)
                .map(|u| model.rated.of(u).len() as u64)
                .sum(),
            users: model.users.len() as u64,
            items: model.items.len() as u64,
            max_timestamp: Some(881_250_949),
            content_hash: "ab".repeat(32),
            skipped: 0,
        },
        metrics: CvMetrics {
            folds: 5,
            rmse: 0.93,
            rmse_std: 0.01,
            mae: 0.73,
            mae_std: 0.01,
            accuracy: 0.75,
            precision_at_10: 0.1,
            recall_at_10: 0.2,
            ndcg_at_10: 0.3,
        },
        trainer_version: "fixture".into(),
        fit_threads: Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_change_the_model_and_it_validates() {
        let shape = Shape {
            users: 5,
            items: 9,
            factors: 3,
            seed: 1,
        };
        let pairs = [(0u32, 2u32), (4, 8)];
        let a = model(shape, pairs.into_iter());
        a.validate().unwrap();
        assert_eq!(a.rated.of(4), &[8]);
        assert_eq!(a, model(shape, pairs.into_iter()));
        let b = model(Shape { seed: 2, ..shape }, pairs.into_iter());
        assert_ne!(a.predict("u1", "i3"), b.predict("u1", "i3"));
        let draws: Vec<f32> = (0..1000)
            .map({
                let mut d = Draws(7);
                move |_| d.next(1.0)
            })
            .collect();
        assert!(draws.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(draws.iter().any(|x| *x < -0.9) && draws.iter().any(|x| *x > 0.9));
    }
}
