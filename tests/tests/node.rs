//! The real nodes as the other tests rely on them (tests/cluster/cluster.sh,
//! docs/local-cluster.md): the operator's containers run hardened, as the host sees their
//! processes; `kubectl logs`, `exec` and `port-forward` reach them through the API server, while
//! each kubelet's own API refuses anonymous requests; pods on every node resolve cluster names, and
//! only those, and reach Services and the pods of the other nodes; and nothing a pod of any node or
//! a Service sends leaves this machine.

use k8s_openapi::api::core::v1::{Node as NodeObject, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use recommender_e2e::*;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NONROOT: u32 = 65532;

#[tokio::test]
async fn containers_run_hardened_and_answer_logs_exec_and_port_forward() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-node").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;

    // The trainer's progress lines, as `kubectl logs` shows them: plain text, no colour codes;
    // the operator's and the predictor's logs too.
    let job = recommender_operator::children::job_name("movies", 1);
    let logs = plain_logs(&ns.name, &format!("job/{job}"));
    assert!(logs.contains("cross-validation finished"), "{logs}");
    plain_logs(&ns.name, "deployment/rec-recommender-operator");
    plain_logs(&ns.name, "deployment/movies-predictor");

    // The trainer wrote the model into the store as the non-root user the pods run as.
    let artifact = ns.store.join("movies/v1.model");
    let meta = std::fs::metadata(&artifact)
        .unwrap_or_else(|e| panic!("the model on the node, {}: {e}", artifact.display()));
    assert_eq!(
        (meta.uid(), meta.gid()),
        (NONROOT, NONROOT),
        "owner of {}",
        artifact.display()
    );

    // The predictor as the node runs it: UID and GID 65532 with the fsGroup, no capabilities at
    // all, a seccomp filter, no way to gain privileges, read-only root and store, and the
    // memory limit of its pod's spec on its cgroup.
    let (predictor, process) = predictor_process(&env, &client, &ns.name).await;
    assert_eq!(process.uids(), [NONROOT; 4]);
    assert_eq!(process.gids(), [NONROOT; 4]);
    assert!(
        process.groups().contains(&NONROOT),
        "{:?}",
        process.groups()
    );
    assert_eq!(process.effective_capabilities(), 0);
    assert_eq!(process.bounding_capabilities(), 0);
    assert!(process.seccomp_filtered(), "not under a seccomp filter");
    assert!(process.no_new_privs(), "may gain privileges");
    assert!(
        process.mount_options("/").unwrap().starts_with("ro"),
        "root not read-only"
    );
    assert!(
        process.mount_options("/models").unwrap().starts_with("ro"),
        "store not read-only"
    );
    let limit = predictor.spec.as_ref().unwrap().containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref()?.get("memory").cloned())
        .expect("the predictor has a memory limit");
    assert_eq!(process.memory_limit(), Some(bytes(&limit.0)), "{limit:?}");

    // `kubectl exec` runs a command in the predictor's container.
    let (ok, version) = kubectl(&[
        "exec",
        "-n",
        &ns.name,
        "deployment/movies-predictor",
        "--",
        "/usr/local/bin/recommender-predictor",
        "--version",
    ]);
    assert!(
        ok && version.starts_with("recommender-predictor "),
        "{version}"
    );

    // `kubectl port-forward` to the predictor Service answers a prediction.
    let mut forward = Command::new("kubectl")
        .args([
            "port-forward",
            "-n",
            &ns.name,
            "svc/movies-predictor",
            "0:8080",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let port = forwarded_port(forward.stdout.take().unwrap());
    let (code, body) = get_json(&format!(
        "http://127.0.0.1:{port}/v1/predict?user=196&item=242"
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(
        (code, body["model_version"].as_str()),
        (200, Some("v1")),
        "{body}"
    );

    // Those went through the API server's client certificate; every kubelet refuses anyone else.
    for node in &env.nodes {
        let kubelet = format!("https://{}:10250/pods", node.ip);
        assert_eq!(curl_code(&["-k", &kubelet]), "401", "anonymous {kubelet}");
    }
}

/// `kubectl logs TARGET`: not empty, and plain text (no colour codes).
fn plain_logs(ns: &str, target: &str) -> String {
    let (ok, logs) = kubectl(&["logs", "-n", ns, target]);
    assert!(
        ok && !logs.trim().is_empty(),
        "kubectl logs {target}: {logs}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escapes in the logs of {target}: {logs:?}"
    );
    logs
}

/// A memory quantity as Kubernetes writes it (`128Mi`, `1Gi`, `1048576`), in bytes.
fn bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(
        quantity
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(quantity.len()),
    );
    let scale = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => panic!("a memory quantity this test does not read: {quantity}"),
    };
    number.parse::<u64>().expect("a whole number") * scale
}

/// Reads `Forwarding from 127.0.0.1:PORT -> 8080` from kubectl's output, then keeps draining it:
/// kubectl reports each connection there and must not find the pipe closed.
fn forwarded_port(out: std::process::ChildStdout) -> u16 {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(out).lines();
    let line = lines
        .next()
        .expect("kubectl port-forward printed nothing")
        .expect("a line");
    std::thread::spawn(move || lines.for_each(drop));
    line.split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// The HTTP status code curl gets for `args` within 5 s (`000` when there is no answer).
fn curl_code(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn pods_resolve_cluster_names_only_and_reach_services_by_them() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-dns").await;

    // Each node registered itself with its address, zone and host name.
    let nodes: Api<NodeObject> = Api::all(client.clone());
    for node in &env.nodes {
        let object = nodes.get(&node.name).await.unwrap();
        let labels = object.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get("topology.kubernetes.io/zone"),
            Some(&node.zone),
            "{}",
            node.name
        );
        assert_eq!(
            labels.get("kubernetes.io/hostname"),
            Some(&node.name),
            "{}",
            node.name
        );
        let addresses = object.status.and_then(|s| s.addresses).unwrap_or_default();
        assert!(
            addresses
                .iter()
                .any(|a| a.type_ == "InternalIP" && a.address == node.ip),
            "{}: {addresses:?}",
            node.name
        );
    }

    let tools = NetTools::start_on_every_node(&client, &ns.name, &env).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let db_ip = services
        .get(DB_SERVICE)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the database Service's ClusterIP");
    let db = format!("{DB_SERVICE}.{}.svc.cluster.local", ns.name);
    for (node, here) in env.nodes.iter().zip(&tools) {
        // The Service's full name, and `kubernetes.default` through the pod's search path.
        assert_eq!(
            here.resolve(&db),
            Ok(db_ip.clone()),
            "{db} on {}",
            node.name
        );
        assert_eq!(
            here.resolve("kubernetes.default"),
            Ok("10.96.0.1".to_string()),
            "on {}",
            node.name
        );
        // CoreDNS forwards nothing: no outside name resolves.
        for name in ["example.com", "www.debian.org.", "deb.debian.org"] {
            let answer = here.resolve(name);
            assert!(
                answer.is_err(),
                "{name} resolved in a pod on {}: {answer:?}",
                node.name
            );
        }
        // By name, through the ClusterIP kube-proxy translates, to the database on the host.
        assert!(here.connects(&db, 5432), "{} -> {db}:5432", node.name);
        // Straight to the pods of every node, its own and the others', through the bridges.
        for (other, peer) in env.nodes.iter().zip(&tools) {
            assert!(
                here.connects(&peer.ip, NETTOOLS_PORT),
                "a pod on {} -> the pod {}:{NETTOOLS_PORT} on {}",
                node.name,
                peer.ip,
                other.name
            );
        }
    }

    // From the host: the Service, and the API server's `kubernetes` Service with TLS verified.
    assert!(
        std::net::TcpStream::connect_timeout(
            &format!("{db_ip}:5432").parse().unwrap(),
            std::time::Duration::from_secs(5)
        )
        .is_ok(),
        "host -> {db_ip}:5432"
    );
    let ca = required_env("RECOMMENDER_CA_FILE");
    let code = curl_code(&["--cacert", &ca, "https://10.96.0.1/readyz"]);
    assert!(
        ["200", "401", "403"].contains(&code.as_str()),
        "host -> https://10.96.0.1/readyz (TLS, CA verified): HTTP {code}"
    );
}

/// Runs alone (`cluster_wide_`, tests/nextest.toml): it kills a node, and with it whatever
/// other tests run there.
#[tokio::test]
async fn cluster_wide_a_node_that_dies_turns_not_ready_loses_its_endpoints_and_comes_back() {
    let env = Env::load();
    assert!(
        env.nodes.len() >= 2,
        "a node's death needs another node to watch it from: {} node(s); RECOMMENDER_NODES",
        env.nodes.len()
    );
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-node-loss").await;
    // A listening pod on every node, all behind one Service.
    let tools = NetTools::start_on_every_node(&client, &ns.name, &env).await;
    apply_json(
        &client,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "listeners", "namespace": ns.name},
            "spec": {"selector": {NETTOOLS_LABEL.0: NETTOOLS_LABEL.1},
                "ports": [{"port": NETTOOLS_PORT, "targetPort": NETTOOLS_PORT}]},
        }),
    )
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns.name);
    let all: Vec<&str> = env.nodes.iter().map(|n| n.name.as_str()).collect();
    wait_for(
        Duration::from_secs(60),
        "an endpoint ready on every node",
        || async { (ready_endpoint_nodes(&slices).await == all).then_some(()) },
    )
    .await;

    // The last node dies; node-1's pod watches.
    let (victim, watcher) = (env.nodes.last().unwrap(), &tools[0]);
    let victim_ip = tools.last().unwrap().ip.clone();
    let nodes: Api<NodeObject> = Api::all(client.clone());
    let started = Instant::now();
    let dead = DeadNode::stop(&env, &victim.name);
    assert!(
        !watcher.connects(&victim_ip, NETTOOLS_PORT),
        "the pod on {} still answers after stop-node",
        victim.name
    );
    // The control plane learns it only from the node's lease going stale.
    let ready = wait_for(Duration::from_secs(90), "the node not Ready", || async {
        let status = node_ready(&nodes, &victim.name).await;
        (status.0 != "True").then_some(status)
    })
    .await;
    let not_ready_after = started.elapsed();
    assert_eq!(
        ready,
        ("Unknown".to_string(), "NodeStatusUnknown".to_string()),
        "{}'s Ready condition",
        victim.name
    );
    let survivors: Vec<&str> = all[..all.len() - 1].to_vec();
    wait_for(
        Duration::from_secs(60),
        "no ready endpoint on the dead node",
        || async { (ready_endpoint_nodes(&slices).await == survivors).then_some(()) },
    )
    .await;
    let endpoints_after = started.elapsed();
    eprintln!(
        "{} stopped: not Ready after {not_ready_after:?}, its endpoint not ready after {endpoints_after:?}",
        victim.name
    );
    // Once kube-proxy has the change, the Service sends nothing to the dead node any more (by
    // its ClusterIP: CoreDNS may have had a pod there too).
    let service_ip = Api::<Service>::namespaced(client.clone(), &ns.name)
        .get("listeners")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the Service's ClusterIP");
    // While kube-proxy still lists the dead endpoint, a single answer can come from a live one by
    // chance (two picks in three): ten in a row say the rules changed.
    wait_until(
        Duration::from_secs(40),
        "kube-proxy's rules updated",
        || async { (0..10).all(|_| watcher.connects(&service_ip, NETTOOLS_PORT)) },
    )
    .await;
    for attempt in 0..10 {
        assert!(
            watcher.connects(&service_ip, NETTOOLS_PORT),
            "connection {attempt} through the Service failed with {} dead",
            victim.name
        );
    }

    // It boots again (start-node waits until it is Ready) and runs pods again: its old pod,
    // restarted, or a new one in its place once the eviction of the old one completes.
    dead.start();
    assert_eq!(
        node_ready(&nodes, &victim.name).await.0,
        "True",
        "{} after start-node",
        victim.name
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let name = format!("nettools-{}", victim.name);
    let back = wait_for(
        Duration::from_secs(120),
        "a ready pod on the node again",
        || async {
            match pods.get_opt(&name).await.ok()? {
                None => Some(
                    NetTools::start_on(&client, &ns.name, Some(&victim.name))
                        .await
                        .ip,
                ),
                Some(pod) if pod.metadata.deletion_timestamp.is_none() && is_ready(&pod) => {
                    pod.status?.pod_ip
                }
                Some(_) => None,
            }
        },
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "an endpoint ready on every node again",
        || async { (ready_endpoint_nodes(&slices).await == all).then_some(()) },
    )
    .await;
    assert!(
        watcher.connects(&back, NETTOOLS_PORT),
        "node-1's pod -> {}'s pod {back} after start-node",
        victim.name
    );
}

