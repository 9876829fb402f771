//! What trainer and predictor pods share: a non-root, read-only, capability-free identity,
//! default resources and the model store volume.

use crate::crd::RecommenderModel;
use k8s_openapi::api::core::v1::{
    Capabilities, PersistentVolumeClaimVolumeSource, PodSecurityContext, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// Non-root identity for both containers; `fsGroup` makes the model store writable to it.
const RUN_AS: i64 = 65532;

fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    })
}

pub(super) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: runtime_default(),
        ..PodSecurityContext::default()
    }
}

pub(super) fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: runtime_default(),
        ..SecurityContext::default()
    }
}

/// `chosen`, else requests of `cpu` and `memory` with a `memory_limit`.
pub(super) fn resources(
    chosen: Option<&ResourceRequirements>,
    cpu: &str,
    memory: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    chosen.cloned().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".into(),
            Quantity(memory_limit.into()),
        )])),
        ..ResourceRequirements::default()
    })
}

pub(super) fn model_store_volume(model: &RecommenderModel, read_only: bool) -> Volume {
    Volume {
        name: "models".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: model.spec.model_store.claim_name.clone(),
            read_only: Some(read_only),
        }),
        ..Volume::default()
    }
}

pub(super) fn model_store_mount(read_only: bool) -> VolumeMount {
    VolumeMount {
        name: "models".into(),
        mount_path: super::MODELS_MOUNT.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}
