//! Fitting either algorithm, on a fold or on all the data.

use recommender_model::{Factors, Hyperparameters, Model, RatedItems};

use crate::data::Ratings;
use crate::error::Result;
use crate::kernel::Triple;
use crate::{baseline, svd};

/// Checks hyperparameters before any data is loaded.
pub fn validate(hp: &Hyperparameters) -> Result<()> {
    match hp {
        Hyperparameters::Svd(p) => svd::validate(p),
        Hyperparameters::Baseline(p) => baseline::validate(p),
    }
}

/// Fits on `train`, which must already be in training order ([`svd::group_by_user`]), SVD on
/// `threads` threads (see [`svd::fit`]; baseline's ALS is not worth more than one).
pub(crate) fn fit_ordered(
    hp: &Hyperparameters,
    n_users: usize,
    n_items: usize,
    train: Vec<Triple>,
    threads: usize,
    on_epoch: &mut dyn FnMut(usize),
) -> Result<Factors> {
    match hp {
        Hyperparameters::Svd(p) => svd::fit(p, n_users, n_items, train, threads, on_epoch),
        Hyperparameters::Baseline(p) => baseline::fit(p, n_users, n_items, &train, on_epoch),
    }
}

/// Fits on all of `data`, on `threads` threads, and packages the model with its id maps and
/// rated items.
pub fn fit_model(
    data: &Ratings,
    hp: &Hyperparameters,
    threads: usize,
    on_epoch: &mut dyn FnMut(usize),
) -> Result<Model> {
    let (nu, ni) = (data.users.len(), data.items.len());
    let ordered = svd::group_by_user(data.triples.iter().copied(), nu);
    let factors = fit_ordered(hp, nu, ni, ordered, threads, on_epoch)?;
    let rated = RatedItems::from_pairs(nu, data.triples.iter().map(|t| (t.user, t.item)));
    let model = Model {
        users: data.users.clone(),
        items: data.items.clone(),
        scale: data.scale,
        factors,
        rated,
    };
    model.validate().map_err(|e| {
        crate::Error::InvalidData(format!("training produced an invalid model: {e}"))
    })?;
    Ok(model)
}
