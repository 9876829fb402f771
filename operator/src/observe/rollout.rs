//! The predictor rollout as facts, from its Deployment.

use crate::labels;
use k8s_openapi::api::apps::v1::Deployment;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutState {
    /// The model version in the Deployment's pod template.
    pub version: Option<String>,
    /// The progressive rollout's candidate the pod template holds (`--candidate-version`).
    pub candidate: Option<String>,
    pub desired: i32,
    pub available: i32,
    pub updated: i32,
    /// Non-terminated pods of any template: above `updated` while old pods still answer.
    pub total: i32,
    /// The Deployment controller has seen the latest template.
    pub observed: bool,
    /// `Progressing=False, reason=ProgressDeadlineExceeded`, with its message.
    pub deadline_exceeded: Option<String>,
    /// The operator's apply no longer owns `spec.replicas`: it was handed to an autoscaler.
    pub replicas_released: bool,
    /// The operator applied the predictor's NetworkPolicy with this Deployment.
    pub network_policy: bool,
}

pub fn observe_rollout(deployment: &Deployment) -> RolloutState {
    let status = deployment.status.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let version = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(labels::VERSION).cloned());
    let observed = match (deployment.metadata.generation, status.observed_generation) {
        (Some(generation), Some(seen)) => seen >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let deadline_exceeded = status.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        .then(|| c.message.clone().unwrap_or_default())
    });
    RolloutState {
        version,
        candidate: candidate(deployment),
        desired,
        available: status.available_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        total: status.replicas.unwrap_or(0),
        observed,
        deadline_exceeded,
        replicas_released: replicas_released(deployment),
        network_policy: deployment
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(labels::NETWORK_POLICY)),
    }
}

/// The value of the predictor container's `--candidate-version` in the pod template.
fn candidate(deployment: &Deployment) -> Option<String> {
    let pod = deployment.spec.as_ref()?.template.spec.as_ref()?;
    let args = pod
        .containers
        .iter()
        .find(|c| c.name == "predictor")?
        .args
        .as_ref()?;
    let at = args.iter().position(|a| a == "--candidate-version")?;
    args.get(at + 1).cloned()
}

/// Whether the Deployment's managed fields show that the operator's server-side apply does not
/// own `spec.replicas`. An object without managed fields (a server that does not track them)
/// says nothing, so it counts as still owned: the operator then changes nothing it cannot see.
fn replicas_released(deployment: &Deployment) -> bool {
    let entries = deployment
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    !entries.is_empty()
        && !entries.iter().any(|entry| {
            entry.manager.as_deref() == Some(labels::MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().unwrap_or_default().is_empty()
                && entry
                    .fields_v1
                    .as_ref()
                    .is_some_and(|fields| fields.0.pointer("/f:spec/f:replicas").is_some())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replicas_are_released_when_the_operators_apply_no_longer_owns_them() {
        let with_fields = |entries: serde_json::Value| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "movies-predictor", "managedFields": entries},
                "spec": {"replicas": 3, "selector": {}, "template": {}}
            }))
            .unwrap()
        };
        let operator = |fields: serde_json::Value| {
            json!({"manager": "recommender-operator", "operation": "Apply", "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1", "fieldsV1": fields})
        };
        let owns = with_fields(json!([operator(
            json!({"f:spec": {"f:replicas": {}, "f:template": {}}})
        )]));
        assert!(!observe_rollout(&owns).replicas_released);
        let handed_over = with_fields(json!([
            operator(json!({"f:spec": {"f:template": {}}})),
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]));
        assert!(observe_rollout(&handed_over).replicas_released);
        let untracked = with_fields(json!([]));
        assert!(!observe_rollout(&untracked).replicas_released);
    }

    #[test]
    fn rollout_states() {
        let deployment = |generation: i64,
                          observed: i64,
                          progressing: serde_json::Value|
         -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "movies-predictor", "generation": generation},
                "spec": {"replicas": 2, "selector": {}, "template": {"metadata": {"labels": {"recommender.dev/version": "v3"}}}},
                "status": {"observedGeneration": observed, "availableReplicas": 1, "updatedReplicas": 2, "replicas": 3,
                    "conditions": [progressing]}
            }))
            .unwrap()
        };
        let ok = observe_rollout(&deployment(
            4,
            4,
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}),
        ));
        assert_eq!(
            ok,
            RolloutState {
                version: Some("v3".into()),
                candidate: None,
                desired: 2,
                available: 1,
                updated: 2,
                total: 3,
                observed: true,
                deadline_exceeded: None,
                replicas_released: false,
                network_policy: false,
            }
        );
        let behind = observe_rollout(&deployment(
            5,
            4,
            json!({"type": "Progressing", "status": "True"}),
        ));
        assert!(!behind.observed);
        let stuck = observe_rollout(&deployment(
            4,
            4,
            json!({"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet has timed out progressing."}),
        ));
        assert_eq!(
            stuck.deadline_exceeded.as_deref(),
            Some("ReplicaSet has timed out progressing.")
        );
    }

    #[test]
    fn the_candidate_of_a_rollout_is_read_from_the_predictor_args() {
        let with_args = |args: serde_json::Value| -> Deployment {
            serde_json::from_value(json!({
                "spec": {"selector": {}, "template": {"spec": {"containers": [
                    {"name": "predictor", "args": args}]}}}
            }))
            .unwrap()
        };
        let rolling = with_args(json!([
            "--model-version",
            "v1",
            "--candidate-version",
            "v2"
        ]));
        assert_eq!(observe_rollout(&rolling).candidate.as_deref(), Some("v2"));
        let one = with_args(json!(["--model-version", "v1"]));
        assert_eq!(observe_rollout(&one).candidate, None);
    }
}
