//! The item matrix packed for scoring many items per vector operation, and the block product
//! that scores users against it.
//!
//! Items are stored in panels of [`WIDTH`]: a panel holds factor 0 of its items, then factor 1,
//! and so on (`k × WIDTH` floats, contiguous). Scoring a panel for a few users keeps
//! `users × WIDTH` sums in vector registers, streams the panel once and needs no horizontal sums,
//! and a panel of 100 factors (12.8 KiB) stays in L1 while a block of users is scored against it.

use crate::simd::{Level, level};

/// Items per panel: two AVX-512 or four AVX2 registers per user.
pub const WIDTH: usize = 32;
/// Users scored together in one pass over a panel.
pub const USERS: usize = 4;
/// Panels scored together for a single user: independent sums hide the add latency that one
/// panel's two registers would expose.
const SOLO_PANELS: usize = 4;

/// Sums of one panel for up to [`USERS`] users: `sums[u][j] = Σ_f q_u[f] · item_j[f]`.
pub type PanelSums = [[f32; WIDTH]; USERS];

/// The item factors, packed in panels; the last panel is padded with zero items.
#[derive(Clone, Debug, Default)]
pub struct Panels {
    data: Vec<f32>,
    k: usize,
    n_items: usize,
}

impl Panels {
    /// Packs the row-major `items × k` matrix `rows`.
    pub fn pack(rows: &[f32], n_items: usize, k: usize) -> Self {
        let count = n_items.div_ceil(WIDTH);
        let mut data = vec![0f32; count * k * WIDTH];
        for (j, row) in rows.chunks_exact(k.max(1)).take(n_items).enumerate() {
            let panel = &mut data[(j / WIDTH) * k * WIDTH..][..k * WIDTH];
            for (f, &x) in row.iter().enumerate().take(k) {
                panel[f * WIDTH + j % WIDTH] = x;
            }
        }
        Panels { data, k, n_items }
    }

    pub fn count(&self) -> usize {
        self.n_items.div_ceil(WIDTH)
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * WIDTH..][..self.k * WIDTH]
    }

    /// `out[u]` gets panel `p`'s sums for the user rows `queries[u * k..]`, `u < users`; rows of
    /// `out` past `users` are left as they were.
    pub fn block(&self, queries: &[f32], users: usize, p: usize, out: &mut PanelSums) {
        let panel = self.panel(p);
        let k = self.k;
        match level() {
            Level::Baseline => block_body::<false>(queries, users, k, panel, out),
            // SAFETY: the level was chosen by run-time feature detection.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { x86::block_avx2(queries, users, k, panel, out) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { x86::block_avx512(queries, users, k, panel, out) },
        }
    }

    /// One user's sums over the [`SOLO_PANELS`] panels from `first` (fewer at the end), written
    /// to `out[..WIDTH * panels]`.
    pub fn solo(&self, query: &[f32], first: usize, out: &mut [f32; WIDTH * SOLO_PANELS]) {
        let span = SOLO_PANELS.min(self.count() - first);
        let k = self.k;
        let panels = &self.data[first * k * WIDTH..][..span * k * WIDTH];
        match level() {
            Level::Baseline => solo_body::<false>(query, k, panels, out),
            // SAFETY: the level was chosen by run-time feature detection.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { x86::solo_avx2(query, k, panels, out) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { x86::solo_avx512(query, k, panels, out) },
        }
    }
}

/// Panels [`Panels::solo`] covers per call.
pub const SOLO_SPAN: usize = SOLO_PANELS;

/// `a += q * c`, fused where the unit has FMA: one instruction and one rounding instead of two.
#[inline(always)]
fn fma<const FMA: bool>(a: &mut f32, q: f32, c: f32) {
    if FMA {
        *a = q.mul_add(c, *a);
    } else {
        *a += q * c;
    }
}

#[inline(always)]
fn block_body<const FMA: bool>(
    queries: &[f32],
    users: usize,
    k: usize,
    panel: &[f32],
    out: &mut PanelSums,
) {
    // Full blocks get the fixed-size loop the compiler keeps in registers; the last, partial
    // block of a batch goes user by user.
    if users == USERS && k > 0 {
        let mut acc = [[0f32; WIDTH]; USERS];
        for (f, col) in panel.chunks_exact(WIDTH).enumerate() {
            for (u, acc) in acc.iter_mut().enumerate() {
                let q = queries[u * k + f];
                for (a, &c) in acc.iter_mut().zip(col) {
                    fma::<FMA>(a, q, c);
                }
            }
        }
        *out = acc;
        return;
    }
    for (u, row) in out.iter_mut().enumerate().take(users) {
        let mut acc = [0f32; WIDTH];
        for (col, &q) in panel.chunks_exact(WIDTH).zip(&queries[u * k..][..k]) {
            for (a, &c) in acc.iter_mut().zip(col) {
                fma::<FMA>(a, q, c);
            }
        }
        *row = acc;
    }
}

