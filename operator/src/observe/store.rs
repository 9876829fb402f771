//! The model store as facts: for a bucket, one bounded `list` of the model's folder with the
//! key pair of its Secret (read only when the user opted it in); for every store, what the
//! model's pods say about it (a predictor's refusal of its artifact, a pod that cannot attach
//! the claim). The decision turns these into `ModelStoreReachable`.

use crate::children::{Backend, store_flags};
use crate::crd::{CaSecretRef, RecommenderModel, S3Store};
use crate::labels::ALLOW_SECRET;
use crate::secrets::SecretPolicy;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use recommender_contract::refusal::Refusal;
use recommender_store::{Credentials, Reason, Store};
use std::time::Duration;

/// What the probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreProbe {
    /// A claim: pods mount it, the operator does not.
    Claim,
    Reachable,
    /// The store (or the system under it) refused: its reason and words, never a credential.
    Failed(Reason, String),
    /// A Secret the spec names lacks the opt-in label: it was not read, and no pod that would
    /// reference it is started or changed.
    SecretNotAllowed(String),
    /// A Secret the spec names is missing, unreadable or lacks a key.
    SecretUnusable(String),
}

impl StoreProbe {
    pub fn secret_not_allowed(&self) -> bool {
        matches!(self, Self::SecretNotAllowed(_))
    }
}

/// What one of the model's pods says about the store.
#[derive(Debug, Clone, PartialEq)]
pub enum PodTrouble {
    /// A predictor refused the artifact it was told to serve (its termination message).
    Refused { pod: String, refusal: Refusal },
    /// The pod cannot attach or mount the claim: the kubelet's or attach controller's event.
    NotAttachable {
        pod: String,
        reason: String,
        message: String,
    },
}

/// Lists one key of the model's folder within `timeout`.
pub async fn probe_store(
    client: &Client,
    model: &RecommenderModel,
    timeout: Duration,
    policy: &SecretPolicy,
) -> StoreProbe {
    let Backend::S3(s3) = model.spec.model_store.backend() else {
        return StoreProbe::Claim;
    };
    let namespace = model.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let (credentials, ca) = match secret_material(&secrets, &namespace, s3, policy).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let flags = store_flags(&model.spec.model_store, &model.name_any());
    let config = match flags.config_with(|| Ok(credentials)) {
        Ok(config) => config,
        Err(e) => return StoreProbe::Failed(Reason::InvalidConfig, e.to_string()),
    };
    let store = match Store::open_with_ca(&config, ca.as_deref()) {
        Ok(store) => store,
        Err(e) => return StoreProbe::Failed(e.reason(), e.to_string()),
    };
    // One listing: a store that has more than one object under `runs/` answered too.
    match tokio::time::timeout(timeout, store.list("runs", 1)).await {
        Ok(Ok(_)) => StoreProbe::Reachable,
        Ok(Err(e)) if e.reason() == Reason::TooLarge => StoreProbe::Reachable,
        Ok(Err(e)) => StoreProbe::Failed(e.reason(), e.to_string()),
        Err(_) => StoreProbe::Failed(
            Reason::Unreachable,
            format!(
                "list of {} got no answer within {}s",
                flags.store.unwrap_or_default(),
                timeout.as_secs_f64()
            ),
        ),
    }
}

/// The key pair and CA bundle from the Secrets `s3` names, if the user opted them in.
async fn secret_material(
    secrets: &Api<Secret>,
    namespace: &str,
    s3: &S3Store,
    policy: &SecretPolicy,
) -> Result<(Credentials, Option<Vec<u8>>), StoreProbe> {
    let field = "spec.modelStore.s3.credentialsSecret";
    let secret = opted_in(secrets, namespace, &s3.credentials_secret, field, policy).await?;
    let key = |key: &str| value(&secret, namespace, key, field);
    let credentials = Credentials::new(
        key(S3Store::ACCESS_KEY_ID_KEY)?,
        key(S3Store::SECRET_ACCESS_KEY_KEY)?,
    )
    .map_err(|e| {
        StoreProbe::SecretUnusable(format!(
            "Secret {namespace}/{} ({field}): {e}",
            s3.credentials_secret
        ))
    })?;
    let ca = match &s3.ca_secret {
        Some(CaSecretRef { name, key }) => {
            let field = "spec.modelStore.s3.caSecret";
            let secret = opted_in(secrets, namespace, name, field, policy).await?;
            Some(value(&secret, namespace, key, field)?.into_bytes())
        }
        None => None,
    };
    Ok((credentials, ca))
}

