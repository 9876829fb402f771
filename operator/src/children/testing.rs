//! What the builders' tests read back from a Job: its pod and the pod's metadata, its container,
//! the container's arguments, and the identity every operator container gets.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub fn pod(job: &Job) -> &PodSpec {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a Job with a pod template")
}

/// The pod template's metadata.
pub fn pod_meta(job: &Job) -> &ObjectMeta {
    job.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .expect("a Job with pod metadata")
}

pub fn container(job: &Job) -> &Container {
    &pod(job).containers[0]
}

/// The container's arguments joined by spaces.
pub fn args(job: &Job) -> String {
    container(job).args.clone().unwrap_or_default().join(" ")
}

/// Non-root, read-only root filesystem, no capabilities; the model store mounted first, read-only
/// or not.
pub fn assert_locked_down(c: &Container, store_read_only: bool) {
    let sc = c.security_context.as_ref().expect("a security context");
    assert_eq!(
        (
            sc.allow_privilege_escalation,
            sc.read_only_root_filesystem,
            sc.run_as_non_root
        ),
        (Some(false), Some(true), Some(true)),
        "{}",
        c.name
    );
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.as_deref()),
        Some(&["ALL".to_string()][..])
    );
    let store = &c.volume_mounts.as_ref().expect("volume mounts")[0];
    assert_eq!(
        (store.mount_path.as_str(), store.read_only),
        ("/models", Some(store_read_only))
    );
}
