//! Serving: which promoted model the predictor serves (the pin, or the newest), the predictor's
//! children, and whether its rollout is done.

use crate::children::{self, Defaults};
use crate::condition::{self as cond, Desired, State};
use crate::crd::{Address, ModelRecord, PredictorStatus, RecommenderModel, RecommenderModelStatus};
use crate::observe::RolloutState;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

/// Promoted models kept in `status.models`: the rollback window of `pinnedVersion`.
pub const MODELS_LIMIT: usize = 10;

/// The model chosen to serve, and why the pin could not be honoured if it could not.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Serving {
    pub model: Option<ModelRecord>,
    pub pin_problem: Option<String>,
}

/// The pinned model if it names a promoted one, else the newest.
pub(super) fn choose(status: &RecommenderModelStatus, pin: Option<&str>) -> Serving {
    let newest = status.models.last().cloned();
    let Some(pin) = pin else {
        return Serving {
            model: newest,
            pin_problem: None,
        };
    };
    match status.models.iter().find(|m| m.version == pin) {
        Some(found) => Serving {
            model: Some(found.clone()),
            pin_problem: None,
        },
        None => Serving {
            model: newest,
            pin_problem: Some(format!(
                "pinnedVersion {pin} is not a promoted model (known: {})",
                known_versions(&status.models)
            )),
        },
    }
}

