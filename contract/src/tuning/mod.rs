//! Hyperparameter search: the contract between the operator (`spec.tuning`, trials as an Indexed
//! Job, `status.tuning`) and the trainer (`recommender-trainer trial` and `tune`).
//!
//! - [`TuningSpec`]: what to search (the space over the algorithm and its hyperparameters), how
//!   (random, grid, or successive halving over epochs), with which budget and seed;
//! - [`plan`] and [`next_rung`] (module [`plan`](mod@plan)): the trials of a search, a pure
//!   function of the spec and the previous search's results, so the operator and `tune` run the
//!   same trials in the same order;
//! - [`TrialPlan`]: the file a trial pod reads (the spec and the trials; the pod runs the one at
//!   its completion index);
//! - [`TrialResult`] (module [`result`]): what one trial leaves in its termination message,
//!   bounded like the run report, and [`SearchRecord`], the whole search kept in the run history.
//!
//! Every parameter is an object with either `values` (a list) or `min`/`max` (a range, `scale`
//! `linear` or `log`), never a bare list, so the CRD's schema stays structural:
//!
//! ```yaml
//! space:
//!   algorithm: [svd]
//!   lrAll: {min: 0.002, max: 0.02, scale: log}
//!   regAll: {values: [0.02, 0.05, 0.1]}
//!   factors: {values: [50, 100]}
//! ```

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::{BASELINE, SVD};

pub mod plan;
pub mod result;

pub use plan::{
    MAX_PLAN_BYTES, TrialParams, TrialPlan, WARM_POINTS, halving_rungs, next_rung, plan,
    space_fingerprint, warm_budget,
};
pub use result::{
    MAX_PASSED_RECORD_BYTES, MAX_RECORD_BYTES, MAX_RESULT_BYTES, Score, SearchEnd, SearchRecord,
    TrialResult, best_of,
};

/// Bumped when a field of the plan, a result or the record changes meaning.
pub const TUNING_FORMAT: u32 = 1;

/// The largest `trials` budget: every trial is a pod and a line of the record.
pub const MAX_TRIALS: u32 = 500;
/// The most trials running at once.
pub const MAX_PARALLELISM: u32 = 64;
/// The longest `values` list of one parameter.
pub const MAX_VALUES: usize = 100;
/// The most epochs one trial may run.
pub const MAX_EPOCHS: u32 = 1000;
/// The most latent factors a trial may fit (the trainer's own limit).
pub const MAX_FACTORS: u32 = 10_000;

/// Defaults of the optional fields.
pub const DEFAULT_TRIALS: u32 = 20;
pub const DEFAULT_PARALLELISM: u32 = 2;
pub const DEFAULT_MIN_EPOCHS: u32 = 5;
pub const DEFAULT_MAX_EPOCHS: u32 = 45;
pub const DEFAULT_ETA: u32 = 3;

/// The algorithms a search may try.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Biased matrix factorisation by SGD (Surprise's SVD).
    #[default]
    Svd,
    /// Global mean + user and item biases by ALS (Surprise's BaselineOnly).
    Baseline,
}

impl Algorithm {
    /// `svd` or `baseline`, as the trainer's `--algorithm` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Svd => "svd",
            Self::Baseline => "baseline",
        }
    }

    /// The epochs the algorithm runs when the space does not say.
    pub fn default_epochs(self) -> u32 {
        match self {
            Self::Svd => SVD.epochs,
            Self::Baseline => BASELINE.epochs,
        }
    }
}

/// How the trials are chosen.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// `trials` points drawn from the space with the seed (every point of an all-list space, in
    /// a seeded order, when it has no more than `trials`).
    #[default]
    Random,
    /// Every combination of the lists, in order; the grid must fit in `trials`.
    Grid,
    /// Successive halving over epochs: random points at `minEpochs`, the best 1/`eta` of each
    /// rung retrained with `eta` times the epochs, up to `maxEpochs`.
    Halving,
}

/// The cross-validated measure a search minimises.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
    #[default]
    CvRmse,
    CvMae,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CvRmse => "cvRmse",
            Self::CvMae => "cvMae",
        }
    }
}

/// How a range is sampled.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Uniform between `min` and `max`.
    #[default]
    Linear,
    /// Uniform in the logarithm: as many draws between 0.001 and 0.01 as between 0.01 and 0.1.
    Log,
}

