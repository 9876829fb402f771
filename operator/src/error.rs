//! The operator's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} failed: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("RecommenderModel {0} has no namespace")]
    MissingNamespace(String),
    #[error("cannot register metric: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the Kubernetes API (is KUBECONFIG set or ~/.kube/config present?): {0}")]
    Connect(#[source] kube::Error),
    #[error("leader election failed: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader-election Lease; exiting so a standby can take over")]
    LeadershipLost,
}

impl Error {
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// Every `error` label a reconcile can report, exported at zero from the start so that the
    /// error series exist (and `rate()` over them works) before the first error.
    pub const RECONCILE_LABELS: [&'static str; 5] =
        ["conflict", "not_found", "invalid", "api", "transport"];

    /// The `error` label of `recommender_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "conflict",
                kube::Error::Api(status) if status.code == 404 => "not_found",
                kube::Error::Api(status) if status.code == 422 => "invalid",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            Self::MissingNamespace(_) => "missing_namespace",
            Self::Metrics(_) => "metrics",
            Self::Bind { .. } => "bind",
            Self::Connect(_) => "connect",
            Self::Lease(_) | Self::LeadershipLost => "lease",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
