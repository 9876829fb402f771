//! What a test does to the nodes themselves, as root on this machine: a container's host process
//! (to see how it runs, or to crash it), images in the nodes' containerd, the host's firewall
//! rules, and a node's death and return (`cluster.sh stop-node` / `start-node`).

use crate::env::{Env, Node};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use std::process::Command;

fn ctr(node: &Node, args: &[&str]) -> (bool, String) {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&node.containerd)
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ctr: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Gives image `from` a second name `to` on every node, as a registry push of it would.
pub fn tag_image(env: &Env, from: &str, to: &str) {
    let full = |name: &str| {
        if name
            .split('/')
            .next()
            .is_some_and(|host| host.contains('.'))
        {
            name.to_string()
        } else {
            format!("docker.io/{name}")
        }
    };
    for node in &env.nodes {
        let (ok, out) = ctr(node, &["images", "tag", "--force", &full(from), &full(to)]);
        assert!(ok, "ctr images tag {from} {to} on {}: {out}", node.name);
    }
}

/// A container's process as the host sees it.
#[derive(Debug, Clone)]
pub struct NodeProcess {
    pub pid: u32,
    status: String,
    mountinfo: String,
    cgroup: String,
}

impl NodeProcess {
    fn field(&self, name: &str) -> Option<&str> {
        self.status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }

    /// Real, effective, saved and filesystem UIDs.
    pub fn uids(&self) -> Vec<u32> {
        self.field("Uid")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|u| u.parse().ok())
            .collect()
    }

    /// Real, effective, saved and filesystem GIDs.
    pub fn gids(&self) -> Vec<u32> {
        self.numbers("Gid")
    }

    /// Supplementary groups (where `fsGroup` shows).
    pub fn groups(&self) -> Vec<u32> {
        self.numbers("Groups")
    }

    fn numbers(&self, name: &str) -> Vec<u32> {
        self.field(name)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    fn capabilities(&self, name: &str) -> u64 {
        u64::from_str_radix(self.field(name).unwrap_or("ffff"), 16).unwrap_or(u64::MAX)
    }

    pub fn effective_capabilities(&self) -> u64 {
        self.capabilities("CapEff")
    }

    /// What the process could ever gain.
    pub fn bounding_capabilities(&self) -> u64 {
        self.capabilities("CapBnd")
    }

    /// Under a seccomp filter (mode 2), as `RuntimeDefault` puts it.
    pub fn seccomp_filtered(&self) -> bool {
        self.field("Seccomp") == Some("2")
    }

    /// `no_new_privs`, as `allowPrivilegeEscalation: false` sets it.
    pub fn no_new_privs(&self) -> bool {
        self.field("NoNewPrivs") == Some("1")
    }

    /// The memory limit of the process's cgroup, in bytes (cgroup v1 or v2).
    pub fn memory_limit(&self) -> Option<u64> {
        let v1 = self.cgroup.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
        });
        let v2 = || {
            let path = self.cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
            Some(format!("/sys/fs/cgroup{path}/memory.max"))
        };
        let file = v1.or_else(v2)?;
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// The mount options of `target` inside the container (`ro,...` or `rw,...`).
    pub fn mount_options(&self, target: &str) -> Option<String> {
        self.mountinfo.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(4) == Some(&target)).then(|| fields.get(5).unwrap_or(&"").to_string())
        })
    }

    /// SIGKILL, as a crash would end it.
    pub fn kill(&self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {}", self.pid);
    }
}

/// A predictor pod of the namespace and its container's host process.
pub async fn predictor_process(env: &Env, client: &Client, ns: &str) -> (Pod, NodeProcess) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let predictor = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=predictor"))
        .await
        .unwrap_or_else(|e| panic!("listing the predictor pods of {ns}: {e}"))
        .items
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no predictor pod in {ns}"));
    let process = container_processes(env, &predictor, "predictor")
        .pop()
        .expect("the predictor's host process");
    (predictor, process)
}

