//! Which endpoint each connection to a Service went to. kube-proxy's DNAT is recorded in the
//! host's connection tracking table, keyed by the client's port, and an entry outlives its
//! connection (`TIME_WAIT`, and an unanswered `SYN_SENT`, stay 120 s by default): read soon
//! after a stream stops, it says where a request that got no answer was sent.

use std::collections::HashMap;
use std::process::Command;

/// One tracked connection: the endpoint it was translated to and its TCP state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub endpoint: String,
    pub state: String,
}

/// The tracked connections to `service_ip:port`, by the client's port.
pub fn to_service(service_ip: &str, port: u16) -> Result<HashMap<u16, Tracked>, String> {
    let port = port.to_string();
    let out = Command::new("conntrack")
        .args([
            "-L",
            "-p",
            "tcp",
            "--orig-dst",
            service_ip,
            "--dport",
            &port,
        ])
        .output()
        .map_err(|e| format!("cannot run conntrack (tests/install-prereqs.sh installs it): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "conntrack -L: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse)
        .collect())
}

/// `tcp 6 117 SYN_SENT src=C dst=S sport=P dport=8080 [UNREPLIED] src=E dst=C sport=8080
/// dport=P ...`: the original direction's source port, and the reply direction's source (the
/// endpoint the DNAT chose).
fn parse(line: &str) -> Option<(u16, Tracked)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let state = fields.get(3).filter(|s| !s.contains('='))?.to_string();
    let values =
        |key: &str| -> Vec<&str> { fields.iter().filter_map(|f| f.strip_prefix(key)).collect() };
    let port = values("sport=").first()?.parse().ok()?;
    let endpoint = values("src=").get(1)?.to_string();
    Some((port, Tracked { endpoint, state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_and_an_unanswered_connection_name_their_endpoint() {
        let answered = "tcp      6 117 TIME_WAIT src=10.250.0.1 dst=10.96.12.3 sport=41234 dport=8080 src=10.244.2.5 dst=10.250.0.1 sport=8080 dport=41234 [ASSURED] mark=0 use=1";
        let unanswered = "tcp      6 98 SYN_SENT src=10.250.0.1 dst=10.96.12.3 sport=41240 dport=8080 [UNREPLIED] src=10.244.3.7 dst=10.250.0.1 sport=8080 dport=41240 mark=0 use=1";
        assert_eq!(
            parse(answered),
            Some((
                41234,
                Tracked {
                    endpoint: "10.244.2.5".into(),
                    state: "TIME_WAIT".into()
                }
            ))
        );
        assert_eq!(
            parse(unanswered).map(|(p, t)| (p, t.endpoint, t.state)),
            Some((41240, "10.244.3.7".into(), "SYN_SENT".into()))
        );
        assert_eq!(
            parse("conntrack v1.4.7 (conntrack-tools): 2 flow entries"),
            None
        );
    }
}
