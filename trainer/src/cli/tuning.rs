//! `trial` (one trial of a plan, as a trial pod runs it) and `tune` (a whole search in this
//! process), both on `recommender_contract::tuning`'s plan (docs/tuning.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use recommender_contract::tuning::{
    Algorithm, MAX_PLAN_BYTES, MAX_RECORD_BYTES, Metric, Scale, SearchRecord, SearchSpace,
    Strategy, TrialPlan, TrialResult, TuningSpec, Values,
};
use recommender_trainer::Error;
use recommender_trainer::data::{Ratings, Selection};
use recommender_trainer::tune::{self, SearchEvent};
use serde::de::DeserializeOwned;

use super::{CvArgs, DataArgs, open_store};
use crate::progress::SearchProgress;

#[derive(Args, Debug)]
pub struct TrialArgs {
    /// The plan: JSON `{"spec": TuningSpec, "trials": [TrialParams, ...]}` (docs/tuning.md).
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Which of the plan's trials to run: its position in `trials` [default: the
    /// JOB_COMPLETION_INDEX an Indexed Job sets].
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub index: usize,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub cv: CvArgs,
    /// Where to write the trial's result (compact JSON of at most 4 KiB).
    #[arg(long, default_value = "/dev/termination-log")]
    pub report: PathBuf,
}

/// `trial`: exit 0 with a scored result, 1 with a failed one (both written to --report), 2 when
/// the plan or the index cannot be used (no result: no trial to attribute it to).
pub fn trial(a: TrialArgs) -> ExitCode {
    let plan = match read_bounded(&a.plan, MAX_PLAN_BYTES as u64)
        .and_then(|text| TrialPlan::parse(&text).map_err(|e| at(&a.plan, e)))
    {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let trial = match plan.trial(a.index) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", a.plan.display());
            return ExitCode::from(2);
        }
    };
    a.cv.init_pool();
    tracing::info!(index = trial.index, rung = trial.rung, params = %trial.params, "trial");
    let started = Instant::now();
    let cv = tune::trial_options(&plan.spec, &a.cv.options(plan.spec.seed));
    let mut result = match load(&a.data) {
        Ok(data) => tune::run_trial(&data, trial, &cv),
        Err(e) => TrialResult::failed(trial, e.to_run_error(), 0.0),
    };
    result.seconds = started.elapsed().as_secs_f64();
    if let Err(e) = std::fs::write(&a.report, result.to_json()) {
        tracing::warn!(path = %a.report.display(), error = %e, "cannot write the result");
    }
    match (&result.score, &result.error) {
        (Some(s), _) => {
            println!(
                "trial {} ({}): RMSE {:.4}, MAE {:.4} in {:.2} s",
                result.index, result.params, s.rmse, s.mae, result.seconds
            );
            ExitCode::SUCCESS
        }
        (None, e) => {
            if let Some(e) = e {
                eprintln!(
                    "error: trial {} failed: {}: {}",
                    result.index, e.reason, e.message
                );
            }
            ExitCode::from(1)
        }
    }
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub cv: CvArgs,
    #[command(flatten)]
    pub search: SearchArgs,
    /// A previous search's record (an earlier --out): when its search space is this one, its
    /// best points are tried first and the budget is a quarter of --trials.
    #[arg(long, value_name = "FILE")]
    pub warm: Option<PathBuf>,
    /// Write the search record (JSON: every trial and the best) here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the record as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The search, from a file and/or flags (a flag replaces the file's field).
#[derive(Args, Debug)]
#[command(next_help_heading = "Search")]
pub struct SearchArgs {
    /// The search as YAML or JSON: a `spec.tuning` (docs/tuning.md).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// A parameter's values, `NAME=V1,V2,...` (a list) or `NAME=MIN..MAX[:log]` (a range), NAME
    /// as in the spec (lrAll, regAll, factors, epochs, initStd, regU, regI, ...); repeat.
    #[arg(long = "param", value_name = "NAME=VALUES")]
    pub params: Vec<String>,
    /// Algorithms to try: svd, baseline (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_enum::<Algorithm>)]
    pub algorithm: Vec<Algorithm>,
    /// random, grid or halving.
    #[arg(long, value_parser = parse_enum::<Strategy>)]
    pub strategy: Option<Strategy>,
    /// The budget of trial runs.
    #[arg(long)]
    pub trials: Option<u32>,
    /// Start no trial after this long (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    pub time_limit: Option<String>,
    /// cvRmse or cvMae.
    #[arg(long, value_parser = parse_enum::<Metric>)]
    pub metric: Option<Metric>,
    /// Seeds the draws, the folds and every fit.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Halving: epochs of the first rung.
    #[arg(long)]
    pub min_epochs: Option<u32>,
    /// Halving: epochs of the last rung.
    #[arg(long)]
    pub max_epochs: Option<u32>,
    /// Halving: keep the best 1/eta of each rung, with eta times the epochs.
    #[arg(long)]
    pub eta: Option<u32>,
}

/// A contract enum from its spec spelling (`halving`, `cvMae`).
fn parse_enum<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| e.to_string())
}

