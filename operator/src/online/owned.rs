//! Which pods the collector may read: those of the model's own predictor Deployment, followed
//! down the controller ownerReferences (model → Deployment → ReplicaSet → Pod) by uid. Labels
//! alone would admit any pod a tenant labels like a predictor, whose made-up figures would then
//! land in the model's status and metrics.

use crate::children::predictor_name;
use crate::crd::RecommenderModel;
use k8s_openapi::Metadata;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

/// The uid of the object's controller, if it has one.
fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

fn controlled_by<K: Metadata<Ty = ObjectMeta>>(object: &K, owner: Option<&str>) -> bool {
    owner.is_some() && controller_uid(object.metadata()) == owner
}

/// The pods among `pods` that belong to `model`'s predictor Deployment.
pub fn owned_pods<'a>(
    model: &RecommenderModel,
    deployments: &[Deployment],
    replica_sets: &[ReplicaSet],
    pods: &'a [Pod],
) -> Vec<&'a Pod> {
    let namespace = model.namespace();
    let name = predictor_name(&model.name_any());
    let model_uid = model.uid();
    let Some(deployment) = deployments.iter().find(|d| {
        d.namespace() == namespace
            && d.name_any() == name
            && controlled_by(*d, model_uid.as_deref())
    }) else {
        return Vec::new();
    };
    let deployment_uid = deployment.uid();
    let sets: Vec<String> = replica_sets
        .iter()
        .filter(|rs| rs.namespace() == namespace && controlled_by(*rs, deployment_uid.as_deref()))
        .filter_map(|rs| rs.uid())
        .collect();
    pods.iter()
        .filter(|p| p.namespace() == namespace)
        .filter(|p| controller_uid(&p.metadata).is_some_and(|uid| sets.iter().any(|s| s == uid)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, uid: &str, owner: &str) -> K {
        let api_version = if kind == "Pod" { "v1" } else { "apps/v1" };
        serde_json::from_value(json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": "ml", "uid": uid,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Owner", "name": "owner",
                    "uid": owner, "controller": true}]}
        }))
        .unwrap()
    }

    #[test]
    fn only_pods_of_the_models_own_deployment_are_read() {
        let spec = crate::decide::fixtures::file_spec();
        let mut model = crate::decide::fixtures::model(spec, None);
        model.metadata.uid = Some("model-uid".into());
        let deployments: Vec<Deployment> = vec![
            object("Deployment", "movies-predictor", "deploy-uid", "model-uid"),
            // A look-alike a tenant made: same labels, not owned by the model.
            object("Deployment", "fake-predictor", "fake-deploy", "someone"),
        ];
        let sets: Vec<ReplicaSet> = vec![
            object("ReplicaSet", "movies-predictor-abc", "rs-old", "deploy-uid"),
            object("ReplicaSet", "movies-predictor-def", "rs-new", "deploy-uid"),
            object("ReplicaSet", "fake-predictor-xyz", "rs-fake", "fake-deploy"),
        ];
        let pods: Vec<Pod> = vec![
            object("Pod", "movies-predictor-abc-1", "p1", "rs-old"),
            object("Pod", "movies-predictor-def-1", "p2", "rs-new"),
            object("Pod", "fake-predictor-xyz-1", "p3", "rs-fake"),
            // Labelled like a predictor, owned by nothing of ours.
            object("Pod", "movies-predictor-zzz-1", "p4", "rs-unknown"),
        ];
        let names: Vec<String> = owned_pods(&model, &deployments, &sets, &pods)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["movies-predictor-abc-1", "movies-predictor-def-1"]);

        // A Deployment of the right name the model does not control admits nothing.
        let impostor: Vec<Deployment> = vec![object(
            "Deployment",
            "movies-predictor",
            "deploy-uid",
            "another-model",
        )];
        assert!(owned_pods(&model, &impostor, &sets, &pods).is_empty());
    }
}
