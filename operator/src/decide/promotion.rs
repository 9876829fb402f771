//! The promotion gate: may a candidate replace the model now serving?

use super::serving::MODELS_LIMIT;
use crate::crd::{
    ModelRecord, Promotion, RecommenderModelSpec, RecommenderModelStatus, RunOutcome, RunReason,
};
use recommender_report::Metrics;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Promote,
    Reject(Rejection),
}

/// Why a candidate was kept out.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// One or more metrics missed their threshold.
    GateFailed(Vec<Shortfall>),
    /// `mustBeatServing`, and the candidate's RMSE is not below the serving model's.
    NotBetter {
        rmse: f64,
        serving_version: String,
        serving_rmse: f64,
    },
}

/// A metric on the wrong side of its limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shortfall {
    pub metric: Metric,
    pub value: f64,
    pub limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Rmse,
    Mae,
    /// Standard deviation of RMSE over the folds: cross-validation stability.
    RmseStd,
    /// Share within one star: a floor, not a ceiling.
    Accuracy,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rmse => "rmse",
            Self::Mae => "mae",
            Self::RmseStd => "rmse std",
            Self::Accuracy => "accuracy",
        }
    }

    /// The `spec.promotion` field that holds its limit.
    pub fn limit_field(self) -> &'static str {
        match self {
            Self::Rmse => "maxRmse",
            Self::Mae => "maxMae",
            Self::RmseStd => "maxRmseStd",
            Self::Accuracy => "minAccuracy",
        }
    }

    fn is_floor(self) -> bool {
        self == Self::Accuracy
    }
}

impl Shortfall {
    fn describe(&self) -> String {
        let (verb, by) = if self.metric.is_floor() {
            ("is below", self.limit - self.value)
        } else {
            ("exceeds", self.value - self.limit)
        };
        // `{:?}` keeps a threshold as the user wrote it (`1.0`, not `1`).
        format!(
            "{} {:.4} {verb} {} {:?} by {by:.4}",
            self.metric.name(),
            self.value,
            self.metric.limit_field(),
            self.limit,
        )
    }
}

impl Rejection {
    /// The `Promoted` condition's reason.
    pub fn reason(&self) -> RunReason {
        match self {
            Self::GateFailed(_) => RunReason::GateFailed,
            Self::NotBetter { .. } => RunReason::NotBetter,
        }
    }

    /// Names each metric that failed, its value and its limit.
    pub fn message(&self) -> String {
        match self {
            Self::GateFailed(shortfalls) => shortfalls
                .iter()
                .map(Shortfall::describe)
                .collect::<Vec<_>>()
                .join("; "),
            Self::NotBetter {
                rmse,
                serving_version,
                serving_rmse,
            } => format!(
                "rmse {rmse:.4} does not beat the serving {serving_version}'s rmse {serving_rmse:.4}"
            ),
        }
    }
}

/// Judges a candidate's full-precision metrics against the gate and what serves now.
pub fn judge(candidate: &Metrics, gate: &Promotion, serving: Option<&ModelRecord>) -> Verdict {
    let limits = [
        Some((Metric::Rmse, candidate.rmse, gate.max_rmse)),
        Some((Metric::Mae, candidate.mae, gate.max_mae)),
        gate.max_rmse_std
            .map(|limit| (Metric::RmseStd, candidate.rmse_std, limit)),
        Some((Metric::Accuracy, candidate.accuracy, gate.min_accuracy)),
    ];
    let shortfalls: Vec<Shortfall> = limits
        .into_iter()
        .flatten()
        .filter(|(metric, value, limit)| {
            if metric.is_floor() {
                value < limit
            } else {
                value > limit
            }
        })
        .map(|(metric, value, limit)| Shortfall {
            metric,
            value,
            limit,
        })
        .collect();
    if !shortfalls.is_empty() {
        return Verdict::Reject(Rejection::GateFailed(shortfalls));
    }
    if gate.must_beat_serving
        && let Some(current) = serving
        && candidate.rmse >= current.metrics.rmse
    {
        return Verdict::Reject(Rejection::NotBetter {
            rmse: candidate.rmse,
            serving_version: current.version.clone(),
            serving_rmse: current.metrics.rmse,
        });
    }
    Verdict::Promote
}

