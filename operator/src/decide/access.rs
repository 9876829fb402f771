//! Who may reach and write to the predictor: the write token mounted into its Deployment (or,
//! when its Secret cannot be used, the Deployment left as it is and `Serving` saying why), and
//! the model's NetworkPolicy beside it.

use crate::children::{self, Defaults};
use crate::condition::{Desired, ServingReason};
use crate::crd::RecommenderModel;
use crate::labels;
use crate::observe::{Observed, WriteTokenState};
use crate::secrets::Refusal;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::time::Duration;

/// How soon a refused write token's Secret is looked at again.
pub(super) const SECRET_RECHECK: Duration = Duration::from_secs(30);

/// What to do to the predictor's NetworkPolicy, in the order the applier does it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkPlan {
    /// Applied before the Deployment, so new pods start isolated.
    pub apply: Option<NetworkPolicy>,
    /// Deleted before the Deployment is applied without the annotation that remembers it, so a
    /// failed delete is retried.
    pub delete: Option<String>,
}

/// The predictor Deployment to apply with its access settings, and why it is withheld if it is.
pub(super) struct Secured {
    pub deployment: Option<Deployment>,
    pub network: NetworkPlan,
    /// The write token's Secret cannot be used: the reason and message for `Serving`.
    pub refused: Option<(ServingReason, String)>,
}

/// Adds the write token and the NetworkPolicy's annotation to the `deployment` about to be
/// applied (none: no model serves yet, nothing to secure).
pub(super) fn secure(
    observed: &Observed,
    deployment: Option<Deployment>,
    defaults: &Defaults,
) -> Secured {
    let model = observed.model;
    let Some(mut deployment) = deployment else {
        return Secured {
            deployment: None,
            network: NetworkPlan::default(),
            refused: None,
        };
    };
    match (&model.spec.predictor.write_token, &observed.write_token) {
        (Some(reference), WriteTokenState::Mountable { version }) => {
            children::mount_write_token(&mut deployment, reference, version.as_deref());
        }
        (_, WriteTokenState::Refused(refusal)) => {
            // The pods would either lose the token they have or never start (a Secret that is
            // missing): what runs keeps running.
            let (reason, why) = match refusal {
                Refusal::NotAllowed(why) => (ServingReason::WriteTokenNotAllowed, why),
                Refusal::Unavailable(why) => (ServingReason::WriteTokenUnavailable, why),
            };
            return Secured {
                deployment: None,
                network: NetworkPlan::default(),
                refused: Some((
                    reason,
                    format!("{why}; the predictor Deployment is left as it is"),
                )),
            };
        }
        _ => {}
    }
    let network = network(model, &mut deployment, observed, defaults);
    Secured {
        deployment: Some(deployment),
        network,
        refused: None,
    }
}

/// The model's NetworkPolicy when the spec asks for one (remembered on the Deployment), else the
/// deletion of the one the Deployment remembers.
fn network(
    model: &RecommenderModel,
    deployment: &mut Deployment,
    observed: &Observed,
    defaults: &Defaults,
) -> NetworkPlan {
    let name = children::predictor_name(&kube::ResourceExt::name_any(model));
    match &model.spec.predictor.network_policy {
        Some(policy) => {
            deployment
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(labels::NETWORK_POLICY.into(), name);
            let operator = defaults.operator_pods.as_ref();
            NetworkPlan {
                apply: Some(children::predictor_network_policy(model, policy, operator)),
                delete: None,
            }
        }
        None => NetworkPlan {
            apply: None,
            delete: observed
                .rollout
                .as_ref()
                .is_some_and(|r| r.network_policy)
                .then_some(name),
        },
    }
}

