//! The shadow stage's paired sequential test.
//!
//! Every feedback rating is predicted by both models, so each rating gives one paired difference
//! of squared errors, `dᵢ = (rᵢ - candidateᵢ)² - (rᵢ - stableᵢ)²`, whose mean `θ` is how much the
//! candidate's mean squared error exceeds the stable model's (positive: worse). From the sums the
//! replicas report (`n`, `Σd`, `Σd²`, [`PairedSums`]) the test takes `θ̂ = Σd / n` and
//! `V = s² / n`, with `s² = (Σd² - (Σd)²/n) / (n - 1)` the sample variance, and runs two one-sided
//! mixture SPRTs ([`crate::mixture`], mixture standard deviation `τ`, default the margin `δ`):
//!
//! - **worse**: `H₀: θ ≤ 0` against `θ > 0`, excess `θ̂`; rejecting it aborts the candidate.
//!   A candidate as good as the stable model or better is aborted with probability at most `α`;
//! - **no worse**: `H₀: θ ≥ δ` against `θ < δ`, excess `δ - θ̂`; rejecting it passes the stage.
//!   A candidate worse by the margin or more passes with probability at most `β`.
//!
//! Each rejects when its `Λ ≥ 1/level`. Between `0` and `δ` (the indifference zone) either may
//! happen first; when both would on the same evidence, abort wins. Nothing is decided before
//! `min_samples` pairs (the variance estimate needs them). Each rate holds whenever the test is
//! looked at, because each test's own rate holds under continuous monitoring and stopping early
//! on the other's decision can only lower it. A stage that reaches its timeout first is
//! inconclusive; what that means is the rollout spec's to say.

use recommender_contract::stats::PairedSums;
use serde::Serialize;

use crate::{AbortReason, Verdict, mixture};

/// The paired test's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedTest {
    /// `δ`: how much larger the candidate's mean squared error may be (in squared rating units)
    /// and still pass. An RMSE margin `ε` near RMSE `r` is about `δ = 2 r ε`.
    pub margin: f64,
    /// `α`: the most often a candidate no worse than the stable model is aborted.
    pub alpha: f64,
    /// `β`: the most often a candidate worse by `δ` or more passes.
    pub beta: f64,
    /// Pairs before the first decision.
    pub min_samples: u64,
    /// `τ`; `None` takes the margin.
    pub mixture_sd: Option<f64>,
}

impl PairedTest {
    pub fn new(margin: f64, alpha: f64, beta: f64, min_samples: u64) -> Result<Self, String> {
        let test = PairedTest {
            margin,
            alpha,
            beta,
            min_samples,
            mixture_sd: None,
        };
        test.check()?;
        Ok(test)
    }

    pub fn check(&self) -> Result<(), String> {
        if !(self.margin.is_finite() && self.margin > 0.0) {
            return Err(format!("the margin must be above 0, got {}", self.margin));
        }
        for (name, level) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(level > 0.0 && level < 1.0) {
                return Err(format!("{name} must be between 0 and 1, got {level}"));
            }
        }
        if self.min_samples < 2 {
            return Err("at least 2 samples are needed to estimate a variance".into());
        }
        if let Some(tau) = self.mixture_sd
            && !(tau.is_finite() && tau > 0.0)
        {
            return Err(format!(
                "the mixture's standard deviation must be above 0, got {tau}"
            ));
        }
        Ok(())
    }

    fn tau(&self) -> f64 {
        self.mixture_sd.unwrap_or(self.margin)
    }

    /// The verdict on the paired sums of every replica, with the figures behind it.
    pub fn decide(&self, sums: &PairedSums) -> ShadowDecision {
        let estimate =
            mixture::mean_and_variance(sums.n, sums.sum_difference, sums.sum_squared_difference);
        let Some((mean, variance)) = estimate else {
            return ShadowDecision::undecided(sums.n);
        };
        let tau = self.tau();
        let worse = mixture::log_ratio(mean, variance, tau);
        let no_worse = mixture::log_ratio(self.margin - mean, variance, tau);
        let verdict = if sums.n < self.min_samples {
            Verdict::Continue
        } else if mixture::rejects(worse, self.alpha) {
            Verdict::Abort {
                reason: AbortReason::WorseAccuracy,
            }
        } else if mixture::rejects(no_worse, self.beta) {
            Verdict::Pass
        } else {
            Verdict::Continue
        };
        ShadowDecision {
            verdict,
            samples: sums.n,
            mean_difference: Some(mean),
            standard_error: Some(variance.sqrt()),
            log_ratio_worse: Some(worse),
            log_ratio_no_worse: Some(no_worse),
        }
    }
}

