//! The predictor Deployment serving one model version, and its Service. Its replicas spread over
//! nodes unless the user says how to spread them.

use super::job::Args;
use super::pod::{container_security, merge_pod_settings, pod_security, resources};
use super::store::{StorePod, digest_args, store_args, store_pod};
use super::{Defaults, common_labels, meta, predictor_name};
use crate::crd::RecommenderModel;
use crate::labels;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, Lifecycle, LifecycleHandler, PodSpec, PodTemplateSpec,
    Probe, Service, ServicePort, ServiceSpec, SleepAction, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

const ROLLOUT_DEADLINE_SECONDS: i32 = 300;
/// How long a deleted predictor pod keeps serving before its SIGTERM. Its endpoint stops being
/// ready the moment it is deleted, but each node's kube-proxy (or a load balancer) takes a
/// moment to stop sending it new connections; a pod that closed its listener at once would
/// refuse them, and every drain, eviction and rollout would fail a few requests. 5 s covers
/// kube-proxy's sync (1 s by default) with room; within the default 30 s grace period.
const DRAIN_DELAY_SECONDS: i64 = 5;

pub(super) fn selector_labels(model: &RecommenderModel) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::COMPONENT.into(), labels::COMPONENT_PREDICTOR.into()),
        (labels::MODEL.into(), model.name_any()),
    ])
}

/// `--store` and the version with its recorded digest: the predictor fetches it once, refuses
/// other bytes, and serves on every address, IPv4 and IPv6 (the pod IP, and loopback for
/// `kubectl port-forward`).
fn predictor_args(model: &RecommenderModel, version: &str, sha256: Option<&str>) -> Vec<String> {
    let mut args = Args(Vec::new());
    store_args(model, &mut args);
    args.push("--model-version", version);
    digest_args("--model-sha256", sha256, &mut args);
    args.push("--listen", format!("[::]:{}", model.spec.predictor.port));
    args.0
}

fn predictor_container(
    model: &RecommenderModel,
    version: &str,
    sha256: Option<&str>,
    store: &mut StorePod,
    defaults: &Defaults,
) -> Container {
    let predictor = &model.spec.predictor;
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    Container {
        name: "predictor".into(),
        image: Some(
            predictor
                .image
                .clone()
                .unwrap_or_else(|| defaults.predictor_image.clone()),
        ),
        args: Some(predictor_args(model, version, sha256)),
        env: (!store.env.is_empty()).then(|| std::mem::take(&mut store.env)),
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
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: DRAIN_DELAY_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(container_security()),
        volume_mounts: (!store.mounts.is_empty()).then(|| std::mem::take(&mut store.mounts)),
        ..Container::default()
    }
}

/// One replica more on a node than on another at most, where the scheduler can: replicas on
/// several nodes keep serving when one node goes, and a claim-less (S3) pod can run anywhere.
/// `ScheduleAnyway`, so a single-node cluster still runs every replica.
fn spread_over_nodes(model: &RecommenderModel) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        topology_key: "kubernetes.io/hostname".into(),
        max_skew: 1,
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(model)),
            ..LabelSelector::default()
        }),
        // Only the replicas of this revision: an old version's pods are on their way out.
        match_label_keys: Some(vec!["pod-template-hash".into()]),
        ..TopologySpreadConstraint::default()
    }
}

