//! Hyperparameter search with the contract's plan (`recommender_contract::tuning`): one trial as
//! a trial pod runs it ([`run_trial`]) and a whole search in one process as `recommender-trainer
//! tune` runs it ([`search`]). Both take the same trials in the same order as the operator's
//! Indexed Jobs, so a search tried on a laptop is the search the cluster runs.

use std::time::Instant;

use recommender_contract::tuning::{
    self, Algorithm, Params, Score, SearchEnd, SearchRecord, TrialParams, TrialResult, TuningSpec,
};
use recommender_model::Hyperparameters;

use crate::baseline::BaselineParams;
use crate::cv::{CvOptions, cross_validate};
use crate::data::Ratings;
use crate::svd::SvdParams;
use crate::train;

/// The trainer's hyperparameters for a point; `seed` seeds the factor initialisation.
pub fn hyperparameters(p: &Params, seed: u64) -> Hyperparameters {
    match p.algorithm {
        Algorithm::Svd => {
            let d = SvdParams::default();
            let lr = p.lr_all.unwrap_or(d.lr_bu);
            let reg = p.reg_all.unwrap_or(d.reg_bu);
            Hyperparameters::Svd(SvdParams {
                n_factors: p.factors.map_or(d.n_factors, |f| f as usize),
                n_epochs: p.epochs as usize,
                init_std: p.init_std.unwrap_or(d.init_std),
                lr_bu: p.lr_bu.unwrap_or(lr),
                lr_bi: p.lr_bi.unwrap_or(lr),
                lr_pu: p.lr_pu.unwrap_or(lr),
                lr_qi: p.lr_qi.unwrap_or(lr),
                reg_bu: p.reg_bu.unwrap_or(reg),
                reg_bi: p.reg_bi.unwrap_or(reg),
                reg_pu: p.reg_pu.unwrap_or(reg),
                reg_qi: p.reg_qi.unwrap_or(reg),
                seed,
                ..d
            })
        }
        Algorithm::Baseline => {
            let d = BaselineParams::default();
            Hyperparameters::Baseline(BaselineParams {
                n_epochs: p.epochs as usize,
                reg_u: p.reg_u.unwrap_or(d.reg_u),
                reg_i: p.reg_i.unwrap_or(d.reg_i),
            })
        }
    }
}

/// Cross-validates one trial's point on `data`: its scores, or its failure with the trainer's
/// reason (`Diverged`, `InvalidConfiguration`, …). The fit is seeded with `cv.seed`.
pub fn run_trial(data: &Ratings, trial: &TrialParams, cv: &CvOptions) -> TrialResult {
    let t = Instant::now();
    let hp = hyperparameters(&trial.params, cv.seed);
    let scored = train::validate(&hp).and_then(|()| cross_validate(data, &hp, cv, &|_| {}));
    let seconds = t.elapsed().as_secs_f64();
    match scored {
        Ok(result) => {
            let m = result.metrics();
            TrialResult::scored(
                trial,
                Score {
                    rmse: m.rmse,
                    mae: m.mae,
                },
                seconds,
            )
        }
        Err(e) => TrialResult::failed(trial, e.to_run_error(), seconds),
    }
}

/// The cross-validation of a trial: `cv`'s folds and threads, seeded with the spec's seed, and
/// no ranking (a search compares rating errors).
pub fn trial_options(spec: &TuningSpec, cv: &CvOptions) -> CvOptions {
    CvOptions {
        seed: spec.seed,
        rank: false,
        ..cv.clone()
    }
}

