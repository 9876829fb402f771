//! Synthetic ratings with a known low-rank structure, for size and speed tests.
//!
//! r = clip(round(3.5 + b_u + b_i + p_u·q_i + noise), 1, 5) with Gaussian biases and factors;
//! items are drawn with a popularity skew (low indices more often), as in real catalogues.

use std::io::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub users: usize,
    pub items: usize,
    pub ratings: usize,
    pub rank: usize,
    pub seed: u64,
    /// Standard deviation of the noise added before rounding.
    pub noise: f64,
}

fn normal(mean: f64, std: f64) -> Result<Normal<f64>> {
    Normal::new(mean, std).map_err(|e| Error::Config(format!("generator distribution: {e}")))
}

/// Writes `opts.ratings` lines `user TAB item TAB rating TAB timestamp` (the ml-100k layout).
pub fn generate(opts: &GenerateOptions, out: &mut dyn Write) -> Result<()> {
    if opts.users == 0 || opts.items == 0 || opts.rank == 0 {
        return Err(Error::Config(
            "--users, --items and --rank must be positive".into(),
        ));
    }
    if !(opts.noise.is_finite() && opts.noise >= 0.0) {
        return Err(Error::Config(
            "--noise must be a non-negative number".into(),
        ));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let factor = normal(0.0, 1.0 / (opts.rank as f64).sqrt())?;
    let draw = |n: usize, rng: &mut StdRng| -> Vec<f64> {
        (0..n * opts.rank).map(|_| factor.sample(rng)).collect()
    };
    let pu = draw(opts.users, &mut rng);
    let qi = draw(opts.items, &mut rng);
    let bu_dist = normal(0.0, 0.3)?;
    let bi_dist = normal(0.0, 0.5)?;
    let bu: Vec<f64> = (0..opts.users).map(|_| bu_dist.sample(&mut rng)).collect();
    let bi: Vec<f64> = (0..opts.items).map(|_| bi_dist.sample(&mut rng)).collect();
    let noise = normal(0.0, opts.noise)?;
    let k = opts.rank;
    let w = |e: std::io::Error| Error::io("generated ratings", e);
    for n in 0..opts.ratings {
        let u = rng.random_range(0..opts.users);
        let x: f64 = rng.random();
        let i = ((x * x) * opts.items as f64) as usize % opts.items;
        let dot: f64 = pu[u * k..(u + 1) * k]
            .iter()
            .zip(&qi[i * k..(i + 1) * k])
            .map(|(a, b)| a * b)
            .sum();
        let r = (3.5 + bu[u] + bi[i] + dot + noise.sample(&mut rng))
            .round()
            .clamp(1.0, 5.0);
        writeln!(out, "{u}\t{i}\t{r}\t{}", 1_000_000_000 + n).map_err(w)?;
    }
    out.flush().map_err(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_deterministic_and_loadable() {
        let opts = GenerateOptions {
            users: 50,
            items: 40,
            ratings: 500,
            rank: 3,
            seed: 9,
            noise: 0.2,
        };
        let mut a = Vec::new();
        generate(&opts, &mut a).unwrap();
        let mut b = Vec::new();
        generate(&opts, &mut b).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count(), 500);
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let r: f64 = f[2].parse().unwrap();
            assert!((1.0..=5.0).contains(&r) && r.fract() == 0.0);
        }
    }

    #[test]
    fn zero_sizes_are_refused() {
        let opts = GenerateOptions {
            users: 0,
            items: 1,
            ratings: 1,
            rank: 1,
            seed: 0,
            noise: 0.1,
        };
        assert!(generate(&opts, &mut Vec::new()).is_err());
    }
}
