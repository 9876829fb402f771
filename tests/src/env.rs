//! Where the pieces started by `tests/all.sh` are, read from the environment.

use std::path::PathBuf;

pub struct Env {
    pub repo: PathBuf,
    /// The cluster's state folder (logs, audit log).
    pub state: PathBuf,
    /// Where PersistentVolumes' folders live on the node.
    pub volumes: PathBuf,
    /// containerd's socket, for what a test does to the node itself (tagging an image).
    pub containerd: PathBuf,
    pub node_name: String,
    pub pg: PgParams,
}

/// The ratings database: a PostgreSQL server on the host, reached by pods at `pod_host:pod_port`.
pub struct PgParams {
    pub database: String,
    pub user: String,
    pub password: String,
    pub pod_host: String,
    pub pod_port: u16,
}

fn required(var: &str, hint: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("end-to-end tests need {var} ({hint}); run them through `bash tests/all.sh`")
    })
}

/// A variable `tests/all.sh` exports (from `cluster.sh env` or `postgres.sh env`) that only some
/// tests read.
pub fn required_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set; run through tests/all.sh"))
}

impl Env {
    pub fn load() -> Self {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        required(
            "KUBECONFIG",
            "the local cluster: tests/cluster/cluster.sh env",
        );
        let state = PathBuf::from(required(
            "RECOMMENDER_STATE",
            "the cluster's state folder: tests/cluster/cluster.sh env",
        ));
        let volumes = PathBuf::from(required(
            "RECOMMENDER_VOLUMES_DIR",
            "the node's volume folder: tests/cluster/cluster.sh env (real node)",
        ));
        let containerd = PathBuf::from(required(
            "RECOMMENDER_CONTAINERD_ADDRESS",
            "the node's containerd socket: tests/cluster/cluster.sh env (real node)",
        ));
        let node_name =
            std::env::var("RECOMMENDER_NODE_NAME").unwrap_or_else(|_| "local-node".into());
        let url = required(
            "RECOMMENDER_TEST_PG_URL",
            "the ratings database: tests/cluster/postgres.sh env",
        );
        let pod_host = required(
            "RECOMMENDER_PG_POD_HOST",
            "the database's address for pods: tests/cluster/postgres.sh env",
        );
        let pod_port = required("RECOMMENDER_PG_POD_PORT", "tests/cluster/postgres.sh env")
            .parse()
            .expect("RECOMMENDER_PG_POD_PORT is a port number");
        Self {
            repo,
            state,
            volumes,
            containerd,
            node_name,
            pg: PgParams::parse(&url, pod_host, pod_port),
        }
    }
}

impl PgParams {
    /// Takes database, user and password from `postgres://user:password@host:port/database`.
    fn parse(url: &str, pod_host: String, pod_port: u16) -> Self {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .unwrap_or_else(|| panic!("RECOMMENDER_TEST_PG_URL is not a postgres:// URL: {url}"));
        let (auth, rest) = rest.split_once('@').expect("URL has user:password@");
        let (user, password) = auth.split_once(':').expect("URL has a password");
        let (_, database) = rest.split_once('/').expect("URL has a database");
        let database = database.split('?').next().unwrap_or(database);
        Self {
            database: database.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            pod_host,
            pod_port,
        }
    }
}
