//! The always-valid one-sided test every decision here is made with: a mixture sequential
//! probability ratio test (mSPRT; Johari, Pekelis and Walsh, "Always valid inference: bringing
//! sequential analysis to A/B testing", 2015/2022), with a half-normal mixture so it is one-sided.
//!
//! An estimate `θ̂` of an effect `θ`, approximately normal with variance `V` (a mean of `n`
//! observations of variance `σ²` has `V = σ²/n`), tests `H₀: θ ≤ θ₀` against `θ > θ₀`. Mixing
//! the likelihood ratios of the alternatives `θ₀ + Δ` over `Δ ~ N⁺(0, τ²)` (a normal of standard
//! deviation `τ` folded onto `Δ ≥ 0`) gives, with `z = (θ̂ - θ₀) · τ / √(V (V + τ²))`,
//!
//! ```text
//! Λ = 2 · √(V / (V + τ²)) · exp(z² / 2) · Φ(z)
//! ```
//!
//! Under `H₀`, `Λ` (as `n` grows) is a nonnegative supermartingale with mean at most 1, so by
//! Ville's inequality `P(Λ ever reaches 1/α) ≤ α`: the test may be looked at after every rating,
//! and stopped whenever, and its false-alarm rate stays at most `α`. `V` is estimated from the data
//! (the plug-in variance of Johari et al.), so the guarantee is asymptotic; a minimum sample
//! before the first look keeps the estimate sound, and the simulation checks the rates.
//!
//! `τ` is the size of the effects the test is tuned to find: the margin is the natural choice.

/// A variance below this is taken as this, so identical predictions do not divide by zero.
pub const MIN_VARIANCE: f64 = 1e-12;

/// `ln Λ` of the one-sided mixture for an estimate that exceeds the null boundary by `excess`
/// (`θ̂ - θ₀`), with variance `variance`, mixed with standard deviation `tau`. Finite for finite
/// input; `-∞` when the input is not finite (no evidence).
pub fn log_ratio(excess: f64, variance: f64, tau: f64) -> f64 {
    if !(excess.is_finite() && variance.is_finite() && tau.is_finite() && tau > 0.0) {
        return f64::NEG_INFINITY;
    }
    let v = variance.max(MIN_VARIANCE);
    let t2 = tau * tau;
    let z = excess * (t2 / (v * (v + t2))).sqrt();
    std::f64::consts::LN_2 + 0.5 * (v / (v + t2)).ln() + half_square_plus_ln_phi(z)
}

/// `z²/2 + ln Φ(z)`, without the overflow of `exp` or the underflow of `Φ` in the tails.
fn half_square_plus_ln_phi(z: f64) -> f64 {
    if z < -30.0 {
        // Mills' ratio: Φ(z) ≈ φ(z) / -z, so z²/2 + ln Φ(z) ≈ -ln(-z √(2π)).
        -(-z * (2.0 * std::f64::consts::PI).sqrt()).ln()
    } else {
        0.5 * z * z + (0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)).ln()
    }
}

/// Whether the test rejects its null at level `alpha`: `Λ ≥ 1/α`.
pub fn rejects(log_ratio: f64, alpha: f64) -> bool {
    log_ratio >= -alpha.ln()
}

/// Mean and variance of the mean of `n` observations from their sum and sum of squares (the
/// unbiased sample variance, divided by `n`); `None` below two observations.
pub fn mean_and_variance(n: u64, sum: f64, sum_squares: f64) -> Option<(f64, f64)> {
    if n < 2 {
        return None;
    }
    let n = n as f64;
    let mean = sum / n;
    // Clamped: rounding can take a tiny variance below zero.
    let sample = ((sum_squares - sum * mean) / (n - 1.0)).max(0.0);
    Some((mean, sample / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed form against a numerical integral of the mixture it stands for.
    #[test]
    fn the_closed_form_is_the_mixture() {
        for (excess, variance, tau) in
            [(0.02, 0.001, 0.05), (-0.01, 0.0004, 0.05), (0.3, 0.01, 0.1)]
        {
            let steps = 200_000;
            let top = 12.0 * tau;
            let h = top / steps as f64;
            let mut integral = 0.0;
            for k in 0..steps {
                let d = (k as f64 + 0.5) * h;
                let ratio = (d * excess / variance - d * d / (2.0 * variance)).exp();
                let density = 2.0 * (-d * d / (2.0 * tau * tau)).exp()
                    / (tau * (2.0 * std::f64::consts::PI).sqrt());
                integral += ratio * density * h;
            }
            let closed = log_ratio(excess, variance, tau);
            assert!(
                (closed - integral.ln()).abs() < 1e-6,
                "{closed} vs {}",
                integral.ln()
            );
        }
    }

    #[test]
    fn tails_stay_finite_and_monotone() {
        let mut last = f64::NEG_INFINITY;
        for k in -200..=200 {
            let l = log_ratio(k as f64 * 0.01, 0.0001, 0.05);
            assert!(l.is_finite(), "{k}: {l}");
            assert!(l >= last, "{k}: {l} < {last}");
            last = l;
        }
        assert_eq!(log_ratio(f64::NAN, 1.0, 1.0), f64::NEG_INFINITY);
        assert_eq!(log_ratio(1.0, f64::INFINITY, 1.0), f64::NEG_INFINITY);
        assert!(rejects(log_ratio(1.0, 1e-6, 0.05), 0.05));
        assert!(!rejects(log_ratio(0.0, 1e-6, 0.05), 0.05));
    }

    #[test]
    fn means_and_variances_from_sums() {
        // 1, 2, 3, 4: mean 2.5, sample variance 5/3.
        let (mean, var) = mean_and_variance(4, 10.0, 30.0).unwrap();
        assert_eq!(mean, 2.5);
        assert!((var - 5.0 / 12.0).abs() < 1e-12);
        assert_eq!(mean_and_variance(1, 1.0, 1.0), None);
    }
}
