//! Request handlers, one module per concern.

pub mod feedback;
pub mod predict;
pub mod recommend;
pub mod status;

use std::sync::Arc;

use crate::{error::Error, state::ServedModel};

/// The served model, or the 503 that says there is none yet.
#[inline]
fn served(current: &Option<Arc<ServedModel>>) -> Result<&ServedModel, Error> {
    current.as_deref().ok_or(Error::ModelNotLoaded)
}