/// One hyperparameter's values: either `values` or `min` and `max`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Values {
    /// The values to try.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
    /// The range's lower bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The range's upper bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// How the range is sampled; ranges only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
}

impl Values {
    pub fn list(values: &[f64]) -> Self {
        Self {
            values: values.to_vec(),
            ..Self::default()
        }
    }

    pub fn range(min: f64, max: f64, scale: Scale) -> Self {
        Self {
            min: Some(min),
            max: Some(max),
            scale: Some(scale),
            ..Self::default()
        }
    }

    /// The form, once [`TuningSpec::validate`] has accepted it.
    pub(crate) fn domain(&self) -> Domain<'_> {
        match (self.min, self.max) {
            (Some(min), Some(max)) => Domain::Range {
                min,
                max,
                scale: self.scale.unwrap_or_default(),
            },
            _ => Domain::List(&self.values),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Domain<'a> {
    List(&'a [f64]),
    Range { min: f64, max: f64, scale: Scale },
}

/// The search space. A parameter left out keeps the trainer's default; one of an algorithm the
/// space does not list is an error.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchSpace {
    /// The algorithms to try.
    #[serde(default = "default_algorithms")]
    pub algorithm: Vec<Algorithm>,
    /// Passes over the training data (both algorithms); not with `halving`, which sets the
    /// epochs itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<Values>,
    /// SVD: latent factors (an integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factors: Option<Values>,
    /// SVD: learning rate of every parameter (unless `lrBu` etc. are searched too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_all: Option<Values>,
    /// SVD: regularisation of every parameter (unless `regBu` etc. are searched too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_all: Option<Values>,
    /// SVD: standard deviation of the initial factors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_bu: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_bi: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_pu: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_qi: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_bu: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_bi: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_pu: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_qi: Option<Values>,
    /// Baseline: user bias regularisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_u: Option<Values>,
    /// Baseline: item bias regularisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_i: Option<Values>,
}

impl SearchSpace {
    /// The parameter named `name` (`lrAll`, as in the spec), to set or read.
    pub fn param_mut(&mut self, name: &str) -> Option<&mut Option<Values>> {
        let param = PARAMS.iter().find(|p| p.name == name)?;
        Some((param.space)(self))
    }

    /// The names of the searchable parameters, in the order tables list them.
    pub fn param_names() -> impl Iterator<Item = &'static str> {
        PARAMS.iter().map(|p| p.name)
    }
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::Svd]
}

impl Default for SearchSpace {
    fn default() -> Self {
        Self {
            algorithm: default_algorithms(),
            epochs: None,
            factors: None,
            lr_all: None,
            reg_all: None,
            init_std: None,
            lr_bu: None,
            lr_bi: None,
            lr_pu: None,
            lr_qi: None,
            reg_bu: None,
            reg_bi: None,
            reg_pu: None,
            reg_qi: None,
            reg_u: None,
            reg_i: None,
        }
    }
}

/// What values a parameter may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A whole number from 1 to the bound.
    Count(u32),
    /// A number above 0.
    Positive,
    /// A number at or above 0.
    NonNegative,
}

/// One searchable parameter: its field name, which algorithm reads it, its kind, and where it is
/// in the space and in a [`Params`].
pub(crate) struct Param {
    pub name: &'static str,
    /// `None`: both algorithms.
    pub algorithm: Option<Algorithm>,
    pub kind: Kind,
    pub of: fn(&SearchSpace) -> Option<&Values>,
    pub space: fn(&mut SearchSpace) -> &mut Option<Values>,
    pub get: fn(&Params) -> Option<f64>,
    /// Where a drawn value goes (the whole numbers through a sampling slot, [`Params::settle`]).
    pub slot: fn(&mut Params) -> &mut Option<f64>,
}

macro_rules! param {
    ($name:literal, $field:ident, $alg:expr, $kind:expr) => {
        Param {
            name: $name,
            algorithm: $alg,
            kind: $kind,
            of: |s| s.$field.as_ref(),
            space: |s| &mut s.$field,
            get: |p| p.$field,
            slot: |p| &mut p.$field,
        }
    };
}