/// The Secret `name`, if it exists and carries the opt-in label.
async fn opted_in(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
    field: &str,
    policy: &SecretPolicy,
) -> Result<Secret, StoreProbe> {
    let secret = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(StoreProbe::SecretUnusable(format!(
                "Secret {namespace}/{name} ({field}) not found"
            )));
        }
        Err(err) => {
            return Err(StoreProbe::SecretUnusable(format!(
                "cannot read Secret {namespace}/{name} ({field}): {err}"
            )));
        }
    };
    allowed(&secret, namespace, field, policy)?;
    Ok(secret)
}

/// Whether the user opted `secret` in (label `recommender.dev/allow: "true"`, or the operator's
/// `--allowed-secret` list), as for the database's Secrets.
fn allowed(
    secret: &Secret,
    namespace: &str,
    field: &str,
    policy: &SecretPolicy,
) -> Result<(), StoreProbe> {
    if policy.permits(secret, namespace) {
        return Ok(());
    }
    Err(StoreProbe::SecretNotAllowed(format!(
        "Secret {namespace}/{name} ({field}) is not labelled {ALLOW_SECRET}=true, so the \
         operator neither reads it nor gives it to a pod, and starts or changes no pod that \
         would use it; label it to allow its use",
        name = secret.name_any()
    )))
}

/// One key of `secret` as text, or why it cannot be had (never its value).
fn value(secret: &Secret, namespace: &str, key: &str, field: &str) -> Result<String, StoreProbe> {
    let name = secret.name_any();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| {
            StoreProbe::SecretUnusable(format!(
                "Secret {namespace}/{name} ({field}) has no key {key:?}"
            ))
        })?;
    String::from_utf8(bytes).map_err(|_| {
        StoreProbe::SecretUnusable(format!(
            "Secret {namespace}/{name} ({field}) key {key:?} is not UTF-8 text"
        ))
    })
}

/// Event reasons that say a pod cannot attach or mount a volume.
const ATTACH_FAILURES: [&str; 2] = ["FailedAttachVolume", "FailedMount"];

/// What the model's pods say about the store: the predictors' refusals and, on a claim, the
/// attach and mount failures of any of its pods (the newest event per pod).
pub async fn pod_troubles(
    client: &Client,
    model: &RecommenderModel,
) -> kube::Result<Vec<PodTrouble>> {
    let namespace = model.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = crate::labels::selector(crate::labels::MODEL, &model.name_any());
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let mut troubles: Vec<PodTrouble> = pods.iter().filter_map(refusal).collect();
    if matches!(model.spec.model_store.backend(), Backend::Claim(_))
        && pods.iter().any(waiting_to_start)
    {
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        for reason in ATTACH_FAILURES {
            let fields = format!("involvedObject.kind=Pod,reason={reason}");
            // Best effort: without the right to list events (an older chart's Role) the
            // condition says less, and nothing else changes.
            match events.list(&ListParams::default().fields(&fields)).await {
                Ok(found) => troubles.extend(attach_failures(&pods, &found.items)),
                Err(error) => tracing::warn!(%error, "cannot list the pods' {reason} events"),
            }
        }
    }
    Ok(troubles)
}

/// A pod whose containers have not started: where an attach failure keeps it.
fn waiting_to_start(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|s| s.phase.as_deref() == Some("Pending"))
}

/// The refusal a predictor container wrote before it exited, if it did.
pub(super) fn refusal(pod: &Pod) -> Option<PodTrouble> {
    let labels = pod.labels();
    if labels.get(crate::labels::COMPONENT).map(String::as_str)
        != Some(crate::labels::COMPONENT_PREDICTOR)
    {
        return None;
    }
    let status = pod.status.as_ref()?.container_statuses.as_ref()?;
    status.iter().find_map(|c| {
        let terminated = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| c.state.as_ref().and_then(|s| s.terminated.as_ref()))?;
        let refusal: Refusal = serde_json::from_str(terminated.message.as_deref()?).ok()?;
        Some(PodTrouble::Refused {
            pod: pod.name_any(),
            refusal,
        })
    })
}

