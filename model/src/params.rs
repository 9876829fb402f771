//! The hyperparameters an artifact records, with Surprise's defaults.
//!
//! Checking them against what training can do is the trainer's business; this is only what the
//! artifact stores and the predictor reports.

use serde::{Deserialize, Serialize};

/// SVD hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SvdParams {
    pub n_factors: usize,
    pub n_epochs: usize,
    pub biased: bool,
    pub init_mean: f64,
    pub init_std: f64,
    pub lr_bu: f64,
    pub lr_bi: f64,
    pub lr_pu: f64,
    pub lr_qi: f64,
    pub reg_bu: f64,
    pub reg_bi: f64,
    pub reg_pu: f64,
    pub reg_qi: f64,
    /// Seeds the factor initialisation; the same seed and data give the same model.
    pub seed: u64,
}

impl Default for SvdParams {
    fn default() -> Self {
        Self {
            n_factors: 100,
            n_epochs: 20,
            biased: true,
            init_mean: 0.0,
            init_std: 0.1,
            lr_bu: 0.005,
            lr_bi: 0.005,
            lr_pu: 0.005,
            lr_qi: 0.005,
            reg_bu: 0.02,
            reg_bi: 0.02,
            reg_pu: 0.02,
            reg_qi: 0.02,
            seed: 0,
        }
    }
}

/// BaselineOnly (ALS) hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineParams {
    pub n_epochs: usize,
    pub reg_i: f64,
    pub reg_u: f64,
}

impl Default for BaselineParams {
    fn default() -> Self {
        Self {
            n_epochs: 10,
            reg_i: 10.0,
            reg_u: 15.0,
        }
    }
}

/// The hyperparameters the model was trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase")]
pub enum Hyperparameters {
    Svd(SvdParams),
    Baseline(BaselineParams),
}

impl Hyperparameters {
    /// `svd` or `baseline`, as in the CLI and the report.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Hyperparameters::Svd(_) => "svd",
            Hyperparameters::Baseline(_) => "baseline",
        }
    }

    /// Epochs the algorithm runs (for progress bars).
    pub fn epochs(&self) -> usize {
        match self {
            Hyperparameters::Svd(p) => p.n_epochs,
            Hyperparameters::Baseline(p) => p.n_epochs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_the_algorithm_tag() {
        let json =
            serde_json::to_value(Hyperparameters::Baseline(BaselineParams::default())).unwrap();
        assert_eq!(json["algorithm"], "baseline");
        assert_eq!(json["reg_u"], 15.0);
    }
}
