//! The canary's guardrails. While a share of the users is answered by the candidate, three
//! one-sided mixture SPRTs ([`crate::mixture`]) watch for a candidate that is worse by more than
//! a margin; any one that rejects its null aborts the rollout:
//!
//! - **accuracy**, on the paired errors ([`PairedSums`]: both models still predict every
//!   feedback rating, of either arm's users, so the comparison stays paired and far more
//!   sensitive than one arm's RMSE against the other's): `H₀: θ ≤ m` for `θ` the candidate's mean
//!   squared error minus the stable model's; excess `θ̂ - m`, `V = s²/n`, `τ = m`;
//! - **acceptance**, on each arm's suggestions rated (`accepted / rated`, the predictor's
//!   acceptance rate): `H₀: pₛ - p꜀ ≤ m` (the candidate's acceptance lower by at most `m`);
//!   excess `p̂ₛ - p̂꜀ - m`, `V = p̄(1 - p̄)(1/nₛ + 1/n꜀)` with `p̄` the pooled rate, `τ = m`;
//! - **latency**, on each arm's latency histogram: `H₀`: the candidate's p99 is at most
//!   `(1 + m)` times the stable arm's. With `b` the smallest histogram bound at or above
//!   `(1 + m) · p99ₛ`, under `H₀` at most 1% of the candidate's requests take longer than `b`;
//!   excess `q̂ - 0.01` for `q̂` that fraction, `V = 0.01 · 0.99 / n꜀`, `τ = 0.01` (tuned to a
//!   tail twice as heavy). `p99ₛ` is itself an estimate: the rate is approximate, and each arm
//!   needs `min_requests` first.
//!
//! Each guardrail aborts a candidate that is within its margin with probability at most its
//! `α`, however often it is looked at; all three together at most the sum of their `α`s
//! (Bonferroni). The step passes when the candidate arm has the step's minimum evidence and no
//! guardrail failed; how long a step lasts at least is the rollout's to say.

use recommender_contract::stats::{ArmStats, LatencyHistogram, PairedSums};
use serde::Serialize;

use crate::{AbortReason, Verdict, mixture};

/// The tail the latency guardrail watches: the 99th percentile.
const TAIL: f64 = 0.01;

/// One guardrail's margin and false-alarm rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guardrail {
    /// How much worse the candidate may be: squared rating units (accuracy), a proportion
    /// (acceptance), or a fraction of the stable p99 (latency).
    pub margin: f64,
    /// The most often a candidate within the margin is aborted by this guardrail.
    pub alpha: f64,
}

