//! The predictor's own NetworkPolicy (`spec.predictor.networkPolicy`): ingress to the predictor
//! port from the peers the user lists and from the operator's pods (the online collector reads
//! `/v1/stats`); every other ingress to the predictor pods is dropped. Egress is not restricted:
//! a predictor only answers.

use super::{common_labels, meta, predictor::selector_labels, predictor_name};
use crate::crd::{PredictorNetworkPolicy, RecommenderModel};
use crate::labels;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The operator's own pods, so each model's policy admits them: their namespace and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorPods {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl OperatorPods {
    /// The peer for those pods: the namespace by its immutable name label (set by the API server
    /// on every namespace since 1.22), and the pods by their labels.
    fn peer(&self) -> NetworkPolicyPeer {
        let namespace = BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            self.namespace.clone(),
        )]);
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(namespace),
                ..LabelSelector::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some(self.labels.clone()),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }
    }
}

/// The NetworkPolicy of `model`'s predictor pods (all versions): its name is the predictor's.
pub fn predictor_network_policy(
    model: &RecommenderModel,
    policy: &PredictorNetworkPolicy,
    operator: Option<&OperatorPods>,
) -> NetworkPolicy {
    let from: Vec<NetworkPolicyPeer> = policy
        .from
        .iter()
        .cloned()
        .chain(operator.map(OperatorPods::peer))
        .collect();
    NetworkPolicy {
        metadata: meta(
            model,
            predictor_name(&model.name_any()),
            common_labels(model, labels::COMPONENT_PREDICTOR),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(model)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            // An empty `from` would admit everyone: with no peer at all, the rule is left out,
            // which admits no one.
            ingress: Some(if from.is_empty() {
                Vec::new()
            } else {
                vec![NetworkPolicyIngressRule {
                    from: Some(from),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(model.spec.predictor.port)),
                        protocol: Some("TCP".into()),
                        ..NetworkPolicyPort::default()
                    }]),
                }]
            }),
            ..NetworkPolicySpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::{file_spec, model};

    fn operator() -> OperatorPods {
        OperatorPods {
            namespace: "recommender-system".into(),
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), "op".into())]),
        }
    }

    #[test]
    fn admits_the_listed_peers_and_the_operator_to_the_predictor_port_only() {
        let mut spec = file_spec();
        spec.predictor.port = 9000;
        let m = model(spec, None);
        let shop: NetworkPolicyPeer = serde_json::from_value(serde_json::json!({
            "namespaceSelector": {"matchLabels": {"team": "shop"}}
        }))
        .unwrap();
        let policy = PredictorNetworkPolicy {
            from: vec![shop.clone()],
        };
        let np = predictor_network_policy(&m, &policy, Some(&operator()));
        assert_eq!(np.metadata.name.as_deref(), Some("movies-predictor"));
        assert_eq!(np.metadata.namespace.as_deref(), Some("ml"));
        let owners = np.metadata.owner_references.as_ref().unwrap();
        assert_eq!(
            (owners.len(), owners[0].kind.as_str(), owners[0].controller),
            (1, "RecommenderModel", Some(true))
        );
        let spec = np.spec.unwrap();
        // Every version's pods: the Service's selector, without the version label.
        let selected = spec.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(selected, selector_labels(&m));
        assert!(!selected.contains_key(crate::labels::VERSION));
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        let from = rules[0].from.clone().unwrap();
        assert_eq!(from[0], shop);
        let op = serde_json::to_value(&from[1]).unwrap();
        assert_eq!(
            op,
            serde_json::json!({
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "recommender-system"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "op"}}
            })
        );
        let ports = rules[0].ports.clone().unwrap();
        assert_eq!(ports[0].port, Some(IntOrString::Int(9000)));
        assert!(spec.egress.is_none(), "egress is not restricted");
    }

    #[test]
    fn with_no_peer_at_all_nobody_is_admitted_rather_than_everybody() {
        let m = model(file_spec(), None);
        let np = predictor_network_policy(&m, &PredictorNetworkPolicy::default(), None);
        let spec = np.spec.unwrap();
        assert_eq!(spec.ingress, Some(Vec::new()));
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    }
}