fn known_versions(models: &[ModelRecord]) -> String {
    if models.is_empty() {
        return "none".into();
    }
    models
        .iter()
        .map(|m| m.version.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The predictor Deployment and Service, once there is a model to serve.
pub(super) fn children(
    model: &RecommenderModel,
    serving: &Serving,
    defaults: &Defaults,
) -> (Option<Deployment>, Option<Service>) {
    match &serving.model {
        Some(m) => (
            Some(children::predictor_deployment(model, &m.version, defaults)),
            Some(children::predictor_service(model)),
        ),
        None => (None, None),
    }
}

/// Where to call the model: the Service's URL once there is a model to serve (the Service is
/// applied with it), as `status.url` and KServe's `status.address`.
pub(super) fn address(
    model: &RecommenderModel,
    serving: &Serving,
    defaults: &Defaults,
) -> (Option<String>, Option<Address>) {
    if serving.model.is_none() {
        return (None, None);
    }
    let url = children::predictor_url(model, &defaults.cluster_domain);
    (Some(url.clone()), Some(Address { url }))
}

pub(super) fn predictor_status(
    model: &RecommenderModel,
    serving: &Serving,
    rollout: Option<&RolloutState>,
) -> Option<PredictorStatus> {
    serving.model.as_ref()?;
    let rollout = rollout?;
    Some(PredictorStatus {
        version: rollout.version.clone()?,
        desired_replicas: rollout.desired,
        available_replicas: rollout.available,
        selector: Some(children::predictor_selector(model)),
    })
}

/// The `Serving` condition.
pub(super) fn condition(
    serving: &Serving,
    rollout: Option<&RolloutState>,
    replicas: i32,
) -> Desired {
    match (&serving.model, rollout) {
        (None, _) => Desired::new(
            cond::SERVING,
            State::False,
            "NoModel",
            "no model has been promoted yet",
        ),
        (Some(_), _) if serving.pin_problem.is_some() => Desired::new(
            cond::SERVING,
            State::False,
            "PinnedVersionUnknown",
            serving.pin_problem.clone().unwrap_or_default(),
        ),
        (Some(m), None) => Desired::new(
            cond::SERVING,
            State::False,
            "RollingOut",
            format!("creating the predictor for {}", m.version),
        ),
        (Some(m), Some(r)) => rollout_condition(&m.version, r, replicas),
    }
}

fn rollout_condition(version: &str, rollout: &RolloutState, desired: i32) -> Desired {
    if let Some(why) = &rollout.deadline_exceeded {
        return Desired::new(
            cond::SERVING,
            State::False,
            "RolloutStuck",
            format!("the rollout of {version} did not become available: {why}"),
        );
    }
    if desired == 0 {
        return Desired::new(
            cond::SERVING,
            State::False,
            "ScaledToZero",
            "spec.predictor.replicas is 0",
        );
    }
    // Old pods keep answering until they are gone, so the rollout is done only when every pod
    // left runs the new template.
    let current = rollout.version.as_deref() == Some(version)
        && rollout.observed
        && rollout.updated >= desired
        && rollout.available >= desired
        && rollout.total <= rollout.updated;
    if current {
        return Desired::new(
            cond::SERVING,
            State::True,
            "Available",
            format!(
                "{version} available on {} of {desired} replicas",
                rollout.available
            ),
        );
    }
    let rolled_out = rollout.version.as_deref() == Some(version)
        && rollout.observed
        && rollout.updated >= desired
        && rollout.total <= rollout.updated;
    if rolled_out {
        // Every pod runs this version, yet not all are available: crashed or failing probes.
        let (reason, what) = if rollout.available > 0 {
            ("PartiallyAvailable", "available on only")
        } else {
            ("Unavailable", "available on")
        };
        return Desired::new(
            cond::SERVING,
            State::from_bool(rollout.available > 0),
            reason,
            format!(
                "{version} {what} {} of {desired} replicas",
                rollout.available
            ),
        );
    }
    // An older version still answering counts as serving while the new one rolls out.
    Desired::new(
        cond::SERVING,
        State::from_bool(rollout.available > 0),
        "RollingOut",
        format!(
            "rolling out {version}: {} updated, {} of {desired} available",
            rollout.updated, rollout.available
        ),
    )
}

#[cfg(test)]
mod tests {
    use crate::decide::decide;
    use crate::decide::fixtures::*;

    #[test]
    fn the_url_appears_with_the_first_served_model() {
        let spec = file_spec();
        let m = model(spec.clone(), None);
        let plan = decide_for(&m, vec![], None);
        assert_eq!(
            (plan.status.url.as_deref(), plan.status.address),
            (None, None)
        );

        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        let url = "http://movies-predictor.ml.svc.cluster.local:8080";
        assert_eq!(plan.status.url.as_deref(), Some(url));
        assert_eq!(plan.status.address.unwrap().url, url);
    }

    #[test]
    fn pinned_version_rolls_back() {
        let mut spec = file_spec();
        let mut status = serving_status(&spec, "2026-11-27T11:00:00Z");
        status
            .models
            .push(record("v2", 2, 0.93, "2026-11-27T11:30:00Z"));
        spec.pinned_version = Some("v1".into());
        let m = model(spec.clone(), Some(status.clone()));
        let plan = decide_for(&m, vec![], Some(available("v2", 1, 1)));
        assert_eq!(plan.status.serving.as_ref().unwrap().version, "v1");
        assert_eq!(pod_labels(&plan)[crate::labels::VERSION], "v1");
        assert_eq!(condition(&plan, "Serving").reason, "RollingOut");

        spec.pinned_version = Some("v9".into());
        let m = model(spec, Some(status));
        let plan = decide_for(&m, vec![], Some(available("v2", 1, 1)));
        assert_eq!(
            plan.status.serving.as_ref().unwrap().version,
            "v2",
            "unknown pin keeps the newest"
        );
        let serving = condition(&plan, "Serving");
        assert_eq!(serving.reason, "PinnedVersionUnknown");
        assert!(serving.message.contains("v9") && serving.message.contains("v1, v2"));
    }

    #[test]
    fn replicas_short_and_stuck_rollout() {
        let mut spec = file_spec();
        spec.predictor.replicas = 3;
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let plan = decide_for(&m, vec![], Some(available("v1", 3, 1)));
        let workers = condition(&plan, "WorkersHealthy");
        assert_eq!(
            (workers.status.as_str(), workers.reason.as_str()),
            ("False", "PredictorReplicasShort")
        );
        assert_eq!(workers.message, "1 of 3 predictor replicas available");
        assert_eq!(condition(&plan, "Ready").status, "False");

        let mut stuck = available("v1", 3, 0);
        stuck.deadline_exceeded = Some("ReplicaSet has timed out progressing.".into());
        let plan = decide_for(&m, vec![], Some(stuck));
        let serving = condition(&plan, "Serving");
        assert_eq!(
            (serving.status.as_str(), serving.reason.as_str()),
            ("False", "RolloutStuck")
        );
        assert!(serving.message.contains("timed out"));
    }

    #[test]
    fn rollout_is_done_only_when_no_old_pod_answers() {
        let spec = file_spec();
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let mut old_still_up = available("v1", 1, 2);
        old_still_up.updated = 1;
        old_still_up.total = 2;
        let plan = decide_for(&m, vec![], Some(old_still_up));
        let serving = condition(&plan, "Serving");
        assert_eq!(
            (serving.status.as_str(), serving.reason.as_str()),
            ("True", "RollingOut"),
            "the old pod still answers, so it serves, but the rollout is not done"
        );

        let plan = decide(
            &observe(&m, vec![], Some(available("v1", 1, 1))),
            &config(&m),
            &defaults(),
        );
        assert_eq!(condition(&plan, "Serving").reason, "Available");
    }

    #[test]
    fn a_crashed_replica_is_not_a_rollout() {
        let spec = file_spec();
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let mut crashed = available("v1", 1, 1);
        crashed.available = 0;
        let plan = decide_for(&m, vec![], Some(crashed));
        let serving = condition(&plan, "Serving");
        assert_eq!(
            (
                serving.status.as_str(),
                serving.reason.as_str(),
                serving.message.as_str()
            ),
            ("False", "Unavailable", "v1 available on 0 of 1 replicas")
        );
        assert_eq!(
            condition(&plan, "WorkersHealthy").reason,
            "PredictorReplicasShort"
        );
    }

    #[test]
    fn scaled_to_zero_is_not_serving() {
        let mut spec = file_spec();
        spec.predictor.replicas = 0;
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let plan = decide_for(&m, vec![], Some(available("v1", 0, 0)));
        assert_eq!(condition(&plan, "Serving").reason, "ScaledToZero");
    }
}