/// Every searchable parameter, in the order plans and tables list them. `epochs` and `factors`
/// are whole numbers held as `f64` while sampling, like the rest.
pub(crate) static PARAMS: [Param; 15] = {
    use Algorithm::{Baseline as B, Svd as S};
    use Kind::*;
    [
        Param {
            name: "epochs",
            algorithm: None,
            kind: Count(MAX_EPOCHS),
            of: |s| s.epochs.as_ref(),
            space: |s| &mut s.epochs,
            get: |p| Some(p.epochs as f64),
            slot: |p| &mut p.epochs_f,
        },
        Param {
            name: "factors",
            algorithm: Some(S),
            kind: Count(MAX_FACTORS),
            of: |s| s.factors.as_ref(),
            space: |s| &mut s.factors,
            get: |p| p.factors.map(f64::from),
            slot: |p| &mut p.factors_f,
        },
        param!("lrAll", lr_all, Some(S), Positive),
        param!("regAll", reg_all, Some(S), NonNegative),
        param!("initStd", init_std, Some(S), NonNegative),
        param!("lrBu", lr_bu, Some(S), Positive),
        param!("lrBi", lr_bi, Some(S), Positive),
        param!("lrPu", lr_pu, Some(S), Positive),
        param!("lrQi", lr_qi, Some(S), Positive),
        param!("regBu", reg_bu, Some(S), NonNegative),
        param!("regBi", reg_bi, Some(S), NonNegative),
        param!("regPu", reg_pu, Some(S), NonNegative),
        param!("regQi", reg_qi, Some(S), NonNegative),
        param!("regU", reg_u, Some(B), NonNegative),
        param!("regI", reg_i, Some(B), NonNegative),
    ]
};

/// One point of the space, fully resolved: the algorithm, its epochs, and every parameter that
/// algorithm reads (the searched ones at their drawn value, the others at the trainer's
/// default); the per-parameter SVD rates (`lrBu` …) only when searched, else they are `lrAll`.
/// Flat rather than one variant per algorithm, so it is a structural schema in the status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    pub algorithm: Algorithm,
    pub epochs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_all: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_all: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_bu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_bi: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_pu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_qi: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_bu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_bi: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_pu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_qi: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_u: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_i: Option<f64>,
    // Sampling slots for the two whole-number parameters; never serialised.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) epochs_f: Option<f64>,
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) factors_f: Option<f64>,
}

impl Params {
    /// The algorithm's defaults (the trainer's, `crate::defaults`).
    pub fn defaults(algorithm: Algorithm) -> Self {
        let mut p = Self {
            algorithm,
            epochs: algorithm.default_epochs(),
            ..Self::default()
        };
        match algorithm {
            Algorithm::Svd => {
                p.factors = Some(SVD.factors);
                p.lr_all = Some(SVD.lr_all);
                p.reg_all = Some(SVD.reg_all);
                p.init_std = Some(SVD.init_std);
            }
            Algorithm::Baseline => {
                p.reg_u = Some(BASELINE.reg_u);
                p.reg_i = Some(BASELINE.reg_i);
            }
        }
        p
    }

    /// Moves the whole-number slots into their fields.
    pub(crate) fn settle(mut self) -> Self {
        if let Some(e) = self.epochs_f.take() {
            self.epochs = e as u32;
        }
        if let Some(f) = self.factors_f.take() {
            self.factors = Some(f as u32);
        }
        self
    }

    /// The value of `param`, as the space sees it.
    pub(crate) fn value(&self, param: &Param) -> Option<f64> {
        (param.get)(self)
    }

    /// The trainer's flags for this point (`train`/`evaluate` take them as they are), so the
    /// final training runs exactly what the trial measured.
    pub fn train_args(&self) -> Vec<String> {
        let mut args = vec![
            "--algorithm".to_owned(),
            self.algorithm.as_str().to_owned(),
            "--epochs".to_owned(),
            self.epochs.to_string(),
        ];
        if let Some(f) = self.factors {
            args.extend(["--factors".to_owned(), f.to_string()]);
        }
        for p in &PARAMS[2..] {
            if let Some(v) = self.value(p) {
                args.push(format!("--{}", kebab(p.name)));
                args.push(v.to_string());
            }
        }
        args
    }
}