/// The newest attach or mount failure of each of `pods` among `events`.
pub(super) fn attach_failures(pods: &[Pod], events: &[Event]) -> Vec<PodTrouble> {
    let mut troubles = Vec::new();
    for pod in pods.iter().filter(|p| waiting_to_start(p)) {
        let uid = pod.uid();
        let newest = events
            .iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(pod.name_any().as_str())
                    && (uid.is_none() || e.involved_object.uid == uid)
            })
            .max_by_key(|e| {
                e.last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or_else(|| e.event_time.as_ref().map(|t| t.0))
            });
        if let Some(event) = newest {
            troubles.push(PodTrouble::NotAttachable {
                pod: pod.name_any(),
                reason: event.reason.clone().unwrap_or_default(),
                message: event.message.clone().unwrap_or_default(),
            });
        }
    }
    troubles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_opted_in_secrets_are_read() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "store", "namespace": "ml"},
            "data": {"accessKeyId": "aWQ=", "secretAccessKey": "c2VjcmV0"}
        }))
        .unwrap();
        let field = "spec.modelStore.s3.credentialsSecret";
        match allowed(&secret, "ml", field, &SecretPolicy::default()) {
            Err(StoreProbe::SecretNotAllowed(why)) => {
                assert!(why.starts_with(
                    "Secret ml/store (spec.modelStore.s3.credentialsSecret) is not labelled recommender.dev/allow=true"
                ), "{why}");
                assert!(!why.contains("secret\""), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(value(&secret, "ml", "accessKeyId", field), Ok("id".into()));
        assert_eq!(
            value(&secret, "ml", "nope", field),
            Err(StoreProbe::SecretUnusable(
                "Secret ml/store (spec.modelStore.s3.credentialsSecret) has no key \"nope\"".into()
            ))
        );
    }

    #[test]
    fn a_predictors_refusal_is_read_from_its_last_state() {
        let message = r#"{"format":1,"reason":"Corrupt","version":"v2","artifact":"s3://m/movies/v2.model","message":"its sha256 is 05…, expected 32…"}"#;
        let refused = pod(serde_json::json!({
            "metadata": {"name": "movies-predictor-abc", "labels": {
                "app.kubernetes.io/component": "predictor"}},
            "status": {"containerStatuses": [{"name": "predictor", "image": "p", "imageID": "",
                "ready": false, "restartCount": 2, "lastState": {"terminated": {
                    "exitCode": 1, "message": message}}}]}
        }));
        match refusal(&refused) {
            Some(PodTrouble::Refused { pod, refusal }) => {
                assert_eq!(pod, "movies-predictor-abc");
                assert_eq!(
                    (refusal.reason.as_str(), refusal.version.as_str()),
                    ("Corrupt", "v2")
                );
            }
            other => panic!("{other:?}"),
        }
        let trainer = pod(serde_json::json!({
            "metadata": {"name": "movies-train-1-x", "labels": {
                "app.kubernetes.io/component": "trainer"}},
            "status": {"containerStatuses": [{"name": "trainer", "image": "t", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"terminated": {
                    "exitCode": 1, "message": message}}}]}
        }));
        assert_eq!(
            refusal(&trainer),
            None,
            "a trainer's report is not a refusal"
        );
    }

    #[test]
    fn the_newest_attach_failure_of_a_pending_pod_names_it() {
        let pending = pod(serde_json::json!({
            "metadata": {"name": "movies-predictor-b", "uid": "u2"},
            "status": {"phase": "Pending"}
        }));
        let running = pod(serde_json::json!({
            "metadata": {"name": "movies-predictor-a", "uid": "u1"},
            "status": {"phase": "Running"}
        }));
        let event = |pod: &str, uid: &str, at: &str, message: &str| -> Event {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("{pod}.{at}")},
                "involvedObject": {"kind": "Pod", "name": pod, "uid": uid},
                "reason": "FailedAttachVolume", "lastTimestamp": at, "message": message
            }))
            .unwrap()
        };
        let events = [
            event("movies-predictor-b", "u2", "2026-12-07T10:00:00Z", "older"),
            event(
                "movies-predictor-b",
                "u2",
                "2026-12-07T10:01:00Z",
                "Multi-Attach error for volume \"pv-1\" Volume is already used by pod(s) movies-predictor-a",
            ),
            event(
                "movies-predictor-a",
                "u1",
                "2026-12-07T10:02:00Z",
                "long gone",
            ),
            event(
                "movies-predictor-b",
                "old-uid",
                "2026-12-07T10:03:00Z",
                "an earlier pod's",
            ),
        ];
        assert_eq!(
            attach_failures(&[running, pending], &events),
            [PodTrouble::NotAttachable {
                pod: "movies-predictor-b".into(),
                reason: "FailedAttachVolume".into(),
                message: "Multi-Attach error for volume \"pv-1\" Volume is already used by pod(s) movies-predictor-a".into(),
            }]
        );
    }
}
