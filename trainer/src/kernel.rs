//! The SGD step, the training loop that runs for every rating of every epoch.
//!
//! Like the scoring loops of [`recommender_model::simd`], it is written once, over [`Lanes`], as
//! `#[inline(always)]` bodies instantiated for the vector unit chosen at run time.
//!
//! Identical results: every path does the same f32 operations in the same order, multiplies and
//! adds kept apart and the dot product summed in `simd::dot_body`'s order, so the portable path,
//! AVX2 and AVX-512 train bit-identical models, and the same bits as the kernel before this one
//! (a plain loop around `dot_body`, kept in the tests as the reference). Fused multiply-adds
//! would save arithmetic but round once where this rounds twice, and a CPU without them could
//! match them only through a slow software `fma`.
//!
//! Where the time goes: a user's ratings come in a run, and each step needs the user row the
//! step before wrote. So the pass that updates the rows also computes the next step's dot
//! product from the new user row while it is still in registers, in the order `dot_body` would
//! have read it back from memory.

use recommender_model::simd::{LANES, Level, level};

use crate::lanes::{Chunk, Lanes};

pub use recommender_model::simd::simd_level;

/// Training pads factor rows to a multiple of this, so the hot loops have no scalar tail.
pub(crate) const ROW_ALIGN: usize = LANES;

/// Learning rates and regularisation of one SGD step, already in f32.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepRates {
    pub biased: bool,
    pub lr_bu: f32,
    pub lr_bi: f32,
    pub lr_pu: f32,
    pub lr_qi: f32,
    pub reg_bu: f32,
    pub reg_bi: f32,
    pub reg_pu: f32,
    pub reg_qi: f32,
}

/// Mutable parameters of a factor model during training; factor rows are `k` long, row-major.
pub(crate) struct Params<'a> {
    pub mu: f32,
    pub k: usize,
    pub bu: &'a mut [f32],
    pub bi: &'a mut [f32],
    pub pu: &'a mut [f32],
    pub qi: &'a mut [f32],
}

/// One rating with dense user and item indices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Triple {
    pub user: u32,
    pub item: u32,
    pub rating: f32,
}

/// How many ratings ahead the SGD loop prefetches item rows.
const PREFETCH_AHEAD: usize = 8;

/// Hints the cache to load `v[start..start + len]`; out-of-range parts are ignored.
#[inline(always)]
fn prefetch_row(v: &[f32], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let end = (start + len).min(v.len());
        let mut at = start;
        while at < end {
            // SAFETY: a prefetch never faults and the pointer is in bounds of `v`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(at).cast()) };
            at += 64 / std::mem::size_of::<f32>();
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, start, len);
}

#[inline(always)]
fn prefetch_bias(v: &[f32], at: usize) {
    prefetch_row(v, at, 1);
}

/// One pass over the chunks of some rows that yields a product per chunk for a dot product.
trait Products<V> {
    fn product(&mut self, c: usize) -> V;
}

/// Sums the products of chunks `0..chunks` in `simd::dot_body`'s order: chunk `c` into
/// accumulator `c % 4` over whole groups of four chunks, the last one to three into
/// accumulators 1, 2 and 3, then [`Lanes::reduce`].
#[inline(always)]
fn accumulate<V: Lanes>(chunks: usize, pass: &mut impl Products<V>) -> f32 {
    let mut acc = [V::zero(); 4];
    let wide = chunks / 4 * 4;
    for c in (0..wide).step_by(4) {
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = acc.add(pass.product(c + j));
        }
    }
    for (acc, c) in acc[1..].iter_mut().zip(wide..chunks) {
        *acc = acc.add(pass.product(c));
    }
    V::reduce(acc)
}

/// The dot product of two rows.
struct Dot<'a>(&'a [Chunk], &'a [Chunk]);

impl<V: Lanes> Products<V> for Dot<'_> {
    #[inline(always)]
    fn product(&mut self, c: usize) -> V {
        V::load(&self.0[c]).mul(V::load(&self.1[c]))
    }
}

/// The step's rates, one per lane.
#[derive(Clone, Copy)]
struct Splat<V> {
    lr_pu: V,
    lr_qi: V,
    reg_pu: V,
    reg_qi: V,
}

/// One chunk of the step's update of both rows; returns the user row's new chunk.
#[inline(always)]
fn step<V: Lanes>(p: &mut Chunk, q: &mut Chunk, err: V, r: &Splat<V>) -> V {
    // Both updates must see the factors from before this step.
    let (pv, qv) = (V::load(p), V::load(q));
    let new_p = pv.add(r.lr_pu.mul(err.mul(qv).sub(r.reg_pu.mul(pv))));
    let new_q = qv.add(r.lr_qi.mul(err.mul(pv).sub(r.reg_qi.mul(qv))));
    new_p.store(p);
    new_q.store(q);
    new_p
}

/// The update of both rows, and the dot product of the new user row with `next`.
struct StepThenDot<'a, V> {
    pu: &'a mut [Chunk],
    qi: &'a mut [Chunk],
    next: &'a [Chunk],
    err: V,
    r: &'a Splat<V>,
}

