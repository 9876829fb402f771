//! The objects the operator owns for a `RecommenderModel`: one trainer Job per training run,
//! tuning trials (an Indexed Job and a plan ConfigMap per rung of a search), forward-evaluation
//! Jobs, model store cleanup Jobs (all from one Job builder), and the predictor Deployment and
//! Service with its autoscaler, disruption budget, NetworkPolicy and write token; every pod
//! reaches the model store the one way `store` builds. Pure builders; the apply stage applies them.

mod autoscaling;
mod cleanup;
mod evaluation;
mod job;
mod network;
mod pod;
mod predictor;
mod rollout;
mod search;
mod store;
#[cfg(test)]
pub(crate) mod testing;
mod trainer;
mod write_token;

pub use autoscaling::{predictor_autoscaler, predictor_disruption_budget};
pub use cleanup::{cleanup_job, cleanup_job_name, prune_args};
pub use evaluation::{evaluation_args, evaluation_job, evaluation_job_name};
pub use network::{OperatorPods, predictor_network_policy};
pub use pod::{PREDICTOR_ENV, TRAINER_ENV};
pub use predictor::{predictor_deployment, predictor_selector, predictor_service, predictor_url};
pub use rollout::{mount_rollout, rollout_config_map, rollout_config_name};
pub use search::{
    NewRung, mount_search_record, owned_by_job, plan_config_map, record_config_map, record_name,
    rung_name, trial_args, trial_job,
};
pub use store::{Backend, store_flags, store_location};
pub use trainer::{NewRun, Searched, challenge_serving, trainer_args, trainer_job};
pub use write_token::mount_write_token;

use crate::crd::{RecommenderModel, RecommenderModelSpec};
use crate::labels;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const MODELS_MOUNT: &str = "/models";
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// Operator-wide defaults that a resource's spec can override.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub trainer_image: String,
    pub predictor_image: String,
    /// The cluster's DNS domain, for the predictor's in-cluster URL (`cluster.local` mostly).
    pub cluster_domain: String,
    /// The operator's own pods, admitted by every predictor NetworkPolicy; unknown outside a
    /// cluster.
    pub operator_pods: Option<OperatorPods>,
}

pub fn job_name(model: &str, run: u32) -> String {
    format!("{model}-train-{run}")
}

pub fn predictor_name(model: &str) -> String {
    format!("{model}-predictor")
}

pub fn version_label(run: u32) -> String {
    format!("v{run}")
}

/// Hash of the spec fields that change what a training run produces; a change retrains.
/// How the database is reached over TLS changes nothing it returns, so it is left out (and a
/// model written before TLS existed keeps its hash).
pub fn training_spec_hash(spec: &RecommenderModelSpec) -> String {
    let mut source = spec.source.clone();
    if let Some(pg) = source.postgres.as_mut() {
        pg.ssl_mode = Default::default();
        pg.ca_secret_ref = None;
    }
    let mut relevant = serde_json::json!({
        "source": source,
        "algorithm": spec.algorithm,
        "hyperparameters": spec.hyperparameters,
        "folds": spec.folds,
        "seed": spec.seed,
    });
    // Only when set, so a model trained before `spec.tuning` existed keeps its hash. The whole
    // search spec: a bigger budget is worth a new search too.
    if let Some(tuning) = &spec.tuning {
        relevant["tuning"] = serde_json::json!(tuning);
    }
    let digest = Sha256::digest(relevant.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn common_labels(model: &RecommenderModel, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.into(), labels::MANAGER.into()),
        (labels::COMPONENT.into(), component.into()),
        (labels::INSTANCE.into(), model.name_any()),
        (labels::MODEL.into(), model.name_any()),
    ])
}

fn owner(model: &RecommenderModel) -> Vec<OwnerReference> {
    model.controller_owner_ref(&()).into_iter().collect()
}

fn meta(model: &RecommenderModel, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: model.namespace(),
        labels: Some(labels),
        owner_references: Some(owner(model)),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::file_spec;

    #[test]
    fn the_spec_hash_follows_training_fields_only() {
        let spec = file_spec();
        let mut replicas = spec.clone();
        replicas.predictor.replicas = 5;
        assert_eq!(training_spec_hash(&spec), training_spec_hash(&replicas));
        let mut factors = spec.clone();
        factors.hyperparameters.factors = 7;
        assert_ne!(training_spec_hash(&spec), training_spec_hash(&factors));
        assert_eq!(training_spec_hash(&spec).len(), 16);
    }

    #[test]
    fn tls_settings_do_not_retrain() {
        let plain: RecommenderModelSpec = serde_yaml::from_str(
            "source: {postgres: {host: db, database: d, user: u, query: SELECT 1,
               passwordSecretRef: {name: s}}}\nmodelStore: {claimName: models}",
        )
        .unwrap();
        let mut tls = plain.clone();
        let pg = tls.source.postgres.as_mut().unwrap();
        pg.ssl_mode = crate::crd::PgSslMode::VerifyFull;
        pg.ca_secret_ref = Some(crate::crd::CaSecretRef {
            name: "ca".into(),
            key: "ca.crt".into(),
        });
        assert_eq!(training_spec_hash(&plain), training_spec_hash(&tls));
        let mut query = plain.clone();
        query.source.postgres.as_mut().unwrap().query = "SELECT 2".into();
        assert_ne!(training_spec_hash(&plain), training_spec_hash(&query));
    }
}
