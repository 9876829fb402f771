//! How well a model predicts ratings it was not trained on, in one vocabulary: the [`Scores`] of
//! one test fold, and the cross-validated [`Metrics`] over the folds that the trainer's report and
//! the `RecommenderModel` status carry.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One test fold's figures.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scores {
    pub rmse: f64,
    pub mae: f64,
    /// Share of test predictions within one star of the actual rating.
    pub accuracy: f64,
    pub precision_at_10: f64,
    pub recall_at_10: f64,
    pub ndcg_at_10: f64,
}

/// One of the [`Scores`]: its JSON name, its label in tables and how to read it.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    pub name: &'static str,
    pub label: &'static str,
    pub of: fn(&Scores) -> f64,
}

impl Measure {
    const fn new(name: &'static str, label: &'static str, of: fn(&Scores) -> f64) -> Self {
        Self { name, label, of }
    }
}

impl Scores {
    /// Every measure, in the order tables show them.
    pub const MEASURES: [Measure; 6] = [
        Measure::new("rmse", "RMSE (testset)", |s| s.rmse),
        Measure::new("mae", "MAE (testset)", |s| s.mae),
        Measure::new("accuracy", "Accuracy (±1 star)", |s| s.accuracy),
        Measure::new("precisionAt10", "Precision@10", |s| s.precision_at_10),
        Measure::new("recallAt10", "Recall@10", |s| s.recall_at_10),
        Measure::new("ndcgAt10", "NDCG@10", |s| s.ndcg_at_10),
    ];
}

/// Mean and population standard deviation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    /// Of `values`; zero for none.
    pub fn of(values: impl Iterator<Item = f64> + Clone) -> Self {
        let n = values.clone().count();
        if n == 0 {
            return Self::default();
        }
        let mean = values.clone().sum::<f64>() / n as f64;
        let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        Self {
            mean,
            std: var.sqrt(),
        }
    }
}

/// `mean ± std`, both at the formatter's precision (`{:.4}`).
impl fmt::Display for MeanStd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match f.precision() {
            Some(p) => write!(f, "{:.p$} ± {:.p$}", self.mean, self.std),
            None => write!(f, "{} ± {}", self.mean, self.std),
        }
    }
}

/// Cross-validated quality: the mean over the folds of each measure, and the standard deviation of
/// RMSE and MAE. The trainer reports full precision, which the gate judges; the status keeps them
/// rounded to 4 decimals for people.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub folds: u32,
    pub rmse: f64,
    pub rmse_std: f64,
    pub mae: f64,
    pub mae_std: f64,
    /// Share of test predictions within one star of the actual rating.
    // Defaulted: statuses written before it was measured lack it.
    #[serde(default)]
    pub accuracy: f64,
    pub precision_at_10: f64,
    pub recall_at_10: f64,
    pub ndcg_at_10: f64,
}

impl Metrics {
    /// The mean and spread over `folds`.
    pub fn over(folds: &[Scores]) -> Self {
        let spread = |m: fn(&Scores) -> f64| MeanStd::of(folds.iter().map(m));
        let (rmse, mae) = (spread(|s| s.rmse), spread(|s| s.mae));
        Self {
            folds: folds.len() as u32,
            rmse: rmse.mean,
            rmse_std: rmse.std,
            mae: mae.mean,
            mae_std: mae.std,
            accuracy: spread(|s| s.accuracy).mean,
            precision_at_10: spread(|s| s.precision_at_10).mean,
            recall_at_10: spread(|s| s.recall_at_10).mean,
            ndcg_at_10: spread(|s| s.ndcg_at_10).mean,
        }
    }

    /// Every figure rounded to 4 decimals, as the status shows them.
    pub fn rounded(&self) -> Self {
        let r = |x: f64| (x * 1e4).round() / 1e4;
        Self {
            folds: self.folds,
            rmse: r(self.rmse),
            rmse_std: r(self.rmse_std),
            mae: r(self.mae),
            mae_std: r(self.mae_std),
            accuracy: r(self.accuracy),
            precision_at_10: r(self.precision_at_10),
            recall_at_10: r(self.recall_at_10),
            ndcg_at_10: r(self.ndcg_at_10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(rmse: f64, mae: f64) -> Scores {
        Scores {
            rmse,
            mae,
            accuracy: 0.5,
            precision_at_10: 0.25,
            recall_at_10: 0.125,
            ndcg_at_10: 0.375,
        }
    }

    #[test]
    fn metrics_are_the_mean_and_spread_over_the_folds() {
        let m = Metrics::over(&[scores(0.9, 0.7), scores(1.0, 0.8)]);
        assert_eq!(m.folds, 2);
        assert!((m.rmse - 0.95).abs() < 1e-12 && (m.rmse_std - 0.05).abs() < 1e-12);
        assert!((m.mae - 0.75).abs() < 1e-12 && (m.mae_std - 0.05).abs() < 1e-12);
        assert_eq!((m.accuracy, m.ndcg_at_10), (0.5, 0.375));
        assert_eq!(Metrics::over(&[]).rmse, 0.0, "no folds: zero, not NaN");
    }

    #[test]
    fn rounding_keeps_four_decimals_of_every_figure() {
        let m = Metrics::over(&[scores(0.938_749, 0.740_351)]).rounded();
        assert_eq!((m.rmse, m.mae, m.rmse_std), (0.9387, 0.7404, 0.0));
        assert_eq!(m.recall_at_10, 0.125);
    }

    /// The measures' names are the JSON names of the fields they read, in the same order.
    #[test]
    fn measure_names_are_the_json_field_names() {
        let s = Scores {
            rmse: 1.0,
            mae: 2.0,
            accuracy: 3.0,
            precision_at_10: 4.0,
            recall_at_10: 5.0,
            ndcg_at_10: 6.0,
        };
        let json = serde_json::to_value(s).unwrap();
        let mut fields: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        let mut names: Vec<_> = Scores::MEASURES.iter().map(|m| m.name.to_owned()).collect();
        names.sort();
        assert_eq!(fields, names);
        for m in Scores::MEASURES {
            assert_eq!(json[m.name], (m.of)(&s), "{}", m.name);
        }
    }

    #[test]
    fn mean_and_population_std_formatted_at_the_asked_precision() {
        let ms = MeanStd::of([1.0, 3.0].into_iter());
        assert_eq!((ms.mean, ms.std), (2.0, 1.0));
        let ms = MeanStd::of([0.9, 1.0].into_iter());
        assert_eq!(format!("{ms:.4}"), "0.9500 ± 0.0500");
    }

    /// A status written before accuracy was measured still reads.
    #[test]
    fn accuracy_defaults_to_zero() {
        let m: Metrics = serde_json::from_str(
            r#"{"folds":4,"rmse":0.94,"rmseStd":0.01,"mae":0.74,"maeStd":0.01,
                "precisionAt10":0.1,"recallAt10":0.1,"ndcgAt10":0.1}"#,
        )
        .unwrap();
        assert_eq!(m.accuracy, 0.0);
    }
}
