//! The plugin's one error type: each variant is one line a person can act on (printed on stderr,
//! exit code 1).

use std::fmt;

/// The resource every command reads or writes, as RBAC rules name it.
pub const RESOURCE: &str = "recommendermodels.recommender.dev";

/// What a request asked the API server to do, as RBAC names the verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Patch,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Patch => "patch",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `RecommenderModel` a command is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("RecommenderModel {0} not found")]
    NotFound(Target),
    #[error("RecommenderModel {0} was deleted")]
    Deleted(Target),
    #[error("forbidden: you may not {verb} {RESOURCE} in namespace {namespace} (RBAC): {message}")]
    Forbidden {
        verb: Verb,
        namespace: String,
        message: String,
    },
    #[error("no rollout is running on {target}, nothing to {action}{last}")]
    NoRollout {
        target: Target,
        action: &'static str,
        /// How the last rollout ended, `" (the last, ..., ended ...)"`, or empty.
        last: String,
    },
    #[error(
        "cannot {action} {target}: rollout {id} already has a pending {pending} request \
         ({annotation}) the operator has not acted on yet"
    )]
    Contradicts {
        target: Target,
        action: &'static str,
        pending: &'static str,
        id: String,
        annotation: &'static str,
    },
    #[error("{target} has no promoted version {version}; it can be rolled back to: {available}")]
    UnknownVersion {
        target: Target,
        version: String,
        /// The versions in `status.models`, or a sentence saying there are none.
        available: String,
    },
    #[error("cannot load the kubeconfig (is KUBECONFIG set or ~/.kube/config present?): {0}")]
    Config(String),
    #[error(
        "{action} failed: cannot reach the Kubernetes API server (is the cluster up and the \
         kubeconfig's server right?): {source}"
    )]
    Unreachable {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} failed: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// A failed request about `target`: 404 and 403 become their own variants, which say what
    /// is missing or which permission is.
    pub fn api(verb: Verb, target: &Target, source: kube::Error) -> Self {
        match source {
            kube::Error::Api(status) if status.code == 404 => Self::NotFound(target.clone()),
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden {
                verb,
                namespace: target.namespace.clone(),
                message: status.message.clone(),
            },
            source @ (kube::Error::Service(_) | kube::Error::HyperError(_)) => Self::Unreachable {
                action: format!("{verb} RecommenderModel {target}"),
                source,
            },
            source => Self::Kube {
                action: format!("{verb} RecommenderModel {target}"),
                source,
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
