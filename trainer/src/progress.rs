//! Per-fold and per-epoch progress: bars on a terminal, log lines otherwise.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
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
