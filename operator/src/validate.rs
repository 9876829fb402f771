//! The validate stage: turns a spec into the typed values the decision uses, once. The schema
//! already rejects what it can; this re-checks what the decision relies on (objects stored before
//! a schema change, or rules CEL cannot express), so a bad spec becomes one condition naming the
//! field instead of a half-made decision.

mod platform;
mod rollout;

pub use rollout::{MAX_STEPS, Rollout, Stage, Step};

use crate::crd::{
    Algorithm, FileSource, PostgresSource, RatingScale, RecommenderModelSpec, TrainerSettings,
};
use crate::time::parse_go_duration;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use recommender_contract::defaults::{self, BASELINE, SVD};
use recommender_contract::tuning::{TuningError, TuningSpec};
use std::time::Duration;

/// A spec that passed validation, with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: SourceConfig,
    pub training: Training,
    /// The serving model turns stale this long after it was trained.
    pub max_age: Duration,
    /// Retrain at least this often, whatever the model's age.
    pub retrain_interval: Option<Duration>,
    /// The p99 server latency the predictors should stay under.
    pub latency_objective: Duration,
    /// `Stale` (reason `NewData`) at this many ratings after the serving model's snapshot.
    pub max_new_ratings: Option<NewRatingsLimit>,
    /// Forward evaluation of the serving model, when asked for.
    pub forward: Option<Forward>,
    /// Under `spec.rollout.strategy: Progressive`, how candidates are rolled out; `None`
    /// promotes at the gate.
    pub rollout: Option<Rollout>,
}

/// `freshness.maxNewRatings`: a count, or a share of the snapshot's ratings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NewRatingsLimit {
    Count(u64),
    /// Percent of the snapshot's rows, e.g. 10.0.
    Percent(f64),
}

impl NewRatingsLimit {
    /// The count that makes a snapshot of `rows` ratings stale (at least 1).
    pub fn threshold(self, rows: u64) -> u64 {
        match self {
            Self::Count(n) => n.max(1),
            Self::Percent(p) => ((rows as f64 * p / 100.0).ceil() as u64).max(1),
        }
    }
}

impl std::fmt::Display for NewRatingsLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `freshness.forwardEvaluation`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub min_ratings: u64,
    pub interval: Duration,
    pub max_rmse_increase: f64,
    pub retrain_when_degraded: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Postgres(PostgresSource),
    File(FileSource),
}

/// What a training run is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Training {
    pub hyperparameters: Hyperparameters,
    pub folds: u32,
    pub seed: Option<u64>,
    pub rating_scale: Option<RatingScale>,
    /// `--fit-threads` of runs and trials: [`fit_threads`].
    pub fit_threads: u32,
}

/// Hyperparameters resolved against `recommender_contract::defaults`, per algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hyperparameters {
    Svd(defaults::Svd),
    Baseline(defaults::Baseline),
}

impl Hyperparameters {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Svd(_) => Algorithm::Svd,
            Self::Baseline(_) => Algorithm::Baseline,
        }
    }
}

/// Why a spec cannot be acted on: each problem names its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

pub fn validate(spec: &RecommenderModelSpec) -> Result<Config, Invalid> {
    let mut problems = Vec::new();
    let mut problem = |field: &'static str, message: String| {
        problems.push(Problem { field, message });
    };
    let source = source(spec, &mut problem);
    let max_age = duration(
        &spec.freshness.max_age,
        Duration::from_secs(1),
        "spec.freshness.maxAge",
        &mut problem,
    );
    let retrain_interval = spec.freshness.retrain_interval.as_deref().map(|text| {
        duration(
            text,
            Duration::from_secs(60),
            "spec.freshness.retrainInterval",
            &mut problem,
        )
    });
    if let Some(tuning) = &spec.tuning {
        tuning_spec(tuning, &mut problem);
    }
    platform::pod_settings(spec, &mut problem);
    platform::autoscaling(spec, &mut problem);
    platform::tls(spec, &mut problem);
    platform::model_store(spec, &mut problem);
    let max_new_ratings = spec
        .freshness
        .max_new_ratings
        .as_ref()
        .and_then(|limit| new_ratings_limit(limit, &mut problem));
    let forward = spec.freshness.forward_evaluation.as_ref().and_then(|f| {
        let interval = duration(
            &f.interval,
            Duration::from_secs(60),
            "spec.freshness.forwardEvaluation.interval",
            &mut problem,
        )?;
        Some(Forward {
            min_ratings: f.min_ratings.max(1),
            interval,
            max_rmse_increase: f.max_rmse_increase,
            retrain_when_degraded: f.retrain_when_degraded,
        })
    });
    let rollout = if spec.rollout.progressive() {
        rollout::rollout(&spec.rollout, &mut problem)
    } else {
        None
    };
    let latency_objective = duration(
        &spec.predictor.latency_objective,
        Duration::from_nanos(1),
        "spec.predictor.latencyObjective",
        &mut problem,
    );
    match (source, max_age, retrain_interval, latency_objective) {
        (Some(source), Some(max_age), interval, Some(latency_objective)) if problems.is_empty() => {
            Ok(Config {
                source,
                training: training(spec),
                max_age,
                retrain_interval: interval.flatten(),
                latency_objective,
                max_new_ratings,
                forward,
                rollout,
            })
        }
        _ => Err(Invalid { problems }),
    }
}

