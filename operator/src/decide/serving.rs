//! Serving: which promoted model the predictor serves (the pin, or the newest), the predictor's
//! children and scale, where to call it, and whether its rollout is done and meets its targets
//! (the `Serving` condition).

use super::access::{self, NetworkPlan};
use super::scaling::{self, ScalingPlan};
use crate::children::{self, Defaults};
use crate::condition::{Desired, ServingReason, State};
use crate::crd::{Address, ModelRecord, OnlineStatus, PredictorStatus, RecommenderModel};
use crate::observe::{Observed, RolloutState};
use crate::validate::Config;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use std::time::Duration;

/// Promoted models kept in `status.models`: the rollback window of `pinnedVersion`.
pub const MODELS_LIMIT: usize = 10;
/// Feedback ratings needed before the online RMSE is judged: fewer say more about chance.
pub const ONLINE_MIN_FEEDBACK: u64 = 50;
/// Online figures older than this are not judged: the collector lost sight of the predictors.
pub const ONLINE_MAX_AGE: Duration = Duration::from_secs(600);

/// The model chosen to serve, and why the pin could not be honoured if it could not.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Serving {
    pub model: Option<ModelRecord>,
    pub pin_problem: Option<String>,
}

/// Everything about serving the chosen model.
pub(super) struct Served {
    pub chosen: Serving,
    /// The predictor's children, once there is a model to serve.
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    pub scaling: ScalingPlan,
    pub network: NetworkPlan,
    /// `status.predictor`, `status.url` and `status.address`.
    pub predictor: Option<PredictorStatus>,
    pub url: Option<String>,
    pub address: Option<Address>,
    /// The `Serving` condition.
    pub condition: Desired,
}

/// Chooses the model to serve among the promoted `models` and plans its predictor; `online` is
/// what the collector last saw of it in production.
pub(super) fn plan(
    observed: &Observed,
    config: &Config,
    defaults: &Defaults,
    models: &[ModelRecord],
    online: Option<&OnlineStatus>,
) -> Served {
    let model = observed.model;
    let rollout = observed.rollout.as_ref();
    let chosen = choose(models, model.spec.pinned_version.as_deref());
    let (mut deployment, service) = children(model, &chosen, defaults);
    // A predictor pod would use a Secret the user has not allowed: the Deployment stays as it
    // is (what serves keeps serving) until it is labelled.
    if !super::store::pods_allowed(observed) {
        deployment = None;
    }
    let secured = access::secure(observed, deployment, defaults);
    let deployment = secured.deployment;
    let scaling = match &deployment {
        Some(_) => scaling::plan(model, rollout),
        None => ScalingPlan::default(),
    };
    let replicas = scaling::desired_replicas(model, rollout);
    let targets = Targets {
        latency: config.latency_objective,
        max_rmse: model.spec.promotion.max_rmse,
    };
    let condition = access::serving_condition(
        inference_targets(
            condition(&chosen, rollout, replicas),
            &chosen,
            online,
            &targets,
            observed.now,
        ),
        secured.refused,
    );
    let (url, address) = address(model, &chosen, defaults);
    Served {
        predictor: predictor_status(model, &chosen, rollout),
        chosen,
        deployment,
        service,
        scaling,
        network: secured.network,
        url,
        address,
        condition,
    }
}

