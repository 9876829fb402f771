//! The promotion gate: may a candidate replace the model now serving? Its metrics must pass the
//! thresholds and, with `mustBeatServing`, it must beat the serving model: on the newest ratings
//! neither was trained on when the trainer could compare them (a paired bootstrap interval of
//! the RMSE difference entirely below zero), else on cross-validated RMSE, saying why.

use super::serving::MODELS_LIMIT;
use crate::crd::{
    Comparison, ComparisonBasis, ComparisonVerdict, ModelRecord, Promotion, RecommenderModelSpec,
    RunOutcome, RunReason,
};
use recommender_contract::metrics::Metrics;
use recommender_contract::report::Challenge;

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
    /// `mustBeatServing`, and the candidate did not beat the serving model.
    NotBetter(Comparison),
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
            Self::NotBetter(c) => describe(c),
        }
    }
}

/// The comparison in words, for the run's message and the `Promoted` condition.
pub fn describe(c: &Comparison) -> String {
    let (ch, champ, v) = (c.challenger_rmse, c.champion_rmse, &c.champion);
    let verb = match c.verdict {
        ComparisonVerdict::Better => "beats",
        ComparisonVerdict::NotBetter => "does not beat",
    };
    match (c.basis, c.low, c.high) {
        (ComparisonBasis::NewestRatings, Some(low), Some(high)) => format!(
            "on the {} newest ratings neither was trained on, rmse {ch:.4} {verb} the serving \
             {v}'s {champ:.4}: difference {:+.4}, {}% interval [{low:+.4}, {high:+.4}]",
            c.ratings,
            c.difference,
            (c.confidence.unwrap_or_default() * 1000.0).round() / 10.0
        ),
        _ => format!(
            "rmse {ch:.4} {verb} the serving {v}'s rmse {champ:.4} (cross-validation: {})",
            c.fallback
                .as_deref()
                .unwrap_or("no comparison on new ratings")
        ),
    }
}

/// How a candidate compares with `serving`: the trainer's paired comparison when it made one
/// against this model, else the cross-validated RMSEs with the reason.
pub fn compare(
    candidate: &Metrics,
    serving: &ModelRecord,
    challenge: Option<&Challenge>,
) -> Comparison {
    let v = &serving.version;
    let ours = challenge.filter(|c| &c.champion == v);
    if let Some(p) = ours.and_then(|c| c.paired.as_ref()) {
        return Comparison {
            champion: v.clone(),
            basis: ComparisonBasis::NewestRatings,
            champion_rmse: p.champion_rmse,
            challenger_rmse: p.challenger_rmse,
            difference: p.difference,
            low: Some(p.low),
            high: Some(p.high),
            confidence: Some(p.confidence),
            ratings: p.ratings,
            verdict: if p.high < 0.0 {
                ComparisonVerdict::Better
            } else {
                ComparisonVerdict::NotBetter
            },
            fallback: None,
        };
    }
    let why = match (ours, challenge) {
        (Some(c), _) => c.fallback.clone(),
        (None, Some(other)) => Some(format!(
            "the trainer compared with {}, not the serving {v}",
            other.champion
        )),
        (None, None) => None,
    };
    let why =
        why.unwrap_or_else(
            || match serving.fingerprint.as_ref().and_then(|f| f.max_timestamp) {
                None => format!("{v}'s data has no timestamps to split new ratings by"),
                Some(_) => "the trainer made no comparison on new ratings".into(),
            },
        );
    Comparison {
        champion: v.clone(),
        basis: ComparisonBasis::CrossValidation,
        champion_rmse: serving.metrics.rmse,
        challenger_rmse: candidate.rmse,
        difference: candidate.rmse - serving.metrics.rmse,
        low: None,
        high: None,
        confidence: None,
        ratings: 0,
        verdict: if candidate.rmse < serving.metrics.rmse {
            ComparisonVerdict::Better
        } else {
            ComparisonVerdict::NotBetter
        },
        fallback: Some(why),
    }
}

