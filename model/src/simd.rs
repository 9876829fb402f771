//! The float loops every exact score goes through: dot products and whole-catalogue scoring
//! (the reference that ranking is tested against).
//!
//! Each loop is written once as an `#[inline(always)]` body and instantiated inside functions
//! compiled for wider vector units; the widest one the CPU supports is chosen at run time, so a
//! binary built for baseline x86-64 still uses AVX2/AVX-512 where the node has them. The
//! trainer's SGD step dispatches on [`level`] the same way and sums in [`dot_body`]'s order.

/// Width of one accumulator: a full AVX-512 register, two AVX2 or four SSE registers.
pub const LANES: usize = 16;

#[inline(always)]
fn fma_lanes(acc: &mut [f32; LANES], x: &[f32], y: &[f32]) {
    for l in 0..LANES {
        acc[l] += x[l] * y[l];
    }
}

/// Dot product over the common length, for inlining into other vectorised loops (call [`dot`]
/// otherwise).
///
/// Several independent accumulators: a single running sum is a chain of dependent adds the
/// compiler may not reorder, and in SGD that chain sits on the critical path of every step.
#[inline(always)]
pub fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [[0f32; LANES]; 4];
    let wide = n / (4 * LANES) * (4 * LANES);
    for (x, y) in a[..wide]
        .chunks_exact(4 * LANES)
        .zip(b[..wide].chunks_exact(4 * LANES))
    {
        for (j, acc) in acc.iter_mut().enumerate() {
            fma_lanes(acc, &x[j * LANES..][..LANES], &y[j * LANES..][..LANES]);
        }
    }
    let narrow = wide + (n - wide) / LANES * LANES;
    for (j, (x, y)) in a[wide..narrow]
        .chunks_exact(LANES)
        .zip(b[wide..narrow].chunks_exact(LANES))
        .enumerate()
    {
        // At most three chunks: one per remaining accumulator keeps them independent.
        fma_lanes(&mut acc[j + 1], x, y);
    }
    let mut tail = 0f32;
    for (x, y) in a[narrow..].iter().zip(&b[narrow..]) {
        tail += x * y;
    }
    let mut sum = [0f32; LANES];
    for l in 0..LANES {
        sum[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    }
    // Pairwise reduction keeps the rounding error independent of the lane order.
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            sum[l] += sum[l + width];
        }
        width /= 2;
    }
    sum[0] + tail
}

#[inline(always)]
fn scores_body(query: &[f32], rows: &[f32], k: usize, bias: &[f32], base: f32, out: &mut [f32]) {
    if k == 0 {
        for (o, b) in out.iter_mut().zip(bias) {
            *o = base + b;
        }
        return;
    }
    for ((o, row), b) in out.iter_mut().zip(rows.chunks_exact(k)).zip(bias) {
        *o = base + b + dot_body(query, row);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    #[target_feature(enable = "avx512f")]
    pub fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        dot_body(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    pub fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        dot_body(a, b)
    }
    #[target_feature(enable = "avx512f")]
    pub fn scores_avx512(
        q: &[f32],
        rows: &[f32],
        k: usize,
        bias: &[f32],
        base: f32,
        out: &mut [f32],
    ) {
        scores_body(q, rows, k, bias, base, out)
    }
    #[target_feature(enable = "avx2,fma")]
    pub fn scores_avx2(
        q: &[f32],
        rows: &[f32],
        k: usize,
        bias: &[f32],
        base: f32,
        out: &mut [f32],
    ) {
        scores_body(q, rows, k, bias, base, out)
    }
}

/// The vector unit the dispatched functions use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The widest vector unit this CPU has, detected once; `RECOMMENDER_NO_SIMD` forces the portable
/// path (for comparing the two).
pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("RECOMMENDER_NO_SIMD").is_none() {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Level::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    return Level::Avx2;
                }
            }
        }
        Level::Baseline
    })
}

/// Name of the vector unit in use, for logs.
pub fn simd_level() -> &'static str {
    match level() {
        Level::Baseline => "baseline",
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => "avx2",
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => "avx512",
    }
}

/// Dot product over the common length of `a` and `b`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    match level() {
        Level::Baseline => dot_body(a, b),
        // SAFETY: the level was chosen by run-time feature detection.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::dot_avx2(a, b) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::dot_avx512(a, b) },
    }
}

/// `out[j] = base + bias[j] + query · rows[j]` for every row of the row-major `rows` (k columns).
pub fn scores(query: &[f32], rows: &[f32], k: usize, bias: &[f32], base: f32, out: &mut [f32]) {
    match level() {
        Level::Baseline => scores_body(query, rows, k, bias, base, out),
        // SAFETY: the level was chosen by run-time feature detection.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::scores_avx2(query, rows, k, bias, base, out) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::scores_avx512(query, rows, k, bias, base, out) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_for_odd_lengths() {
        for n in [0usize, 1, 7, 16, 17, 100, 257] {
            let a: Vec<f32> = (0..n).map(|x| (x as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|x| (x as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n = {n}");
            assert!((dot_body(&a, &b) as f64 - naive).abs() < 1e-4, "n = {n}");
        }
    }

    #[test]
    fn scores_add_base_and_bias() {
        let q = [1.0, 2.0];
        let rows = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let bias = [0.5, -0.5, 0.0];
        let mut out = [0f32; 3];
        scores(&q, &rows, 2, &bias, 3.0, &mut out);
        assert_eq!(out, [4.5, 4.5, 6.0]);
    }
}