/// The pinned model if it names a promoted one, else the newest.
fn choose(models: &[ModelRecord], pin: Option<&str>) -> Serving {
    let newest = models.last().cloned();
    let Some(pin) = pin else {
        return Serving {
            model: newest,
            pin_problem: None,
        };
    };
    match models.iter().find(|m| m.version == pin) {
        Some(found) => Serving {
            model: Some(found.clone()),
            pin_problem: None,
        },
        None => Serving {
            model: newest,
            pin_problem: Some(format!(
                "pinnedVersion {pin} is not a promoted model (known: {})",
                known_versions(models)
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
fn children(
    model: &RecommenderModel,
    serving: &Serving,
    defaults: &Defaults,
) -> (Option<Deployment>, Option<Service>) {
    match &serving.model {
        Some(m) => (
            Some(children::predictor_deployment(
                model,
                &m.version,
                m.artifact.as_ref().map(|a| a.sha256.as_str()),
                defaults,
            )),
            Some(children::predictor_service(model)),
        ),
        None => (None, None),
    }
}

/// Where to call the model: the Service's URL once there is a model to serve (the Service is
/// applied with it), as `status.url` and KServe's `status.address`.
fn address(
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

fn predictor_status(
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
fn condition(serving: &Serving, rollout: Option<&RolloutState>, replicas: i32) -> Desired {
    match (&serving.model, rollout) {
        (None, _) => Desired::new(
            ServingReason::NoModel,
            State::False,
            "no model has been promoted yet",
        ),
        (Some(_), _) if serving.pin_problem.is_some() => Desired::new(
            ServingReason::PinnedVersionUnknown,
            State::False,
            serving.pin_problem.clone().unwrap_or_default(),
        ),
        (Some(m), None) => Desired::new(
            ServingReason::RollingOut,
            State::False,
            format!("creating the predictor for {}", m.version),
        ),
        (Some(m), Some(r)) => rollout_condition(&m.version, r, replicas),
    }
}

/// What the serving version must achieve in production.
struct Targets {
    /// p99 server latency.
    pub latency: Duration,
    pub max_rmse: f64,
}

/// An available rollout still serves when it misses its inference targets, and says so: the
/// reason changes, so an alert can page on it without taking `Ready` down.
fn inference_targets(
    available: Desired,
    serving: &Serving,
    online: Option<&OnlineStatus>,
    targets: &Targets,
    now: Timestamp,
) -> Desired {
    let (Some(model), Some(online)) = (&serving.model, online) else {
        return available;
    };
    let recent = crate::time::add(online.observed_at, ONLINE_MAX_AGE) >= now;
    if available.reason != ServingReason::Available.into()
        || online.version != model.version
        || !recent
    {
        return available;
    }
    if let Some(p99) = online.latency_p99_seconds
        && p99 > targets.latency.as_secs_f64()
    {
        return Desired::new(
            ServingReason::LatencyObjectiveMissed,
            State::True,
            format!(
                "{}: p99 {:.2}ms over the latency objective {:?} ({} req/s on {} replica(s))",
                model.version,
                p99 * 1e3,
                targets.latency,
                online.requests_per_second.unwrap_or_default(),
                online.replicas
            ),
        );
    }
    if let Some(rmse) = online.rmse
        && online.feedback >= ONLINE_MIN_FEEDBACK
        && rmse > targets.max_rmse
    {
        return Desired::new(
            ServingReason::OnlineRmseOverGate,
            State::True,
            format!(
                "{}: online rmse {rmse:.4} over {} feedback ratings exceeds maxRmse {:?}",
                model.version, online.feedback, targets.max_rmse
            ),
        );
    }
    available
}

fn rollout_condition(version: &str, rollout: &RolloutState, desired: i32) -> Desired {
    if let Some(why) = &rollout.deadline_exceeded {
        return Desired::new(
            ServingReason::RolloutStuck,
            State::False,
            format!("the rollout of {version} did not become available: {why}"),
        );
    }
    if desired == 0 {
        return Desired::new(
            ServingReason::ScaledToZero,
            State::False,
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
            ServingReason::Available,
            State::True,
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
            (ServingReason::PartiallyAvailable, "available on only")
        } else {
            (ServingReason::Unavailable, "available on")
        };
        return Desired::new(
            reason,
            State::from_bool(rollout.available > 0),
            format!(
                "{version} {what} {} of {desired} replicas",
                rollout.available
            ),
        );
    }
    // An older version still answering counts as serving while the new one rolls out.
    Desired::new(
        ServingReason::RollingOut,
        State::from_bool(rollout.available > 0),
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

    fn online(version: &str, p99: f64, rmse: f64, feedback: u64) -> crate::crd::OnlineStatus {
        crate::crd::OnlineStatus {
            observed_at: now(),
            version: version.into(),
            replicas: 2,
            requests_per_second: Some(120.0),
            latency_p50_seconds: Some(0.0004),
            latency_p99_seconds: Some(p99),
            feedback,
            rmse: Some(rmse),
            mae: None,
            accuracy: None,
            average_predicted: None,
            average_actual: None,
            average_difference: None,
            suggestions_shown: 0,
            suggestions_rated: 0,
            suggestions_accepted: 0,
            acceptance_rate: None,
            accepted_of_rated: None,
            active_users: 0,
            engaged_users: 0,
            engagement_rate: None,
            users_window_seconds: 3600,
            user_count_relative_error: 0.0081,
            rollout: None,
        }
    }

    #[test]
    fn missed_inference_targets_say_so_while_serving() {
        let spec = file_spec();
        let serving_with = |o: crate::crd::OnlineStatus| {
            let mut status = serving_status(&spec, "2026-11-27T11:00:00Z");
            status.online = Some(o);
            decide_for(
                &model(spec.clone(), Some(status)),
                vec![],
                Some(available("v1", 1, 1)),
            )
        };
        let slow = serving_with(online("v1", 0.0123, 0.9, 500));
        let serving = condition(&slow, "Serving");
        assert_eq!(
            (serving.status.as_str(), serving.reason.as_str()),
            ("True", "LatencyObjectiveMissed")
        );
        assert_eq!(
            serving.message,
            "v1: p99 12.30ms over the latency objective 5ms (120 req/s on 2 replica(s))"
        );
        assert_eq!(condition(&slow, "Ready").status, "True", "still serving");

        let wrong = serving_with(online("v1", 0.001, 1.2, 500));
        let serving = condition(&wrong, "Serving");
        assert_eq!(serving.reason, "OnlineRmseOverGate");
        assert!(
            serving
                .message
                .contains("online rmse 1.2000 over 500 feedback ratings exceeds maxRmse 1.0")
        );

        for (what, o) in [
            ("too little feedback to judge", online("v1", 0.001, 1.2, 10)),
            (
                "figures of the previous version",
                online("v0", 0.05, 2.0, 500),
            ),
            ("within the targets", online("v1", 0.0049, 0.9, 500)),
        ] {
            assert_eq!(
                condition(&serving_with(o), "Serving").reason,
                "Available",
                "{what}"
            );
        }
        let mut old = online("v1", 0.05, 0.9, 500);
        old.observed_at = at("2026-11-27T11:49:00Z");
        assert_eq!(
            condition(&serving_with(old), "Serving").reason,
            "Available",
            "stale figures"
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
