//! One fit on several threads: the ratings cut into a grid of blocks, LIBMF's scheme, on a
//! fixed schedule so that the model depends on the seed and the thread count only.
//!
//! Users are dealt into `bins` bins of about equal rating counts, and so are items; block
//! `(b, c)` holds the ratings of bin-`b` users for bin-`c` items, in training order. Blocks
//! `(b, b + s mod bins)` for `b = 0..bins` share no user and no item, so the `bins` blocks of
//! stratum `s` are trained at once without locks, and an epoch is the strata `s = 0..bins` one
//! after another. Which thread takes which block of a stratum never changes what is computed:
//! each block is the serial kernel on its own rows. LIBMF instead hands any free block to any
//! idle thread, which keeps the cores busier but makes the order, and so the model, differ from
//! run to run.
//!
//! Rows are renumbered bin by bin, so a block's users and items are contiguous row ranges that
//! can be handed out as disjoint slices; the training order inside a block is the order of
//! `train` (Surprise's, grouped by user), so users still come in runs.

use rayon::prelude::*;

use crate::kernel::{self, Params, StepRates, Triple};

/// Most threads one fit takes (the grid has `4 × threads²` blocks).
pub const MAX_FIT_THREADS: usize = 256;

/// Blocks per thread along each side of the grid: with two, a thread that finishes its block of
/// a stratum early takes another instead of waiting for the slowest.
const BINS_PER_THREAD: usize = 2;

/// The ratings of one fit in blocks, and where each user's and item's row goes.
pub(crate) struct Grid {
    bins: usize,
    /// Row of each user in the renumbered factors.
    pub user_row: Vec<u32>,
    pub item_row: Vec<u32>,
    /// Bin `b`'s rows are `user_start[b]..user_start[b + 1]`.
    user_start: Vec<usize>,
    item_start: Vec<usize>,
    /// Every block's ratings with bin-local indices, blocks in order `(0, 0), (0, 1), ...`.
    ratings: Vec<Triple>,
    /// Block `(b, c)` is `ratings[block_start[b * bins + c]..block_start[b * bins + c + 1]]`.
    block_start: Vec<usize>,
}

/// Deals rows into `bins` bins of about equal rating counts (largest first, each into the
/// least loaded bin, the first on ties), then numbers them bin by bin in index order. Returns
/// each row's bin, its new index, and the bins' first indices (plus the total).
fn deal(counts: &[u32], bins: usize) -> (Vec<u32>, Vec<u32>, Vec<usize>) {
    let mut order: Vec<u32> = (0..counts.len() as u32).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(counts[r as usize]));
    let mut load = vec![0u64; bins];
    let mut bin_of = vec![0u32; counts.len()];
    for r in order {
        let lightest = (0..bins).min_by_key(|&b| load[b]).unwrap_or(0);
        bin_of[r as usize] = lightest as u32;
        load[lightest] += u64::from(counts[r as usize]);
    }
    let mut start = vec![0usize; bins + 1];
    for &b in &bin_of {
        start[b as usize + 1] += 1;
    }
    for b in 0..bins {
        start[b + 1] += start[b];
    }
    let mut next = start.clone();
    let row = bin_of
        .iter()
        .map(|&b| {
            let r = next[b as usize];
            next[b as usize] += 1;
            r as u32
        })
        .collect();
    (bin_of, row, start)
}

impl Grid {
    /// The grid for training on `threads` threads; `train` is consumed, as its copy in blocks
    /// replaces it.
    pub fn new(train: Vec<Triple>, n_users: usize, n_items: usize, threads: usize) -> Self {
        let bins = threads.max(1) * BINS_PER_THREAD;
        let (mut user_counts, mut item_counts) = (vec![0u32; n_users], vec![0u32; n_items]);
        for t in &train {
            user_counts[t.user as usize] += 1;
            item_counts[t.item as usize] += 1;
        }
        let (user_bin, user_row, user_start) = deal(&user_counts, bins);
        let (item_bin, item_row, item_start) = deal(&item_counts, bins);
        let block = |t: &Triple| {
            user_bin[t.user as usize] as usize * bins + item_bin[t.item as usize] as usize
        };
        let mut block_start = vec![0usize; bins * bins + 1];
        for t in &train {
            block_start[block(t) + 1] += 1;
        }
        for b in 0..bins * bins {
            block_start[b + 1] += block_start[b];
        }
        let mut next = block_start.clone();
        let mut ratings = vec![
            Triple {
                user: 0,
                item: 0,
                rating: 0.0
            };
            train.len()
        ];
        for t in &train {
            let (u, i) = (t.user as usize, t.item as usize);
            let at = &mut next[block(t)];
            ratings[*at] = Triple {
                user: user_row[u] - user_start[user_bin[u] as usize] as u32,
                item: item_row[i] - item_start[item_bin[i] as usize] as u32,
                rating: t.rating,
            };
            *at += 1;
        }
        Self {
            bins,
            user_row,
            item_row,
            user_start,
            item_start,
            ratings,
            block_start,
        }
    }