/// `lrAll` → `lr-all`.
fn kebab(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `name=value` pairs, as the trial table shows them.
impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} epochs={}", self.algorithm.as_str(), self.epochs)?;
        for p in &PARAMS[1..] {
            if let Some(v) = self.value(p) {
                write!(f, " {}={v}", p.name)?;
            }
        }
        Ok(())
    }
}

/// `spec.tuning`: a hyperparameter search.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TuningSpec {
    pub space: SearchSpace,
    #[serde(default)]
    pub strategy: Strategy,
    /// The budget: trial runs in all (with `halving`, every rung of every point counts).
    #[serde(default = "default_trials")]
    #[schemars(range(min = 1, max = 500))]
    pub trials: u32,
    /// No trial starts once the search has run this long (Go duration, e.g. `30m`); the ones
    /// running finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub time_limit: Option<String>,
    /// Trials running at once.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 64))]
    pub parallelism: u32,
    #[serde(default)]
    pub metric: Metric,
    /// Seeds the draws, the folds and the factor initialisation of every trial.
    #[serde(default)]
    pub seed: u64,
    /// `halving`: the epochs of the first rung [default 5].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_epochs: Option<u32>,
    /// `halving`: the epochs of the last rung [default 45].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<u32>,
    /// `halving`: each rung keeps the best 1/eta and gives them eta times the epochs [default 3].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<u32>,
}

fn default_trials() -> u32 {
    DEFAULT_TRIALS
}

fn default_parallelism() -> u32 {
    DEFAULT_PARALLELISM
}

/// A spec, plan, result or record that cannot be used, saying what and where.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TuningError {
    /// A field with a value that makes no sense; `path` is its path (`spec.tuning.space.lrAll.min`).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{what} is not valid JSON: {message}")]
    Json { what: &'static str, message: String },
    #[error("{what} is {bytes} bytes, over the {max} it may have")]
    TooLarge {
        what: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("{what} format {found} is newer than this reader understands ({TUNING_FORMAT})")]
    UnsupportedFormat { what: &'static str, found: u32 },
}

/// An [`TuningError::Invalid`]; an empty root (a spec file's own fields) leaves no leading dot.
/// `text` as JSON of at most `max` bytes whose format (read by `format`) this build knows.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &'static str,
    max: usize,
    format: fn(&T) -> u32,
) -> Result<T, TuningError> {
    if text.len() > max {
        return Err(TuningError::TooLarge {
            what,
            bytes: text.len(),
            max,
        });
    }
    let value: T = serde_json::from_str(text).map_err(|e| TuningError::Json {
        what,
        message: e.to_string(),
    })?;
    match format(&value) {
        found if found > TUNING_FORMAT => Err(TuningError::UnsupportedFormat { what, found }),
        _ => Ok(value),
    }
}

pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> TuningError {
    let path: String = path.into();
    TuningError::Invalid {
        path: path.strip_prefix('.').unwrap_or(&path).to_owned(),
        message: message.into(),
    }
}

/// Halving's settings with their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Halving {
    pub min_epochs: u32,
    pub max_epochs: u32,
    pub eta: u32,
}

impl TuningSpec {
    /// A random search of `space` with the defaults.
    pub fn new(space: SearchSpace) -> Self {
        Self {
            space,
            strategy: Strategy::Random,
            trials: DEFAULT_TRIALS,
            time_limit: None,
            parallelism: DEFAULT_PARALLELISM,
            metric: Metric::CvRmse,
            seed: 0,
            min_epochs: None,
            max_epochs: None,
            eta: None,
        }
    }

    /// Halving's settings (defaults filled in); `None` for the other strategies.
    pub fn halving(&self) -> Option<Halving> {
        (self.strategy == Strategy::Halving).then(|| Halving {
            min_epochs: self.min_epochs.unwrap_or(DEFAULT_MIN_EPOCHS),
            max_epochs: self.max_epochs.unwrap_or(DEFAULT_MAX_EPOCHS),
            eta: self.eta.unwrap_or(DEFAULT_ETA),
        })
    }

    /// `timeLimit` as a duration (after [`Self::validate`]).
    pub fn time_limit(&self) -> Option<Duration> {
        let text = self.time_limit.as_deref()?;
        parse_duration(text)
    }

