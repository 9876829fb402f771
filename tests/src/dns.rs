//! One DNS question to the cluster's DNS Service, from the host: what a pod's resolver would be
//! told for a name (the host resolves no cluster names itself).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

/// The A record `server` gives for `name`, or why there is none.
pub async fn resolve(server: Ipv4Addr, name: &str) -> Result<Ipv4Addr, String> {
    let mut query = vec![0x1c, 0x0e, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let socket = UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| e.to_string())?;
    let to = SocketAddr::from((server, 53));
    socket
        .send_to(&query, to)
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut answer))
        .await
        .map_err(|_| format!("no answer from {server} for {name}"))?
        .map_err(|e| e.to_string())?;
    first_a_record(&answer[..n]).ok_or_else(|| {
        let rcode = answer.get(3).map_or(0, |b| b & 0x0f);
        format!("{server} has no A record for {name} (rcode {rcode})")
    })
}

/// Skips the question and returns the first A record's address.
fn first_a_record(msg: &[u8]) -> Option<Ipv4Addr> {
    let answers = u16::from_be_bytes([*msg.get(6)?, *msg.get(7)?]);
    let mut at = skip_name(msg, 12)? + 4;
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let kind = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
        let len = usize::from(u16::from_be_bytes([*msg.get(at + 8)?, *msg.get(at + 9)?]));
        let data = msg.get(at + 10..at + 10 + len)?;
        if kind == 1 && len == 4 {
            return Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    None
}

/// The offset after a (possibly compressed) name.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}
