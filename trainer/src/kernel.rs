//! The SGD step, the training loop that runs for every rating of every epoch.
//!
//! Like the scoring loops of [`recommender_model::simd`], it is written once as an
//! `#[inline(always)]` body and instantiated for wider vector units chosen at run time; its dot
//! product is the model crate's, inlined.

use recommender_model::simd::{self, Level, dot_body, level};

pub use recommender_model::simd::simd_level;

/// Training pads factor rows to a multiple of this, so the hot loops have no scalar tail.
pub(crate) const ROW_ALIGN: usize = simd::LANES;

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

#[inline(always)]
fn epoch_body(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
    let k = p.k;
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
        // Both updates must see the factors from before this step.
        for (pf, qf) in pu.iter_mut().zip(qi.iter_mut()) {
            let (pv, qv) = (*pf, *qf);
            *pf = pv + r.lr_pu * (err * qv - r.reg_pu * pv);
            *qf = qv + r.lr_qi * (err * pv - r.reg_qi * qv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    #[target_feature(enable = "avx512f")]
    pub fn epoch_avx512(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
        epoch_body(data, p, r)
    }
    #[target_feature(enable = "avx2,fma")]
    pub fn epoch_avx2(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
        epoch_body(data, p, r)
    }
}

/// One pass of SGD over `data` in order.
pub(crate) fn sgd_epoch(data: &[Triple], p: &mut Params<'_>, r: &StepRates) {
    match level() {
        Level::Baseline => epoch_body(data, p, r),
        // SAFETY: the level was chosen by run-time feature detection.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::epoch_avx2(data, p, r) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::epoch_avx512(data, p, r) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector path chosen at run time must agree with the portable one.
    #[test]
    fn dispatched_epoch_matches_portable_epoch() {
        let k = 32;
        let (nu, ni) = (7usize, 5usize);
        let data: Vec<Triple> = (0..60u32)
            .map(|n| Triple {
                user: n % nu as u32,
                item: (n * 3) % ni as u32,
                rating: 1.0 + (n % 5) as f32,
            })
            .collect();
        let init = |n: usize, salt: f32| -> Vec<f32> {
            (0..n * k)
                .map(|x| ((x as f32 + salt) * 0.37).sin() * 0.1)
                .collect()
        };
        let rates = StepRates {
            biased: true,
            lr_bu: 0.005,
            lr_bi: 0.005,
            lr_pu: 0.005,
            lr_qi: 0.005,
            reg_bu: 0.02,
            reg_bi: 0.02,
            reg_pu: 0.02,
            reg_qi: 0.02,
        };
        let run = |dispatched: bool| {
            let (mut bu, mut bi) = (vec![0f32; nu], vec![0f32; ni]);
            let (mut pu, mut qi) = (init(nu, 1.0), init(ni, 2.0));
            let mut p = Params {
                mu: 3.0,
                k,
                bu: &mut bu,
                bi: &mut bi,
                pu: &mut pu,
                qi: &mut qi,
            };
            for _ in 0..5 {
                if dispatched {
                    sgd_epoch(&data, &mut p, &rates);
                } else {
                    epoch_body(&data, &mut p, &rates);
                }
            }
            (bu, bi, pu, qi)
        };
        let (a, b) = (run(true), run(false));
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
        assert!(close(&a.0, &b.0) && close(&a.1, &b.1));
        assert!(close(&a.2, &b.2) && close(&a.3, &b.3));
    }
}
