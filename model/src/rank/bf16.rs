//! Item panels in bfloat16 for CPUs with AVX-512 BF16, whose `vdpbf16ps` multiplies and adds
//! pairs of factors in one instruction: twice the products per instruction of f32 FMA and half
//! the bytes to stream, for approximate scores only (see `select`: the top of the list is settled
//! on exact f32 scores, and the bound includes this rounding).
//!
//! Layout as in `panels`, with factors in pairs: a panel holds, per pair `h`, one 32-bit word per
//! item with factor `2h` in its low half and `2h + 1` in its high half.

use super::panels::{PanelSums, SOLO_SPAN, USERS, WIDTH};

/// Largest relative error of rounding an f32 to bfloat16: 8 significant bits, rounded to nearest,
/// is half of 2^-7.
pub const UNIT: f64 = 1.0 / 256.0;

/// Round to nearest even; inputs are finite and far below the overflow range (checked by the
/// caller).
fn bf16(x: f32) -> u32 {
    let bits = x.to_bits();
    (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
}

/// `k` factors as `ceil(k / 2)` words of bfloat16 pairs.
pub fn pairs(row: &[f32], out: &mut [u32]) {
    // Whole pairs in a loop without branches (the compiler vectorises it), then an odd last
    // factor and the zero padding.
    let whole = (row.len() / 2).min(out.len());
    for (w, pair) in out[..whole].iter_mut().zip(row.chunks_exact(2)) {
        *w = bf16(pair[0]) | (bf16(pair[1]) << 16);
    }
    for (h, w) in out.iter_mut().enumerate().skip(whole) {
        let lo = row.get(2 * h).copied().unwrap_or(0.0);
        *w = bf16(lo);
    }
}

/// Whether this CPU can use these panels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::simd::level() == crate::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[derive(Clone, Debug, Default)]
pub struct Bf16Panels {
    data: Vec<u32>,
    /// Factor pairs per item.
    h: usize,
    /// Pairs stored per item and per user row: `h` padded with zero pairs to a multiple of
    /// `pad` (the AMX tiles' depth), which add nothing to the sums.
    stride: usize,
    n_items: usize,
}

impl Bf16Panels {
    pub fn pack(rows: &[f32], n_items: usize, k: usize, pad: usize) -> Self {
        let h = k.div_ceil(2);
        let stride = h.div_ceil(pad.max(1)) * pad.max(1);
        let mut data = vec![0u32; n_items.div_ceil(WIDTH) * stride * WIDTH];
        let mut words = vec![0u32; h];
        for (j, row) in rows.chunks_exact(k.max(1)).take(n_items).enumerate() {
            pairs(row, &mut words);
            let panel = &mut data[(j / WIDTH) * stride * WIDTH..][..stride * WIDTH];
            for (p, &w) in words.iter().enumerate() {
                panel[p * WIDTH + j % WIDTH] = w;
            }
        }
        Bf16Panels {
            data,
            h,
            stride,
            n_items,
        }
    }

    /// Words per user row ([`pairs`] fills the padding with zeros).
    pub fn pairs_per_item(&self) -> usize {
        self.stride
    }

    /// Panel `p`: `stride` pairs × [`WIDTH`] item words.
    pub fn panel(&self, p: usize) -> &[u32] {
        &self.data[p * self.stride * WIDTH..][..self.stride * WIDTH]
    }

    pub fn count(&self) -> usize {
        self.n_items.div_ceil(WIDTH)
    }

    /// Panel `p`'s sums for `G` groups of [`USERS`] users whose factor pairs are
    /// `queries[u * stride..]` (rows past the real users are zeros). Two groups at once keep sixteen
    /// independent sums in flight, enough to cover the instruction's latency on both ports.
    pub fn block<const G: usize>(&self, queries: &[u32], p: usize, out: &mut [PanelSums]) {
        let panel = self.panel(p);
        let (h, stride) = (self.h, self.stride);
        // SAFETY: only built when `available()` said the CPU has AVX-512 BF16.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::block::<G>(
                &queries[..G * USERS * stride],
                h,
                stride,
                panel,
                &mut out[..G],
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (queries, panel, out);
    }

    /// One user's sums over the [`SOLO_SPAN`] panels from `first` (fewer at the end).
    pub fn solo(&self, query: &[u32], first: usize, out: &mut [f32; WIDTH * SOLO_SPAN]) {
        let span = SOLO_SPAN.min(self.count() - first);
        let panels = &self.data[first * self.stride * WIDTH..][..span * self.stride * WIDTH];
        // SAFETY: as in `block`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::solo(&query[..self.h], self.stride, panels, span, out)
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (query, panels, span, out);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{PanelSums, SOLO_SPAN, USERS, WIDTH};

    /// 16 items × one factor pair, as the instruction wants them.
    #[inline(always)]
    unsafe fn load(at: &[u32]) -> __m512bh {
        // SAFETY: `at` holds at least 16 words (callers slice whole panels); the cast only
        // reinterprets 64 bytes.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(at.as_ptr().cast())) }
    }

    #[inline(always)]
    unsafe fn splat(word: u32) -> __m512bh {
        // SAFETY: reinterprets 64 bytes.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(word as i32)) }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn block<const G: usize>(
        queries: &[u32],
        h: usize,
        stride: usize,
        panel: &[u32],
        out: &mut [PanelSums],
    ) {
        const { assert!(G * USERS <= 8) };
        // One row of query words per user, checked once here so the loop has no bounds checks.
        let rows: [&[u32]; 8] = std::array::from_fn(|u| {
            if u < G * USERS {
                &queries[u * stride..][..h]
            } else {
                &[]
            }
        });
        let mut acc = [[[_mm512_setzero_ps(); 2]; USERS]; G];
        for (p, words) in panel.chunks_exact(WIDTH).enumerate().take(h) {
            // SAFETY: a chunk is WIDTH = 32 words, two loads of 16.
            let (a, b) = unsafe { (load(words), load(&words[16..])) };
            for (g, acc) in acc.iter_mut().enumerate() {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: reinterpretation only; `p < h` is each row's length.
                    let q = unsafe { splat(*rows[g * USERS + u].get_unchecked(p)) };
                    acc[0] = _mm512_dpbf16_ps(acc[0], q, a);
                    acc[1] = _mm512_dpbf16_ps(acc[1], q, b);
                }
            }
        }
        for (out, acc) in out.iter_mut().zip(&acc) {
            for (o, acc) in out.iter_mut().zip(acc) {
                // SAFETY: `o` is 32 floats.
                unsafe {
                    _mm512_storeu_ps(o.as_mut_ptr(), acc[0]);
                    _mm512_storeu_ps(o.as_mut_ptr().add(16), acc[1]);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn solo(
        query: &[u32],
        stride: usize,
        panels: &[u32],
        span: usize,
        out: &mut [f32; WIDTH * SOLO_SPAN],
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; SOLO_SPAN];
        if span == SOLO_SPAN {
            // Four panels at once: eight independent sums hide the instruction's latency.
            for (f, &word) in query.iter().enumerate() {
                // SAFETY: reinterpretation only.
                let q = unsafe { splat(word) };
                for (p, acc) in acc.iter_mut().enumerate() {
                    let at = &panels[(p * stride + f) * WIDTH..][..WIDTH];
                    // SAFETY: `at` is 32 words.
                    let (a, b) = unsafe { (load(at), load(&at[16..])) };
                    acc[0] = _mm512_dpbf16_ps(acc[0], q, a);
                    acc[1] = _mm512_dpbf16_ps(acc[1], q, b);
                }
            }
        } else {
            for (p, acc) in acc.iter_mut().enumerate().take(span) {
                for (f, &word) in query.iter().enumerate() {
                    let at = &panels[(p * stride + f) * WIDTH..][..WIDTH];
                    // SAFETY: as above.
                    let (q, a, b) = unsafe { (splat(word), load(at), load(&at[16..])) };
                    acc[0] = _mm512_dpbf16_ps(acc[0], q, a);
                    acc[1] = _mm512_dpbf16_ps(acc[1], q, b);
                }
            }
        }
        for (o, acc) in out.chunks_exact_mut(WIDTH).zip(&acc) {
            // SAFETY: `o` is 32 floats.
            unsafe {
                _mm512_storeu_ps(o.as_mut_ptr(), acc[0]);
                _mm512_storeu_ps(o.as_mut_ptr().add(16), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_bf16_is_within_half_a_unit() {
        for x in [1.0f32, -0.3, 0.1234567, 3.0e-5, 123.456, 0.0] {
            let back = f32::from_bits(bf16(x) << 16);
            assert!(
                ((back - x) as f64).abs() <= UNIT * x.abs() as f64,
                "{x} -> {back}"
            );
        }
        // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
        assert_eq!(bf16(1.0 + 1.0 / 256.0), bf16(1.0));
    }

    #[test]
    fn sums_match_naive_dot_products_within_the_rounding() {
        if !available() {
            return;
        }
        let (n, k) = (70usize, 37usize);
        let rows: Vec<f32> = (0..n * k).map(|x| (x as f32 * 0.37).sin()).collect();
        let q: Vec<f32> = (0..USERS * k).map(|x| (x as f32 * 0.11).cos()).collect();
        let panels = Bf16Panels::pack(&rows, n, k, 1);
        let h = panels.pairs_per_item();
        let mut words = vec![0u32; USERS * h];
        for (row, w) in q.chunks_exact(k).zip(words.chunks_exact_mut(h)) {
            pairs(row, w);
        }
        let naive = |u: usize, j: usize| -> f64 {
            (0..k)
                .map(|f| q[u * k + f] as f64 * rows[j * k + f] as f64)
                .sum()
        };
        for p in 0..panels.count() {
            let mut out = [[f32::NAN; WIDTH]; USERS];
            panels.block::<1>(&words, p, std::slice::from_mut(&mut out));
            for (u, row) in out.iter().enumerate() {
                for (l, &s) in row.iter().enumerate().filter(|(l, _)| p * WIDTH + l < n) {
                    let j = p * WIDTH + l;
                    assert!((s as f64 - naive(u, j)).abs() < 0.05, "u {u} j {j}");
                }
            }
        }
        let mut out = [f32::NAN; WIDTH * SOLO_SPAN];
        panels.solo(&words[..h], 0, &mut out);
        for (j, &s) in out.iter().enumerate().take(n) {
            assert!((s as f64 - naive(0, j)).abs() < 0.05, "solo j {j}");
        }
    }
}
