//! What each manual action writes, as pure functions of the model read: the merge patches and the
//! checks that refuse an action that would do nothing or the wrong thing.

use crate::error::{Error, Result, Target};
use kube::ResourceExt;
use recommender_operator::crd::{RecommenderModel, RecommenderModelStatus, RolloutStatus};
use recommender_operator::labels::{ABORT_ANNOTATION, PROMOTE_ANNOTATION};
use serde_json::{Value, json};

/// The two requests a person makes of a running rollout: each an annotation whose value names
/// the rollout, so that a request left behind never acts on the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutAction {
    Promote,
    Abort,
}

impl RolloutAction {
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Promote => PROMOTE_ANNOTATION,
            Self::Abort => ABORT_ANNOTATION,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Abort => "abort",
        }
    }

    fn opposite(self) -> Self {
        match self {
            Self::Promote => Self::Abort,
            Self::Abort => Self::Promote,
        }
    }
}

/// What a promote or abort request should do.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    /// Write the annotation with the rollout's id.
    Write(&'a RolloutStatus),
    /// The annotation already names this rollout: the operator has yet to act on it.
    Pending(&'a RolloutStatus),
}

/// A promote or abort needs a rollout in progress, and must not contradict a request the
/// operator has not acted on yet (which of the two it would honour first is not the person's
/// to guess).
pub fn rollout_request<'a>(
    target: &Target,
    model: &'a RecommenderModel,
    action: RolloutAction,
) -> Result<Request<'a>> {
    let rollout = model.status.as_ref().and_then(|s| s.rollout.as_ref());
    let Some(rollout) = rollout.filter(|r| !r.stage.is_terminal()) else {
        let last = match rollout {
            Some(r) => {
                let reason = r.end_reason.map(|e| format!(": {e}")).unwrap_or_default();
                format!(" (the last, {}, ended {}{reason})", r.id, r.stage)
            }
            None if !model.spec.rollout.progressive() => {
                " (spec.rollout.strategy is Immediate: candidates are promoted at the gate)".into()
            }
            None => String::new(),
        };
        return Err(Error::NoRollout {
            target: target.clone(),
            action: action.verb(),
            last,
        });
    };
    let names_it = |a: RolloutAction| {
        model.annotations().get(a.annotation()).map(String::as_str) == Some(rollout.id.as_str())
    };
    if names_it(action.opposite()) {
        return Err(Error::Contradicts {
            target: target.clone(),
            action: action.verb(),
            pending: action.opposite().verb(),
            id: rollout.id.clone(),
            annotation: action.opposite().annotation(),
        });
    }
    Ok(if names_it(action) {
        Request::Pending(rollout)
    } else {
        Request::Write(rollout)
    })
}

/// Sets one annotation, leaving the others as they are.
pub fn annotation(key: &str, value: &str) -> Value {
    json!({"metadata": {"annotations": {key: value}}})
}

/// Sets `spec.rollout.paused`; the rest of `spec.rollout` stays as it is.
pub fn paused(paused: bool) -> Value {
    json!({"spec": {"rollout": {"paused": paused}}})
}

/// Sets `spec.pinnedVersion`, or removes it (`null` deletes a field in a merge patch).
pub fn pin(version: Option<&str>) -> Value {
    json!({"spec": {"pinnedVersion": version}})
}

