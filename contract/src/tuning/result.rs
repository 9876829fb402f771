//! What trials report and what a search keeps.
//!
//! A trial pod writes its [`TrialResult`] as compact JSON to its termination-message path, like a
//! training run's report: at most [`MAX_RESULT_BYTES`], an over-long error message cut to fit.
//! The operator parses it with [`TrialResult::parse`], which refuses anything else, and checks it
//! against the plan's trial with [`TrialResult::check`] (a pod cannot claim another trial's
//! point). The whole search is a [`SearchRecord`] in the model's run history.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Metric, Params, TUNING_FORMAT, TrialParams, TuningError, TuningSpec, invalid, read_json,
};
use crate::report::{MAX_REPORT_BYTES, RunError};

/// Kubernetes truncates termination messages beyond this many bytes.
pub const MAX_RESULT_BYTES: usize = MAX_REPORT_BYTES;

/// The largest search record read: [`super::MAX_TRIALS`] results of at most
/// [`MAX_RESULT_BYTES`] each, and room for the spec.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// The largest record [`SearchRecord::to_bounded_json`] makes: the operator hands a search to
/// the run that trains its best point in a ConfigMap, which holds at most 1 MiB.
pub const MAX_PASSED_RECORD_BYTES: usize = 512 << 10;

/// Failed trials' messages are cut to this many bytes, then fewer, when a record is over its
/// bound: [`super::MAX_TRIALS`] trials with messages this short fit in
/// [`MAX_PASSED_RECORD_BYTES`].
const CUT_MESSAGE_BYTES: usize = 256;

/// A trial's cross-validated scores (means over the folds).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Score {
    pub rmse: f64,
    pub mae: f64,
}

impl Score {
    pub fn of(&self, metric: Metric) -> f64 {
        match metric {
            Metric::CvRmse => self.rmse,
            Metric::CvMae => self.mae,
        }
    }
}

/// One trial's outcome: scored, or failed with the reason the trainer gives (`Diverged`,
/// `InvalidData`, …, or the operator's `OOMKilled` for a pod that left no result).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrialResult {
    pub format: u32,
    pub index: u32,
    pub config: u32,
    #[serde(default)]
    pub rung: u32,
    pub params: Params,
    /// Present when the trial scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
    /// Wall seconds of the trial (loading the data included).
    pub seconds: f64,
    /// Present when the trial failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

impl TrialResult {
    pub fn scored(trial: &TrialParams, score: Score, seconds: f64) -> Self {
        Self {
            score: Some(score),
            ..Self::of(trial, seconds)
        }
    }

    pub fn failed(trial: &TrialParams, error: RunError, seconds: f64) -> Self {
        Self {
            error: Some(error),
            ..Self::of(trial, seconds)
        }
    }

    fn of(trial: &TrialParams, seconds: f64) -> Self {
        Self {
            format: TUNING_FORMAT,
            index: trial.index,
            config: trial.config,
            rung: trial.rung,
            params: trial.params.clone(),
            score: None,
            seconds,
            error: None,
        }
    }

    /// The metric's value, when the trial scored.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        self.score.map(|s| s.of(metric))
    }

    /// Compact JSON of at most [`MAX_RESULT_BYTES`]; an over-long error message is cut (on a
    /// character boundary) so Kubernetes never truncates the JSON itself.
    pub fn to_json(&self) -> String {
        let mut result = self.clone();
        loop {
            let json = serde_json::to_string(&result).expect("a result is plain data");
            let excess = json.len().saturating_sub(MAX_RESULT_BYTES);
            let Some(error) = result.error.as_mut().filter(|_| excess > 0) else {
                return json;
            };
            if error.message.is_empty() {
                return json;
            }
            let mut cut = error.message.len().saturating_sub(excess + 8);
            while !error.message.is_char_boundary(cut) {
                cut -= 1;
            }
            error.message.truncate(cut);
            error.message.push('…');
        }
    }

    /// Reads a trial's termination message, refusing anything but one well-formed result: more
    /// than [`MAX_RESULT_BYTES`], unknown fields, a newer format, both or neither of a score and
    /// an error, or a score that is not a finite non-negative number.
    pub fn parse(text: &str) -> Result<Self, TuningError> {
        let result: Self = read_json(
            text.trim(),
            "the trial result",
            MAX_RESULT_BYTES,
            |r: &Self| r.format,
        )?;
        let path = format!("trial {}", result.index);
        match (&result.score, &result.error) {
            (Some(s), None) => {
                for (name, v) in [("rmse", s.rmse), ("mae", s.mae)] {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(invalid(
                            format!("{path}.score.{name}"),
                            format!("{v} is not a finite error"),
                        ));
                    }
                }
            }
            (None, Some(_)) => {}
            (Some(_), Some(_)) => {
                return Err(invalid(path, "has both a score and an error"));
            }
            (None, None) => return Err(invalid(path, "has neither a score nor an error")),
        }
        if !(result.seconds.is_finite() && result.seconds >= 0.0) {
            return Err(invalid(
                format!("{path}.seconds"),
                format!("{} is not a duration", result.seconds),
            ));
        }
        Ok(result)
    }

    /// Refuses a result that is not `trial`'s: another index, rung or point.
    pub fn check(&self, trial: &TrialParams) -> Result<(), TuningError> {
        let path = format!("trial {}", trial.index);
        if (self.index, self.config, self.rung) != (trial.index, trial.config, trial.rung) {
            return Err(invalid(
                path,
                format!(
                    "the result is of trial {} (point {}, rung {}), not of point {} at rung {}",
                    self.index, self.config, self.rung, trial.config, trial.rung
                ),
            ));
        }
        if self.params != trial.params {
            return Err(invalid(
                format!("{path}.params"),
                format!(
                    "the result's point ({}) is not the plan's ({})",
                    self.params, trial.params
                ),
            ));
        }
        Ok(())
    }
}

