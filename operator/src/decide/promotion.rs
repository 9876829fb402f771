//! The promotion gate: may a candidate replace the model now serving?

use super::serving::MODELS_LIMIT;
use crate::crd::{
    ModelMetrics, ModelRecord, Promotion, RecommenderModelSpec, RecommenderModelStatus, RunOutcome,
    RunReason,
};

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

/// A metric over its limit.
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
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rmse => "rmse",
            Self::Mae => "mae",
        }
    }

    /// The `spec.promotion` field that holds its limit.
    pub fn limit_field(self) -> &'static str {
        match self {
            Self::Rmse => "maxRmse",
            Self::Mae => "maxMae",
        }
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
                .map(|s| {
                    // `{:?}` keeps a threshold as the user wrote it (`1.0`, not `1`).
                    format!(
                        "{} {:.4} exceeds {} {:?} by {:.4}",
                        s.metric.name(),
                        s.value,
                        s.metric.limit_field(),
                        s.limit,
                        s.value - s.limit
                    )
                })
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

pub fn judge(candidate: &ModelMetrics, gate: &Promotion, serving: Option<&ModelRecord>) -> Verdict {
    let shortfalls: Vec<Shortfall> = [
        (Metric::Rmse, candidate.rmse, gate.max_rmse),
        (Metric::Mae, candidate.mae, gate.max_mae),
    ]
    .into_iter()
    .filter(|(_, value, limit)| value > limit)
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
    spec: &RecommenderModelSpec,
    status: &mut RecommenderModelStatus,
) -> (RunOutcome, RunReason, String) {
    let current = match &spec.pinned_version {
        Some(pin) => status.models.iter().find(|m| &m.version == pin),
        None => status.models.last(),
    };
    let version = candidate.version.clone();
    match judge(&candidate.metrics, &spec.promotion, current) {
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
    use crate::decide::fixtures::{metrics, record};

    #[test]
    fn table() {
        let gate = Promotion::default();
        let strict = Promotion {
            must_beat_serving: true,
            ..Promotion::default()
        };
        let serving = record("v2", 2, 0.94, "2026-11-27T00:00:00Z");
        let reject = |reason: RunReason, message: &str| Some((reason, message.to_string()));
        let cases: Vec<(&str, ModelMetrics, &Promotion, Option<&ModelRecord>, _)> = vec![
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
