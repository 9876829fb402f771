//! The predictor rollout as facts, from its Deployment.

use crate::labels;
use k8s_openapi::api::apps::v1::Deployment;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutState {
    /// The model version in the Deployment's pod template.
    pub version: Option<String>,
    pub desired: i32,
    pub available: i32,
    pub updated: i32,
    /// Non-terminated pods of any template: above `updated` while old pods still answer.
    pub total: i32,
    /// The Deployment controller has seen the latest template.
    pub observed: bool,
    /// `Progressing=False, reason=ProgressDeadlineExceeded`, with its message.
    pub deadline_exceeded: Option<String>,
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
        desired,
        available: status.available_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        total: status.replicas.unwrap_or(0),
        observed,
        deadline_exceeded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                desired: 2,
                available: 1,
                updated: 2,
                total: 3,
                observed: true,
                deadline_exceeded: None
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
}