/// Judges a candidate's full-precision metrics against the gate and what serves now.
pub fn judge(candidate: &Metrics, gate: &Promotion, serving: Option<&ModelRecord>) -> Verdict {
    judge_against(candidate, gate, serving, None).0
}

/// [`judge`], with the trainer's champion/challenger comparison; also returns the comparison
/// (under `mustBeatServing` with a model serving), for the run's record.
pub fn judge_against(
    candidate: &Metrics,
    gate: &Promotion,
    serving: Option<&ModelRecord>,
    challenge: Option<&Challenge>,
) -> (Verdict, Option<Comparison>) {
    let comparison = serving
        .filter(|_| gate.must_beat_serving)
        .map(|s| compare(candidate, s, challenge));
    let verdict = match shortfalls(candidate, gate) {
        shortfalls if !shortfalls.is_empty() => Verdict::Reject(Rejection::GateFailed(shortfalls)),
        _ => match &comparison {
            Some(c) if c.verdict == ComparisonVerdict::NotBetter => {
                Verdict::Reject(Rejection::NotBetter(c.clone()))
            }
            _ => Verdict::Promote,
        },
    };
    (verdict, comparison)
}

fn shortfalls(candidate: &Metrics, gate: &Promotion) -> Vec<Shortfall> {
    let limits = [
        Some((Metric::Rmse, candidate.rmse, gate.max_rmse)),
        Some((Metric::Mae, candidate.mae, gate.max_mae)),
        gate.max_rmse_std
            .map(|limit| (Metric::RmseStd, candidate.rmse_std, limit)),
        Some((Metric::Accuracy, candidate.accuracy, gate.min_accuracy)),
    ];
    limits
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
        .collect()
}

/// What the gate made of a candidate: the run's outcome, reason, message and comparison.
pub(super) type Judged = (RunOutcome, RunReason, String, Option<Comparison>);

/// Judges `candidate` against what serves now (the pin, if any, else the newest) and, if it
/// passes, adds it to the promoted models, or under a progressive rollout (`progressive`, and a
/// model already promoted to compare it with live) hands it back to be rolled out.
pub(super) fn judge_candidate(
    candidate: ModelRecord,
    metrics: &Metrics,
    challenge: Option<&Challenge>,
    spec: &RecommenderModelSpec,
    (models, progressive): (&mut Vec<ModelRecord>, bool),
) -> (Judged, Option<ModelRecord>) {
    let current = match &spec.pinned_version {
        Some(pin) => models.iter().find(|m| &m.version == pin),
        None => models.last(),
    };
    let version = candidate.version.clone();
    let (verdict, comparison) = judge_against(metrics, &spec.promotion, current, challenge);
    match verdict {
        Verdict::Promote => {
            let beats = comparison
                .as_ref()
                .map(|c| format!("; {}", describe(c)))
                .unwrap_or_default();
            let figures = format!(
                "rmse {:.4}, mae {:.4}{beats}",
                candidate.metrics.rmse, candidate.metrics.mae
            );
            // The first model has nothing to be compared with live: it is promoted at the gate.
            if progressive && !models.is_empty() {
                let message = format!("{version} passed the gate ({figures}): rolling out");
                let judged = (
                    RunOutcome::Succeeded,
                    RunReason::RollingOut,
                    message,
                    comparison,
                );
                return (judged, Some(candidate));
            }
            admit(models, candidate);
            let judged = (
                RunOutcome::Succeeded,
                RunReason::Promoted,
                format!("{version} promoted: {figures}"),
                comparison,
            );
            (judged, None)
        }
        Verdict::Reject(rejection) => {
            let judged = (
                RunOutcome::Rejected,
                rejection.reason(),
                format!("{version} not promoted: {}", rejection.message()),
                comparison,
            );
            (judged, None)
        }
    }
}