/// `version` must be one `status.models` holds: the operator serves only what it promoted and
/// still keeps, and would otherwise report `PinnedVersionUnknown` with nothing serving changed.
pub fn check_version(
    target: &Target,
    status: Option<&RecommenderModelStatus>,
    version: &str,
) -> Result<()> {
    let models = status.map(|s| s.models.as_slice()).unwrap_or_default();
    if models.iter().any(|m| m.version == version) {
        return Ok(());
    }
    let available = if models.is_empty() {
        "none yet, no version has been promoted".into()
    } else {
        models
            .iter()
            .map(|m| m.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Error::UnknownVersion {
        target: target.clone(),
        version: version.into(),
        available,
    })
}

/// A retrain request's value: the operator starts a run whenever the value differs from the last
/// one it acted on, so a time to the nanosecond is fresh each time it is asked.
pub fn retrain_value(now: jiff::Timestamp) -> String {
    now.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            namespace: "shop".into(),
            name: "movies".into(),
        }
    }

    fn rollout_model(stage: &str, annotations: Value) -> RecommenderModel {
        let mut status = crate::testing::serving_status();
        status["rollout"] = crate::testing::rollout(stage);
        let mut m = crate::testing::model(status);
        m["metadata"]["annotations"] = annotations;
        m["spec"]["rollout"] = json!({"strategy": "Progressive"});
        serde_json::from_value(m).unwrap()
    }

    #[test]
    fn a_running_rollout_is_named_by_its_id() {
        let m = rollout_model("Canary", json!({}));
        let Request::Write(r) = rollout_request(&target(), &m, RolloutAction::Promote).unwrap()
        else {
            panic!("a write")
        };
        assert_eq!(r.id, "movies-v3-1796126400");
        let pending = rollout_model(
            "Shadow",
            json!({"recommender.dev/abort": "movies-v3-1796126400"}),
        );
        assert!(matches!(
            rollout_request(&target(), &pending, RolloutAction::Abort).unwrap(),
            Request::Pending(_)
        ));
        // A request naming an earlier rollout is stale: written again with this one's id.
        let stale = rollout_model("Shadow", json!({"recommender.dev/abort": "movies-v2-1"}));
        assert!(matches!(
            rollout_request(&target(), &stale, RolloutAction::Abort).unwrap(),
            Request::Write(_)
        ));
    }

    #[test]
    fn promote_and_abort_of_one_rollout_contradict() {
        let m = rollout_model(
            "Canary",
            json!({"recommender.dev/abort": "movies-v3-1796126400"}),
        );
        let err = rollout_request(&target(), &m, RolloutAction::Promote).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot promote shop/movies: rollout movies-v3-1796126400 already has a pending \
             abort request (recommender.dev/abort) the operator has not acted on yet"
        );
    }

    #[test]
    fn without_a_running_rollout_there_is_nothing_to_do() {
        let ended = rollout_model("Aborted", json!({}));
        let err = rollout_request(&target(), &ended, RolloutAction::Abort).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no rollout is running on shop/movies, nothing to abort (the last, \
             movies-v3-1796126400, ended Aborted: WorseAccuracy)"
        );
        let immediate: RecommenderModel =
            serde_json::from_value(crate::testing::model(crate::testing::serving_status()))
                .unwrap();
        let err = rollout_request(&target(), &immediate, RolloutAction::Promote).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no rollout is running on shop/movies, nothing to promote (spec.rollout.strategy \
             is Immediate: candidates are promoted at the gate)"
        );
        let mut progressive = immediate.clone();
        progressive.spec.rollout.strategy = recommender_operator::crd::RolloutStrategy::Progressive;
        let err = rollout_request(&target(), &progressive, RolloutAction::Promote).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no rollout is running on shop/movies, nothing to promote"
        );
    }

    fn status_with(versions: &[&str]) -> RecommenderModelStatus {
        let models: Vec<Value> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({"version": v, "run": i + 1, "trainedAt": "2026-12-01T00:00:00Z",
                    "metrics": {"folds": 4, "rmse": 0.93, "rmseStd": 0.01, "mae": 0.73,
                        "maeStd": 0.01, "accuracy": 0.72, "precisionAt10": 0.0,
                        "recallAt10": 0.0, "ndcgAt10": 0.0}})
            })
            .collect();
        serde_json::from_value(json!({"models": models})).unwrap()
    }

    #[test]
    fn patches_touch_only_their_field() {
        assert_eq!(
            annotation("recommender.dev/retrain", "x"),
            json!({"metadata": {"annotations": {"recommender.dev/retrain": "x"}}})
        );
        assert_eq!(paused(true), json!({"spec": {"rollout": {"paused": true}}}));
        assert_eq!(pin(Some("v3")), json!({"spec": {"pinnedVersion": "v3"}}));
        assert_eq!(pin(None), json!({"spec": {"pinnedVersion": null}}));
    }

    #[test]
    fn a_version_must_be_promoted_and_kept() {
        let status = status_with(&["v2", "v3", "v5"]);
        check_version(&target(), Some(&status), "v3").unwrap();
        let err = check_version(&target(), Some(&status), "v4").unwrap_err();
        assert_eq!(
            err.to_string(),
            "shop/movies has no promoted version v4; it can be rolled back to: v2, v3, v5"
        );
        let err = check_version(&target(), None, "v1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "shop/movies has no promoted version v1; it can be rolled back to: none yet, no \
             version has been promoted"
        );
    }

    #[test]
    fn retrain_values_differ_within_a_second() {
        let a: jiff::Timestamp = "2026-12-07T12:00:00.100Z".parse().unwrap();
        let b: jiff::Timestamp = "2026-12-07T12:00:00.200Z".parse().unwrap();
        assert_ne!(retrain_value(a), retrain_value(b));
        assert_eq!(retrain_value(a), "2026-12-07T12:00:00.1Z");
    }
}
