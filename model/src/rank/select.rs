//! Keeping one user's top n from approximate scores, then settling it on exact ones.
//!
//! The block product sums in another order than [`crate::simd::dot`], from bfloat16-rounded
//! factors where the CPU has them, so its scores can differ from the reference ones by rounding,
//! which could swap near-ties. Every approximate score is within `delta` of the exact one, so the
//! exact top n is among the items whose approximate score is at least the approximate n-th best
//! minus `2 delta`: those few are rescored exactly and ranked by the reference order, which makes
//! the result identical to ranking exact scores.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// An f32 ordered by `total_cmp`, for the heap.
#[derive(Clone, Copy, PartialEq)]
struct Total(f32);

impl Eq for Total {}

impl PartialOrd for Total {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Total {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The reference order: higher score first, ties by lower index.
pub fn better(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

pub struct Selector<'e> {
    n: usize,
    margin: f32,
    /// Sorted item indices that may not be chosen, walked alongside the ascending items.
    exclude: &'e [u32],
    cursor: usize,
    /// The n best approximate scores so far (a min-heap), to know the bar.
    top: BinaryHeap<Reverse<Total>>,
    candidates: Vec<(u32, f32)>,
    /// Scores below this cannot reach the exact top n; `-inf` until n items were seen.
    pub cut: f32,
}

impl<'e> Selector<'e> {
    /// `delta` bounds `|approximate - exact|` for every item of this user.
    pub fn new(n: usize, delta: f32, exclude: &'e [u32]) -> Self {
        Selector {
            n,
            // Doubled again, so rounding in the bound itself cannot matter.
            margin: 4.0 * delta + f32::MIN_POSITIVE,
            exclude,
            cursor: 0,
            top: BinaryHeap::with_capacity(n + 1),
            candidates: Vec::with_capacity(2 * n + 16),
            cut: f32::NEG_INFINITY,
        }
    }

    fn excluded(&mut self, item: u32) -> bool {
        while self.exclude.get(self.cursor).is_some_and(|&e| e < item) {
            self.cursor += 1;
        }
        self.exclude.get(self.cursor) == Some(&item)
    }

    /// Items must come in ascending order; callers skip scores below [`Selector::cut`] first,
    /// which is most of them once the list has filled.
    #[inline]
    pub fn offer(&mut self, item: u32, score: f32) {
        if self.n == 0 || self.excluded(item) {
            return;
        }
        if self.top.len() < self.n {
            self.top.push(Reverse(Total(score)));
        } else if self.top.peek().is_some_and(|low| score > low.0.0) {
            self.top.pop();
            self.top.push(Reverse(Total(score)));
        }
        if self.top.len() == self.n {
            let low = self.top.peek().map_or(f32::NEG_INFINITY, |low| low.0.0);
            self.cut = low - self.margin;
        }
        self.candidates.push((item, score));
        // Candidates admitted under an older, lower bar are dropped now and then, so the list
        // stays near n long.
        if self.candidates.len() >= 4 * self.n + 64 {
            let cut = self.cut;
            self.candidates.retain(|c| c.1 >= cut);
        }
    }

    /// The top n by exact score (`exact(item)`), in the reference order; like the reference,
    /// an item scored `-inf` is never chosen.
    pub fn finish(self, exact: impl Fn(u32) -> f32) -> Vec<(u32, f32)> {
        let cut = self.cut;
        let mut ranked: Vec<(u32, f32)> = self
            .candidates
            .into_iter()
            .filter(|c| c.1 >= cut)
            .map(|(item, _)| (item, exact(item)))
            .filter(|c| c.1 != f32::NEG_INFINITY)
            .collect();
        ranked.sort_unstable_by(better);
        ranked.truncate(self.n);
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With approximate scores off by up to delta, the exact top n still comes out, excluded
    /// items never do, and ties go to the lower index.
    #[test]
    fn exact_top_n_survives_approximate_scores() {
        let exact: Vec<f32> = (0..400u32).map(|j| ((j * 37) % 23) as f32 * 0.25).collect();
        let delta = 0.1;
        let wobble = |j: u32| if j.is_multiple_of(2) { delta } else { -delta };
        let exclude: Vec<u32> = (0..400).filter(|j| j % 9 == 0).collect();
        for n in [0, 1, 10, 50, 500] {
            let mut sel = Selector::new(n, delta, &exclude);
            for j in 0..400u32 {
                let approx = exact[j as usize] + wobble(j);
                if approx >= sel.cut {
                    sel.offer(j, approx);
                }
            }
            let got = sel.finish(|j| exact[j as usize]);
            let mut want: Vec<(u32, f32)> = (0..400u32)
                .filter(|j| j % 9 != 0)
                .map(|j| (j, exact[j as usize]))
                .collect();
            want.sort_by(better);
            want.truncate(n);
            assert_eq!(got, want, "n = {n}");
        }
    }
}
