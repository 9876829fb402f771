//! Ranking: the best items for users out of the whole catalogue, the one kernel behind the
//! predictor's live suggestions, its precomputed lists and the trainer's cross-validated
//! ranking metrics.
//!
//! [`Ranker`] scores users against the item matrix packed in panels (`panels`; in bfloat16 pairs,
//! `bf16`, where the CPU has AVX-512 BF16), several users per pass when it is given several (on
//! AMX tiles, `amx`, where the CPU and the kernel allow them), skips the items each user rated
//! and keeps the top n with a bounded heap. `select` makes the
//! result identical to the reference ranking ([`simd::scores`] then [`best_of`], what
//! [`Factors::estimate`] orders by), ties and all.

mod amx;
mod bf16;
mod panels;
mod select;

use crate::factors::Factors;
use crate::simd;
use bf16::Bf16Panels;
use panels::{PanelSums, Panels, SOLO_SPAN, USERS, WIDTH};
use select::Selector;

/// Users scored against one panel while it is in L1: sixteen passes of [`USERS`], so the item
/// matrix is streamed from memory once per 64 users.
const BLOCK: usize = 16 * USERS;

/// One user to rank: `None` is a user the model does not know (ranked by item bias), `exclude`
/// the sorted item indices they may not be offered.
#[derive(Clone, Copy, Debug)]
pub struct Query<'e> {
    pub user: Option<usize>,
    pub exclude: &'e [u32],
}

/// The item matrix packed for the block product: bfloat16 pairs where the CPU multiplies them
/// natively (on AMX tiles for blocks of users where it has them), else f32.
#[derive(Clone, Debug)]
enum Items {
    F32(Panels),
    Bf16 { panels: Bf16Panels, amx: bool },
}

/// Which block product a ranker uses; [`Ranker::new`] takes the fastest this machine allows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    F32,
    Bf16,
    Amx,
}

impl Kernel {
    fn best() -> Self {
        if amx::available() {
            Kernel::Amx
        } else if bf16::available() {
            Kernel::Bf16
        } else {
            Kernel::F32
        }
    }
}

/// A block's user rows in the form the panels multiply.
enum Rows {
    F32(Vec<f32>),
    Bf16(Vec<u32>),
}

/// The item side of a model prepared for ranking; build once per model, rank many users.
#[derive(Clone, Debug)]
pub struct Ranker {
    items: Items,
    k: usize,
    n_items: usize,
    /// The largest item-factor row norm: with the user's norm it bounds every product sum.
    item_norm: f64,
    bias_max: f32,
}

impl Ranker {
    pub fn new(f: &Factors) -> Self {
        Self::build(f, Kernel::best())
    }

    fn build(f: &Factors, kernel: Kernel) -> Self {
        let (k, n) = (f.n_factors(), f.n_items());
        let rows = f
            .item_factors
            .as_slice()
            .expect("validated standard layout");
        let item_norm = max_row_norm(rows, k);
        // bfloat16 keeps f32's range, but a sum near it could overflow where f32's would not.
        let kernel = if item_norm < 1e18 {
            kernel
        } else {
            Kernel::F32
        };
        Ranker {
            items: match kernel {
                Kernel::F32 => Items::F32(Panels::pack(rows, n, k)),
                Kernel::Bf16 => Items::Bf16 {
                    panels: Bf16Panels::pack(rows, n, k, 1),
                    amx: false,
                },
                Kernel::Amx => Items::Bf16 {
                    panels: Bf16Panels::pack(rows, n, k, amx::PAIRS),
                    amx: true,
                },
            },
            k,
            n_items: n,
            item_norm,
            bias_max: f.item_bias.iter().fold(0f32, |m, b| m.max(b.abs())),
        }
    }

