//! The end-to-end harness: the local cluster, database and S3 server started by `tests/all.sh`
//! (or by hand, see docs/local-cluster.md), a namespace per test with its model store (a claim,
//! or a bucket of its own) and database Service,
//! the operator installed by its Helm chart, typed access to `RecommenderModel`s, and polling
//! that fails naming what it waited for. A test that cannot reach the cluster fails with the
//! reason; it never passes vacuously.

mod chart;
mod command;
pub mod conntrack;
mod dns;
mod env;
mod http;
mod models;
mod namespace;
mod nettools;
mod node;
mod operator;
mod prometheus;
mod rollout;
mod s3;
mod schema;
mod stream;
mod traffic;
mod wait;

pub use chart::{PREVIOUS_CHART, chart_version, previous_chart};
pub use command::{helm, kubectl};
pub use dns::resolve;
pub use env::{Env, Node, PgParams, required_env};
pub use http::{Answer, get, get_answer, get_json};
pub use models::*;
pub use namespace::{DB_SECRET, DB_SERVICE, MODEL_STORE_CLAIM, TestNamespace, apply_json, client};
pub use nettools::{NETTOOLS_IMAGE, NETTOOLS_LABEL, NETTOOLS_PORT, NetTools};
pub use node::{
    DeadNode, Drain, NodeProcess, cluster_sh, container_processes, dropped_by, predictor_process,
    tag_image,
};
pub use operator::{Operator, is_ready};
pub use prometheus::{Alert, Prometheus, Selector, selectors};
pub use rollout::{
    InForce, annotate_model, json_condition, model_objects, patch_model, replica_stats,
    rollout_stage, start_rollout, status_json, wait_replicas_in_rollout,
    wait_replicas_without_rollout, wait_status_json,
};
pub use s3::{S3, S3_SECRET, S3_SERVICE, in_s3};
pub use schema::{crd_has_scale, crd_schema, prune_to_schema, required_fields, schema_paths};
pub use stream::{REQUEST_TIMEOUT, RequestStream, Sent, Tally};
pub use traffic::{post_json, post_json_as, predictor_traffic};
pub use wait::{wait_for, wait_showing, wait_status, wait_until};

/// Images built from the project's Dockerfile and imported by tests/cluster/images.sh.
pub const OPERATOR_IMAGE: &str = "local/recommender-operator:dev";
pub const TRAINER_IMAGE: &str = "local/recommender-trainer:dev";
pub const PREDICTOR_IMAGE: &str = "local/recommender-predictor:dev";
