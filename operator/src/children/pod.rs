//! What every pod the operator builds shares (the Jobs' and the predictor's): a non-root,
//! read-only, capability-free identity, default resources, and the merge of a resource's pod
//! settings.

use crate::crd::PodSettings;
use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Environment variables the operator sets on the trainer, which `spec.trainer.env` may not.
pub const TRAINER_ENV: [&str; 1] = ["PGPASSWORD"];
/// The predictor's own settings (given as `--model` and `--listen`), which `spec.predictor.env`
/// may not set.
pub const PREDICTOR_ENV: [&str; 2] = ["MODEL_PATH", "LISTEN_ADDR"];

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

/// Merges a resource's pod settings into a pod template the operator built. Scheduling and
/// identity are the user's (the operator sets none of them but a default spread, which the
/// user's spread replaces); labels, annotations and env are added beside the operator's and
/// never replace one of them.
pub(super) fn merge_pod_settings(template: &mut PodTemplateSpec, settings: &PodSettings) {
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    add_missing(&mut meta.labels, &settings.labels);
    add_missing(&mut meta.annotations, &settings.annotations);
    let Some(pod) = template.spec.as_mut() else {
        return;
    };
    pod.node_selector =
        (!settings.node_selector.is_empty()).then(|| settings.node_selector.clone());
    pod.tolerations = non_empty(&settings.tolerations);
    pod.image_pull_secrets = non_empty(&settings.image_pull_secrets);
    pod.affinity = settings.affinity.clone();
    if !settings.topology_spread_constraints.is_empty() {
        pod.topology_spread_constraints = Some(settings.topology_spread_constraints.clone());
    }
    pod.service_account_name = settings.service_account_name.clone();
    pod.priority_class_name = settings.priority_class_name.clone();
    for container in &mut pod.containers {
        let mut env = container.env.take().unwrap_or_default();
        for var in &settings.env {
            if !env.iter().any(|e| e.name == var.name) {
                env.push(var.clone());
            }
        }
        container.env = (!env.is_empty()).then_some(env);
    }
}

fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

fn add_missing(to: &mut Option<BTreeMap<String, String>>, extra: &BTreeMap<String, String>) {
    if extra.is_empty() {
        return;
    }
    let map = to.get_or_insert_with(BTreeMap::new);
    for (key, value) in extra {
        map.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Toleration};

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..EnvVar::default()
        }
    }

    #[test]
    fn settings_are_added_and_never_replace_the_operators() {
        let mut template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([(
                    "recommender.dev/model".into(),
                    "movies".into(),
                )])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "trainer".into(),
                    env: Some(vec![env("PGPASSWORD", "from-the-secret")]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        };
        let settings: PodSettings = serde_json::from_value(serde_json::json!({
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "serviceAccountName": "trainer",
            "priorityClassName": "batch-low",
            "imagePullSecrets": [{"name": "regcred"}],
            "labels": {"team": "recs", "recommender.dev/model": "other"},
            "annotations": {"cost-center": "42"},
            "env": [{"name": "RUST_LOG", "value": "debug"}, {"name": "PGPASSWORD", "value": "mine"}],
        }))
        .unwrap();
        merge_pod_settings(&mut template, &settings);
        let meta = template.metadata.unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels["team"], "recs");
        assert_eq!(
            labels["recommender.dev/model"], "movies",
            "the operator's label wins"
        );
        assert_eq!(meta.annotations.unwrap()["cost-center"], "42");
        let pod = template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["pool"], "gpu");
        let toleration: &Toleration = &pod.tolerations.as_ref().unwrap()[0];
        assert_eq!(toleration.effect.as_deref(), Some("NoSchedule"));
        assert_eq!(pod.service_account_name.as_deref(), Some("trainer"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("batch-low"));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
        assert_eq!(
            pod.containers[0].env.clone().unwrap(),
            [
                env("PGPASSWORD", "from-the-secret"),
                env("RUST_LOG", "debug")
            ],
            "the operator's PGPASSWORD stays"
        );
    }

    #[test]
    fn no_settings_change_nothing() {
        let built = PodTemplateSpec {
            metadata: Some(ObjectMeta::default()),
            spec: Some(PodSpec {
                containers: vec![Container::default()],
                ..PodSpec::default()
            }),
        };
        let mut merged = built.clone();
        merge_pod_settings(&mut merged, &PodSettings::default());
        assert_eq!(merged, built);
    }
}
