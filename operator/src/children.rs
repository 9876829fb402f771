//! The objects the operator owns for a `RecommenderModel`: one trainer Job per training run and
//! the predictor Deployment and Service. Pure builders; the controller applies them.

use crate::crd::{RecommenderModel, RecommenderModelSpec, Source};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const MANAGER: &str = "recommender-operator";
pub const LABEL_MODEL: &str = "recommender.dev/model";
pub const LABEL_RUN: &str = "recommender.dev/run";
pub const LABEL_VERSION: &str = "recommender.dev/version";
pub const ANNOTATION_TRIGGER: &str = "recommender.dev/trigger";
pub const ANNOTATION_STARTED_AT: &str = "recommender.dev/started-at";
pub const ANNOTATION_SPEC_HASH: &str = "recommender.dev/spec-hash";
pub const MODELS_MOUNT: &str = "/models";
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Non-root identity for both containers; `fsGroup` makes the model store writable to it.
const RUN_AS: i64 = 65532;
/// Finished Jobs (and their pods' termination messages) are kept this long for inspection.
const FINISHED_JOB_TTL_SECONDS: i32 = 24 * 3600;
const ROLLOUT_DEADLINE_SECONDS: i32 = 300;

/// Operator-wide defaults that a resource's spec can override.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub trainer_image: String,
    pub predictor_image: String,
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

pub fn artifact_path(model: &str, version: &str) -> String {
    format!("{MODELS_MOUNT}/{model}/{version}.model")
}

/// Hash of the spec fields that change what a training run produces; a change retrains.
pub fn training_spec_hash(spec: &RecommenderModelSpec) -> String {
    let relevant = serde_json::json!({
        "source": spec.source,
        "algorithm": spec.algorithm,
        "hyperparameters": spec.hyperparameters,
        "folds": spec.folds,
        "seed": spec.seed,
    });
    let digest = Sha256::digest(relevant.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn common_labels(model: &RecommenderModel, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".into(), MANAGER.into()),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/instance".into(), model.name_any()),
        (LABEL_MODEL.into(), model.name_any()),
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

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn resources(
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

fn model_store_volume(model: &RecommenderModel, read_only: bool) -> Volume {
    Volume {
        name: "models".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: model.spec.model_store.claim_name.clone(),
            read_only: Some(read_only),
        }),
        ..Volume::default()
    }
}

fn model_store_mount(read_only: bool) -> VolumeMount {
    VolumeMount {
        name: "models".into(),
        mount_path: MODELS_MOUNT.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// The `recommender-trainer train` arguments for one run (docs/contracts.md, "Trainer CLI").
pub fn trainer_args(model: &RecommenderModel, run: u32) -> Vec<String> {
    let spec = &model.spec;
    let version = version_label(run);
    let mut args: Vec<String> = vec!["train".into()];
    let mut push = |flag: &str, value: String| {
        args.push(flag.into());
        args.push(value);
    };
    match &spec.source {
        Source {
            postgres: Some(pg), ..
        } => {
            push("--source", "postgres".into());
            push("--pg-host", pg.host.clone());
            push("--pg-port", pg.port.to_string());
            push("--pg-database", pg.database.clone());
            push("--pg-user", pg.user.clone());
            push("--pg-query", pg.query.clone());
        }
        Source { file: Some(f), .. } => {
            push("--source", format!("{MODELS_MOUNT}/{}", f.path));
            push("--format", f.format.as_arg().into());
            if let Some(d) = &f.delimiter {
                push("--delimiter", d.clone());
            }
            if let Some(h) = f.header {
                push("--header", h.to_string());
            }
            if let Some(c) = &f.columns {
                push("--columns", c.clone());
            }
        }
        // The schema forbids this; the Job then fails with the trainer's own usage error.
        Source { .. } => {}
    }
    push("--out", artifact_path(&model.name_any(), &version));
    push("--version", version);
    push("--report", TERMINATION_LOG.into());
    push("--algorithm", spec.algorithm.as_arg().into());
    push("--folds", spec.folds.to_string());
    if let Some(seed) = spec.seed {
        push("--seed", seed.to_string());
    }
    let h = &spec.hyperparameters;
    push("--factors", h.factors.to_string());
    push("--epochs", h.epochs.to_string());
    push("--lr-all", h.lr_all.to_string());
    push("--reg-all", h.reg_all.to_string());
    push("--init-mean", h.init_mean.to_string());
    push("--init-std", h.init_std.to_string());
    push("--biased", h.biased.to_string());
    if let Some(scale) = h.rating_scale {
        push("--rating-scale", format!("{},{}", scale.low, scale.high));
    }
    if spec.source.file.as_ref().is_some_and(|f| f.skip_bad_lines) {
        args.push("--skip-bad-lines".into());
    }
    args
}

/// The trainer Job for `run`, named deterministically so a restarted operator adopts it.
pub fn trainer_job(
    model: &RecommenderModel,
    run: u32,
    trigger: &str,
    started_at: &str,
    defaults: &Defaults,
) -> Job {
    let name = model.name_any();
    let mut labels = common_labels(model, "trainer");
    labels.insert(LABEL_RUN.into(), run.to_string());
    labels.insert(LABEL_VERSION.into(), version_label(run));
    let mut metadata = meta(model, job_name(&name, run), labels.clone());
    metadata.annotations = Some(BTreeMap::from([
        (ANNOTATION_TRIGGER.into(), trigger.into()),
        (ANNOTATION_STARTED_AT.into(), started_at.into()),
        (ANNOTATION_SPEC_HASH.into(), training_spec_hash(&model.spec)),
    ]));
    let env = model.spec.source.postgres.as_ref().map(|pg| {
        vec![EnvVar {
            name: "PGPASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: pg.password_secret_ref.name.clone(),
                    key: pg.password_secret_ref.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]
    });
    let trainer = &model.spec.trainer;
    let container = Container {
        name: "trainer".into(),
        image: Some(
            trainer
                .image
                .clone()
                .unwrap_or_else(|| defaults.trainer_image.clone()),
        ),
        args: Some(trainer_args(model, run)),
        env,
        resources: Some(resources(
            trainer.resources.as_ref(),
            "500m",
            "512Mi",
            "2Gi",
        )),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![model_store_mount(false)]),
        termination_message_path: Some(TERMINATION_LOG.into()),
        // The message must be the report alone: logs would corrupt the JSON.
        termination_message_policy: Some("File".into()),
        ..Container::default()
    };
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(trainer.retries),
            active_deadline_seconds: Some(trainer.active_deadline_seconds),
            ttl_seconds_after_finished: Some(FINISHED_JOB_TTL_SECONDS),
            // Exit code 1 is a run the trainer judged failed (bad data, unreachable source):
            // retrying the same pod would only repeat it, the operator's backoff decides.
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some("trainer".into()),
                        operator: "In".into(),
                        values: vec![1, 2],
                    }),
                    ..PodFailurePolicyRule::default()
                }],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    security_context: Some(pod_security()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(vec![model_store_volume(model, false)]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn selector_labels(model: &RecommenderModel) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/component".into(), "predictor".into()),
        (LABEL_MODEL.into(), model.name_any()),
    ])
}

