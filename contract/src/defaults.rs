//! The hyperparameter defaults, in one table: the CRD's schema defaults, the trainer CLI's
//! `default_value`s and the operator's Job arguments all read these, so a field left out of a
//! manifest trains exactly what `recommender-trainer train` would.
//!
//! Values are Surprise's (`SVD()` and `BaselineOnly()` with `method='als'`).

/// Cross-validation folds.
pub const FOLDS: u32 = 4;

/// `SVD` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Svd {
    pub factors: u32,
    pub epochs: u32,
    pub lr_all: f64,
    pub reg_all: f64,
    pub init_mean: f64,
    pub init_std: f64,
    pub biased: bool,
}

pub const SVD: Svd = Svd {
    factors: 100,
    epochs: 20,
    lr_all: 0.005,
    reg_all: 0.02,
    init_mean: 0.0,
    init_std: 0.1,
    biased: true,
};

/// `BaselineOnly` (ALS) defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub epochs: u32,
    pub reg_u: f64,
    pub reg_i: f64,
}

pub const BASELINE: Baseline = Baseline {
    epochs: 10,
    reg_u: 15.0,
    reg_i: 10.0,
};