/// Adds a promoted model to `models`, the newest last, within the rollback window.
pub(super) fn admit(models: &mut Vec<ModelRecord>, promoted: ModelRecord) {
    models.push(promoted);
    let excess = models.len().saturating_sub(MODELS_LIMIT);
    models.drain(..excess);
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
                    "rmse 0.9500 does not beat the serving v2's rmse 0.9400 (cross-validation: \
                     v2's data has no timestamps to split new ratings by)",
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

    fn challenged(
        champion: &str,
        paired: Option<(f64, f64, f64)>,
        fallback: Option<&str>,
    ) -> Challenge {
        Challenge {
            champion: champion.into(),
            since: 893_286_638,
            new_ratings: 20_000,
            paired: paired.map(
                |(difference, low, high)| recommender_contract::report::Paired {
                    split_at: 893_300_000,
                    train_ratings: 10_000,
                    ratings: 10_000,
                    champion_rmse: 1.0,
                    challenger_rmse: 1.0 + difference,
                    difference,
                    low,
                    high,
                    confidence: 0.95,
                    resamples: 2000,
                },
            ),
            fallback: fallback.map(Into::into),
        }
    }

    /// Each decision of `mustBeatServing`: the paired interval decides when the trainer compared
    /// with the serving model on enough new ratings; otherwise the CV RMSEs, saying why.
    #[test]
    fn champion_challenger_decisions() {
        let strict = Promotion {
            must_beat_serving: true,
            ..Promotion::default()
        };
        let serving = record("v2", 2, 0.94, "2026-11-27T00:00:00Z");
        // CV says the candidate (0.93 < 0.94) is better; the newest ratings may say otherwise.
        let candidate = metrics(0.93, 0.7);
        let cases = [
            (
                "paired, interval below zero",
                challenged("v2", Some((-0.02, -0.03, -0.01)), None),
                true,
                ComparisonBasis::NewestRatings,
                "on the 10000 newest ratings neither was trained on, rmse 0.9800 beats the serving v2's 1.0000: difference -0.0200, 95% interval [-0.0300, -0.0100]",
            ),
            (
                "paired, interval spans zero",
                challenged("v2", Some((-0.005, -0.012, 0.002)), None),
                false,
                ComparisonBasis::NewestRatings,
                "rmse 0.9950 does not beat the serving v2's 1.0000: difference -0.0050, 95% interval [-0.0120, +0.0020]",
            ),
            (
                "paired, worse",
                challenged("v2", Some((0.3, 0.25, 0.35)), None),
                false,
                ComparisonBasis::NewestRatings,
                "difference +0.3000",
            ),
            (
                "too few new ratings: CV, saying so",
                challenged(
                    "v2",
                    None,
                    Some(
                        "only 40 of the 80 ratings after the champion's snapshot would be held out, fewer than 1000",
                    ),
                ),
                true,
                ComparisonBasis::CrossValidation,
                "rmse 0.9300 beats the serving v2's rmse 0.9400 (cross-validation: only 40 of the 80 ratings",
            ),
            (
                "compared with another model",
                challenged("v1", Some((-0.02, -0.03, -0.01)), None),
                true,
                ComparisonBasis::CrossValidation,
                "(cross-validation: the trainer compared with v1, not the serving v2)",
            ),
        ];
        for (name, challenge, promote, basis, message) in cases {
            let (verdict, comparison) =
                judge_against(&candidate, &strict, Some(&serving), Some(&challenge));
            let comparison = comparison.expect("a comparison is recorded");
            assert_eq!(comparison.basis, basis, "{name}");
            assert_eq!(matches!(verdict, Verdict::Promote), promote, "{name}");
            let text = describe(&comparison);
            assert!(text.contains(message), "{name}: {text}");
            if let Verdict::Reject(r) = verdict {
                assert_eq!(r.reason(), RunReason::NotBetter, "{name}");
                assert_eq!(r.message(), text, "{name}");
            }
        }
        // Without mustBeatServing nothing is compared; a failing gate still records it.
        let (_, none) = judge_against(&candidate, &Promotion::default(), Some(&serving), None);
        assert_eq!(none, None);
        let (verdict, some) = judge_against(
            &metrics(1.2, 0.7),
            &strict,
            Some(&serving),
            Some(&challenged("v2", Some((-0.1, -0.2, -0.05)), None)),
        );
        assert!(matches!(verdict, Verdict::Reject(Rejection::GateFailed(_))));
        assert_eq!(some.unwrap().verdict, ComparisonVerdict::Better);
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