    /// `bf16` or `f32`: the precision of the approximate scores, for logs.
    pub fn precision(&self) -> &'static str {
        match self.items {
            Items::F32(_) => "f32",
            Items::Bf16 { .. } => "bf16",
        }
    }

    /// The block product for many users: `amx`, `avx512-bf16` or the SIMD level's f32 kernel.
    pub fn kernel(&self) -> &'static str {
        match self.items {
            Items::F32(_) => "f32",
            Items::Bf16 { amx: true, .. } => "amx-bf16",
            Items::Bf16 { amx: false, .. } => "avx512-bf16",
        }
    }

    fn check(&self, f: &Factors) {
        assert!(
            f.n_items() == self.n_items && f.n_factors() == self.k,
            "ranker built for another model"
        );
    }

    fn panel_count(&self) -> usize {
        self.n_items.div_ceil(WIDTH)
    }

    /// `users` rows of `k` factors from `rows`, as the panels want them.
    fn rows(&self, rows: &[f32], users: usize) -> Rows {
        match &self.items {
            Items::F32(_) => Rows::F32(rows.to_vec()),
            Items::Bf16 { panels: p, .. } => {
                let h = p.pairs_per_item();
                let mut words = vec![0u32; users * h];
                for (row, w) in rows
                    .chunks_exact(self.k.max(1))
                    .zip(words.chunks_exact_mut(h.max(1)))
                {
                    bf16::pairs(row, w);
                }
                Rows::Bf16(words)
            }
        }
    }

    /// The `n` best items for one user, skipping the sorted indices in `exclude`, best first;
    /// ties by index. `f` must be the factors the ranker was built from.
    pub fn top_n(
        &self,
        f: &Factors,
        user: Option<usize>,
        exclude: &[u32],
        n: usize,
    ) -> Vec<(u32, f32)> {
        self.check(f);
        let mut sel = self.selector(f, &Query { user, exclude }, n);
        let base = f.score_base(user);
        // No user factors: every sum is 0 and the scores are base + bias.
        let query = match user {
            Some(u) if self.k > 0 && n > 0 => Some(self.rows(f.user_row(u), 1)),
            _ => None,
        };
        let mut sums = [0f32; WIDTH * SOLO_SPAN];
        for first in (0..self.panel_count()).step_by(SOLO_SPAN) {
            match (&query, &self.items) {
                (Some(Rows::F32(q)), Items::F32(p)) => p.solo(q, first, &mut sums),
                (Some(Rows::Bf16(q)), Items::Bf16 { panels: p, .. }) => p.solo(q, first, &mut sums),
                _ => {}
            }
            let start = first * WIDTH;
            let end = (start + WIDTH * SOLO_SPAN).min(self.n_items);
            offer_all(&mut sel, start, &sums[..end - start], &f.item_bias, base);
        }
        sel.finish(|j| exact(f, user, j))
    }

    /// [`Ranker::top_n`] for each query, in order. Queries are scored [`BLOCK`] at a time, so
    /// each panel is read from memory once per block instead of once per user.
    pub fn top_n_many(&self, f: &Factors, queries: &[Query<'_>], n: usize) -> Vec<Vec<(u32, f32)>> {
        self.check(f);
        let mut out = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(BLOCK) {
            out.extend(self.block(f, chunk, n));
        }
        out
    }

    fn block(&self, f: &Factors, chunk: &[Query<'_>], n: usize) -> Vec<Vec<(u32, f32)>> {
        let k = self.k;
        let mut rows = vec![0f32; BLOCK * k];
        for (row, q) in rows.chunks_exact_mut(k.max(1)).zip(chunk) {
            if let Some(u) = q.user.filter(|_| k > 0) {
                row.copy_from_slice(f.user_row(u));
            }
        }
        let rows = self.rows(&rows, BLOCK);
        let mut sels: Vec<Selector> = chunk.iter().map(|q| self.selector(f, q, n)).collect();
        let bases: Vec<f32> = chunk.iter().map(|q| f.score_base(q.user)).collect();
        let mut sums = [[[0f32; WIDTH]; USERS]; BLOCK / USERS];
        let groups = chunk.len().div_ceil(USERS);
        let mut tiles = match self.items {
            Items::Bf16 { amx: true, .. } if k > 0 => amx::Tiles::new(),
            _ => None,
        };
        for p in 0..self.panel_count() {
            let start = p * WIDTH;
            let len = WIDTH.min(self.n_items - start);
            match (&rows, &self.items) {
                _ if k == 0 => {}
                (Rows::F32(r), Items::F32(panels)) => {
                    for (g, sums) in sums.iter_mut().enumerate().take(groups) {
                        let users = (chunk.len() - g * USERS).min(USERS);
                        panels.block(&r[g * USERS * k..], users, p, sums)
                    }
                }
                (Rows::Bf16(r), Items::Bf16 { panels, .. }) if tiles.is_some() => {
                    let (stride, panel) = (panels.pairs_per_item(), panels.panel(p));
                    let tiles = tiles.as_mut().expect("checked");
                    let flat = sums.as_flattened_mut();
                    for pass in 0..chunk.len().div_ceil(amx::PASS) {
                        let rows = &r[pass * amx::PASS * stride..];
                        tiles.pass(rows, stride, panel, &mut flat[pass * amx::PASS..]);
                    }
                }
                (Rows::Bf16(r), Items::Bf16 { panels, .. }) => {
                    let stride = panels.pairs_per_item();
                    let mut g = 0;
                    while g < groups {
                        let (q, out) = (&r[g * USERS * stride..], &mut sums[g..]);
                        if groups - g >= 2 {
                            panels.block::<2>(q, p, out);
                            g += 2;
                        } else {
                            panels.block::<1>(q, p, out);
                            g += 1;
                        }
                    }
                }
                _ => unreachable!("rows are made for the ranker's panels"),
            }
            for (u, sel) in sels.iter_mut().enumerate() {
                let sums: &PanelSums = &sums[u / USERS];
                offer_all(sel, start, &sums[u % USERS][..len], &f.item_bias, bases[u]);
            }
        }
        sels.into_iter()
            .zip(chunk)
            .map(|(sel, q)| sel.finish(|j| exact(f, q.user, j)))
            .collect()
    }

    /// A selector whose margin covers how far this user's approximate scores can be from the
    /// reference ones. Any order of summing `k` products is within `γ_k Σ|q_f p_f|` of the exact
    /// sum (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1), bfloat16 inputs add a
    /// relative `2u + u²` per product, `Σ|q_f p_f| <= |q| |p|` (Cauchy-Schwarz), and both sides
    /// then add the same `base + bias`, rounding once more each.
    fn selector<'e>(&self, f: &Factors, q: &Query<'e>, n: usize) -> Selector<'e> {
        let k = self.k as f64;
        let user_norm = match q.user {
            Some(u) if self.k > 0 => f
                .user_row(u)
                .iter()
                .map(|x| (*x as f64).powi(2))
                .sum::<f64>()
                .sqrt(),
            _ => 0.0,
        };
        // Slack for the rounding of the norms themselves.
        let bound = user_norm * self.item_norm * 1.01;
        let unit = f32::EPSILON as f64 / 2.0;
        let gamma = k * unit / (1.0 - k * unit);
        let (quant, widen) = match self.items {
            Items::F32(_) => (0.0, 1.0),
            Items::Bf16 { .. } => (
                2.0 * bf16::UNIT + bf16::UNIT.powi(2),
                (1.0 + bf16::UNIT).powi(2),
            ),
        };
        let offset = f.score_base(q.user).abs() as f64 + self.bias_max as f64;
        // The instruction flushes subnormal inputs and results to zero: at most 2^-126 a step.
        let flushed = 4.0 * k * f64::from(f32::MIN_POSITIVE);
        let delta =
            (quant + gamma * (1.0 + widen)) * bound + 2.0 * unit * (offset + 2.0 * bound) + flushed;
        Selector::new(n.min(f.n_items()), delta as f32, q.exclude)
    }
}

