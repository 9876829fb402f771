use std::path::PathBuf;

/// Everything that can go wrong in the node agent and the test harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API, {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pod asks for something this agent cannot provide or that is malformed.
    #[error("{0}")]
    Spec(String),
    /// A referenced Secret or ConfigMap (or one of its keys) does not exist yet.
    #[error("{0}")]
    MissingReference(String),
    #[error("{0}")]
    Config(String),
    #[error("{command}: {message}")]
    Command { command: String, message: String },
}

impl Error {
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