#[inline(always)]
fn solo_body<const FMA: bool>(
    query: &[f32],
    k: usize,
    panels: &[f32],
    out: &mut [f32; WIDTH * SOLO_PANELS],
) {
    let span = if k == 0 {
        0
    } else {
        panels.len() / (k * WIDTH)
    };
    if span == SOLO_PANELS {
        let mut acc = [[0f32; WIDTH]; SOLO_PANELS];
        for (f, &q) in query.iter().enumerate().take(k) {
            for (p, acc) in acc.iter_mut().enumerate() {
                let col = &panels[(p * k + f) * WIDTH..][..WIDTH];
                for (a, &c) in acc.iter_mut().zip(col) {
                    fma::<FMA>(a, q, c);
                }
            }
        }
        for (o, a) in out.chunks_exact_mut(WIDTH).zip(&acc) {
            o.copy_from_slice(a);
        }
        return;
    }
    out.fill(0.0);
    for p in 0..span {
        let acc = &mut out[p * WIDTH..][..WIDTH];
        for (f, &q) in query.iter().enumerate().take(k) {
            let col = &panels[(p * k + f) * WIDTH..][..WIDTH];
            for (a, &c) in acc.iter_mut().zip(col) {
                fma::<FMA>(a, q, c);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    #[target_feature(enable = "avx512f")]
    pub fn block_avx512(q: &[f32], users: usize, k: usize, panel: &[f32], out: &mut PanelSums) {
        block_body::<true>(q, users, k, panel, out)
    }
    #[target_feature(enable = "avx2,fma")]
    pub fn block_avx2(q: &[f32], users: usize, k: usize, panel: &[f32], out: &mut PanelSums) {
        block_body::<true>(q, users, k, panel, out)
    }
    #[target_feature(enable = "avx512f")]
    pub fn solo_avx512(q: &[f32], k: usize, panels: &[f32], out: &mut [f32; WIDTH * SOLO_PANELS]) {
        solo_body::<true>(q, k, panels, out)
    }
    #[target_feature(enable = "avx2,fma")]
    pub fn solo_avx2(q: &[f32], k: usize, panels: &[f32], out: &mut [f32; WIDTH * SOLO_PANELS]) {
        solo_body::<true>(q, k, panels, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(q: &[f32], rows: &[f32], k: usize, j: usize) -> f64 {
        (0..k).map(|f| q[f] as f64 * rows[j * k + f] as f64).sum()
    }

    /// Every item of every panel, full and partial blocks, single-user spans at the end.
    #[test]
    fn block_and_solo_sums_match_naive_dot_products() {
        for (n, k) in [(1usize, 3usize), (31, 7), (200, 37), (97, 100), (5, 0)] {
            let rows: Vec<f32> = (0..n * k).map(|x| (x as f32 * 0.37).sin()).collect();
            let queries: Vec<f32> = (0..USERS * k).map(|x| (x as f32 * 0.11).cos()).collect();
            let panels = Panels::pack(&rows, n, k);
            assert_eq!(panels.count(), n.div_ceil(WIDTH));
            for users in [USERS, 3, 1] {
                for p in 0..panels.count() {
                    let mut out = [[f32::NAN; WIDTH]; USERS];
                    panels.block(&queries, users, p, &mut out);
                    for (u, row) in out.iter().enumerate().take(users) {
                        for (l, &s) in row.iter().enumerate() {
                            let j = p * WIDTH + l;
                            let want = if j < n {
                                naive(&queries[u * k..], &rows, k, j)
                            } else {
                                0.0
                            };
                            assert!((s as f64 - want).abs() < 1e-4, "n {n} k {k} j {j}");
                        }
                    }
                }
            }
            let mut first = 0;
            while first < panels.count() {
                let mut out = [f32::NAN; WIDTH * SOLO_PANELS];
                panels.solo(&queries, first, &mut out);
                let span = SOLO_PANELS.min(panels.count() - first);
                for (l, &s) in out.iter().enumerate().take(span * WIDTH) {
                    let j = first * WIDTH + l;
                    let want = if j < n {
                        naive(&queries, &rows, k, j)
                    } else {
                        0.0
                    };
                    assert!((s as f64 - want).abs() < 1e-4, "solo n {n} k {k} j {j}");
                }
                first += SOLO_SPAN;
            }
        }
    }
}
