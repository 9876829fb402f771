//! The trials of a search, decided before any runs: pure functions of the spec and earlier
//! results, so the operator (one Indexed Job per rung) and `recommender-trainer tune` (one
//! process) run the same trials in the same order for the same seed.
//!
//! - Random: `trials` distinct points drawn from the space (lists uniformly, ranges by their
//!   scale, whole numbers rounded, reals to 4 significant digits); a space of lists only with no
//!   more than `trials` points is taken whole, in a seeded order.
//! - Grid: every combination of the lists, in the order of the space's fields.
//! - Halving: [`plan`] gives the first rung (random points at `minEpochs`), as many as the budget
//!   lets through every rung; [`next_rung`] keeps the best 1/eta of a finished rung (at least
//!   one) and retrains them from scratch with eta times the epochs (the same seed makes the
//!   first epochs identical, so this equals resuming), up to `maxEpochs`. Every trial run
//!   counts against `trials`.
//!
//! A warm search (the previous search's results when [`space_fingerprint`] is unchanged) has a
//! smaller budget, [`warm_budget`]: a quarter of `trials`, at least 1 (and at least what one
//! round of halving needs). Its first points are the previous search's best distinct scored
//! points (at most [`WARM_POINTS`], by the metric), measured again
//! on today's data; the rest of its budget goes to points the previous search had not drawn
//! (random and halving) or the rest of the grid in order.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    Algorithm, Domain, Halving, Kind, MAX_TRIALS, Metric, PARAMS, Params, Scale, SearchSpace,
    Strategy, TUNING_FORMAT, TrialResult, TuningError, TuningSpec, invalid, read_json,
};

/// The most previous points a warm search starts with.
pub const WARM_POINTS: usize = 5;

/// A plan file holds at most this many bytes: a ConfigMap's limit.
pub const MAX_PLAN_BYTES: usize = 1 << 20;

/// One trial: one point of the space at one rung.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrialParams {
    /// Unique within the search, in the order trials were planned (rungs continue the count).
    pub index: u32,
    /// The point's number: its trials at later rungs keep it.
    pub config: u32,
    /// 0, or the halving rung.
    #[serde(default)]
    pub rung: u32,
    /// One of the previous search's best points.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
    pub params: Params,
}

/// What a trial pod reads: `recommender-trainer trial --plan FILE --index N` runs `trials[N]`
/// (N: the pod's completion index).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrialPlan {
    #[serde(default = "format_one")]
    pub format: u32,
    pub spec: TuningSpec,
    pub trials: Vec<TrialParams>,
}

fn format_one() -> u32 {
    1
}

impl TrialPlan {
    pub fn new(spec: TuningSpec, trials: Vec<TrialParams>) -> Self {
        Self {
            format: TUNING_FORMAT,
            spec,
            trials,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a plan is plain data")
    }

    /// Reads a plan, refusing anything a trial should not run: an oversized or malformed file,
    /// a newer format, an invalid spec, no trials, or a trial outside the spec's space.
    pub fn parse(text: &str) -> Result<Self, TuningError> {
        let plan: Self = read_json(text, "the plan", MAX_PLAN_BYTES, |p: &Self| p.format)?;
        plan.spec.validate("plan.spec")?;
        if plan.trials.is_empty() || plan.trials.len() > MAX_TRIALS as usize {
            return Err(invalid(
                "plan.trials",
                format!(
                    "has {} trials; a plan has 1 to {MAX_TRIALS}",
                    plan.trials.len()
                ),
            ));
        }
        for (n, trial) in plan.trials.iter().enumerate() {
            plan.spec
                .contains(&trial.params)
                .map_err(|e| invalid(format!("plan.trials[{n}].params"), e))?;
            if plan.trials[..n].iter().any(|t| t.index == trial.index) {
                return Err(invalid(
                    format!("plan.trials[{n}].index"),
                    format!("index {} appears twice", trial.index),
                ));
            }
        }
        Ok(plan)
    }

    /// The trial at position `n` (a completion index).
    pub fn trial(&self, n: usize) -> Result<&TrialParams, TuningError> {
        self.trials.get(n).ok_or_else(|| {
            invalid(
                "--index",
                format!(
                    "{n} is past the plan's {} trials (0 to {})",
                    self.trials.len(),
                    self.trials.len() - 1
                ),
            )
        })
    }
}

/// What "an unchanged search space" means for a warm start: the algorithms, every parameter's
/// values or range and scale, the strategy, halving's rungs and the metric, hashed (16 hex
/// digits of SHA-256 over their canonical JSON). The budget, time limit, parallelism and seed
/// are not part of it: a retrain with more trials still starts from the last search.
pub fn space_fingerprint(spec: &TuningSpec) -> String {
    let mut space = spec.space.clone();
    for p in &PARAMS {
        // A range's scale, said or defaulted, is the same space.
        if let Some(Some(v)) = space.param_mut(p.name)
            && v.min.is_some()
        {
            v.scale = Some(v.scale.unwrap_or_default());
        }
    }
    #[derive(Serialize)]
    struct Canonical<'a> {
        format: u32,
        space: &'a SearchSpace,
        strategy: Strategy,
        metric: Metric,
        halving: Option<(u32, u32, u32)>,
    }
    let canonical = Canonical {
        format: TUNING_FORMAT,
        space: &space,
        strategy: spec.strategy,
        metric: spec.metric,
        halving: spec.halving().map(|h| (h.min_epochs, h.max_epochs, h.eta)),
    };
    let json = serde_json::to_vec(&canonical).expect("plain data");
    hex::encode(&Sha256::digest(&json)[..8])
}

