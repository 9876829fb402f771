//! The predictor's scale: the HorizontalPodAutoscaler and PodDisruptionBudget beside its
//! Deployment, and who owns the Deployment's replica count.
//!
//! The operator applies the Deployment with server-side apply, so whoever's apply names
//! `spec.replicas` owns it. Under autoscaling the operator's apply leaves it out; leaving out a
//! field one solely owns resets it, so the current count is first applied by a hand-over field
//! manager that keeps it until the autoscaler writes its own. Without autoscaling the operator
//! names it again with `force`, taking it back. Whether the companions may exist is read from
//! the Deployment alone (no extra reads): an autoscaler only while the operator does not own the
//! replicas, a disruption budget only while that is so or the Deployment runs more than one.

use crate::children;
use crate::crd::RecommenderModel;
use crate::observe::RolloutState;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;

/// What to do to the predictor's scaling companions, in the order the applier does it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScalingPlan {
    /// Delete the autoscaler of this name before the operator takes the replicas back.
    pub delete_autoscaler: Option<String>,
    /// Hold this replica count under the hand-over field manager before the Deployment is
    /// applied without it.
    pub replicas_handover: Option<i32>,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// Delete the disruption budget of this name: the predictor runs a single replica.
    pub delete_disruption_budget: Option<String>,
}

/// Only for a predictor being applied (a model serves); otherwise nothing is touched.
pub(super) fn plan(model: &RecommenderModel, rollout: Option<&RolloutState>) -> ScalingPlan {
    let name = children::predictor_name(&model.name_any());
    let predictor = &model.spec.predictor;
    let released = rollout.is_some_and(|r| r.replicas_released);
    let mut plan = ScalingPlan::default();
    let most = match &predictor.autoscaling {
        Some(autoscaling) => {
            plan.autoscaler = Some(children::predictor_autoscaler(model, autoscaling));
            plan.replicas_handover = rollout.filter(|r| !r.replicas_released).map(|r| r.desired);
            autoscaling.max_replicas
        }
        None => {
            plan.delete_autoscaler = released.then(|| name.clone());
            predictor.replicas
        }
    };
    if most > 1 {
        plan.disruption_budget = Some(children::predictor_disruption_budget(model));
    } else if rollout.is_some_and(|r| r.desired > 1 || r.replicas_released) {
        plan.delete_disruption_budget = Some(name);
    }
    plan
}

/// The replicas the predictor should have: the autoscaler's choice (as the Deployment shows it)
/// under autoscaling, else the spec's.
pub(super) fn desired_replicas(model: &RecommenderModel, rollout: Option<&RolloutState>) -> i32 {
    match (&model.spec.predictor.autoscaling, rollout) {
        (Some(_), Some(r)) => r.desired,
        (Some(a), None) => a.min_replicas,
        (None, _) => model.spec.predictor.replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Autoscaling;
    use crate::decide::fixtures::*;

    fn autoscaled(min: i32, max: i32) -> RecommenderModel {
        let mut spec = file_spec();
        spec.predictor.autoscaling = Some(Autoscaling {
            min_replicas: min,
            max_replicas: max,
            target_cpu_utilization: Some(80),
            target_requests_per_second: None,
        });
        model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        )
    }

    fn released(mut rollout: RolloutState) -> RolloutState {
        rollout.replicas_released = true;
        rollout
    }

    #[test]
    fn turning_autoscaling_on_hands_the_current_count_over_once() {
        let m = autoscaled(2, 5);
        let owned = available("v1", 3, 3);
        let first = plan(&m, Some(&owned));
        assert_eq!(first.replicas_handover, Some(3), "keeps the 3 running");
        assert!(first.autoscaler.is_some() && first.disruption_budget.is_some());
        assert_eq!(
            (first.delete_autoscaler, first.delete_disruption_budget),
            (None, None)
        );

        let after = plan(&m, Some(&released(available("v1", 4, 4))));
        assert_eq!(after.replicas_handover, None, "already handed over");
        assert!(after.autoscaler.is_some());

        let fresh = plan(&m, None);
        assert_eq!(
            fresh.replicas_handover, None,
            "a new Deployment has no owner to hand over from"
        );
        assert_eq!(desired_replicas(&m, None), 2);
        assert_eq!(desired_replicas(&m, Some(&available("v1", 4, 4))), 4);

        let deployment = decide_for(&m, vec![], Some(owned)).deployment.unwrap();
        assert_eq!(
            deployment.spec.unwrap().replicas,
            None,
            "the autoscaler's field"
        );
    }

    #[test]
    fn turning_autoscaling_off_deletes_the_autoscaler_and_takes_the_count_back() {
        let mut spec = file_spec();
        spec.predictor.replicas = 1;
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let off = plan(&m, Some(&released(available("v1", 4, 4))));
        assert_eq!(off.delete_autoscaler.as_deref(), Some("movies-predictor"));
        assert_eq!(
            off.delete_disruption_budget.as_deref(),
            Some("movies-predictor")
        );
        assert!(off.autoscaler.is_none() && off.disruption_budget.is_none());
        let deployment = decide_for(&m, vec![], Some(available("v1", 4, 4)))
            .deployment
            .unwrap();
        assert_eq!(deployment.spec.unwrap().replicas, Some(1));

        // At rest with one replica the operator owns: nothing to do, no request made.
        assert_eq!(
            plan(&m, Some(&available("v1", 1, 1))),
            ScalingPlan::default()
        );
    }

    #[test]
    fn a_budget_exactly_while_more_than_one_replica_may_run() {
        let mut spec = file_spec();
        spec.predictor.replicas = 3;
        let m = model(spec.clone(), None);
        assert!(plan(&m, None).disruption_budget.is_some());
        spec.predictor.replicas = 1;
        let m = model(spec, None);
        let down = plan(&m, Some(&available("v1", 3, 3)));
        assert_eq!(
            down.delete_disruption_budget.as_deref(),
            Some("movies-predictor")
        );
        let autoscaled_at_one = plan(&autoscaled(1, 2), Some(&released(available("v1", 1, 1))));
        assert!(
            autoscaled_at_one.disruption_budget.is_some(),
            "the autoscaler may add a replica at any time"
        );
    }
}
