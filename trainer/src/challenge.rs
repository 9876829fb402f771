//! The champion/challenger comparison: the serving model (the champion) and a candidate trained
//! on more recent data (the challenger) predict the same ratings, which neither was trained on,
//! and are compared rating by rating.
//!
//! The ratings newer than the champion's snapshot are split by time: the earlier part is the
//! challenger's to train on (with everything older), the newest part is held out and predicted
//! by both. Comparing CV errors of two models measured on different data says little; here both
//! errors come from the same ratings, so the difference and its paired bootstrap interval say
//! whether the challenger is better on what users rate now.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recommender_contract::report::{Challenge, Paired};
use recommender_model::{Artifact, Hyperparameters};

use crate::data::Ratings;
use crate::error::Result;
use crate::model_store::StoredArtifact;
use crate::svd::group_by_user;
use crate::train::fit_ordered;

/// What `--challenge` asks for.
#[derive(Clone, Debug)]
pub struct ChallengeOptions {
    /// The champion's artifact in the model store (`<version>.model`), checked against the
    /// sha256 the operator recorded for it when one is given.
    pub champion: StoredArtifact,
    /// The champion's snapshot; default: the `maxTimestamp` in its artifact.
    pub since: Option<i64>,
    /// Share of the new ratings, the newest, held out for the comparison.
    pub holdout: f64,
    /// Fewer held-out ratings than this: no paired comparison (the report says why).
    pub min_ratings: u64,
    /// Confidence of the bootstrap interval, e.g. 0.95.
    pub confidence: f64,
    pub resamples: u32,
    pub seed: u64,
}

/// Compares a challenger trained like `hp` with the champion on `data`, which must carry its
/// timestamps ([`crate::data::Selection::timestamps`]). Never fails: anything that prevents a
/// paired comparison is the report's `fallback`.
pub fn challenge(opts: &ChallengeOptions, data: &Ratings, hp: &Hyperparameters) -> Challenge {
    let key = opts.champion.key.as_str();
    let label = key.strip_suffix(".model").unwrap_or(key).to_string();
    let fallback = |since: i64, new_ratings: u64, why: String| Challenge {
        champion: label.clone(),
        since,
        new_ratings,
        paired: None,
        fallback: Some(why),
    };
    let champion = match opts.champion.read() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(champion = %opts.champion.location(), error = %e, "cannot read the champion");
            return fallback(
                opts.since.unwrap_or(0),
                0,
                format!("cannot read the champion: {e}"),
            );
        }
    };
    let Some(since) = opts.since.or(champion.meta.data.max_timestamp) else {
        return fallback(0, 0, "the champion's data has no timestamps".into());
    };
    let Some(times) = data.timestamps.as_deref() else {
        return fallback(
            since,
            0,
            "the ratings were loaded without timestamps".into(),
        );
    };
    let split = split(times, since, opts.holdout);
    let new_ratings = split.new_ratings() as u64;
    let mut report = match compare(opts, data, hp, &champion, &split) {
        Ok(Some(paired)) => Challenge {
            champion: champion.meta.version.clone(),
            since,
            new_ratings,
            paired: Some(paired),
            fallback: None,
        },
        Ok(None) => fallback(
            since,
            new_ratings,
            format!(
                "only {} of the {new_ratings} ratings after the champion's snapshot would be held out, fewer than {}",
                split.held.len(),
                opts.min_ratings
            ),
        ),
        Err(e) => fallback(
            since,
            new_ratings,
            format!("cannot train the challenger: {e}"),
        ),
    };
    report.champion = champion.meta.version;
    report
}

/// The ratings after a snapshot, split by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Ratings at or before this time are the challenger's to train on.
    pub cut: i64,
    /// Indices of new ratings at or before `cut` (the challenger's extra training data).
    pub earlier: Vec<usize>,
    /// Indices of the newest ratings, after `cut`: predicted by both models.
    pub held: Vec<usize>,
}

impl Split {
    pub fn new_ratings(&self) -> usize {
        self.earlier.len() + self.held.len()
    }
}

