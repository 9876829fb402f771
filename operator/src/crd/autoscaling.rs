//! `spec.predictor.autoscaling`: the predictor's replica count left to a
//! HorizontalPodAutoscaler (autoscaling/v2) the operator creates.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The Pods metric a requests-per-second target reads: a custom metrics adapter (such as
/// prometheus-adapter) must serve it from the predictor's `recommender_predictor_http_requests_total`.
pub const REQUESTS_PER_SECOND_METRIC: &str = "recommender_predictor_requests_per_second";

/// Scale the predictor between `minReplicas` and `maxReplicas` on CPU use or requests per second.
/// While it is set the autoscaler owns the Deployment's replica count and
/// `spec.predictor.replicas` is not applied.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("spec.predictor.autoscaling: minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("has(self.targetCpuUtilization) || has(self.targetRequestsPerSecond)")
    .message("spec.predictor.autoscaling: set targetCpuUtilization, targetRequestsPerSecond or both"))]
pub struct Autoscaling {
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    /// At least 2: an autoscaler that may only choose one replica has nothing to do.
    #[schemars(range(min = 2, max = 100))]
    pub max_replicas: i32,
    /// Average CPU use to keep each pod at, in percent of its CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_utilization: Option<i32>,
    /// Average requests per second to keep each pod at (the Pods metric
    /// `recommender_predictor_requests_per_second`, which needs a custom metrics adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub target_requests_per_second: Option<i64>,
}

fn default_min_replicas() -> i32 {
    1
}