    fn block(&self, b: usize, c: usize) -> &[Triple] {
        let at = b * self.bins + c;
        &self.ratings[self.block_start[at]..self.block_start[at + 1]]
    }

    /// One epoch, stratum by stratum on rayon's pool; `p` holds the renumbered rows.
    pub fn epoch(&self, p: &mut Params<'_>, r: &StepRates) {
        let (mu, k) = (p.mu, p.k);
        for s in 0..self.bins {
            let users = bins_of(p.pu, p.bu, &self.user_start, k);
            let mut items = bins_of(p.qi, p.bi, &self.item_start, k);
            // User bin b meets item bin (b + s) mod bins.
            items.rotate_left(s);
            users
                .into_par_iter()
                .zip(items)
                .enumerate()
                .with_max_len(1)
                .for_each(|(b, ((pu, bu), (qi, bi)))| {
                    let mut block = Params {
                        mu,
                        k,
                        bu,
                        bi,
                        pu,
                        qi,
                    };
                    kernel::sgd_epoch(self.block(b, (b + s) % self.bins), &mut block, r);
                });
        }
    }
}

/// The factor rows and biases of each bin, as disjoint slices.
fn bins_of<'a>(
    mut rows: &'a mut [f32],
    mut bias: &'a mut [f32],
    start: &[usize],
    k: usize,
) -> Vec<(&'a mut [f32], &'a mut [f32])> {
    start
        .windows(2)
        .map(|w| {
            let n = w[1] - w[0];
            let (r, rest) = std::mem::take(&mut rows).split_at_mut(n * k);
            rows = rest;
            let (b, rest) = std::mem::take(&mut bias).split_at_mut(n);
            bias = rest;
            (r, b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dealing_balances_counts_and_numbers_rows_bin_by_bin() {
        let counts = [9, 1, 1, 5, 4, 0, 3, 3];
        let (bin, row, start) = deal(&counts, 2);
        // Largest first: 9 | 5, 4; then 3 | 3, 1 | 1, 0 |: 13 and 13.
        let load = |b: u32| -> u32 { (0..8).filter(|&r| bin[r] == b).map(|r| counts[r]).sum() };
        assert!(load(0).abs_diff(load(1)) <= 1, "{} vs {}", load(0), load(1));
        assert_eq!(start[0], 0);
        assert_eq!(start[2], counts.len());
        for r in 0..counts.len() {
            let b = bin[r] as usize;
            assert!((start[b]..start[b + 1]).contains(&(row[r] as usize)));
        }
        let mut rows = row.clone();
        rows.sort();
        assert_eq!(rows, (0..8).collect::<Vec<u32>>());
    }

    #[test]
    fn every_rating_lands_in_its_block_in_training_order() {
        let train: Vec<Triple> = (0..500u32)
            .map(|n| Triple {
                user: n / 10,
                item: (n * 7 + n / 10) % 23,
                rating: n as f32,
            })
            .collect();
        let grid = Grid::new(train.clone(), 50, 23, 2);
        assert_eq!(grid.bins, 4);
        let mut seen = 0;
        for b in 0..grid.bins {
            for c in 0..grid.bins {
                let block = grid.block(b, c);
                seen += block.len();
                let mut last = None;
                for t in block {
                    // The rating field names the original position.
                    let orig = train[t.rating as usize];
                    let (u, i) = (orig.user as usize, orig.item as usize);
                    assert_eq!(
                        grid.user_row[u] as usize,
                        grid.user_start[b] + t.user as usize
                    );
                    assert_eq!(
                        grid.item_row[i] as usize,
                        grid.item_start[c] + t.item as usize
                    );
                    assert!(last < Some(t.rating as usize));
                    last = Some(t.rating as usize);
                }
            }
        }
        assert_eq!(seen, train.len());
    }
}