/// Judges `candidate` against what serves now (the pin, if any, else the newest) and, if it
/// passes, adds it to the promoted models. Returns the run's outcome, reason and message.
pub(super) fn judge_candidate(
    candidate: ModelRecord,
    metrics: &Metrics,
    spec: &RecommenderModelSpec,
    status: &mut RecommenderModelStatus,
) -> (RunOutcome, RunReason, String) {
    let current = match &spec.pinned_version {
        Some(pin) => status.models.iter().find(|m| &m.version == pin),
        None => status.models.last(),
    };
    let version = candidate.version.clone();
    match judge(metrics, &spec.promotion, current) {
        Verdict::Promote => {
            let message = format!(
                "{version} promoted: rmse {:.4}, mae {:.4}",
                candidate.metrics.rmse, candidate.metrics.mae
            );
            status.models.push(candidate);
            let excess = status.models.len().saturating_sub(MODELS_LIMIT);
            status.models.drain(..excess);
            (RunOutcome::Succeeded, RunReason::Promoted, message)
        }
        Verdict::Reject(rejection) => (
            RunOutcome::Rejected,
            rejection.reason(),
            format!("{version} not promoted: {}", rejection.message()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::{record, report_metrics as metrics};

    #[test]
    fn table() {
        let gate = Promotion::default();
        let strict = Promotion {
            must_beat_serving: true,
            ..Promotion::default()
        };
        let serving = record("v2", 2, 0.94, "2026-11-27T00:00:00Z");
        let reject = |reason: RunReason, message: &str| Some((reason, message.to_string()));
        let stable = Promotion {
            max_rmse_std: Some(0.005),
            ..Promotion::default()
        };
        let unstable = Metrics {
            rmse_std: 0.0123,
            ..metrics(0.94, 0.74)
        };
        let inaccurate = Metrics {
            accuracy: 0.65,
            ..metrics(0.94, 0.74)
        };
        let cases: Vec<(&str, Metrics, &Promotion, Option<&ModelRecord>, _)> = vec![
            ("passes", metrics(0.94, 0.74), &gate, None, None),
            (
                "rmse over",
                metrics(1.0312, 0.7),
                &gate,
                None,
                reject(
                    RunReason::GateFailed,
                    "rmse 1.0312 exceeds maxRmse 1.0 by 0.0312",
                ),
            ),
            (
                "mae over",
                metrics(0.9, 0.85),
                &gate,
                None,
                reject(
                    RunReason::GateFailed,
                    "mae 0.8500 exceeds maxMae 0.8 by 0.0500",
                ),
            ),
            (
                "both over",
                metrics(1.2, 0.9),
                &gate,
                None,
                reject(
                    RunReason::GateFailed,
                    "rmse 1.2000 exceeds maxRmse 1.0 by 0.2000; mae 0.9000 exceeds maxMae 0.8 by 0.1000",
                ),
            ),
            (
                "exactly at the limit passes",
                metrics(1.0, 0.8),
                &gate,
                None,
                None,
            ),
            (
                "below minAccuracy",
                inaccurate,
                &gate,
                None,
                reject(
                    RunReason::GateFailed,
                    "accuracy 0.6500 is below minAccuracy 0.7 by 0.0500",
                ),
            ),
            (
                "unstable across folds",
                unstable.clone(),
                &stable,
                None,
                reject(
                    RunReason::GateFailed,
                    "rmse std 0.0123 exceeds maxRmseStd 0.005 by 0.0073",
                ),
            ),
            ("stability not asked for", unstable, &gate, None, None),
            (
                "not better than serving",
                metrics(0.95, 0.7),
                &strict,
                Some(&serving),
                reject(
                    RunReason::NotBetter,
                    "rmse 0.9500 does not beat the serving v2's rmse 0.9400",
                ),
            ),
            (
                "better than serving",
                metrics(0.93, 0.7),
                &strict,
                Some(&serving),
                None,
            ),
            (
                "first model needs nothing to beat",
                metrics(0.99, 0.7),
                &strict,
                None,
                None,
            ),
            (
                "worse but not required to beat",
                metrics(0.99, 0.7),
                &gate,
                Some(&serving),
                None,
            ),
        ];
        for (name, candidate, gate, current, want) in cases {
            let got = match judge(&candidate, gate, current) {
                Verdict::Promote => None,
                Verdict::Reject(r) => Some((r.reason(), r.message())),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn shortfalls_are_typed() {
        let verdict = judge(&metrics(1.1, 0.7), &Promotion::default(), None);
        assert_eq!(
            verdict,
            Verdict::Reject(Rejection::GateFailed(vec![Shortfall {
                metric: Metric::Rmse,
                value: 1.1,
                limit: 1.0
            }]))
        );
    }
}