/// The best result: the lowest metric of all the scored trials, ties to the lower index. A
/// halving trial's epochs are part of its point, and its score that point's full
/// cross-validation, so an earlier rung's trial competes as it is: more epochs can overfit (on
/// ml-100k 30 epochs beat 90 at the same rates).
pub fn best_of(metric: Metric, results: &[TrialResult]) -> Option<&TrialResult> {
    results
        .iter()
        .filter_map(|r| Some((r, r.value(metric)?)))
        .min_by(|(a, x), (b, y)| x.total_cmp(y).then(a.index.cmp(&b.index)))
        .map(|(r, _)| r)
}

/// Why a search stopped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchEnd {
    /// Every planned trial ran.
    Completed,
    /// `timeLimit` passed with trials not started.
    TimeLimit,
}

/// A whole search, as the model's run history keeps it and `tune --out` writes it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchRecord {
    pub format: u32,
    /// [`super::space_fingerprint`] of `spec`: a next search with the same one starts warm.
    pub fingerprint: String,
    pub spec: TuningSpec,
    /// Started from a previous search's results.
    #[serde(default)]
    pub warm: bool,
    pub end: SearchEnd,
    /// Wall seconds of the whole search.
    pub seconds: f64,
    /// Every trial that ran, in index order, failed ones included.
    pub trials: Vec<TrialResult>,
    /// [`best_of`] the trials; absent when none scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<TrialResult>,
    /// Trials left out of `trials` to keep the record within its bound (the worst ones; see
    /// [`SearchRecord::to_bounded_json`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Cuts `message` to at most `bytes` bytes on a character boundary, marking the cut.
fn cut_message(message: &mut String, bytes: usize) {
    if message.len() <= bytes {
        return;
    }
    let mut cut = bytes.saturating_sub('…'.len_utf8());
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push('…');
}

impl SearchRecord {
    pub fn new(
        spec: TuningSpec,
        warm: bool,
        end: SearchEnd,
        seconds: f64,
        mut trials: Vec<TrialResult>,
    ) -> Self {
        trials.sort_by_key(|t| t.index);
        let best = best_of(spec.metric, &trials).cloned();
        Self {
            format: TUNING_FORMAT,
            fingerprint: super::space_fingerprint(&spec),
            spec,
            warm,
            end,
            seconds,
            trials,
            best,
            omitted: 0,
        }
    }

    /// Compact JSON of at most `max` bytes: failed trials' messages are cut first (to
    /// [`CUT_MESSAGE_BYTES`], then halved down to nothing), then the worst trials are left out
    /// (failed ones first, then the highest scores), counted in `omitted`; `best` always stays.
    pub fn to_bounded_json(&self, max: usize) -> String {
        let json = |r: &Self| serde_json::to_string(r).expect("a record is plain data");
        let mut record = self.clone();
        let mut text = json(&record);
        let mut bytes = CUT_MESSAGE_BYTES;
        while text.len() > max && bytes > 0 {
            for trial in &mut record.trials {
                if let Some(error) = &mut trial.error {
                    cut_message(&mut error.message, bytes);
                }
            }
            text = json(&record);
            bytes /= 2;
        }
        if text.len() <= max {
            return text;
        }
        // Best first, so the worst are at the end to drop.
        let metric = record.spec.metric;
        record
            .trials
            .sort_by(|a, b| match (a.value(metric), b.value(metric)) {
                (Some(x), Some(y)) => x.total_cmp(&y).then(a.index.cmp(&b.index)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.index.cmp(&b.index),
            });
        while text.len() > max && !record.trials.is_empty() {
            // Roughly what is over, in trials of the average size, at least one.
            let average = text.len() / (record.trials.len() + 1);
            let drop = ((text.len() - max) / average.max(1)).clamp(1, record.trials.len());
            record.trials.truncate(record.trials.len() - drop);
            record.omitted += drop as u32;
            text = json(&record);
        }
        record.trials.sort_by_key(|t| t.index);
        json(&record)
    }

    /// Trials that failed.
    pub fn failed(&self) -> usize {
        self.trials.iter().filter(|t| t.error.is_some()).count()
    }

    /// Reads a record, refusing an oversized or malformed one, a newer format, or one whose
    /// fingerprint is not its spec's (edited by hand: its results would not warm the space it
    /// claims).
    pub fn parse(text: &str) -> Result<Self, TuningError> {
        let record: Self = read_json(text, "the search record", MAX_RECORD_BYTES, |r: &Self| {
            r.format
        })?;
        record.spec.validate("record.spec")?;
        let fingerprint = super::space_fingerprint(&record.spec);
        if record.fingerprint != fingerprint {
            return Err(invalid(
                "record.fingerprint",
                format!("{} is not its spec's ({fingerprint})", record.fingerprint),
            ));
        }
        Ok(record)
    }

    /// The results a new search of `spec` starts from: this record's trials when the search
    /// space is unchanged, none otherwise.
    pub fn warm_for(&self, spec: &TuningSpec) -> &[TrialResult] {
        if self.fingerprint == super::space_fingerprint(spec) {
            &self.trials
        } else {
            &[]
        }
    }
}