impl SearchArgs {
    /// The spec, and the file its errors are in (the flags', `tune`).
    fn spec(&self) -> Result<(TuningSpec, String), Error> {
        let (mut spec, path) = match &self.spec {
            Some(file) => (read_spec(file)?, file.display().to_string()),
            None if self.params.is_empty() => {
                return Err(Error::Config(
                    "tune needs a search space: --spec FILE or --param NAME=VALUES".into(),
                ));
            }
            None => (TuningSpec::new(SearchSpace::default()), "tune".to_owned()),
        };
        if !self.algorithm.is_empty() {
            spec.space.algorithm = self.algorithm.clone();
        }
        for text in &self.params {
            let (name, values) = parse_param(text)?;
            let slot = spec.space.param_mut(&name).ok_or_else(|| {
                Error::Config(format!(
                    "--param {text}: no parameter {name:?} (one of {})",
                    SearchSpace::param_names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            *slot = Some(values);
        }
        let s = &mut spec;
        s.strategy = self.strategy.unwrap_or(s.strategy);
        s.trials = self.trials.unwrap_or(s.trials);
        s.metric = self.metric.unwrap_or(s.metric);
        s.seed = self.seed.unwrap_or(s.seed);
        s.time_limit = self.time_limit.clone().or(s.time_limit.take());
        s.min_epochs = self.min_epochs.or(s.min_epochs);
        s.max_epochs = self.max_epochs.or(s.max_epochs);
        s.eta = self.eta.or(s.eta);
        spec.validate("")
            .map_err(|e| Error::Config(format!("{path}: {e}")))?;
        Ok((spec, path))
    }
}

/// `lrAll=0.002..0.02:log` or `regAll=0.02,0.05,0.1`.
fn parse_param(text: &str) -> Result<(String, Values), Error> {
    let bad = |why: String| Error::Config(format!("--param {text}: {why}"));
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=VALUES".into()))?;
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| bad(format!("{s:?} is not a number")))
    };
    let values = match values.split_once("..") {
        Some((min, rest)) => {
            let (max, scale) = match rest.split_once(':') {
                Some((max, "log")) => (max, Scale::Log),
                Some((max, "linear")) => (max, Scale::Linear),
                Some((_, other)) => {
                    return Err(bad(format!("scale {other:?} is not log or linear")));
                }
                None => (rest, Scale::Linear),
            };
            Values::range(number(min)?, number(max)?, scale)
        }
        None => Values::list(
            &values
                .split(',')
                .map(number)
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok((name.trim().to_owned(), values))
}

/// `tune`: exit 0 when a trial scored, 1 when none did, 2 for usage.
pub fn tune(a: TuneArgs, tty: bool) -> ExitCode {
    let prepared = a.search.spec().and_then(|(spec, _)| {
        let warm = a.warm.as_deref().map(read_record).transpose()?;
        Ok((spec, warm))
    });
    let (spec, warm) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let warm_results = match &warm {
        Some(record) if record.warm_for(&spec).is_empty() => {
            eprintln!("note: the search space changed since the --warm record: a cold start");
            &[][..]
        }
        Some(record) => record.warm_for(&spec),
        None => &[][..],
    };
    a.cv.init_pool();
    let data = match load(&a.data) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let progress = SearchProgress::new(tty);
    let record = tune::search(
        &spec,
        &data,
        &a.cv.options(spec.seed),
        warm_results,
        &mut |event| match event {
            SearchEvent::Planned { runs } => progress.planned(runs),
            SearchEvent::Started(t) => progress.started(t),
            SearchEvent::Finished(r) => progress.finished(r, spec.metric),
        },
    );
    progress.finish();
    if let Some(out) = &a.out {
        let json = serde_json::to_string_pretty(&record).expect("a record is plain data");
        if let Err(e) = std::fs::write(out, json + "\n") {
            eprintln!("error: {}: {e}", out.display());
            return ExitCode::from(1);
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&record).expect("a record is plain data")
        );
    } else {
        print!("{}", tune::table(&record));
    }
    if record.best.is_some() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: no trial scored");
        ExitCode::from(1)
    }
}

fn load(data: &DataArgs) -> Result<Ratings, Error> {
    // Only a `store:KEY` source reads the store: a model's first search runs before any run
    // has created its folder there.
    let store = match data.source.starts_with("store:") {
        true => open_store(&data.store, false)?,
        false => None,
    };
    data.source(Selection::default(), store.as_ref())?.load()
}

/// A file of at most `max` bytes, as text.
fn read_bounded(path: &Path, max: u64) -> Result<String, Error> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > max {
        return Err(Error::Config(format!(
            "{}: {size} bytes, over the {max} it may have",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

fn at(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: {e}", path.display()))
}

/// A `TuningSpec` from YAML or JSON (JSON is YAML); errors say the line and column.
fn read_spec(path: &Path) -> Result<TuningSpec, Error> {
    let text = read_bounded(path, MAX_PLAN_BYTES as u64)?;
    serde_yaml::from_str(&text).map_err(|e| at(path, e))
}

pub(super) fn read_record(path: &Path) -> Result<SearchRecord, Error> {
    let text = read_bounded(path, MAX_RECORD_BYTES as u64)?;
    SearchRecord::parse(&text).map_err(|e| at(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_read_as_lists_or_ranges() {
        let (name, v) = parse_param("lrAll=0.002..0.02:log").unwrap();
        assert_eq!(
            (name.as_str(), v),
            ("lrAll", Values::range(0.002, 0.02, Scale::Log))
        );
        let (_, v) = parse_param("regAll=0.02,0.05").unwrap();
        assert_eq!(v, Values::list(&[0.02, 0.05]));
        let (_, v) = parse_param("factors=10..50").unwrap();
        assert_eq!(v, Values::range(10.0, 50.0, Scale::Linear));
        for (bad, says) in [
            ("lrAll", "expected NAME=VALUES"),
            ("lrAll=x", "\"x\" is not a number"),
            ("lrAll=1..2:ln", "scale \"ln\""),
        ] {
            let e = parse_param(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