fn max_row_norm(rows: &[f32], k: usize) -> f64 {
    rows.chunks_exact(k.max(1))
        .map(|r| {
            // Eight running sums, which the compiler keeps in one vector: a single f64 sum is a
            // chain of dependent additions (the CV packs a model per fold). Any order of adding
            // squares is far inside the 1% slack the bound adds.
            let mut sums = [0f64; 8];
            for chunk in r.chunks(8) {
                for (s, x) in sums.iter_mut().zip(chunk) {
                    *s += (*x as f64) * (*x as f64);
                }
            }
            sums.iter().sum::<f64>().sqrt()
        })
        .fold(0.0, f64::max)
}

/// Offers items `start..` whose product sums are `sums`, scored the way the reference forms the
/// score: `(base + bias) + sum`. Once the list is full almost nothing passes the bar, so the
/// scores are formed and tested in a loop the compiler vectorises, and only a group holding a
/// contender is walked item by item.
#[inline(always)]
fn offer_all(sel: &mut Selector<'_>, start: usize, sums: &[f32], bias: &[f32], base: f32) {
    #[cfg(target_arch = "x86_64")]
    if simd::level() == simd::Level::Avx512 {
        // SAFETY: the CPU has AVX-512F (run-time detection).
        return unsafe { wide::offer_all(sel, start, sums, bias, base) };
    }
    offer_all_portable(sel, start, sums, bias, base)
}

