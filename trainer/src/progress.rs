//! Progress of the folds and epochs of a run, and of a search's trials: bars on a terminal, log
//! lines otherwise.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use recommender_contract::tuning::{Metric, TrialParams, TrialResult};
use recommender_trainer::cv::Progress;

pub struct Reporter {
    bars: Option<(MultiProgress, Vec<ProgressBar>, ProgressBar)>,
}

impl Reporter {
    pub fn new(tty: bool, folds: usize, epochs: usize) -> Self {
        if !tty {
            return Reporter { bars: None };
        }
        let style =
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} epochs {msg}")
                .expect("static template")
                .progress_chars("=> ");
        let multi = MultiProgress::new();
        let mk = |name: String| {
            let b = multi.add(ProgressBar::new(epochs as u64));
            b.set_style(style.clone());
            b.set_prefix(name);
            b
        };
        let folds = (0..folds).map(|f| mk(format!("fold {}", f + 1))).collect();
        let final_fit = mk("final fit".into());
        Reporter {
            bars: Some((multi, folds, final_fit)),
        }
    }

    pub fn report(&self, p: Progress) {
        match (&self.bars, p) {
            (Some((_, folds, _)), Progress::Epoch { fold, epoch }) => {
                if let Some(b) = folds.get(fold) {
                    b.set_position(epoch as u64);
                }
            }
            (Some((_, folds, _)), Progress::FoldDone(r)) => {
                if let Some(b) = folds.get(r.fold) {
                    b.finish_with_message(format!(
                        "RMSE {:.4}  MAE {:.4}",
                        r.scores.rmse, r.scores.mae
                    ));
                }
            }
            (Some((_, _, fin)), Progress::FinalEpoch { epoch }) => fin.set_position(epoch as u64),
            (None, Progress::FoldDone(r)) => tracing::info!(
                fold = r.fold + 1,
                rmse = r.scores.rmse,
                mae = r.scores.mae,
                fit_seconds = r.fit_seconds,
                "fold finished"
            ),
            (None, _) => {}
        }
    }

    pub fn finish(&self) {
        if let Some((_, _, fin)) = &self.bars {
            fin.finish();
        }
    }
}

/// A search's progress: one bar of trial runs with the best so far on a terminal, a log line per
/// trial otherwise.
pub struct SearchProgress {
    bar: Option<ProgressBar>,
    best: std::cell::Cell<Option<(f64, u32)>>,
}

impl SearchProgress {
    pub fn new(tty: bool) -> Self {
        let bar = tty.then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("trials [{bar:30}] {pos}/{len} {elapsed} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            b
        });
        SearchProgress {
            bar,
            best: std::cell::Cell::new(None),
        }
    }

    /// The search can now take `runs` trial runs in all.
    pub fn planned(&self, runs: usize) {
        if let Some(b) = &self.bar {
            b.set_length(runs as u64);
        }
    }

    pub fn started(&self, t: &TrialParams) {
        if self.bar.is_none() {
            tracing::info!(trial = t.index, rung = t.rung, params = %t.params, "trial started");
        }
    }

    pub fn finished(&self, r: &TrialResult, metric: Metric) {
        if let Some(v) = r.value(metric)
            && self.best.get().is_none_or(|(b, _)| v < b)
        {
            self.best.set(Some((v, r.index)));
        }
        match &self.bar {
            Some(b) => {
                b.inc(1);
                if let Some((v, i)) = self.best.get() {
                    b.set_message(format!("best {} {v:.4} (trial {i})", metric.as_str()));
                }
            }
            None => match (&r.score, &r.error) {
                (Some(s), _) => tracing::info!(
                    trial = r.index,
                    rmse = s.rmse,
                    mae = s.mae,
                    seconds = r.seconds,
                    "trial scored"
                ),
                (None, e) => tracing::warn!(
                    trial = r.index,
                    reason = e.as_ref().map_or("", |e| e.reason.as_str()),
                    "trial failed"
                ),
            },
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}
