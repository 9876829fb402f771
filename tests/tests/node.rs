//! The real node as the other tests rely on it (tests/cluster/cluster.sh, docs/local-cluster.md):
//! the operator's containers run hardened, as the host sees their processes; `kubectl logs`, `exec`
//! and `port-forward` reach them through the API server, while the kubelet's own API refuses
//! anonymous requests; pods resolve cluster names, and only those, and reach Services by them;
//! and nothing a pod or a Service sends leaves this machine.

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use recommender_e2e::*;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

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

    // Those went through the API server's client certificate; the kubelet refuses anyone else.
    let kubelet = format!("https://{}:10250/pods", required_env("RECOMMENDER_NODE_IP"));
    assert_eq!(curl_code(&["-k", &kubelet]), "401", "anonymous {kubelet}");
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
    let tools = NetTools::start(&client, &ns.name).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let db_ip = services
        .get(DB_SERVICE)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the database Service's ClusterIP");

    // The Service's full name, and `kubernetes.default` through the pod's search path.
    let db = format!("{DB_SERVICE}.{}.svc.cluster.local", ns.name);
    assert_eq!(tools.resolve(&db), Ok(db_ip.clone()), "{db}");
    assert_eq!(
        tools.resolve("kubernetes.default"),
        Ok("10.96.0.1".to_string())
    );
    // CoreDNS forwards nothing: no outside name resolves.
    for name in ["example.com", "www.debian.org.", "deb.debian.org"] {
        let answer = tools.resolve(name);
        assert!(answer.is_err(), "{name} resolved in a pod: {answer:?}");
    }

    // By name, through the ClusterIP kube-proxy translates, to the database on the host.
    assert!(tools.connects(&db, 5432), "pod -> {db}:5432");
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

/// Runs alone (`cluster_wide_`, tests/nextest.toml): it counts the drops of the machine's
/// firewall rules, which another test's traffic could add to.
#[tokio::test]
async fn cluster_wide_pods_and_services_reach_nothing_beyond_this_machine() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-contained").await;
    let tools = NetTools::start(&client, &ns.name).await;

    // The service range is routed into the node's interface, where what kube-proxy does not
    // translate goes nowhere.
    for ip in ["10.96.0.1", "10.96.255.254"] {
        let route = run("ip", &["-4", "route", "get", ip]);
        assert!(route.contains(" dev recnode0 "), "{ip}: {route}");
    }

    // From a pod: the host's gateway, an outside address, an unused ClusterIP, each dropped by
    // the rule that keeps the bridge's traffic on it.
    let default_route = run("ip", &["-4", "route", "show", "default"]);
    let gateway = default_route
        .split_whitespace()
        .nth(2)
        .unwrap_or("192.0.2.1")
        .to_string();
    for (host, port) in [
        (gateway.as_str(), 80),
        ("192.0.2.1", 443),
        ("10.96.255.254", 80),
    ] {
        let before = dropped_by("RECOMMENDER-FORWARD");
        assert!(!tools.connects(host, port), "a pod reached {host}:{port}");
        let after = dropped_by("RECOMMENDER-FORWARD");
        assert!(
            after > before,
            "pod -> {host}:{port} failed, but not by RECOMMENDER-FORWARD ({before} -> {after})"
        );
    }
    // The host's own outside address: dropped on the way in.
    let node_ip = required_env("RECOMMENDER_NODE_IP");
    let addresses = run("ip", &["-4", "-o", "addr", "show", "scope", "global"]);
    let outside = addresses.lines().find_map(|l| {
        let address = l.split_whitespace().nth(3)?.split('/').next()?;
        (address != node_ip).then(|| address.to_string())
    });
    if let Some(address) = outside {
        let before = dropped_by("RECOMMENDER-INPUT");
        assert!(!tools.connects(&address, 22), "a pod reached {address}:22");
        assert!(
            dropped_by("RECOMMENDER-INPUT") > before,
            "pod -> {address}:22 failed, but not by RECOMMENDER-INPUT"
        );
    }

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
    let before = dropped_by("RECOMMENDER-OUTPUT");
    assert_eq!(
        curl_code(&[&format!("http://{outside_ip}/")]),
        "000",
        "the host reached {outside_ip} -> 192.0.2.1"
    );
    assert!(
        dropped_by("RECOMMENDER-OUTPUT") > before,
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
