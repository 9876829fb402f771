//! The promotion gate: may a candidate replace the model now serving?

use crate::crd::{ModelMetrics, ModelRecord, Promotion};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Promote,
    /// `reason` is the `Promoted` condition's reason (`GateFailed` or `NotBetter`).
    Reject {
        reason: &'static str,
        message: String,
    },
}

pub fn judge(candidate: &ModelMetrics, gate: &Promotion, serving: Option<&ModelRecord>) -> Verdict {
    let mut failures = Vec::new();
    if candidate.rmse > gate.max_rmse {
        failures.push(exceeds("rmse", candidate.rmse, "maxRmse", gate.max_rmse));
    }
    if candidate.mae > gate.max_mae {
        failures.push(exceeds("mae", candidate.mae, "maxMae", gate.max_mae));
    }
    if !failures.is_empty() {
        return Verdict::Reject {
            reason: "GateFailed",
            message: failures.join("; "),
        };
    }
    if gate.must_beat_serving
        && let Some(current) = serving
        && candidate.rmse >= current.metrics.rmse
    {
        return Verdict::Reject {
            reason: "NotBetter",
            message: format!(
                "rmse {:.4} does not beat the serving {}'s rmse {:.4}",
                candidate.rmse, current.version, current.metrics.rmse
            ),
        };
    }
    Verdict::Promote
}

fn exceeds(metric: &str, value: f64, limit_name: &str, limit: f64) -> String {
    // `{:?}` keeps a threshold as the user wrote it (`1.0`, not `1`).
    format!(
        "{metric} {value:.4} exceeds {limit_name} {limit:?} by {:.4}",
        value - limit
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn metrics(rmse: f64, mae: f64) -> ModelMetrics {
        ModelMetrics {
            folds: 4,
            rmse,
            mae,
            rmse_std: 0.0,
            mae_std: 0.0,
            precision_at_10: 0.0,
            recall_at_10: 0.0,
            ndcg_at_10: 0.0,
        }
    }

    fn serving(rmse: f64) -> ModelRecord {
        ModelRecord {
            version: "v2".into(),
            run: 2,
            metrics: metrics(rmse, 0.7),
            trained_at: "2026-11-27T00:00:00Z".into(),
            fingerprint: None,
        }
    }

    #[test]
    fn table() {
        let gate = Promotion::default();
        let strict = Promotion {
            must_beat_serving: true,
            ..Promotion::default()
        };
        let cases: Vec<(&str, ModelMetrics, &Promotion, Option<ModelRecord>, Verdict)> = vec![
            ("passes", metrics(0.94, 0.74), &gate, None, Verdict::Promote),
            (
                "rmse over",
                metrics(1.0312, 0.7),
                &gate,
                None,
                Verdict::Reject {
                    reason: "GateFailed",
                    message: "rmse 1.0312 exceeds maxRmse 1.0 by 0.0312".into(),
                },
            ),
            (
                "mae over",
                metrics(0.9, 0.85),
                &gate,
                None,
                Verdict::Reject {
                    reason: "GateFailed",
                    message: "mae 0.8500 exceeds maxMae 0.8 by 0.0500".into(),
                },
            ),
            (
                "both over",
                metrics(1.2, 0.9),
                &gate,
                None,
                Verdict::Reject {
                    reason: "GateFailed",
                    message: "rmse 1.2000 exceeds maxRmse 1.0 by 0.2000; mae 0.9000 exceeds maxMae 0.8 by 0.1000"
                        .into(),
                },
            ),
            ("exactly at the limit passes", metrics(1.0, 0.8), &gate, None, Verdict::Promote),
            (
                "not better than serving",
                metrics(0.95, 0.7),
                &strict,
                Some(serving(0.94)),
                Verdict::Reject {
                    reason: "NotBetter",
                    message: "rmse 0.9500 does not beat the serving v2's rmse 0.9400".into(),
                },
            ),
            ("better than serving", metrics(0.93, 0.7), &strict, Some(serving(0.94)), Verdict::Promote),
            ("first model needs nothing to beat", metrics(0.99, 0.7), &strict, None, Verdict::Promote),
            (
                "worse but not required to beat",
                metrics(0.99, 0.7),
                &gate,
                Some(serving(0.94)),
                Verdict::Promote,
            ),
        ];
        for (name, candidate, gate, current, want) in cases {
            assert_eq!(judge(&candidate, gate, current.as_ref()), want, "{name}");
        }
    }
}
