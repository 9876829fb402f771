//! Pod settings a platform team sets on trainer and predictor pods (scheduling, identity, pull
//! secrets, metadata, environment), merged into what the operator builds: what the operator
//! sets always wins, and the schema refuses keys and names it reserves.

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, Toleration, TopologySpreadConstraint,
};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Label and annotation keys the operator sets or reserves on its pods.
pub const RESERVED_KEY_PREFIX: &str = "recommender.dev/";
pub const RESERVED_LABELS: [&str; 3] = [
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/instance",
];

/// Scheduling, identity and metadata for the pods of one component, e.g. training on a GPU
/// node pool: `nodeSelector` plus a `toleration` for the pool's taint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Run only on nodes with these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate (a dedicated node pool's, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the pods spread over zones and nodes. Predictors spread over nodes by default
    /// (`kubernetes.io/hostname`, `maxSkew: 1`, `ScheduleAnyway`); constraints given here
    /// replace that default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Secrets for pulling the image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The pods' ServiceAccount (the namespace's `default` when absent). Its token is still not
    /// mounted: neither binary calls the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Extra pod labels. Keys under `recommender.dev/` and the `app.kubernetes.io/` keys the
    /// operator sets are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    // Exact matches as a prefix of the right length: the API server prices `==` on a key of
    // unbounded length at its largest request size, `startsWith` at the literal's.
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('recommender.dev/') && !(k.startsWith('app.kubernetes.io/managed-by') && size(k) == 28) && !(k.startsWith('app.kubernetes.io/component') && size(k) == 27) && !(k.startsWith('app.kubernetes.io/instance') && size(k) == 26))")
        .message("labels: keys under recommender.dev/ and app.kubernetes.io/managed-by, component and instance are set by the operator"))]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations (keys under `recommender.dev/` are refused).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('recommender.dev/'))")
        .message("annotations: keys under recommender.dev/ are reserved for the operator"))]
    pub annotations: BTreeMap<String, String>,
    /// Extra environment variables for the container; the ones the operator sets (the
    /// trainer's `PGPASSWORD`, the predictor's `MODEL_PATH` and `LISTEN_ADDR`) are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
}

impl PodSettings {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Whether the operator sets or reserves this label or annotation key.
pub fn reserved_key(key: &str) -> bool {
    key.starts_with(RESERVED_KEY_PREFIX) || RESERVED_LABELS.contains(&key)
}