/// What [`search`] tells its caller as it goes.
pub enum SearchEvent<'a> {
    /// A rung was planned; `runs` is the most trial runs the whole search can take now.
    Planned {
        runs: usize,
    },
    Started(&'a TrialParams),
    Finished(&'a TrialResult),
}

/// Runs the search `spec` (valid) on `data`, trial after trial, each cross-validated with `cv`
/// (its seed is the spec's), halving's rungs as each finishes, until the plan is done or
/// `timeLimit` has passed (no trial starts after it). `warm`: the previous search's results
/// when its space fingerprint is `spec`'s.
pub fn search(
    spec: &TuningSpec,
    data: &Ratings,
    cv: &CvOptions,
    warm: &[TrialResult],
    on: &mut dyn FnMut(SearchEvent),
) -> SearchRecord {
    let started = Instant::now();
    let limit = spec.time_limit();
    let cv = trial_options(spec, cv);
    let mut batch = tuning::plan(spec, warm);
    let warm_start = batch.first().is_some_and(|t| t.warm);
    let mut runs = rest_of_schedule(spec, &batch);
    on(SearchEvent::Planned { runs });
    let mut results: Vec<TrialResult> = Vec::with_capacity(runs);
    let mut end = SearchEnd::Completed;
    'rungs: while !batch.is_empty() {
        for trial in &batch {
            if limit.is_some_and(|l| started.elapsed() >= l) {
                end = SearchEnd::TimeLimit;
                break 'rungs;
            }
            on(SearchEvent::Started(trial));
            let result = run_trial(data, trial, &cv);
            on(SearchEvent::Finished(&result));
            results.push(result);
        }
        batch = tuning::next_rung(spec, &results);
        if !batch.is_empty() {
            // A rung where trials failed sends fewer on than the schedule allowed.
            runs = results.len() + rest_of_schedule(spec, &batch);
            on(SearchEvent::Planned { runs });
        }
    }
    SearchRecord::new(
        spec.clone(),
        warm_start,
        end,
        started.elapsed().as_secs_f64(),
        results,
    )
}

/// Trial runs from `batch` (one rung) to the end of the schedule.
fn rest_of_schedule(spec: &TuningSpec, batch: &[TrialParams]) -> usize {
    let Some(h) = spec.halving() else {
        return batch.len();
    };
    let rung = batch.first().map_or(0, |t| t.rung as usize);
    let rungs_left = tuning::halving_rungs(h).len().saturating_sub(rung);
    let (mut n, mut total) = (batch.len(), 0);
    for _ in 0..rungs_left {
        total += n;
        n = (n / h.eta as usize).max(1);
    }
    total
}

/// The trials of a search, best first (by the metric, failed trials last), the best marked
/// `*`, under a line that sums the search up.
pub fn table(record: &SearchRecord) -> String {
    let metric = record.spec.metric;
    let best = record.best.as_ref().map(|b| b.index);
    let mut rows: Vec<&TrialResult> = record.trials.iter().collect();
    rows.sort_by(|a, b| match (a.value(metric), b.value(metric)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then(a.index.cmp(&b.index)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.index.cmp(&b.index),
    });
    let strategy = serde_json::to_value(record.spec.strategy)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut out = format!(
        "Search ({strategy}{}): {} trial(s), {} failed, {:.1} s{}; ",
        if record.warm { ", warm start" } else { "" },
        record.trials.len(),
        record.failed(),
        record.seconds,
        match record.end {
            SearchEnd::Completed => "",
            SearchEnd::TimeLimit => ", stopped by timeLimit",
        },
    );
    match &record.best {
        Some(b) => {
            out += &format!(
                "best {} {:.4} (trial {})\n  {}\n\n",
                metric.as_str(),
                b.value(metric).unwrap_or(f64::NAN),
                b.index,
                b.params.train_args().join(" ")
            )
        }
        None => out += "no trial scored\n\n",
    }
    out += &format!(
        "{:>5} {:>4} {:>8} {:>8} {:>8}  {}\n",
        "trial", "rung", "RMSE", "MAE", "seconds", "parameters / error"
    );
    for r in rows {
        let mark = if Some(r.index) == best { '*' } else { ' ' };
        let (rmse, mae) = match &r.score {
            Some(s) => (format!("{:.4}", s.rmse), format!("{:.4}", s.mae)),
            None => ("failed".to_owned(), String::new()),
        };
        out += &format!(
            "{mark}{:>4} {:>4} {rmse:>8} {mae:>8} {:>8.2}  {}\n",
            r.index, r.rung, r.seconds, r.params
        );
        if let Some(e) = &r.error {
            out += &format!("{:>39}{}: {}\n", "", e.reason, e.message);
        }
    }
    out
}