impl Guardrail {
    fn check(&self, name: &str) -> Result<(), String> {
        if !(self.margin.is_finite() && self.margin > 0.0) {
            return Err(format!(
                "{name}: the margin must be above 0, got {}",
                self.margin
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!(
                "{name}: alpha must be between 0 and 1, got {}",
                self.alpha
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guardrails {
    pub accuracy: Guardrail,
    pub acceptance: Guardrail,
    pub latency: Guardrail,
    /// Feedback ratings from candidate users before a step may pass (and paired ratings before
    /// the accuracy guardrail may abort).
    pub min_feedback: u64,
    /// Rated suggestions in each arm before acceptance is compared, and in the candidate arm
    /// before a step may pass.
    pub min_rated_suggestions: u64,
    /// Requests in each arm before latency is compared, and in the candidate arm before a step
    /// may pass.
    pub min_requests: u64,
}

impl Guardrails {
    pub fn check(&self) -> Result<(), String> {
        self.accuracy.check("accuracy")?;
        self.acceptance.check("acceptance")?;
        self.latency.check("latency")
    }

    /// The verdict on the sums of every replica, with each guardrail's figures.
    pub fn decide(
        &self,
        paired: &PairedSums,
        stable: &ArmStats,
        candidate: &ArmStats,
    ) -> CanaryDecision {
        let accuracy = self.accuracy(paired);
        let acceptance = self.acceptance(stable, candidate);
        let latency = self.latency(&stable.requests, &candidate.requests);
        let failed = [
            (accuracy, AbortReason::WorseAccuracy),
            (acceptance, AbortReason::LowerAcceptance),
            (latency, AbortReason::SlowerLatency),
        ]
        .into_iter()
        .find(|(check, _)| check.failed);
        let enough = candidate.feedback.n >= self.min_feedback
            && candidate.suggestions.rated >= self.min_rated_suggestions
            && candidate.requests.count >= self.min_requests;
        let verdict = match failed {
            Some((_, reason)) => Verdict::Abort { reason },
            None if enough => Verdict::Pass,
            None => Verdict::Continue,
        };
        CanaryDecision {
            verdict,
            accuracy,
            acceptance,
            latency,
        }
    }

    fn accuracy(&self, paired: &PairedSums) -> Check {
        let Some((mean, variance)) = mixture::mean_and_variance(
            paired.n,
            paired.sum_difference,
            paired.sum_squared_difference,
        ) else {
            return Check::default();
        };
        let g = self.accuracy;
        Check::of(
            mean,
            mixture::log_ratio(mean - g.margin, variance, g.margin),
            g.alpha,
            paired.n >= self.min_feedback.max(2),
        )
    }

    fn acceptance(&self, stable: &ArmStats, candidate: &ArmStats) -> Check {
        let (s, c) = (&stable.suggestions, &candidate.suggestions);
        let min = self.min_rated_suggestions.max(1);
        if s.rated < min || c.rated < min {
            return Check::default();
        }
        let rate = |accepted: u64, rated: u64| accepted.min(rated) as f64 / rated as f64;
        let (ps, pc) = (rate(s.accepted, s.rated), rate(c.accepted, c.rated));
        let (ns, nc) = (s.rated as f64, c.rated as f64);
        let pooled = (ps * ns + pc * nc) / (ns + nc);
        let variance = pooled * (1.0 - pooled) * (1.0 / ns + 1.0 / nc);
        let g = self.acceptance;
        let drop = ps - pc;
        Check::of(
            drop,
            mixture::log_ratio(drop - g.margin, variance, g.margin),
            g.alpha,
            true,
        )
    }

    fn latency(&self, stable: &LatencyHistogram, candidate: &LatencyHistogram) -> Check {
        let min = self.min_requests.max(1);
        if stable.count < min || candidate.count < min {
            return Check::default();
        }
        let Some(p99) = stable.quantile(1.0 - TAIL) else {
            return Check::default();
        };
        let limit = p99 * (1.0 + self.latency.margin);
        // Beyond the last bound nothing can be counted: the guardrail is blind there.
        let Some(bound) = candidate.buckets.iter().find(|b| b.le >= limit) else {
            return Check::default();
        };
        let n = candidate.count as f64;
        let above = candidate.count.saturating_sub(bound.count) as f64 / n;
        let variance = TAIL * (1.0 - TAIL) / n;
        Check::of(
            above,
            mixture::log_ratio(above - TAIL, variance, TAIL),
            self.latency.alpha,
            true,
        )
    }
}

/// One guardrail's figures: its estimate (accuracy: the mean squared error difference;
/// acceptance: the drop in acceptance rate; latency: the candidate's share of requests beyond
/// the bound) and `ln Λ`; both `None` until it has its minimum evidence.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub estimate: Option<f64>,
    pub log_ratio: Option<f64>,
    pub failed: bool,
}

impl Check {
    fn of(estimate: f64, log_ratio: f64, alpha: f64, may_fail: bool) -> Self {
        Check {
            estimate: Some(estimate),
            log_ratio: Some(log_ratio),
            failed: may_fail && mixture::rejects(log_ratio, alpha),
        }
    }
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryDecision {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub accuracy: Check,
    pub acceptance: Check,
    pub latency: Check,
}

#[cfg(test)]
mod tests {
    use super::*;
    use recommender_contract::stats::{Bucket, FeedbackSums, SuggestionCounts};

    fn guardrails() -> Guardrails {
        Guardrails {
            accuracy: Guardrail {
                margin: 0.05,
                alpha: 0.01,
            },
            acceptance: Guardrail {
                margin: 0.05,
                alpha: 0.01,
            },
            latency: Guardrail {
                margin: 0.2,
                alpha: 0.01,
            },
            min_feedback: 100,
            min_rated_suggestions: 100,
            min_requests: 1000,
        }
    }

    /// Latencies spread evenly over 1..=`slowest` ms, `n` of them, in 1 ms buckets.
    fn latencies(n: u64, slowest: u64) -> LatencyHistogram {
        let buckets = (1..=20)
            .map(|ms| Bucket {
                le: ms as f64 / 1000.0,
                count: n * ms.min(slowest) / slowest,
            })
            .collect();
        LatencyHistogram {
            count: n,
            sum_seconds: 0.0,
            buckets,
        }
    }

    fn arm(rated: u64, accepted: u64, requests: LatencyHistogram) -> ArmStats {
        ArmStats {
            requests,
            feedback: FeedbackSums {
                n: rated,
                ..Default::default()
            },
            suggestions: SuggestionCounts {
                shown: 10 * rated,
                rated,
                accepted,
            },
        }
    }

    fn alike(n: u64) -> PairedSums {
        PairedSums {
            n,
            sum_difference: 0.0,
            sum_squared_difference: 0.25 * n as f64,
            ..Default::default()
        }
    }

    #[test]
    fn a_candidate_like_the_stable_model_passes() {
        let g = guardrails();
        let d = g.decide(
            &alike(2000),
            &arm(2000, 600, latencies(5000, 4)),
            &arm(500, 150, latencies(5000, 4)),
        );
        assert_eq!(d.verdict, Verdict::Pass, "{d:?}");
        let d = g.decide(
            &alike(50),
            &arm(2000, 600, latencies(5000, 4)),
            &arm(50, 15, latencies(5000, 4)),
        );
        assert_eq!(
            d.verdict,
            Verdict::Continue,
            "too little candidate feedback"
        );
    }

    #[test]
    fn each_guardrail_aborts_on_its_own() {
        let g = guardrails();
        let fast = || latencies(5000, 4);
        let worse = PairedSums {
            n: 2000,
            sum_difference: 0.3 * 2000.0,
            sum_squared_difference: (0.25 + 0.09) * 2000.0,
            ..Default::default()
        };
        let cases = [
            (
                worse,
                arm(2000, 600, fast()),
                arm(500, 150, fast()),
                AbortReason::WorseAccuracy,
            ),
            (
                alike(2000),
                arm(2000, 600, fast()),
                arm(500, 50, fast()),
                AbortReason::LowerAcceptance,
            ),
            (
                alike(2000),
                arm(2000, 600, fast()),
                arm(500, 150, latencies(5000, 8)),
                AbortReason::SlowerLatency,
            ),
        ];
        for (paired, stable, candidate, reason) in cases {
            let d = g.decide(&paired, &stable, &candidate);
            assert_eq!(d.verdict, Verdict::Abort { reason }, "{d:?}");
        }
    }

    /// A slower tail within the margin is no reason to abort, nor is latency beyond the last
    /// bound something the guardrail can see.
    #[test]
    fn latency_within_the_margin_or_out_of_sight_passes() {
        let g = guardrails();
        let slightly = g.latency(&latencies(5000, 10), &latencies(5000, 11));
        assert!(!slightly.failed, "{slightly:?}");
        let blind = g.latency(&latencies(5000, 19), &latencies(5000, 40));
        assert_eq!(blind, Check::default());
    }

    #[test]
    fn settings_are_checked() {
        let mut g = guardrails();
        assert_eq!(g.check(), Ok(()));
        g.latency.alpha = 0.0;
        assert!(g.check().unwrap_err().contains("latency"));
    }
}