/// The epochs of each halving rung: `minEpochs`, times eta, …, the last one `maxEpochs`.
pub fn halving_rungs(h: Halving) -> Vec<u32> {
    let mut rungs = Vec::new();
    let mut e = h.min_epochs.max(1);
    loop {
        rungs.push(e.min(h.max_epochs));
        if e >= h.max_epochs {
            return rungs;
        }
        e = e.saturating_mul(h.eta.max(2));
    }
}

/// The points at each rung when `first` start, and the trial runs in all.
pub(crate) fn halving_cost(first: usize, h: Halving) -> (Vec<usize>, usize) {
    let mut sizes = vec![first];
    for _ in 1..halving_rungs(h).len() {
        let last = *sizes.last().expect("one rung at least");
        sizes.push((last / h.eta as usize).max(1));
    }
    let total = sizes.iter().sum();
    (sizes, total)
}

/// The most first-rung points whose whole halving schedule fits in `budget` trial runs.
fn halving_points(budget: usize, h: Halving) -> usize {
    (1..=budget)
        .rev()
        .find(|&n| halving_cost(n, h).1 <= budget)
        .unwrap_or(1)
}

/// Points in the grid of `space` (the product of each algorithm's lists, summed).
pub(crate) fn grid_size(space: &SearchSpace) -> u64 {
    space
        .algorithm
        .iter()
        .map(|&alg| {
            applicable(alg)
                .filter_map(|p| (p.of)(space))
                .map(|v| v.values.len().max(1) as u64)
                .product::<u64>()
        })
        .sum()
}

fn applicable(alg: Algorithm) -> impl Iterator<Item = &'static super::Param> {
    PARAMS
        .iter()
        .filter(move |p| p.algorithm.is_none_or(|a| a == alg))
}

/// The trial runs of a warm search (see the module's comment).
pub fn warm_budget(spec: &TuningSpec) -> u32 {
    let quarter = spec.trials.div_ceil(4).max(1);
    let least = spec
        .halving()
        .map_or(1, |h| halving_cost(h.eta as usize, h).1 as u32);
    quarter.max(least).min(spec.trials)
}