    /// Checks everything a plan relies on; errors name the field under `path` (the operator
    /// passes `spec.tuning`; `""` names the spec's own fields, `space.lrAll.min`).
    pub fn validate(&self, path: &str) -> Result<(), TuningError> {
        let space = format!("{path}.space");
        if self.space.algorithm.is_empty() {
            return Err(invalid(
                format!("{space}.algorithm"),
                "lists no algorithm (svd, baseline)",
            ));
        }
        for (i, a) in self.space.algorithm.iter().enumerate() {
            if self.space.algorithm[..i].contains(a) {
                return Err(invalid(
                    format!("{space}.algorithm[{i}]"),
                    format!("{} is listed twice", a.as_str()),
                ));
            }
        }
        for p in &PARAMS {
            if let Some(values) = (p.of)(&self.space) {
                let at = format!("{space}.{}", p.name);
                if let Some(alg) = p.algorithm
                    && !self.space.algorithm.contains(&alg)
                {
                    return Err(invalid(
                        at,
                        format!(
                            "is a {} parameter, but {space}.algorithm does not list {}",
                            alg.as_str(),
                            alg.as_str()
                        ),
                    ));
                }
                check_values(&at, p.kind, values)?;
                if self.strategy == Strategy::Grid && values.values.is_empty() {
                    return Err(invalid(
                        at,
                        "grid needs a list of values (`values`), not a range",
                    ));
                }
            }
        }
        if !(1..=MAX_TRIALS).contains(&self.trials) {
            return Err(invalid(
                format!("{path}.trials"),
                format!("must be from 1 to {MAX_TRIALS}, got {}", self.trials),
            ));
        }
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(invalid(
                format!("{path}.parallelism"),
                format!(
                    "must be from 1 to {MAX_PARALLELISM}, got {}",
                    self.parallelism
                ),
            ));
        }
        if let Some(text) = &self.time_limit {
            match parse_duration(text) {
                Some(d) if d >= Duration::from_secs(1) => {}
                _ => {
                    return Err(invalid(
                        format!("{path}.timeLimit"),
                        format!("{text:?} is not a duration of at least 1s, e.g. 30m or 1h30m"),
                    ));
                }
            }
        }
        self.validate_strategy(path)
    }

    fn validate_strategy(&self, path: &str) -> Result<(), TuningError> {
        let halving_fields = [
            ("minEpochs", self.min_epochs),
            ("maxEpochs", self.max_epochs),
            ("eta", self.eta),
        ];
        let Some(h) = self.halving() else {
            if let Some((name, _)) = halving_fields.iter().find(|(_, v)| v.is_some()) {
                return Err(invalid(
                    format!("{path}.{name}"),
                    "is only used with strategy halving",
                ));
            }
            if self.strategy == Strategy::Grid {
                let points = plan::grid_size(&self.space);
                if points > self.trials as u64 {
                    return Err(invalid(
                        format!("{path}.trials"),
                        format!(
                            "the grid has {points} points, over the budget of {} trials: raise \
                             trials or shorten a list",
                            self.trials
                        ),
                    ));
                }
            }
            return Ok(());
        };
        if self.space.epochs.is_some() {
            return Err(invalid(
                format!("{path}.space.epochs"),
                "halving sets the epochs itself: use minEpochs and maxEpochs",
            ));
        }
        if !(1..=MAX_EPOCHS).contains(&h.min_epochs) {
            return Err(invalid(
                format!("{path}.minEpochs"),
                format!("must be from 1 to {MAX_EPOCHS}, got {}", h.min_epochs),
            ));
        }
        if !(h.min_epochs..=MAX_EPOCHS).contains(&h.max_epochs) {
            return Err(invalid(
                format!("{path}.maxEpochs"),
                format!(
                    "must be from minEpochs ({}) to {MAX_EPOCHS}, got {}",
                    h.min_epochs, h.max_epochs
                ),
            ));
        }
        if !(2..=10).contains(&h.eta) {
            return Err(invalid(
                format!("{path}.eta"),
                format!("must be from 2 to 10, got {}", h.eta),
            ));
        }
        let rungs = halving_rungs(h).len();
        let least = plan::halving_cost(h.eta as usize, h).1;
        if (self.trials as usize) < least {
            return Err(invalid(
                format!("{path}.trials"),
                format!(
                    "{} trials cannot run {rungs} rungs of halving with eta {}: it needs at \
                     least {least} (eta points through every rung)",
                    self.trials, h.eta
                ),
            ));
        }
        Ok(())
    }

    /// Whether `params` is a point of this space (and, for halving, at one of its rungs'
    /// epochs): what a trial checks before it trusts a plan.
    pub fn contains(&self, params: &Params) -> Result<(), String> {
        if !self.space.algorithm.contains(&params.algorithm) {
            return Err(format!(
                "algorithm {} is not in the space",
                params.algorithm.as_str()
            ));
        }
        if let Some(h) = self.halving()
            && !halving_rungs(h).contains(&params.epochs)
        {
            return Err(format!(
                "epochs {} is not one of the halving rungs {:?}",
                params.epochs,
                halving_rungs(h)
            ));
        }
        for p in &PARAMS {
            if p.algorithm.is_some_and(|a| a != params.algorithm) {
                if params.value(p).is_some() {
                    return Err(format!(
                        "{} is not a parameter of {}",
                        p.name,
                        params.algorithm.as_str()
                    ));
                }
                continue;
            }
            let (Some(values), Some(v)) = ((p.of)(&self.space), params.value(p)) else {
                continue;
            };
            let inside = match values.domain() {
                Domain::List(list) => list.contains(&v),
                Domain::Range { min, max, .. } => (min..=max).contains(&v),
            };
            if !inside {
                return Err(format!("{}={v} is outside the space", p.name));
            }
        }
        Ok(())
    }
}

