//! The retry delay of objects whose reconcile failed: exponential (1 s doubling to 5 min) with
//! jitter, so objects that failed together (an API server restart fails every reconcile at once)
//! do not all retry in the same second, and a map of consecutive failures that forgets deleted
//! objects and never grows past a bound.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(300);
/// The share of a delay jitter may take off: a delay lies in `[base * (1 - JITTER), base]`, so
/// it never exceeds the exponential step (nor `MAX_DELAY`) and never falls below three quarters.
const JITTER: f64 = 0.25;
/// Objects whose failures are remembered. One past the bound evicts the object with the fewest
/// failures, whose next retry then starts again at 1 s: a shorter delay, never a lost retry.
pub const MAX_TRACKED: usize = 4096;

/// Consecutive failures per object, and the jitter's random source.
pub struct Backoff<K> {
    failures: HashMap<K, u32>,
    rng: StdRng,
    bound: usize,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    /// Jitter from `seed`: tests pass a fixed one, the operator a random one.
    pub fn new(seed: u64) -> Self {
        Self::with_bound(seed, MAX_TRACKED)
    }

    fn with_bound(seed: u64, bound: usize) -> Self {
        Self {
            failures: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            bound,
        }
    }

    /// Counts one more failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&mut self, key: K) -> Duration {
        if !self.failures.contains_key(&key) && self.failures.len() >= self.bound {
            let fewest = self
                .failures
                .iter()
                .min_by_key(|(_, n)| **n)
                .map(|(k, _)| k.clone());
            if let Some(fewest) = fewest {
                self.failures.remove(&fewest);
            }
        }
        let count = self.failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        let base = Duration::from_secs(1 << (*count - 1).min(9)).min(MAX_DELAY);
        base.mul_f64(1.0 - JITTER * self.rng.random::<f64>())
    }

    /// `key` reconciled, or is gone: its next failure starts again at 1 s.
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Keeps only the objects `exists` says are still there.
    pub fn retain(&mut self, mut exists: impl FnMut(&K) -> bool) {
        self.failures.retain(|k, _| exists(k));
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_five_minutes_with_bounded_jitter() {
        let mut backoff = Backoff::new(7);
        let delays: Vec<Duration> = (0..12).map(|_| backoff.failed("a")).collect();
        for (n, delay) in delays.iter().enumerate() {
            let base = Duration::from_secs(1 << n.min(9)).min(MAX_DELAY);
            assert!(
                *delay <= base && *delay >= base.mul_f64(1.0 - JITTER),
                "failure {}: {delay:?} outside [0.75, 1] x {base:?}",
                n + 1
            );
        }
        assert!(delays[11] <= MAX_DELAY);
        // Jitter: of a dozen delays at least some are below their step.
        let steps = (0..12).map(|n| Duration::from_secs(1 << n.min(9)).min(MAX_DELAY));
        assert!(delays.iter().zip(steps).any(|(d, s)| *d < s));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays_and_objects_spread_out() {
        let run = |seed| {
            let mut backoff = Backoff::new(seed);
            (0..20)
                .map(|i| backoff.failed(format!("model-{i}")))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        // Twenty objects failing together do not all retry at the same instant.
        let first = run(1);
        assert!(first.iter().any(|d| *d != first[0]), "{first:?}");
    }

    #[test]
    fn success_and_deletion_forget_an_object() {
        let mut backoff = Backoff::new(0);
        for _ in 0..5 {
            backoff.failed("a");
        }
        backoff.failed("b");
        backoff.forget(&"a");
        assert!(backoff.failed("a") <= Duration::from_secs(1), "starts over");
        backoff.retain(|k| *k == "b");
        assert_eq!(backoff.tracked(), 1);
    }

    #[test]
    fn the_map_never_grows_past_its_bound() {
        let mut backoff = Backoff::with_bound(0, 3);
        for _ in 0..4 {
            backoff.failed("often");
        }
        for key in ["x", "y", "z", "w"] {
            backoff.failed(key);
        }
        assert_eq!(backoff.tracked(), 3);
        // The object failing most is the one kept: its delay keeps growing.
        assert!(backoff.failed("often") > Duration::from_secs(8));
    }
}