/// Splits the ratings newer than `since` so that about `holdout` of them, the newest, are held
/// out. Ratings with the same time stay on the same side (time decides, not load order), so the
/// held-out part may be a little smaller than asked.
pub fn split(times: &[i64], since: i64, holdout: f64) -> Split {
    let mut new: Vec<usize> = (0..times.len()).filter(|&j| times[j] > since).collect();
    new.sort_by_key(|&j| (times[j], j));
    let keep = new.len() - ((new.len() as f64 * holdout).ceil() as usize).min(new.len());
    let cut = match keep {
        0 => since,
        k => times[new[k - 1]],
    };
    let (earlier, held) = new.into_iter().partition(|&j| times[j] <= cut);
    Split { cut, earlier, held }
}

fn compare(
    opts: &ChallengeOptions,
    data: &Ratings,
    hp: &Hyperparameters,
    champion: &Artifact,
    split: &Split,
) -> Result<Option<Paired>> {
    if (split.held.len() as u64) < opts.min_ratings.max(1) {
        return Ok(None);
    }
    let times = data.timestamps.as_deref().unwrap_or_default();
    let (nu, ni) = (data.users.len(), data.items.len());
    let train = data
        .triples
        .iter()
        .zip(times)
        .filter(|&(_, &t)| t <= split.cut)
        .map(|(t, _)| *t);
    let mut user_known = vec![false; nu];
    let mut item_known = vec![false; ni];
    for t in train.clone() {
        user_known[t.user as usize] = true;
        item_known[t.item as usize] = true;
    }
    let factors = fit_ordered(hp, nu, ni, group_by_user(train, nu), 1, &mut |_| {})?;
    let mut champion_se = Vec::with_capacity(split.held.len());
    let mut challenger_se = Vec::with_capacity(split.held.len());
    for &j in &split.held {
        let t = data.triples[j];
        let (u, i) = (t.user as usize, t.item as usize);
        let mine = data
            .scale
            .clip(factors.estimate(user_known[u].then_some(u), item_known[i].then_some(i)));
        let theirs = champion
            .model
            .predict(data.users.id(t.user), data.items.id(t.item))
            .rating;
        challenger_se.push((t.rating as f64 - mine).powi(2));
        champion_se.push((t.rating as f64 - theirs).powi(2));
    }
    let interval = paired_bootstrap(
        &champion_se,
        &challenger_se,
        opts.confidence,
        opts.resamples,
        opts.seed,
    );
    Ok(Some(Paired {
        split_at: split.cut,
        train_ratings: split.earlier.len() as u64,
        ratings: split.held.len() as u64,
        champion_rmse: rmse(&champion_se, None),
        challenger_rmse: rmse(&challenger_se, None),
        difference: interval.difference,
        low: interval.low,
        high: interval.high,
        confidence: opts.confidence,
        resamples: opts.resamples,
    }))
}

/// `difference` = RMSE(b) − RMSE(a) with its percentile interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

fn rmse(squared: &[f64], pick: Option<&[usize]>) -> f64 {
    let (sum, n) = match pick {
        Some(ix) => (ix.iter().map(|&k| squared[k]).sum::<f64>(), ix.len()),
        None => (squared.iter().sum::<f64>(), squared.len()),
    };
    (sum / n.max(1) as f64).sqrt()
}

/// Paired bootstrap of RMSE(b) − RMSE(a) over per-rating squared errors `a` and `b` of the same
/// ratings: each resample draws ratings (pairs, never the two sides separately) with
/// replacement; the interval is the resampled differences' central `confidence` share.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    confidence: f64,
    resamples: u32,
    seed: u64,
) -> Interval {
    assert_eq!(a.len(), b.len(), "paired errors come in pairs");
    let difference = rmse(b, None) - rmse(a, None);
    let n = a.len();
    if n == 0 || resamples == 0 {
        return Interval {
            difference,
            low: difference,
            high: difference,
        };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pick = vec![0usize; n];
    let mut diffs: Vec<f64> = (0..resamples)
        .map(|_| {
            pick.iter_mut().for_each(|k| *k = rng.random_range(0..n));
            rmse(b, Some(&pick)) - rmse(a, Some(&pick))
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    let at = |q: f64| diffs[((q * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)];
    Interval {
        difference,
        low: at(tail),
        high: at(1.0 - tail),
    }
}

#[cfg(test)]
mod tests;