impl<V: Lanes> Products<V> for StepThenDot<'_, V> {
    #[inline(always)]
    fn product(&mut self, c: usize) -> V {
        step(&mut self.pu[c], &mut self.qi[c], self.err, self.r).mul(V::load(&self.next[c]))
    }
}

/// Updates both rows of one rating. Given `next`, the item row of the user's next rating, it
/// also returns that rating's dot product with the updated user row, accumulated exactly as
/// [`Dot`] would: the row is used while still in registers instead of being stored and read
/// back, which sat on the path from one step to the next.
#[inline(always)]
fn update<V: Lanes>(
    pu: &mut [Chunk],
    qi: &mut [Chunk],
    next: Option<&[Chunk]>,
    err: f32,
    r: &Splat<V>,
) -> Option<f32> {
    let err = V::splat(err);
    let chunks = pu.len().min(qi.len());
    match next {
        Some(next) => {
            let mut pass = StepThenDot {
                pu,
                qi,
                next,
                err,
                r,
            };
            Some(accumulate(chunks, &mut pass))
        }
        None => {
            for (p, q) in pu.iter_mut().zip(qi.iter_mut()) {
                step(p, q, err, r);
            }
            None
        }
    }
}

/// Row `a` of `m` to update and its row `b` to read (`a != b`), as chunks.
#[inline(always)]
fn row_and_other(m: &mut [f32], k: usize, a: usize, b: usize) -> (&mut [Chunk], &[Chunk]) {
    let (row_a, row_b) = if a < b {
        let (low, high) = m.split_at_mut(b * k);
        (&mut low[a * k..][..k], &high[..k])
    } else {
        let (low, high) = m.split_at_mut(a * k);
        (&mut high[..k], &low[b * k..][..k])
    };
    (row_a.as_chunks_mut().0, row_b.as_chunks().0)
}

