//! The predictor's scaling companions: a HorizontalPodAutoscaler (autoscaling/v2) when
//! `spec.predictor.autoscaling` is set, and a PodDisruptionBudget once it may run more than one
//! replica, so a node drain never takes every replica at once.

use super::predictor::selector_labels;
use super::{common_labels, meta, predictor_name};
use crate::crd::{Autoscaling, REQUESTS_PER_SECOND_METRIC, RecommenderModel};
use crate::labels;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// The autoscaler of the predictor Deployment (same name as the Deployment).
pub fn predictor_autoscaler(
    model: &RecommenderModel,
    autoscaling: &Autoscaling,
) -> HorizontalPodAutoscaler {
    let name = predictor_name(&model.name_any());
    let cpu = autoscaling
        .target_cpu_utilization
        .map(|percent| MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(percent),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    let rps = autoscaling
        .target_requests_per_second
        .map(|rps| MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: REQUESTS_PER_SECOND_METRIC.into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(rps.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    HorizontalPodAutoscaler {
        metadata: meta(
            model,
            name.clone(),
            common_labels(model, labels::COMPONENT_PREDICTOR),
        ),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(cpu.into_iter().chain(rps).collect()),
            behavior: None,
        }),
        status: None,
    }
}

/// At most one predictor pod evicted at a time. Crash-looping pods may always be evicted, so a
/// broken predictor never blocks a node drain.
pub fn predictor_disruption_budget(model: &RecommenderModel) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(
            model,
            predictor_name(&model.name_any()),
            common_labels(model, labels::COMPONENT_PREDICTOR),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(model)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::{file_spec, model};

    #[test]
    fn the_autoscaler_targets_the_predictor_deployment_on_each_metric_asked() {
        let m = model(file_spec(), None);
        let both = Autoscaling {
            min_replicas: 2,
            max_replicas: 6,
            target_cpu_utilization: Some(70),
            target_requests_per_second: Some(500),
        };
        let hpa = predictor_autoscaler(&m, &both);
        assert_eq!(hpa.metadata.name.as_deref(), Some("movies-predictor"));
        assert_eq!(hpa.metadata.owner_references.as_ref().unwrap().len(), 1);
        let spec = hpa.spec.unwrap();
        assert_eq!(
            (
                spec.scale_target_ref.kind.as_str(),
                spec.scale_target_ref.name.as_str()
            ),
            ("Deployment", "movies-predictor")
        );
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 6));
        let metrics = spec.metrics.unwrap();
        assert_eq!(metrics.len(), 2);
        let cpu = metrics[0].resource.as_ref().unwrap();
        assert_eq!(
            (cpu.name.as_str(), cpu.target.average_utilization),
            ("cpu", Some(70))
        );
        let pods = metrics[1].pods.as_ref().unwrap();
        assert_eq!(pods.metric.name, REQUESTS_PER_SECOND_METRIC);
        assert_eq!(pods.target.average_value, Some(Quantity("500".into())));

        let cpu_only = predictor_autoscaler(
            &m,
            &Autoscaling {
                target_requests_per_second: None,
                ..both
            },
        );
        assert_eq!(cpu_only.spec.unwrap().metrics.unwrap().len(), 1);
    }

    #[test]
    fn the_budget_lets_one_predictor_pod_go_at_a_time() {
        let m = model(file_spec(), None);
        let spec = predictor_disruption_budget(&m).spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        let selector = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(selector, selector_labels(&m));
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }
}