/// A node's Ready condition: (status, reason).
async fn node_ready(nodes: &Api<NodeObject>, name: &str) -> (String, String) {
    let node = nodes.get(name).await.unwrap();
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    let ready = conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap_or_else(|| panic!("{name} has no Ready condition"));
    (ready.status, ready.reason.unwrap_or_default())
}

/// The nodes (sorted) of the ready endpoints of the Service `listeners`.
async fn ready_endpoint_nodes(slices: &Api<EndpointSlice>) -> Vec<String> {
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=listeners"))
        .await
        .unwrap();
    let mut nodes: Vec<String> = list
        .items
        .into_iter()
        .flat_map(|s| s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .filter_map(|e| e.node_name)
        .collect();
    nodes.sort();
    nodes
}

/// Runs alone (`cluster_wide_`, tests/nextest.toml): it counts the drops of the machine's
/// firewall rules, which another test's traffic could add to.
#[tokio::test]
async fn cluster_wide_pods_and_services_reach_nothing_beyond_this_machine() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-contained").await;
    let tools = NetTools::start_on_every_node(&client, &ns.name, &env).await;

    // The service range, and pod addresses no node's bridge holds, are routed into the nodes'
    // interface, where what kube-proxy does not translate goes nowhere.
    for ip in ["10.96.0.1", "10.96.255.254", "10.244.200.1"] {
        let route = run("ip", &["-4", "route", "get", ip]);
        assert!(route.contains(" dev recnode0 "), "{ip}: {route}");
    }
    let default_route = run("ip", &["-4", "route", "show", "default"]);
    let gateway = default_route
        .split_whitespace()
        .nth(2)
        .unwrap_or("192.0.2.1")
        .to_string();
    // The host's own outside address (not a node's, nor a bridge's).
    let addresses = run("ip", &["-4", "-o", "addr", "show", "scope", "global"]);
    let outside = addresses.lines().find_map(|l| {
        let address = l.split_whitespace().nth(3)?.split('/').next()?;
        let ours = env.nodes.iter().any(|n| n.ip == address) || address.starts_with("10.244.");
        (!ours).then(|| address.to_string())
    });
    let api_port: u16 = required_env("RECOMMENDER_APISERVER_URL")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("RECOMMENDER_APISERVER_URL ends in a port");

    // Each node's pods at once: the drops are counted by the rules of its own bridge.
    std::thread::scope(|threads| {
        for (node, tools) in env.nodes.iter().zip(&tools) {
            let (gateway, outside) = (&gateway, &outside);
            let (env, api_port) = (&env, api_port);
            threads
                .spawn(move || contained(env, node, tools, gateway, outside.as_deref(), api_port));
        }
    });

    // From the host: a Service whose endpoint is outside goes nowhere.
    for manifest in [
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "outside", "namespace": ns.name},
            "spec": {"ports": [{"name": "http", "port": 80}]}}),
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "outside", "namespace": ns.name,
                "labels": {"kubernetes.io/service-name": "outside"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"addresses": ["192.0.2.1"], "conditions": {"ready": true}}]}),
    ] {
        apply_json(&client, &manifest).await;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let outside_ip = services
        .get("outside")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap();
    wait_until(
        std::time::Duration::from_secs(30),
        "kube-proxy's rules for the outside Service",
        || async { run("iptables-save", &["-t", "nat"]).contains(&format!("-d {outside_ip}/32")) },
    )
    .await;
    let before = dropped_by("RECOMMENDER-OUTPUT", None);
    assert_eq!(
        curl_code(&[&format!("http://{outside_ip}/")]),
        "000",
        "the host reached {outside_ip} -> 192.0.2.1"
    );
    assert!(
        dropped_by("RECOMMENDER-OUTPUT", None) > before,
        "host -> {outside_ip} (endpoint 192.0.2.1) failed, but not by RECOMMENDER-OUTPUT"
    );

    // No source NAT of the pods' range (CNI's ipMasq); kube-proxy's own masquerade of what it
    // marked (host -> ClusterIP, hairpin) stays on this machine. Our rule is first in FORWARD.
    let nat = run("iptables-save", &["-t", "nat"]);
    let masquerade: Vec<&str> = nat
        .lines()
        .filter(|l| l.contains("-j MASQUERADE") || l.contains("-j SNAT"))
        .filter(|l| !l.starts_with("-A KUBE-POSTROUTING "))
        .chain(
            nat.lines()
                .filter(|l| l.starts_with("-A POSTROUTING ") && l.contains("-s 10.244.")),
        )
        .collect();
    assert!(masquerade.is_empty(), "source NAT rules: {masquerade:?}");
    let forward = run("iptables", &["-w", "5", "-L", "FORWARD", "-n"]);
    let first = forward
        .lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next());
    assert_eq!(first, Some("RECOMMENDER-FORWARD"), "{forward}");
}