/// `Serving` as the rollout makes it, unless the write token was refused: then the status stays
/// (the old pods may well serve) and the reason and message say what is withheld.
pub(super) fn serving_condition(
    serving: Desired,
    refused: Option<(ServingReason, String)>,
) -> Desired {
    match refused {
        Some((reason, why)) => Desired::new(
            reason,
            serving.status,
            format!("{why} ({}: {})", serving.reason, serving.message),
        ),
        None => serving,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PredictorNetworkPolicy, WriteTokenRef};
    use crate::decide::decide;
    use crate::decide::fixtures::*;

    fn with_token() -> RecommenderModel {
        let mut spec = file_spec();
        spec.predictor.write_token = Some(WriteTokenRef {
            secret_name: "feedback-token".into(),
            key: "token".into(),
        });
        model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        )
    }

    fn said<'a>(plan: &'a crate::decide::Plan, type_: &str) -> (&'a str, &'a str, &'a str) {
        let c = condition(plan, type_);
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    fn args(d: &Deployment) -> Vec<String> {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        pod.containers[0].args.clone().unwrap()
    }

    #[test]
    fn an_allowed_token_is_mounted_and_a_refused_one_leaves_the_deployment_alone() {
        let m = with_token();
        let mut obs = observe(&m, vec![], Some(available("v1", 1, 1)));
        obs.write_token = WriteTokenState::Mountable {
            version: Some("12".into()),
        };
        let plan = decide(&obs, &config(&m), &defaults());
        let d = plan
            .deployment
            .as_ref()
            .expect("the Deployment with the token");
        assert!(args(d).contains(&"--write-token-file".to_string()));
        let serving = said(&plan, "Serving");
        assert_eq!((serving.0, serving.1), ("True", "Available"));

        let why = "Secret ml/feedback-token (spec.predictor.writeToken) is not labelled \
                   recommender.dev/allow=true nor on the operator's allow list";
        obs.write_token = WriteTokenState::Refused(Refusal::NotAllowed(why.into()));
        let plan = decide(&obs, &config(&m), &defaults());
        assert!(plan.deployment.is_none(), "the Deployment is not changed");
        assert_eq!(plan.network, NetworkPlan::default());
        let (status, reason, message) = said(&plan, "Serving");
        // The pods that run keep serving, so the status stays; the reason says what is wrong.
        assert_eq!((status, reason), ("True", "WriteTokenNotAllowed"));
        assert!(message.starts_with(why), "{message}");
        assert!(message.contains("left as it is"), "{message}");
        assert!(
            plan.requeue_after.is_some_and(|d| d <= SECRET_RECHECK),
            "Secrets are not watched: looked at again"
        );

        obs.write_token = WriteTokenState::Refused(Refusal::Unavailable(
            "Secret ml/feedback-token (spec.predictor.writeToken) not found".into(),
        ));
        obs.rollout = None;
        let plan = decide(&obs, &config(&m), &defaults());
        assert!(plan.deployment.is_none());
        let (status, reason, _) = said(&plan, "Serving");
        assert_eq!((status, reason), ("False", "WriteTokenUnavailable"));
        assert_eq!(said(&plan, "Ready").0, "False", "no predictor runs");
    }

    #[test]
    fn without_a_token_the_predictor_gets_no_token_flag() {
        let spec = file_spec();
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        assert!(!args(&plan.deployment.unwrap()).contains(&"--write-token-file".to_string()));
    }

    #[test]
    fn the_policy_is_applied_with_the_deployment_and_deleted_when_the_spec_drops_it() {
        let mut spec = file_spec();
        spec.predictor.network_policy = Some(PredictorNetworkPolicy::default());
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        let policy = plan.network.apply.expect("a policy");
        assert_eq!(policy.metadata.name.as_deref(), Some("movies-predictor"));
        assert_eq!(plan.network.delete, None);
        let d = plan.deployment.unwrap();
        assert_eq!(
            d.metadata.annotations.unwrap()[labels::NETWORK_POLICY],
            "movies-predictor"
        );

        // Dropped from the spec: the Deployment that remembers it has it deleted, once.
        let mut spec = file_spec();
        spec.predictor.network_policy = None;
        let m = model(
            spec.clone(),
            Some(serving_status(&spec, "2026-11-27T11:00:00Z")),
        );
        let mut remembered = available("v1", 1, 1);
        remembered.network_policy = true;
        let plan = decide_for(&m, vec![], Some(remembered));
        assert_eq!(plan.network.delete.as_deref(), Some("movies-predictor"));
        assert!(plan.network.apply.is_none());
        let d = plan.deployment.unwrap();
        assert!(
            d.metadata
                .annotations
                .is_none_or(|a| !a.contains_key(labels::NETWORK_POLICY))
        );
        let plan = decide_for(&m, vec![], Some(available("v1", 1, 1)));
        assert_eq!(plan.network, NetworkPlan::default());
    }

    #[test]
    fn nothing_is_planned_before_a_model_serves() {
        let mut spec = file_spec();
        spec.predictor.network_policy = Some(PredictorNetworkPolicy::default());
        let m = model(spec, None);
        let plan = decide_for(&m, vec![], None);
        assert!(plan.deployment.is_none());
        assert_eq!(plan.network, NetworkPlan::default());
    }
}