/// [`offer_all`] without AVX-512.
#[inline(always)]
fn offer_all_portable(sel: &mut Selector<'_>, start: usize, sums: &[f32], bias: &[f32], base: f32) {
    for (at, (sums, bias)) in sums
        .chunks(WIDTH)
        .zip(bias[start..].chunks(WIDTH))
        .enumerate()
    {
        let mut scores = [f32::NEG_INFINITY; WIDTH];
        let cut = sel.cut;
        // An or of comparisons rather than a running maximum: the maximum's order of
        // comparisons is fixed (NaN rules), so the compiler could only do it one item at a time.
        let mut contender = false;
        for ((s, &g), &b) in scores.iter_mut().zip(sums).zip(bias) {
            *s = base + b + g;
            contender |= *s >= cut;
        }
        if !contender {
            continue;
        }
        let first = start + at * WIDTH;
        for (j, &score) in scores.iter().enumerate().take(sums.len()) {
            if score >= sel.cut {
                sel.offer((first + j) as u32, score);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    use super::Selector;

    /// `offer_all` on AVX-512: the same scores (`(base + bias) + sum`, the same two roundings)
    /// sixteen at a time, and a mask of those at the bar, so only set bits are visited.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn offer_all(
        sel: &mut Selector<'_>,
        start: usize,
        sums: &[f32],
        bias: &[f32],
        base: f32,
    ) {
        let bias = &bias[start..][..sums.len()];
        let splat = _mm512_set1_ps(base);
        let mut scores = [0f32; 16];
        for (at, (sums, bias)) in sums.chunks(16).zip(bias.chunks(16)).enumerate() {
            let lanes = (1u32 << sums.len()) - 1;
            // SAFETY: masked loads read only the chunk's `sums.len()` lanes.
            let s = unsafe {
                let (g, b) = (
                    _mm512_maskz_loadu_ps(lanes as u16, sums.as_ptr()),
                    _mm512_maskz_loadu_ps(lanes as u16, bias.as_ptr()),
                );
                _mm512_add_ps(_mm512_add_ps(splat, b), g)
            };
            let bar = _mm512_set1_ps(sel.cut);
            let mut hits = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(lanes as u16, s, bar) as u32;
            if hits == 0 {
                continue;
            }
            // SAFETY: `scores` is 16 floats.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr(), s) };
            let first = start + at * 16;
            while hits != 0 {
                let j = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if scores[j] >= sel.cut {
                    sel.offer((first + j) as u32, scores[j]);
                }
            }
        }
    }
}

/// The reference score of item `j`: what [`simd::scores`] computes for it.
fn exact(f: &Factors, user: Option<usize>, j: u32) -> f32 {
    let j = j as usize;
    let base = f.score_base(user) + f.item_bias[j];
    match user {
        Some(u) if f.n_factors() > 0 => base + simd::dot(f.user_row(u), f.item_row(j)),
        _ => base,
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

    /// Today's ranking, kept as the reference: every item scored, then the best selected.
    pub(crate) fn reference(
        f: &Factors,
        user: Option<usize>,
        exclude: &[u32],
        n: usize,
    ) -> Vec<(u32, f32)> {
        if n == 0 || f.n_items() == 0 {
            return Vec::new();
        }
        let mut scores = vec![0f32; f.n_items()];
        let base = f.score_base(user);
        match user {
            Some(u) => {
                let rows = f.item_factors.as_slice().unwrap();
                simd::scores(
                    f.user_row(u),
                    rows,
                    f.n_factors(),
                    &f.item_bias,
                    base,
                    &mut scores,
                );
            }
            None => {
                for (s, b) in scores.iter_mut().zip(&f.item_bias) {
                    *s = base + b;
                }
            }
        }
        best_of(scores, exclude, n)
    }

    fn factors(nu: usize, ni: usize, k: usize, biased: bool) -> Factors {
        let bias = |n: usize, m: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    if biased {
                        ((i * m) % 17) as f32 * 0.05
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        Factors {
            global_mean: 3.5,
            biased,
            user_bias: bias(nu, 3),
            item_bias: bias(ni, 13),
            user_factors: Array2::from_shape_fn((nu, k), |(u, f)| ((u * k + f) as f32 * 0.7).sin()),
            item_factors: Array2::from_shape_fn((ni, k), |(i, f)| ((i * k + f) as f32 * 0.3).cos()),
        }
    }

    /// Every kernel this CPU can run, so each is checked against the reference.
    fn rankers(f: &Factors) -> Vec<Ranker> {
        let mut all = vec![Ranker::build(f, Kernel::F32)];
        if bf16::available() {
            all.push(Ranker::build(f, Kernel::Bf16));
        }
        if amx::available() {
            let amx = Ranker::build(f, Kernel::Amx);
            assert_eq!(amx.kernel(), "amx-bf16");
            all.push(amx);
        }
        all
    }

    /// Identical lists and scores, bit for bit, to the reference: known and unknown users,
    /// exclusions, lists shorter and longer than a panel, biased or not, with and without factors,
    /// one user at a time and in blocks (including a partial block).
    #[test]
    fn ranker_equals_the_reference() {
        for (nu, ni, k, biased) in [
            (7usize, 300usize, 37usize, true),
            (21, 1000, 100, true),
            // Two AMX passes in a block, and a second block.
            (70, 500, 100, true),
            (5, 33, 3, false),
            (6, 50, 0, true),
            (3, 1, 8, true),
        ] {
            let f = factors(nu, ni, k, biased);
            for ranker in rankers(&f) {
                let excludes: Vec<Vec<u32>> = (0..nu)
                    .map(|u| {
                        (0..ni as u32)
                            .filter(|j| (*j as usize + u).is_multiple_of(5))
                            .collect()
                    })
                    .collect();
                let mut queries: Vec<Query> = (0..nu)
                    .map(|u| Query {
                        user: Some(u),
                        exclude: &excludes[u],
                    })
                    .collect();
                queries.push(Query {
                    user: None,
                    exclude: &[],
                });
                for n in [0, 1, 10, 40, ni + 5] {
                    let many = ranker.top_n_many(&f, &queries, n);
                    for (q, got) in queries.iter().zip(&many) {
                        let want = reference(&f, q.user, q.exclude, n);
                        let bits = |v: &[(u32, f32)]| -> Vec<(u32, u32)> {
                            v.iter().map(|(j, s)| (*j, s.to_bits())).collect()
                        };
                        assert_eq!(bits(got), bits(&want), "block: {nu}x{ni}x{k} {q:?} n {n}");
                        let one = ranker.top_n(&f, q.user, q.exclude, n);
                        assert_eq!(bits(&one), bits(&want), "solo: {nu}x{ni}x{k} {q:?} n {n}");
                    }
                }
            }
        }
    }

    /// Many exact ties (identical item rows and biases): the lower index wins, as in the
    /// reference, and excluded items never appear.
    #[test]
    fn ties_go_to_the_lower_index() {
        let mut f = factors(2, 200, 16, true);
        for j in 0..200 {
            let src = f.item_factors.row(j % 7).to_owned();
            f.item_factors.row_mut(j).assign(&src);
            f.item_bias[j] = f.item_bias[j % 7];
        }
        let exclude: Vec<u32> = vec![0, 1, 2, 3, 4, 5, 6, 9];
        for (ranker, user) in rankers(&f)
            .iter()
            .flat_map(|r| [Some(0), Some(1), None].map(|u| (r, u)))
        {
            let got = ranker.top_n(&f, user, &exclude, 25);
            assert_eq!(got, reference(&f, user, &exclude, 25), "{user:?}");
            assert!(got.iter().all(|(j, _)| !exclude.contains(j)));
            let ids: Vec<u32> = got.iter().map(|p| p.0).collect();
            assert!(
                ids.windows(2).all(|w| w[0] % 7 != w[1] % 7 || w[0] < w[1]),
                "{ids:?}"
            );
        }
    }

    /// The AVX-512 bar test offers the same items as the portable one, so both give the same
    /// list (the portable one is what machines without AVX-512 run).
    #[test]
    fn both_bar_tests_give_the_same_list() {
        #[cfg(target_arch = "x86_64")]
        if simd::level() == simd::Level::Avx512 {
            let bias: Vec<f32> = (0..300).map(|j| ((j * 13) % 17) as f32 * 0.05).collect();
            let sums: Vec<f32> = (0..270).map(|j| ((j as f32) * 0.37).sin()).collect();
            let exclude: Vec<u32> = (0..300).filter(|j| j % 11 == 0).collect();
            for (start, n) in [(0, 10), (30, 1), (30, 40), (0, 300)] {
                let (mut a, mut b) = (
                    Selector::new(n, 0.01, &exclude),
                    Selector::new(n, 0.01, &exclude),
                );
                for (c, span) in sums.chunks(WIDTH * SOLO_SPAN).enumerate() {
                    let at = start + c * WIDTH * SOLO_SPAN;
                    offer_all_portable(&mut a, at, span, &bias, 3.5);
                    // SAFETY: checked above.
                    unsafe { wide::offer_all(&mut b, at, span, &bias, 3.5) };
                }
                assert_eq!(a.cut.to_bits(), b.cut.to_bits(), "start {start} n {n}");
                let exact = |j: u32| 3.5 + bias[j as usize] + sums[j as usize - start];
                assert_eq!(a.finish(exact), b.finish(exact), "start {start} n {n}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "another model")]
    fn a_ranker_refuses_other_factors() {
        let ranker = Ranker::new(&factors(2, 10, 4, true));
        ranker.top_n(&factors(2, 11, 4, true), Some(0), &[], 3);
    }
}
