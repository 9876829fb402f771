//! PersistentVolumeClaims: the scheduler does not place pods whose claims are unbound, and there
//! is no provisioner here, so for each pending claim the agent creates a hostPath
//! PersistentVolume pre-bound to it (the controller manager's binder then binds the pair). The
//! folder is the claim's shared folder, the same one pods see. The volume is deleted with its
//! claim; the folder is kept so a test can inspect it.

use std::path::Path;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

use super::resolve::claim_dir;
use crate::Error;

const LABEL: &str = "recommender.local/node-agent-claim";

fn volume_name(claim: &PersistentVolumeClaim) -> Option<String> {
    claim.metadata.uid.as_ref().map(|uid| format!("pvc-{uid}"))
}

/// The PersistentVolume that satisfies `claim`, or `None` if it needs none.
pub fn volume_for(claim: &PersistentVolumeClaim, state_dir: &Path) -> Option<PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let bound = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
    let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound");
    if bound || !pending || claim.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let namespace = claim.metadata.namespace.as_deref()?;
    let name = claim.metadata.name.as_deref()?;
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "1Gi".to_owned(), |q| q.0.clone());
    let access_modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);
    let value = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim)?, "labels": {LABEL: "true"}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": access_modes,
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".to_owned()),
            "hostPath": {
                "path": claim_dir(state_dir, namespace, name).display().to_string(),
                "type": "DirectoryOrCreate",
            },
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": namespace, "name": name, "uid": claim.metadata.uid,
            },
        },
    });
    serde_json::from_value(value).ok()
}

async fn provide(
    volumes: &Api<PersistentVolume>,
    claim: &PersistentVolumeClaim,
    state_dir: &Path,
) -> Result<(), Error> {
    let Some(volume) = volume_for(claim, state_dir) else {
        return Ok(());
    };
    let name = volume.metadata.name.clone().unwrap_or_default();
    if let (Some(ns), Some(claim_name)) = (&claim.metadata.namespace, &claim.metadata.name) {
        let dir = claim_dir(state_dir, ns, claim_name);
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    }
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => {
            tracing::info!(volume = %name, "created PersistentVolume for pending claim");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(Error::Kube {
            context: format!("creating PersistentVolume {name}"),
            source: e,
        }),
    }
}

async fn release(volumes: &Api<PersistentVolume>, claim: &PersistentVolumeClaim) {
    let Some(name) = volume_name(claim) else {
        return;
    };
    match volumes.delete(&name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(volume = %name, "deleted PersistentVolume of deleted claim"),
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => tracing::warn!(volume = %name, error = %e, "deleting PersistentVolume failed"),
    }
}

/// Watches all claims; survives API server restarts through the watcher's backoff.
pub async fn provide_volumes(client: Client, state_dir: std::path::PathBuf) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client);
    let mut events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(claim) | watcher::Event::InitApply(claim)) => {
                if let Err(e) = provide(&volumes, &claim, &state_dir).await {
                    tracing::warn!(error = %e, "providing a volume failed");
                }
            }
            Ok(watcher::Event::Delete(claim)) => release(&volumes, &claim).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching PersistentVolumeClaims"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(status: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "models", "namespace": "ml", "uid": "1234"},
            "spec": {
                "accessModes": ["ReadWriteMany"], "volumeName": volume,
                "resources": {"requests": {"storage": "2Gi"}},
            },
            "status": {"phase": status},
        }))
        .unwrap()
    }

    #[test]
    fn pending_claims_get_a_prebound_host_folder_volume() {
        let pv = volume_for(&claim(Some("Pending"), None), Path::new("/state")).unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234"));
        let spec = pv.spec.unwrap();
        assert_eq!(spec.host_path.unwrap().path, "/state/volumes/pvc/ml/models");
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(claim_ref.uid.as_deref(), Some("1234"));
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteMany"]);
        assert_eq!(spec.capacity.unwrap()["storage"].0, "2Gi");
        assert_eq!(spec.storage_class_name.as_deref(), Some(""));
    }

    #[test]
    fn bound_claims_need_nothing() {
        assert!(volume_for(&claim(Some("Bound"), Some("pv")), Path::new("/s")).is_none());
        assert!(volume_for(&claim(Some("Pending"), Some("pv")), Path::new("/s")).is_none());
    }
}