/// The first trials of the search `spec` (a halving search's first rung; the later rungs come
/// from [`next_rung`]). `warm`: the results of the previous search with the same
/// [`space_fingerprint`], empty for a cold start. `spec` must be valid.
pub fn plan(spec: &TuningSpec, warm: &[TrialResult]) -> Vec<TrialParams> {
    let halving = spec.halving();
    let mut points = warm_points(spec, warm);
    let budget = if points.is_empty() {
        spec.trials
    } else {
        warm_budget(spec)
    } as usize;
    let wanted = match halving {
        Some(h) => halving_points(budget, h),
        None => budget,
    };
    points.truncate(wanted);
    let n_warm = points.len();
    let rung0 = |mut p: Params| {
        if let Some(h) = halving {
            p.epochs = h.min_epochs;
        }
        p
    };
    let points: Vec<Params> = points.into_iter().map(rung0).collect();
    let mut all = points.clone();
    if spec.strategy == Strategy::Grid {
        for p in grid(&spec.space) {
            if all.len() >= wanted {
                break;
            }
            if !all.contains(&p) {
                all.push(p);
            }
        }
    } else {
        // A warm search draws from another stream than the search it follows, so its new
        // points are not the old ones again.
        let seed = match n_warm {
            0 => spec.seed,
            _ => spec.seed ^ (warm.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        let mut rng = StdRng::seed_from_u64(seed);
        if is_finite(&spec.space) && grid_size(&spec.space) <= (wanted - n_warm) as u64 {
            let mut whole: Vec<Params> = grid(&spec.space).map(rung0).collect();
            whole.shuffle(&mut rng);
            all.extend(whole.into_iter().filter(|p| !points.contains(p)));
            all.truncate(wanted);
        } else {
            // Bounded: a space with fewer distinct points than asked stops short.
            let mut attempts = 50 * wanted;
            while all.len() < wanted && attempts > 0 {
                attempts -= 1;
                let p = rung0(draw(&spec.space, &mut rng));
                if !all.contains(&p) {
                    all.push(p);
                }
            }
        }
    }
    all.into_iter()
        .enumerate()
        .map(|(i, params)| TrialParams {
            index: i as u32,
            config: i as u32,
            rung: 0,
            warm: i < n_warm,
            params,
        })
        .collect()
}

/// The previous search's best distinct scored points that are in today's space.
fn warm_points(spec: &TuningSpec, warm: &[TrialResult]) -> Vec<Params> {
    let mut scored: Vec<(&TrialResult, f64)> = warm
        .iter()
        .filter_map(|r| Some((r, r.value(spec.metric)?)))
        .collect();
    scored.sort_by(|(a, x), (b, y)| x.total_cmp(y).then(a.index.cmp(&b.index)));
    let mut out: Vec<Params> = Vec::new();
    for (r, _) in scored {
        let mut p = r.params.clone();
        if let Some(h) = spec.halving() {
            // The rung's epochs are not part of the point.
            p.epochs = h.min_epochs;
        }
        if out.len() < WARM_POINTS.min(spec.trials as usize)
            && !out.contains(&p)
            && spec.contains(&p).is_ok()
        {
            out.push(p);
        }
    }
    out
}

/// The next rung of a halving search once every trial of its highest rung has a result (failed
/// ones included): the best `max(1, n / eta)` of that rung's `n`, scored ones only, with the
/// next rung's epochs, their indices continuing after the highest so far. Empty when the last
/// rung is done, no trial of the rung scored, or the strategy is not halving.
pub fn next_rung(spec: &TuningSpec, results: &[TrialResult]) -> Vec<TrialParams> {
    let Some(h) = spec.halving() else {
        return Vec::new();
    };
    let rungs = halving_rungs(h);
    let Some(top) = results.iter().map(|r| r.rung).max() else {
        return Vec::new();
    };
    let Some(&epochs) = rungs.get(top as usize + 1) else {
        return Vec::new();
    };
    let at_top: Vec<&TrialResult> = results.iter().filter(|r| r.rung == top).collect();
    let keep = (at_top.len() / h.eta as usize).max(1);
    let mut scored: Vec<(&TrialResult, f64)> = at_top
        .iter()
        .filter_map(|r| Some((*r, r.value(spec.metric)?)))
        .collect();
    scored.sort_by(|(a, x), (b, y)| x.total_cmp(y).then(a.index.cmp(&b.index)));
    let next_index = results.iter().map(|r| r.index).max().unwrap_or(0) + 1;
    scored
        .into_iter()
        .take(keep)
        .enumerate()
        .map(|(i, (r, _))| TrialParams {
            index: next_index + i as u32,
            config: r.config,
            rung: top + 1,
            warm: false,
            params: Params {
                epochs,
                ..r.params.clone()
            },
        })
        .collect()
}

/// Whether every parameter the space sets is a list.
fn is_finite(space: &SearchSpace) -> bool {
    PARAMS
        .iter()
        .filter_map(|p| (p.of)(space))
        .all(|v| !v.values.is_empty())
}

/// Every combination of the lists, algorithm by algorithm, the last field varying fastest.
fn grid(space: &SearchSpace) -> impl Iterator<Item = Params> + '_ {
    space.algorithm.iter().flat_map(move |&alg| {
        let axes: Vec<(&super::Param, &[f64])> = applicable(alg)
            .filter_map(|p| Some((p, (p.of)(space)?.values.as_slice())))
            .collect();
        let n: usize = axes.iter().map(|(_, v)| v.len().max(1)).product();
        (0..n).map(move |mut k| {
            let mut p = Params::defaults(alg);
            for (param, values) in axes.iter().rev() {
                *(param.slot)(&mut p) = Some(values[k % values.len()]);
                k /= values.len();
            }
            p.settle()
        })
    })
}

/// One random point of the space.
fn draw(space: &SearchSpace, rng: &mut StdRng) -> Params {
    let alg = space.algorithm[rng.random_range(0..space.algorithm.len())];
    let mut p = Params::defaults(alg);
    for param in applicable(alg) {
        let Some(values) = (param.of)(space) else {
            continue;
        };
        let v = match values.domain() {
            Domain::List(list) => list[rng.random_range(0..list.len())],
            Domain::Range { min, max, scale } => {
                let u: f64 = rng.random();
                let v = match scale {
                    Scale::Linear => min + u * (max - min),
                    Scale::Log => (min.ln() + u * (max.ln() - min.ln())).exp(),
                };
                let v = match param.kind {
                    Kind::Count(_) => v.round(),
                    _ => format!("{v:.3e}").parse().expect("a formatted f64 parses"),
                };
                v.clamp(min, max)
            }
        };
        *(param.slot)(&mut p) = Some(v);
    }
    p.settle()
}
