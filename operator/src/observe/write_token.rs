//! The predictor's write token Secret (`spec.predictor.writeToken`): whether it may be mounted.
//! Its value is read only to check the key is there; it goes nowhere but into the pods.

use crate::crd::RecommenderModel;
use crate::secrets::{Refusal, SecretPolicy, secret_value};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

const FIELD: &str = "spec.predictor.writeToken";

/// What the decision needs to know of the write token.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteTokenState {
    /// No token is asked for: writes are open.
    NotUsed,
    /// Opted in and holding the key, at this `resourceVersion`.
    Mountable { version: Option<String> },
    /// Cannot be mounted: the predictor Deployment is left as it is.
    Refused(Refusal),
}

pub async fn observe_write_token(
    client: &Client,
    policy: &SecretPolicy,
    model: &RecommenderModel,
) -> WriteTokenState {
    let Some(reference) = &model.spec.predictor.write_token else {
        return WriteTokenState::NotUsed;
    };
    let namespace = model.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let key = (reference.secret_name.as_str(), reference.key.as_str());
    match secret_value(&secrets, policy, &namespace, key, FIELD).await {
        Ok((_, version)) => WriteTokenState::Mountable { version },
        Err(refusal) => WriteTokenState::Refused(refusal),
    }
}