/// The host processes of `pod`'s running containers named `container`, from its node's
/// containerd.
pub fn container_processes(env: &Env, pod: &Pod, container: &str) -> Vec<NodeProcess> {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .map(|name| env.node(name))
        .unwrap_or_else(|| panic!("pod {:?} is on no node", pod.metadata.name));
    let ids: Vec<String> = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == container)
        .filter_map(|c| c.container_id.clone())
        .map(|id| id.trim_start_matches("containerd://").to_string())
        .collect();
    let (ok, tasks) = ctr(node, &["tasks", "ls"]);
    assert!(ok, "ctr tasks ls: {tasks}");
    tasks
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?;
            let pid: u32 = fields.next()?.parse().ok()?;
            ids.iter().any(|want| want == id).then_some(pid)
        })
        .filter_map(|pid| {
            let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok();
            Some(NodeProcess {
                pid,
                status: read("status")?,
                mountinfo: read("mountinfo")?,
                cgroup: read("cgroup")?,
            })
        })
        .collect()
}

/// The packets the host's rules of `chain` (filter table) dropped so far; with a bridge, only
/// those of the rules for traffic from or to it.
pub fn dropped_by(chain: &str, bridge: Option<&str>) -> u64 {
    let out = Command::new("iptables")
        .args(["-w", "5", "-L", chain, "-v", "-n", "-x"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run iptables: {e}"));
    assert!(
        out.status.success(),
        "iptables -L {chain}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // pkts bytes target prot opt in out source destination
            let fields: Vec<&str> = l.split_whitespace().collect();
            let ours =
                bridge.is_none_or(|b| fields.get(5) == Some(&b) || fields.get(6) == Some(&b));
            (fields.get(2) == Some(&"DROP") && ours).then(|| fields[0].parse::<u64>().ok())?
        })
        .sum()
}

/// `tests/cluster/cluster.sh ARGS` (`stop kube-apiserver`, `stop-node node-2`, ...), or what went
/// wrong.
pub fn cluster_sh(env: &Env, args: &[&str]) -> Result<(), String> {
    let script = env.repo.join("tests/cluster/cluster.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cluster.sh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A node that died: `stop-node` killed its kubelet, containerd and pods at once. Dropping it
/// boots the node again (`start-node`, which waits until it is Ready), even after a panic, so
/// that the tests after this one find every node.
pub struct DeadNode<'a> {
    env: &'a Env,
    pub name: String,
    revived: bool,
}

impl<'a> DeadNode<'a> {
    pub fn stop(env: &'a Env, node: &str) -> Self {
        cluster_sh(env, &["stop-node", node]).unwrap_or_else(|e| panic!("{e}"));
        Self {
            env,
            name: node.into(),
            revived: false,
        }
    }

    /// Boots it again and waits until it is Ready.
    pub fn start(mut self) {
        self.revived = true;
        cluster_sh(self.env, &["start-node", &self.name]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for DeadNode<'_> {
    fn drop(&mut self) {
        // Not a panic: this may run while a failed test unwinds.
        if !self.revived
            && let Err(e) = cluster_sh(self.env, &["start-node", &self.name])
        {
            eprintln!("bringing {} back after the test: {e}", self.name);
        }
    }
}

/// A node taken out of service as an administrator does before maintenance: `kubectl drain`
/// cordons it and evicts its pods through the Eviction API, which honours their
/// PodDisruptionBudgets. Dropping it uncordons the node, even after a panic, so that the tests
/// after this one can schedule there.
pub struct Drain {
    pub name: String,
    uncordoned: bool,
}

impl Drain {
    /// Nothing is done yet; the guard only promises the uncordon.
    pub fn of(node: &str) -> Self {
        Self {
            name: node.into(),
            uncordoned: false,
        }
    }

    /// `kubectl drain NODE` (blocking: run it on a thread of its own while the test watches):
    /// returns once every pod it may evict is gone (the evictions a budget refuses are retried),
    /// or fails after `timeout`. Its output, or why it failed.
    pub fn run(node: &str, timeout: std::time::Duration) -> Result<String, String> {
        let timeout = format!("--timeout={}s", timeout.as_secs());
        let (ok, out) = crate::kubectl(&[
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            &timeout,
        ]);
        if ok { Ok(out) } else { Err(out) }
    }

    /// `kubectl uncordon`: the node takes pods again.
    pub fn uncordon(mut self) {
        self.uncordoned = true;
        let (ok, out) = crate::kubectl(&["uncordon", &self.name]);
        assert!(ok, "kubectl uncordon {}: {out}", self.name);
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if !self.uncordoned {
            let (ok, out) = crate::kubectl(&["uncordon", &self.name]);
            if !ok {
                eprintln!("uncordoning {} after the test: {out}", self.name);
            }
        }
    }
}
