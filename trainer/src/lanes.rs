//! Sixteen f32 lanes on each vector unit: the arithmetic the SGD step is written in.
//!
//! Every implementation does the same IEEE operation on each lane, multiplies and adds kept
//! apart (never fused), so a loop written once over [`Lanes`] computes bit-identical results on
//! the portable path, AVX2 and AVX-512; only the instructions differ. [`Lanes::reduce`] adds in
//! the order of [`recommender_model::simd::dot_body`], which the factor rows were trained with
//! before this module existed.

use recommender_model::simd::LANES;

/// One chunk of a factor row.
pub(crate) type Chunk = [f32; LANES];

/// Sixteen lanes of f32 in registers.
pub(crate) trait Lanes: Copy {
    fn zero() -> Self;
    fn splat(x: f32) -> Self;
    fn load(c: &Chunk) -> Self;
    fn store(self, c: &mut Chunk);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `(a[0] + a[1]) + (a[2] + a[3])`, then lane `l` plus lane `l + 8`, `l + 4`, `l + 2`,
    /// `l + 1`: a pairwise sum whose rounding does not depend on the register width.
    fn reduce(a: [Self; 4]) -> f32;
}

/// The portable path: loops over arrays that the compiler turns into whatever vectors the build
/// targets (SSE2 on baseline x86-64).
impl Lanes for Chunk {
    #[inline(always)]
    fn zero() -> Self {
        [0.0; LANES]
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        [x; LANES]
    }
    #[inline(always)]
    fn load(c: &Chunk) -> Self {
        *c
    }
    #[inline(always)]
    fn store(self, c: &mut Chunk) {
        *c = self;
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l] + o[l])
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l] - o[l])
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l] * o[l])
    }
    #[inline(always)]
    fn reduce([a0, a1, a2, a3]: [Self; 4]) -> f32 {
        let mut sum = a0.add(a1).add(a2.add(a3));
        let mut width = LANES / 2;
        while width > 0 {
            for l in 0..width {
                sum[l] += sum[l + width];
            }
            width /= 2;
        }
        sum[0]
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

/// The vector types below are only created inside functions compiled for their unit (the
/// kernel's `#[target_feature]` entry points, called after run-time detection); that is the
/// safety argument of every `unsafe` block here.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Chunk, Lanes};

    /// Lanes 0-7 and 8-15 in two AVX registers.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256, __m256);

    /// All sixteen lanes in one AVX-512 register.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512);

    /// Lane 0 of `l + h` after folding four lanes pairwise (`l + 2`, then `l + 1`).
    #[inline(always)]
    unsafe fn fold4(x: __m128) -> f32 {
        // SAFETY: SSE is part of x86-64.
        unsafe {
            let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
            _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
        }
    }

    impl Lanes for Avx2 {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm256_setzero_ps(), _mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm256_set1_ps(x), _mm256_set1_ps(x)) }
        }
        #[inline(always)]
        fn load(c: &Chunk) -> Self {
            // SAFETY: a chunk is 16 floats; see the module comment.
            unsafe {
                let p = c.as_ptr();
                Self(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
            }
        }
        #[inline(always)]
        fn store(self, c: &mut Chunk) {
            // SAFETY: a chunk is 16 floats; see the module comment.
            unsafe {
                let p = c.as_mut_ptr();
                _mm256_storeu_ps(p, self.0);
                _mm256_storeu_ps(p.add(8), self.1);
            }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm256_add_ps(self.0, o.0), _mm256_add_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm256_sub_ps(self.0, o.0), _mm256_sub_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm256_mul_ps(self.0, o.0), _mm256_mul_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn reduce([a0, a1, a2, a3]: [Self; 4]) -> f32 {
            let s = a0.add(a1).add(a2.add(a3));
            // SAFETY: see the module comment.
            unsafe {
                let x = _mm256_add_ps(s.0, s.1);
                fold4(_mm_add_ps(
                    _mm256_castps256_ps128(x),
                    _mm256_extractf128_ps::<1>(x),
                ))
            }
        }
    }

    impl Lanes for Avx512 {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm512_set1_ps(x)) }
        }
        #[inline(always)]
        fn load(c: &Chunk) -> Self {
            // SAFETY: a chunk is 16 floats; see the module comment.
            unsafe { Self(_mm512_loadu_ps(c.as_ptr())) }
        }
        #[inline(always)]
        fn store(self, c: &mut Chunk) {
            // SAFETY: a chunk is 16 floats; see the module comment.
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm512_add_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm512_sub_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            // SAFETY: see the module comment.
            unsafe { Self(_mm512_mul_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn reduce([a0, a1, a2, a3]: [Self; 4]) -> f32 {
            let s = a0.add(a1).add(a2.add(a3)).0;
            // SAFETY: see the module comment.
            unsafe {
                // The upper half through the f64 view: its f32 extract needs AVX-512 DQ.
                let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s)));
                let x = _mm256_add_ps(_mm512_castps512_ps256(s), high);
                fold4(_mm_add_ps(
                    _mm256_castps256_ps128(x),
                    _mm256_extractf128_ps::<1>(x),
                ))
            }
        }
    }
}