#[inline(always)]
fn epoch_body<V: Lanes>(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
    let k = p.k;
    let splat = Splat {
        lr_pu: V::splat(r.lr_pu),
        lr_qi: V::splat(r.lr_qi),
        reg_pu: V::splat(r.reg_pu),
        reg_qi: V::splat(r.reg_qi),
    };
    // The dot product of this step's rows, when the previous step already computed it.
    let mut carried = None;
    for (n, t) in data.iter().enumerate() {
        // Item rows are visited in random order; on large catalogues each step would otherwise
        // wait for main memory, so the row needed a few steps ahead is requested now.
        if let Some(ahead) = data.get(n + PREFETCH_AHEAD) {
            prefetch_row(p.qi, ahead.item as usize * k, k);
            prefetch_bias(p.bi, ahead.item as usize);
            // Users come in runs; their rows are only cold at the start of a run.
            if ahead.user != data[n + PREFETCH_AHEAD - 1].user {
                prefetch_row(p.pu, ahead.user as usize * k, k);
            }
        }
        let (u, i) = (t.user as usize, t.item as usize);
        // The next step's dot product is computed here when it is the same user's (and another
        // item's, whose row this step leaves alone).
        let next = data
            .get(n + 1)
            .filter(|x| x.user == t.user && x.item != t.item);
        let pu = p.pu[u * k..][..k].as_chunks_mut().0;
        let (qi, next) = match next {
            Some(x) => {
                let (qi, next) = row_and_other(p.qi, k, i, x.item as usize);
                (qi, Some(next))
            }
            None => (p.qi[i * k..][..k].as_chunks_mut().0, None),
        };
        let dot = carried.unwrap_or_else(|| accumulate::<V>(k / LANES, &mut Dot(pu, qi)));
        let err = if r.biased {
            t.rating - (p.mu + p.bu[u] + p.bi[i] + dot)
        } else {
            t.rating - dot
        };
        if r.biased {
            p.bu[u] += r.lr_bu * (err - r.reg_bu * p.bu[u]);
            p.bi[i] += r.lr_bi * (err - r.reg_bi * p.bi[i]);
        }
        carried = update(pu, qi, next, err, &splat);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::lanes::{Avx2, Avx512};

    #[target_feature(enable = "avx512f")]
    pub fn epoch_avx512(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
        epoch_body::<Avx512>(data, p, r)
    }
    #[target_feature(enable = "avx2,fma")]
    pub fn epoch_avx2(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
        epoch_body::<Avx2>(data, p, r)
    }
}

/// One pass of SGD over `data` in order; `p.k` must be a multiple of [`ROW_ALIGN`].
pub(crate) fn sgd_epoch(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
    assert_eq!(p.k % ROW_ALIGN, 0, "factor rows are padded to whole chunks");
    match level() {
        Level::Baseline => epoch_body::<Chunk>(data, p, r),
        // SAFETY: the level was chosen by run-time feature detection.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::epoch_avx2(data, p, r) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::epoch_avx512(data, p, r) },
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use recommender_model::simd::dot_body;

    use super::*;

    /// The kernel before this one, a plain loop around `simd::dot_body`: the models it trained
    /// are what every path must reproduce bit for bit.
    fn reference_epoch(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
        let k = p.k;
        for t in data {
            let (u, i) = (t.user as usize, t.item as usize);
            let pu = &mut p.pu[u * k..(u + 1) * k];
            let qi = &mut p.qi[i * k..(i + 1) * k];
            let dot = dot_body(pu, qi);
            let err = if r.biased {
                t.rating - (p.mu + p.bu[u] + p.bi[i] + dot)
            } else {
                t.rating - dot
            };
            if r.biased {
                p.bu[u] += r.lr_bu * (err - r.reg_bu * p.bu[u]);
                p.bi[i] += r.lr_bi * (err - r.reg_bi * p.bi[i]);
            }
            for (pf, qf) in pu.iter_mut().zip(qi.iter_mut()) {
                let (pv, qv) = (*pf, *qf);
                *pf = pv + r.lr_pu * (err * qv - r.reg_pu * pv);
                *qf = qv + r.lr_qi * (err * pv - r.reg_qi * qv);
            }
        }
    }

    type Epoch = fn(&[Triple], &mut Params<'_>, &StepRates);

    /// Every path this CPU can run.
    fn paths() -> Vec<(&'static str, Epoch)> {
        let mut out: Vec<(&'static str, Epoch)> =
            vec![("portable", epoch_body::<Chunk>), ("dispatched", sgd_epoch)];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features.
                out.push(("avx2", |d, p, r| unsafe { x86::epoch_avx2(d, p, r) }));
            }
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the feature.
                out.push(("avx512", |d, p, r| unsafe { x86::epoch_avx512(d, p, r) }));
            }
        }
        out
    }

    /// Users in runs of 1 to 12 ratings over a few items, so runs revisit items, and some
    /// ratings repeat the one before (the next step then shares this step's item row).
    fn ratings(rng: &mut StdRng, n_users: u32, n_items: u32) -> Vec<Triple> {
        let mut out = Vec::new();
        for user in 0..n_users {
            for _ in 0..rng.random_range(1..=12) {
                let item = match out.last() {
                    Some(&Triple { user: u, item, .. }) if u == user && rng.random_bool(0.2) => {
                        item
                    }
                    _ => rng.random_range(0..n_items),
                };
                let rating = rng.random_range(1..=5) as f32;
                out.push(Triple { user, item, rating });
            }
        }
        out
    }

    fn rates(biased: bool) -> StepRates {
        StepRates {
            biased,
            lr_bu: 0.005,
            lr_bi: 0.007,
            lr_pu: 0.01,
            lr_qi: 0.006,
            reg_bu: 0.02,
            reg_bi: 0.03,
            reg_pu: 0.05,
            reg_qi: 0.04,
        }
    }

    /// Trains five epochs from a seeded start; returns every parameter's bits.
    fn train(
        epoch: Epoch,
        data: &[Triple],
        k: usize,
        n: (usize, usize),
        r: &StepRates,
    ) -> Vec<u32> {
        let mut rng = StdRng::seed_from_u64(k as u64);
        let mut init = |rows: usize| -> Vec<f32> {
            (0..rows * k).map(|_| rng.random_range(-0.1..0.1)).collect()
        };
        let (mut pu, mut qi) = (init(n.0), init(n.1));
        let (mut bu, mut bi) = (vec![0f32; n.0], vec![0f32; n.1]);
        let mut p = Params {
            mu: 3.5,
            k,
            bu: &mut bu,
            bi: &mut bi,
            pu: &mut pu,
            qi: &mut qi,
        };
        for _ in 0..5 {
            epoch(data, &mut p, r);
        }
        [bu, bi, pu, qi]
            .iter()
            .flatten()
            .map(|v| v.to_bits())
            .collect()
    }

    /// Row widths of 1 to 13 chunks cover every split between whole groups of four chunks and
    /// the one to three left over.
    #[test]
    fn every_path_trains_the_reference_kernels_bits() {
        let (nu, ni) = (40, 25);
        let data = ratings(&mut StdRng::seed_from_u64(3), nu as u32, ni as u32);
        assert!(
            data.windows(2)
                .any(|w| w[0].user == w[1].user && w[0].item == w[1].item)
        );
        for chunks in [1, 2, 3, 4, 5, 7, 8, 13] {
            let k = chunks * LANES;
            for biased in [true, false] {
                let r = rates(biased);
                let want = train(reference_epoch, &data, k, (nu, ni), &r);
                for (name, epoch) in paths() {
                    let got = train(epoch, &data, k, (nu, ni), &r);
                    assert!(got == want, "{name} differs at k = {k}, biased = {biased}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "padded")]
    fn rows_must_be_padded_to_whole_chunks() {
        let (mut bu, mut bi, mut pu, mut qi) = ([0f32], [0f32], [0f32; 3], [0f32; 3]);
        let mut p = Params {
            mu: 0.0,
            k: 3,
            bu: &mut bu,
            bi: &mut bi,
            pu: &mut pu,
            qi: &mut qi,
        };
        let t = Triple {
            user: 0,
            item: 0,
            rating: 1.0,
        };
        sgd_epoch(&[t], &mut p, &rates(true));
    }
}