/// A verdict and the statistic behind it, for the rollout's status.
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShadowDecision {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub samples: u64,
    /// `θ̂`: the candidate's mean squared error minus the stable model's.
    pub mean_difference: Option<f64>,
    /// `√V`.
    pub standard_error: Option<f64>,
    /// `ln Λ` of the test that aborts; it does at `ln(1/α)`.
    pub log_ratio_worse: Option<f64>,
    /// `ln Λ` of the test that passes; it does at `ln(1/β)`.
    pub log_ratio_no_worse: Option<f64>,
}

impl ShadowDecision {
    fn undecided(samples: u64) -> Self {
        ShadowDecision {
            verdict: Verdict::Continue,
            samples,
            mean_difference: None,
            standard_error: None,
            log_ratio_worse: None,
            log_ratio_no_worse: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(differences: impl IntoIterator<Item = f64>) -> PairedSums {
        let mut s = PairedSums::default();
        for d in differences {
            s.n += 1;
            s.sum_difference += d;
            s.sum_squared_difference += d * d;
        }
        s
    }

    fn test() -> PairedTest {
        PairedTest::new(0.05, 0.05, 0.05, 100).unwrap()
    }

    #[test]
    fn clear_cases_decide_and_small_samples_wait() {
        // Alternating around +0.2: clearly worse.
        let worse = sums((0..400).map(|i| 0.2 + if i % 2 == 0 { 0.1 } else { -0.1 }));
        assert_eq!(
            test().decide(&worse).verdict,
            Verdict::Abort {
                reason: AbortReason::WorseAccuracy
            }
        );
        let better = sums((0..400).map(|i| -0.05 + if i % 2 == 0 { 0.1 } else { -0.1 }));
        assert_eq!(test().decide(&better).verdict, Verdict::Pass);
        let few = sums((0..50).map(|i| 0.2 + if i % 2 == 0 { 0.1 } else { -0.1 }));
        let d = test().decide(&few);
        assert_eq!(d.verdict, Verdict::Continue, "below min_samples");
        assert!(d.log_ratio_worse.unwrap() > -(0.05f64).ln(), "{d:?}");
        assert_eq!(
            test().decide(&PairedSums::default()).verdict,
            Verdict::Continue
        );
    }

    /// Two models that predict alike: no variance, no difference, and the candidate passes.
    #[test]
    fn identical_models_pass() {
        let d = test().decide(&sums(std::iter::repeat_n(0.0, 100)));
        assert_eq!(d.verdict, Verdict::Pass);
        assert!(d.log_ratio_worse.unwrap().is_finite());
    }

    /// Sums a forged reply could add up to decide nothing.
    #[test]
    fn sums_that_are_not_finite_decide_nothing() {
        let s = PairedSums {
            n: 1000,
            sum_difference: f64::INFINITY,
            sum_squared_difference: f64::INFINITY,
            ..Default::default()
        };
        assert_eq!(test().decide(&s).verdict, Verdict::Continue);
    }

    #[test]
    fn settings_are_checked() {
        assert!(PairedTest::new(0.0, 0.05, 0.05, 100).is_err());
        assert!(PairedTest::new(0.05, 1.0, 0.05, 100).is_err());
        assert!(PairedTest::new(0.05, 0.05, 0.0, 100).is_err());
        assert!(PairedTest::new(0.05, 0.05, 0.05, 1).is_err());
    }
}