/// What a pod on `node` cannot reach, each dropped by the rule of its node's bridge that keeps it
/// on this machine: the host's gateway, an outside address, an unused ClusterIP, a pod address no
/// node holds (RECOMMENDER-FORWARD); the host's outside address, and the node addresses' ports
/// other than the API server's, the database's and the store's, such as a kubelet's
/// (RECOMMENDER-INPUT). The API server's port it does reach.
fn contained(
    env: &Env,
    node: &Node,
    tools: &NetTools,
    gateway: &str,
    outside: Option<&str>,
    api_port: u16,
) {
    let bridge = Some(node.bridge.as_str());
    let mut blocked = vec![
        ("RECOMMENDER-FORWARD", gateway.to_string(), 80),
        ("RECOMMENDER-FORWARD", "192.0.2.1".into(), 443),
        ("RECOMMENDER-FORWARD", "10.96.255.254".into(), 80),
        ("RECOMMENDER-FORWARD", "10.244.200.1".into(), 80),
        ("RECOMMENDER-INPUT", node.ip.clone(), 10250),
        ("RECOMMENDER-INPUT", env.nodes[0].ip.clone(), 10250),
    ];
    if let Some(address) = outside {
        blocked.push(("RECOMMENDER-INPUT", address.to_string(), 22));
    }
    for (chain, host, port) in blocked {
        let before = dropped_by(chain, bridge);
        assert!(
            !tools.connects(&host, port),
            "a pod on {} reached {host}:{port}",
            node.name
        );
        let after = dropped_by(chain, bridge);
        assert!(
            after > before,
            "{} -> {host}:{port} failed, but not by {chain} for {} ({before} -> {after})",
            node.name,
            node.bridge
        );
    }
    assert!(
        tools.connects(&env.nodes[0].ip, api_port),
        "a pod on {} cannot reach the API server at {}:{api_port}",
        node.name,
        env.nodes[0].ip
    );
}

/// A host command's output; it must succeed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
