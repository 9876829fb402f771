//! What the plugin prints, as pure functions of the model read and the time now: testable
//! without a cluster, identical for a status read once and each redraw of `--watch`.

mod fields;
pub mod format;
pub mod history;
pub mod rollout;
pub mod status;

use crate::cli::Output;
use jiff::Timestamp;
use recommender_operator::crd::RecommenderModel;

/// `status NAME` in the requested format: the tree, or the status object as JSON (`{}` before
/// the operator has written one, so `jq` finds an object either way).
pub fn status_text(model: &RecommenderModel, output: Option<Output>, now: Timestamp) -> String {
    match output {
        None => status::tree(model, now),
        Some(Output::Json) => {
            let status = model
                .status
                .as_ref()
                .map_or_else(|| serde_json::json!({}), |s| serde_json::json!(s));
            let mut text = serde_json::to_string_pretty(&status).unwrap_or_default();
            text.push('\n');
            text
        }
    }
}