/// The predictor serving `version` from the model store.
pub fn predictor_deployment(
    model: &RecommenderModel,
    version: &str,
    defaults: &Defaults,
) -> Deployment {
    let name = model.name_any();
    let predictor = &model.spec.predictor;
    let mut pod_labels = common_labels(model, "predictor");
    pod_labels.insert(LABEL_VERSION.into(), version.into());
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(predictor.port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let container = Container {
        name: "predictor".into(),
        image: Some(
            predictor
                .image
                .clone()
                .unwrap_or_else(|| defaults.predictor_image.clone()),
        ),
        args: Some(vec![
            "--model".into(),
            artifact_path(&name, version),
            "--listen".into(),
            // Pod IP rather than 0.0.0.0: on the test node every pod shares the host network.
            format!("$(POD_IP):{}", predictor.port),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: predictor.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(10),
            ..probe("/livez", 10)
        }),
        resources: Some(resources(
            predictor.resources.as_ref(),
            "100m",
            "128Mi",
            "512Mi",
        )),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![model_store_mount(true)]),
        ..Container::default()
    };
    Deployment {
        metadata: meta(
            model,
            predictor_name(&name),
            common_labels(model, "predictor"),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(predictor.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(model)),
                ..LabelSelector::default()
            },
            progress_deadline_seconds: Some(ROLLOUT_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    security_context: Some(pod_security()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(vec![model_store_volume(model, true)]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

pub fn predictor_service(model: &RecommenderModel) -> Service {
    let name = model.name_any();
    let port = model.spec.predictor.port;
    Service {
        metadata: meta(
            model,
            predictor_name(&name),
            common_labels(model, "predictor"),
        ),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(model)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
