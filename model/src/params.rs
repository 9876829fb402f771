//! The hyperparameters an artifact records, with the defaults of the one table in
//! [`recommender_contract::defaults`] (Surprise's).
//!
//! Checking them against what training can do is the trainer's business; this is only what the
//! artifact stores and the predictor reports.

use recommender_contract::defaults;
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
        let d = defaults::SVD;
        Self {
            n_factors: d.factors as usize,
            n_epochs: d.epochs as usize,
            biased: d.biased,
            init_mean: d.init_mean,
            init_std: d.init_std,
            lr_bu: d.lr_all,
            lr_bi: d.lr_all,
            lr_pu: d.lr_all,
            lr_qi: d.lr_all,
            reg_bu: d.reg_all,
            reg_bi: d.reg_all,
            reg_pu: d.reg_all,
            reg_qi: d.reg_all,
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
        let d = defaults::BASELINE;
        Self {
            n_epochs: d.epochs as usize,
            reg_i: d.reg_i,
            reg_u: d.reg_u,
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

    /// Artifacts written before the table existed carry Surprise's numbers; the table must keep
    /// them, or a default-trained model would silently change.
    #[test]
    fn defaults_are_surprises() {
        let s = SvdParams::default();
        assert_eq!((s.n_factors, s.n_epochs, s.biased), (100, 20, true));
        assert_eq!((s.init_mean, s.init_std), (0.0, 0.1));
        assert_eq!(
            (s.lr_bu, s.lr_qi, s.reg_bu, s.reg_qi),
            (0.005, 0.005, 0.02, 0.02)
        );
        let b = BaselineParams::default();
        assert_eq!((b.n_epochs, b.reg_i, b.reg_u), (10, 10.0, 15.0));
    }

    #[test]
    fn serialises_with_the_algorithm_tag() {
        let json =
            serde_json::to_value(Hyperparameters::Baseline(BaselineParams::default())).unwrap();
        assert_eq!(json["algorithm"], "baseline");
        assert_eq!(json["reg_u"], 15.0);
    }
}
