//! Readiness probes against a pod's own loopback address.

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

/// What to check, resolved against the container once.
#[derive(Debug, Clone)]
pub enum Check {
    Http {
        host: String,
        port: u16,
        path: String,
    },
    Tcp {
        host: String,
        port: u16,
    },
    /// A probe kind the agent cannot run; it never passes, so the pod stays unready and says why.
    Unsupported(String),
}

/// Probe timing with the kubelet's defaults.
#[derive(Debug, Clone)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.map_or(default, |v| u64::try_from(v).unwrap_or(default)))
}

fn threshold(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

pub fn timing(probe: &Probe) -> Timing {
    Timing {
        initial_delay: seconds(probe.initial_delay_seconds, 0),
        period: seconds(probe.period_seconds, 10).max(Duration::from_millis(100)),
        timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_millis(100)),
        success_threshold: threshold(probe.success_threshold, 1),
        failure_threshold: threshold(probe.failure_threshold, 3),
    }
}

fn port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("named port {name:?} not declared by the container")),
    }
}

pub fn check(probe: &Probe, container: &Container, pod_ip: &str) -> Check {
    let resolved = if let Some(http) = &probe.http_get {
        if http.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            Err("only HTTP readiness probes are supported".to_owned())
        } else {
            port(container, &http.port).map(|port| Check::Http {
                host: http.host.clone().unwrap_or_else(|| pod_ip.to_owned()),
                port,
                path: http.path.clone().unwrap_or_else(|| "/".to_owned()),
            })
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        port(container, &tcp.port).map(|port| Check::Tcp {
            host: tcp.host.clone().unwrap_or_else(|| pod_ip.to_owned()),
            port,
        })
    } else {
        Err("only httpGet and tcpSocket probes are supported".to_owned())
    };
    resolved.unwrap_or_else(Check::Unsupported)
}

/// Runs one probe; `Err` says why it failed.
pub async fn run(check: &Check, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match check {
            Check::Http { host, port, path } => http_get(host, *port, path).await,
            Check::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(|_| ())
                .map_err(|e| format!("connect {host}:{port}: {e}")),
            Check::Unsupported(why) => Err(why.clone()),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

async fn http_get(host: &str, port: u16, path: &str) -> Result<(), String> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {host}:{port}: {e}"))?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::USER_AGENT, "recommender-node-agent")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad probe path {path:?}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET http://{host}:{port}{path}: {e}"))?;
    // The kubelet counts any 2xx or 3xx as success.
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET http://{host}:{port}{path}: HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn server(status_line: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let reply = format!("{status_line}\r\ncontent-length: 0\r\n\r\n");
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_fails_otherwise() {
        let ok = server("HTTP/1.1 200 OK").await;
        let bad = server("HTTP/1.1 503 Service Unavailable").await;
        let check = |port| Check::Http {
            host: "127.0.0.1".into(),
            port,
            path: "/readyz".into(),
        };
        assert_eq!(run(&check(ok), Duration::from_secs(2)).await, Ok(()));
        let err = run(&check(bad), Duration::from_secs(2)).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(run(&check(port), Duration::from_secs(2)).await.is_err());
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "p", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"port": "http", "path": "/readyz"}, "periodSeconds": 2
        }))
        .unwrap();
        match check(&probe, &container, "127.1.0.3") {
            Check::Http { host, port, path } => {
                assert_eq!(
                    (host.as_str(), port, path.as_str()),
                    ("127.1.0.3", 8080, "/readyz")
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(timing(&probe).period, Duration::from_secs(2));
        let missing: Probe =
            serde_json::from_value(serde_json::json!({"httpGet": {"port": "grpc"}})).unwrap();
        assert!(matches!(
            check(&missing, &container, "127.1.0.3"),
            Check::Unsupported(_)
        ));
    }
}