/// What the schema cannot check of `spec.tuning` (a grid that does not fit the budget, a range
/// with its bounds swapped, ...), by the contract's own check, naming the field under it.
fn tuning_spec(tuning: &TuningSpec, problem: &mut impl FnMut(&'static str, String)) {
    const FIELD: &str = "spec.tuning";
    match tuning.validate(FIELD) {
        Ok(()) => {}
        Err(TuningError::Invalid { path, message }) => {
            let under = path.strip_prefix("spec.tuning.").unwrap_or(&path);
            problem(FIELD, format!("{under}: {message}"));
        }
        Err(other) => problem(FIELD, other.to_string()),
    }
}

fn source(
    spec: &RecommenderModelSpec,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<SourceConfig> {
    match (&spec.source.postgres, &spec.source.file) {
        (Some(pg), None) => {
            if pg.query.trim().is_empty() {
                problem("spec.source.postgres.query", "must not be blank".into());
                return None;
            }
            Some(SourceConfig::Postgres(pg.clone()))
        }
        (None, Some(file)) => {
            if file.path.starts_with('/') || file.path.split('/').any(|p| p == "..") {
                problem(
                    "spec.source.file.path",
                    format!(
                        "{:?} must be relative to the model store and must not contain '..'",
                        file.path
                    ),
                );
                return None;
            }
            Some(SourceConfig::File(file.clone()))
        }
        _ => {
            problem(
                "spec.source",
                "exactly one of spec.source.postgres or spec.source.file must be set".into(),
            );
            None
        }
    }
}

fn duration(
    text: &str,
    minimum: Duration,
    field: &'static str,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<Duration> {
    match parse_go_duration(text) {
        Some(d) if d >= minimum => Some(d),
        Some(_) => {
            problem(
                field,
                format!("{text:?} is shorter than the minimum {minimum:?}"),
            );
            None
        }
        None => {
            problem(
                field,
                format!("{text:?} is not a duration such as 168h or 90m"),
            );
            None
        }
    }
}

fn new_ratings_limit(
    limit: &IntOrString,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<NewRatingsLimit> {
    const FIELD: &str = "spec.freshness.maxNewRatings";
    match limit {
        IntOrString::Int(n) if *n >= 1 => Some(NewRatingsLimit::Count(*n as u64)),
        IntOrString::Int(n) => {
            problem(FIELD, format!("{n} must be at least 1"));
            None
        }
        IntOrString::String(text) => {
            let percent = text
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .filter(|p| p.is_finite() && *p > 0.0 && *p <= 1000.0);
            match (percent, text.trim().parse::<u64>()) {
                (Some(p), _) => Some(NewRatingsLimit::Percent(p)),
                (None, Ok(n)) if n >= 1 => Some(NewRatingsLimit::Count(n)),
                _ => {
                    problem(
                        FIELD,
                        format!("{text:?} is neither a count nor a percentage such as \"10%\""),
                    );
                    None
                }
            }
        }
    }
}

fn training(spec: &RecommenderModelSpec) -> Training {
    let h = &spec.hyperparameters;
    let hyperparameters = match spec.algorithm {
        Algorithm::Svd => Hyperparameters::Svd(defaults::Svd {
            factors: h.factors,
            epochs: h.epochs.unwrap_or(SVD.epochs),
            lr_all: h.lr_all,
            reg_all: h.reg_all,
            init_mean: h.init_mean,
            init_std: h.init_std,
            biased: h.biased,
        }),
        Algorithm::Baseline => Hyperparameters::Baseline(defaults::Baseline {
            epochs: h.epochs.unwrap_or(BASELINE.epochs),
            reg_u: h.reg_u.unwrap_or(BASELINE.reg_u),
            reg_i: h.reg_i.unwrap_or(BASELINE.reg_i),
        }),
    };
    Training {
        hyperparameters,
        folds: spec.folds,
        seed: spec.seed,
        rating_scale: h.rating_scale,
        fit_threads: fit_threads(&spec.trainer),
    }
}

/// The trainer's `--fit-threads`: `spec.trainer.fitThreads`, else the whole cores of the
/// trainer's CPU limit (`1500m` is 1), else 1, at most the trainer's 256. Trials take the same
/// as the run whatever `trialResources` says: a fit on more threads is another model, and the
/// run must measure what its search's trial did.
pub fn fit_threads(trainer: &TrainerSettings) -> u32 {
    const MAX: u32 = 256;
    if let Some(n) = trainer.fit_threads {
        return n.clamp(1, MAX);
    }
    let limit = trainer
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("cpu"));
    limit
        .and_then(|q| whole_cores(&q.0))
        .map_or(1, |n| n.clamp(1, MAX))
}

/// The whole cores of a CPU quantity as Kubernetes writes them (`2`, `0.5`, `1500m`); `None` for
/// another form, which then counts as no limit.
fn whole_cores(quantity: &str) -> Option<u32> {
    let cores = match quantity.strip_suffix('m') {
        Some(millis) => millis.parse::<f64>().ok()? / 1000.0,
        None => quantity.parse::<f64>().ok()?,
    };
    (cores.is_finite() && cores >= 0.0).then(|| cores.floor().min(u32::MAX as f64) as u32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(yaml: &str) -> RecommenderModelSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    const FILE: &str = "source: {file: {path: movies/u.data}}\nmodelStore: {claimName: models}\n";

    #[test]
    fn a_minimal_spec_resolves_to_the_defaults_table() {
        let config = validate(&spec(FILE)).unwrap();
        assert_eq!(config.training.hyperparameters, Hyperparameters::Svd(SVD));
        assert_eq!(config.training.folds, defaults::FOLDS);
        assert_eq!(config.max_age, Duration::from_secs(168 * 3600));
        assert_eq!(config.retrain_interval, None);
        assert_eq!(config.latency_objective, Duration::from_millis(5));

        let baseline = validate(&spec(&format!("{FILE}algorithm: baseline\n"))).unwrap();
        assert_eq!(
            baseline.training.hyperparameters,
            Hyperparameters::Baseline(BASELINE),
            "a baseline model trains Surprise's 10 epochs, not SVD's 20"
        );
        let tuned = validate(&spec(&format!(
            "{FILE}algorithm: baseline\nhyperparameters: {{epochs: 3, regU: 5}}\n"
        )))
        .unwrap();
        assert_eq!(
            tuned.training.hyperparameters,
            Hyperparameters::Baseline(defaults::Baseline {
                epochs: 3,
                reg_u: 5.0,
                reg_i: BASELINE.reg_i
            })
        );
    }

    /// `fitThreads` when given, else the whole cores of the trainer's CPU limit, else 1.
    #[test]
    fn fit_threads_follow_the_spec_then_the_cpu_limit() {
        let threads = |trainer: &str| {
            validate(&spec(&format!(
                "{FILE}trainer: {trainer}
"
            )))
            .unwrap()
            .training
            .fit_threads
        };
        assert_eq!(validate(&spec(FILE)).unwrap().training.fit_threads, 1);
        for (limit, expected) in [("\"4\"", 4), ("\"2.5\"", 2), ("1500m", 1), ("500m", 1)] {
            let trainer = format!("{{resources: {{limits: {{cpu: {limit}}}}}}}");
            assert_eq!(threads(&trainer), expected, "{trainer}");
        }
        assert_eq!(
            threads("{resources: {requests: {cpu: \"8\"}}}"),
            1,
            "a request is no limit"
        );
        assert_eq!(
            threads("{fitThreads: 3, resources: {limits: {cpu: \"8\"}}}"),
            3,
            "the spec's wins"
        );
    }

    #[test]
    fn new_ratings_limits_are_counts_or_shares_of_the_snapshot() {
        let limit = |yaml: &str| {
            validate(&spec(&format!(
                "{FILE}freshness: {{maxNewRatings: {yaml}}}\n"
            )))
            .unwrap()
            .max_new_ratings
            .unwrap()
        };
        assert_eq!(limit("5000"), NewRatingsLimit::Count(5000));
        assert_eq!(limit("'5000'"), NewRatingsLimit::Count(5000));
        assert_eq!(limit("'2.5%'"), NewRatingsLimit::Percent(2.5));
        assert_eq!(limit("'2.5%'").threshold(100_000), 2500);
        assert_eq!(limit("'0.001%'").threshold(100), 1, "never zero");
        assert_eq!(limit("7").threshold(100_000), 7);
        assert_eq!(limit("'2.5%'").to_string(), "2.5%");
        let zero = validate(&spec(&format!("{FILE}freshness: {{maxNewRatings: 0}}\n")));
        assert_eq!(
            zero.unwrap_err().to_string(),
            "spec.freshness.maxNewRatings: 0 must be at least 1"
        );
        let forward = validate(&spec(&format!(
            "{FILE}freshness: {{forwardEvaluation: {{}}}}\n"
        )))
        .unwrap()
        .forward
        .unwrap();
        assert_eq!(
            (
                forward.min_ratings,
                forward.interval,
                forward.max_rmse_increase
            ),
            (100, Duration::from_secs(3600), 0.1)
        );
    }

    #[test]
    fn every_problem_names_its_field() {
        let mut bad = spec(FILE);
        bad.freshness.max_age = "7d".into();
        bad.freshness.retrain_interval = Some("10s".into());
        bad.source.file.as_mut().unwrap().path = "../etc/passwd".into();
        let invalid = validate(&bad).unwrap_err();
        let fields: Vec<_> = invalid.problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "spec.source.file.path",
                "spec.freshness.maxAge",
                "spec.freshness.retrainInterval"
            ]
        );
        let text = invalid.to_string();
        assert!(
            text.contains("spec.freshness.maxAge: \"7d\" is not a duration"),
            "{text}"
        );
        assert!(text.contains("shorter than the minimum 60s"), "{text}");

        let mut limits = spec(FILE);
        limits.freshness.max_new_ratings = Some(IntOrString::String("ten percent".into()));
        limits.freshness.forward_evaluation = Some(crate::crd::ForwardEvaluation {
            interval: "5s".into(),
            ..Default::default()
        });
        let invalid = validate(&limits).unwrap_err();
        let fields: Vec<_> = invalid.problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "spec.freshness.maxNewRatings",
                "spec.freshness.forwardEvaluation.interval"
            ]
        );

        let mut none = spec(FILE);
        none.source.file = None;
        assert_eq!(
            validate(&none).unwrap_err().problems[0].field,
            "spec.source"
        );
    }

    #[test]
    fn a_tuning_spec_is_checked_by_the_contract_naming_the_field() {
        let tuning = |yaml: &str| {
            validate(&spec(&format!(
                "{FILE}tuning: {yaml}
"
            )))
        };
        assert!(tuning("{space: {lrAll: {min: 0.002, max: 0.02, scale: log}}}").is_ok());
        let swapped = tuning("{space: {lrAll: {min: 0.02, max: 0.002}}}").unwrap_err();
        assert_eq!(
            swapped.to_string(),
            "spec.tuning: space.lrAll.min: 0.02 is above max (0.002)"
        );
        let grid = tuning(
            "{strategy: grid, trials: 3, space: {lrAll: {values: [0.005, 0.01]}, regAll: {values: [0.02, 0.1]}}}",
        )
        .unwrap_err();
        assert!(
            grid.to_string()
                .starts_with("spec.tuning: trials: the grid has 4 points"),
            "{grid}"
        );
        let baseline_only = tuning("{space: {algorithm: [baseline], factors: {values: [10]}}}")
            .unwrap_err()
            .to_string();
        assert!(
            baseline_only.starts_with("spec.tuning: space.factors: is a svd parameter"),
            "{baseline_only}"
        );
    }
}