fn check_values(at: &str, kind: Kind, values: &Values) -> Result<(), TuningError> {
    let check = |path: String, v: f64| -> Result<(), TuningError> {
        let ok = v.is_finite()
            && match kind {
                Kind::Count(max) => v.fract() == 0.0 && v >= 1.0 && v <= max as f64,
                Kind::Positive => v > 0.0,
                Kind::NonNegative => v >= 0.0,
            };
        if ok {
            return Ok(());
        }
        let want = match kind {
            Kind::Count(max) => format!("a whole number from 1 to {max}"),
            Kind::Positive => "a number above 0".to_owned(),
            Kind::NonNegative => "a number at or above 0".to_owned(),
        };
        Err(invalid(path, format!("must be {want}, got {v}")))
    };
    match (values.values.is_empty(), values.min, values.max) {
        (false, None, None) => {
            if values.scale.is_some() {
                return Err(invalid(
                    format!("{at}.scale"),
                    "applies to a range (min, max), not to a list",
                ));
            }
            if values.values.len() > MAX_VALUES {
                return Err(invalid(
                    format!("{at}.values"),
                    format!("has {} values, more than {MAX_VALUES}", values.values.len()),
                ));
            }
            for (i, &v) in values.values.iter().enumerate() {
                check(format!("{at}.values[{i}]"), v)?;
                if values.values[..i].contains(&v) {
                    return Err(invalid(
                        format!("{at}.values[{i}]"),
                        format!("{v} is listed twice"),
                    ));
                }
            }
            Ok(())
        }
        (true, Some(min), Some(max)) => {
            check(format!("{at}.min"), min)?;
            check(format!("{at}.max"), max)?;
            if min > max {
                return Err(invalid(
                    format!("{at}.min"),
                    format!("{min} is above max ({max})"),
                ));
            }
            if values.scale == Some(Scale::Log) && min <= 0.0 {
                return Err(invalid(
                    format!("{at}.min"),
                    format!("a log scale needs a min above 0, got {min}"),
                ));
            }
            Ok(())
        }
        (false, _, _) => Err(invalid(
            at.to_owned(),
            "has both values and a range: give one",
        )),
        (true, None, None) => Err(invalid(
            at.to_owned(),
            "needs values (a list) or min and max (a range)",
        )),
        (true, None, Some(_)) => Err(invalid(format!("{at}.min"), "a range needs min and max")),
        (true, Some(_), None) => Err(invalid(format!("{at}.max"), "a range needs min and max")),
    }
}

/// A Go duration (`30m`, `1h30m`, `90s`).
fn parse_duration(text: &str) -> Option<Duration> {
    let d: jiff::SignedDuration = text.parse().ok()?;
    Duration::try_from(d).ok()
}

#[cfg(test)]
mod tests;
