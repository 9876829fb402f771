//! Where the pieces started by `tests/all.sh` are, read from the environment.

use std::path::PathBuf;

pub struct Env {
    pub repo: PathBuf,
    /// The cluster's state folder (logs, audit log).
    pub state: PathBuf,
    /// Where PersistentVolumes' folders live on the nodes (one machine: the same folder for all).
    pub volumes: PathBuf,
    /// The cluster's nodes, node-1 first.
    pub nodes: Vec<Node>,
    pub pg: PgParams,
}

/// One real node of tests/cluster/cluster.sh: a kubelet with its own containerd and bridge.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// Its InternalIP, where its kubelet listens.
    pub ip: String,
    /// Its `topology.kubernetes.io/zone` label.
    pub zone: String,
    /// The bridge its pods' interfaces are on.
    pub bridge: String,
    /// Its containerd's socket, for what a test does to the node itself (tagging an image,
    /// finding a container's process).
    pub containerd: PathBuf,
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
        let nodes = Node::from_env();
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
            nodes,
            pg: PgParams::parse(&url, pod_host, pod_port),
        }
    }
}

impl Env {
    /// The node of that name; panics naming the nodes there are.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                panic!("no node {name} in this cluster ({names:?})")
            })
    }
}

impl Node {
    /// The nodes `cluster.sh env` lists, one comma-separated variable per property, in order.
    fn from_env() -> Vec<Self> {
        let list = |var: &str| -> Vec<String> {
            required(var, "the nodes: tests/cluster/cluster.sh env (real nodes)")
                .split(',')
                .map(str::to_string)
                .collect()
        };
        let (names, ips, zones) = (
            list("RECOMMENDER_NODE_NAMES"),
            list("RECOMMENDER_NODE_IPS"),
            list("RECOMMENDER_NODE_ZONES"),
        );
        let (bridges, sockets) = (
            list("RECOMMENDER_BRIDGES"),
            list("RECOMMENDER_CONTAINERD_ADDRESSES"),
        );
        for (var, values) in [
            ("RECOMMENDER_NODE_IPS", &ips),
            ("RECOMMENDER_NODE_ZONES", &zones),
            ("RECOMMENDER_BRIDGES", &bridges),
            ("RECOMMENDER_CONTAINERD_ADDRESSES", &sockets),
        ] {
            assert_eq!(
                values.len(),
                names.len(),
                "{var} names one value per node of RECOMMENDER_NODE_NAMES ({names:?}): {values:?}"
            );
        }
        (0..names.len())
            .map(|i| Self {
                name: names[i].clone(),
                ip: ips[i].clone(),
                zone: zones[i].clone(),
                bridge: bridges[i].clone(),
                containerd: PathBuf::from(&sockets[i]),
            })
            .collect()
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