/// The predictor serving `version` from the model store, refusing an artifact whose sha256 is
/// not `sha256`, the digest recorded for the version.
pub fn predictor_deployment(
    model: &RecommenderModel,
    version: &str,
    sha256: Option<&str>,
    defaults: &Defaults,
) -> Deployment {
    let mut pod_labels = common_labels(model, labels::COMPONENT_PREDICTOR);
    pod_labels.insert(labels::VERSION.into(), version.into());
    let mut store = store_pod(model, true);
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            security_context: Some(pod_security()),
            automount_service_account_token: Some(false),
            containers: vec![predictor_container(
                model, version, sha256, &mut store, defaults,
            )],
            volumes: (!store.volumes.is_empty()).then_some(store.volumes),
            topology_spread_constraints: Some(vec![spread_over_nodes(model)]),
            ..PodSpec::default()
        }),
    };
    merge_pod_settings(&mut template, &model.spec.predictor.pod);
    Deployment {
        metadata: meta(
            model,
            predictor_name(&model.name_any()),
            common_labels(model, labels::COMPONENT_PREDICTOR),
        ),
        spec: Some(DeploymentSpec {
            // Under autoscaling the HorizontalPodAutoscaler owns the count: an apply that named
            // it would take it back at every reconcile.
            replicas: model
                .spec
                .predictor
                .autoscaling
                .is_none()
                .then_some(model.spec.predictor.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(model)),
                ..LabelSelector::default()
            },
            progress_deadline_seconds: Some(ROLLOUT_DEADLINE_SECONDS),
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The predictor pods' label selector as text, as the scale subresource reports it.
pub fn predictor_selector(model: &RecommenderModel) -> String {
    selector_labels(model)
        .iter()
        .map(|(k, v)| labels::selector(k, v))
        .collect::<Vec<_>>()
        .join(",")
}

/// The predictor Service's in-cluster URL: its DNS name, which outlives its ClusterIP.
pub fn predictor_url(model: &RecommenderModel, cluster_domain: &str) -> String {
    format!(
        "http://{}.{}.svc.{cluster_domain}:{}",
        predictor_name(&model.name_any()),
        model.namespace().unwrap_or_default(),
        model.spec.predictor.port
    )
}

pub fn predictor_service(model: &RecommenderModel) -> Service {
    Service {
        metadata: meta(
            model,
            predictor_name(&model.name_any()),
            common_labels(model, labels::COMPONENT_PREDICTOR),
        ),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(model)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: model.spec.predictor.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::{defaults, file_spec, model};

    #[test]
    fn predictor_listens_everywhere_and_probes_readyz() {
        let m = model(file_spec(), None);
        let sha256 = "0f".repeat(32);
        let d = predictor_deployment(&m, "v2", Some(&sha256), &defaults());
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.clone().unwrap().join(" "),
            format!(
                "--store /models/movies --model-version v2 --model-sha256 {sha256} --listen [::]:8080"
            )
        );
        assert!(c.env.is_none(), "nothing from the downward API is needed");
        let claim = pod.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .as_ref();
        assert_eq!(
            claim.map(|c| (c.claim_name.as_str(), c.read_only)),
            Some(("models", Some(true)))
        );
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        assert_eq!(probe.port, IntOrString::String("http".into()));
        // Serves on while the Service stops sending it connections, then gets its SIGTERM.
        let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(pre_stop.sleep.as_ref().map(|s| s.seconds), Some(5));
        crate::children::testing::assert_locked_down(c, true);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert!(
            d.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.len() == 1)
        );
        let labels = d
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels[crate::labels::VERSION], "v2");
    }

    /// From S3 the predictor fetches into memory: no claim, the key pair from the Secret, and
    /// nothing secret among its arguments.
    #[test]
    fn an_s3_predictor_mounts_no_claim() {
        let mut spec = file_spec();
        spec.model_store = serde_yaml::from_str(
            "{s3: {endpoint: 'http://s3.store.svc:8333', bucket: models, prefix: team-a,
              pathStyle: true, credentialsSecret: model-store}}",
        )
        .unwrap();
        let m = model(spec, None);
        let d = predictor_deployment(&m, "v3", None, &defaults());
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.clone().unwrap().join(" "),
            "--store s3://models/team-a/movies --store-endpoint http://s3.store.svc:8333 \
             --store-region us-east-1 --store-path-style --model-version v3 --listen [::]:8080"
        );
        assert_eq!(
            (pod.volumes.as_ref(), c.volume_mounts.as_ref()),
            (None, None)
        );
        let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert_eq!(env, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
    }

    #[test]
    fn replicas_spread_over_nodes_unless_the_user_spreads_them() {
        let spread_of = |m: &RecommenderModel| {
            predictor_deployment(m, "v2", None, &defaults())
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .topology_spread_constraints
                .unwrap()
        };
        let m = model(file_spec(), None);
        let spread = spread_of(&m);
        assert_eq!(spread.len(), 1);
        let s = &spread[0];
        assert_eq!(
            (
                s.topology_key.as_str(),
                s.max_skew,
                s.when_unsatisfiable.as_str()
            ),
            ("kubernetes.io/hostname", 1, "ScheduleAnyway")
        );
        assert_eq!(
            s.label_selector.as_ref().unwrap().match_labels.as_ref(),
            Some(&selector_labels(&m))
        );

        let mut spec = file_spec();
        spec.predictor.pod = serde_json::from_value(serde_json::json!({
            "topologySpreadConstraints": [{"topologyKey": "topology.kubernetes.io/zone",
                "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"}]
        }))
        .unwrap();
        let m = model(spec, None);
        let spread = spread_of(&m);
        assert_eq!(
            spread
                .iter()
                .map(|s| s.topology_key.as_str())
                .collect::<Vec<_>>(),
            ["topology.kubernetes.io/zone"],
            "the user's constraints replace the default"
        );
    }

    #[test]
    fn the_url_is_the_service_dns_name_and_port() {
        let mut spec = file_spec();
        spec.predictor.port = 9000;
        let m = model(spec, None);
        assert_eq!(
            predictor_url(&m, "corp.example"),
            "http://movies-predictor.ml.svc.corp.example:9000"
        );
        let service = predictor_service(&m);
        assert_eq!(service.metadata.name.as_deref(), Some("movies-predictor"));
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 9000);
    }

    #[test]
    fn service_selects_every_version_of_the_predictor() {
        let m = model(file_spec(), None);
        let s = predictor_service(&m);
        let spec = s.spec.unwrap();
        let selector = spec.selector.unwrap();
        assert!(!selector.contains_key(crate::labels::VERSION));
        assert_eq!(selector[crate::labels::MODEL], "movies");
        assert_eq!(spec.ports.unwrap()[0].port, 8080);
    }
}
