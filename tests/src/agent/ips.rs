//! Distinct loopback addresses for pods: all of 127.0.0.0/8 is loopback on Linux, so every pod gets
//! its own 127.1.x.y and two pods can listen on the same port without any network set-up.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::Error;

const HOSTS_PER_BLOCK: u32 = 254;
const CAPACITY: u32 = 256 * HOSTS_PER_BLOCK;

fn address(index: u32) -> Ipv4Addr {
    let block = index / HOSTS_PER_BLOCK;
    let host = index % HOSTS_PER_BLOCK + 1;
    Ipv4Addr::new(127, 1, block as u8, host as u8)
}

#[derive(Default)]
pub struct PodIps {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    used: HashSet<Ipv4Addr>,
    next: u32,
}

impl PodIps {
    /// Hands out the next free address, or `preferred` (a pod's address from before an agent
    /// restart) when it is a free pod address.
    pub fn claim(&self, preferred: Option<&str>) -> Result<Ipv4Addr, Error> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = preferred.and_then(|p| p.parse::<Ipv4Addr>().ok())
            && ip.octets()[..2] == [127, 1]
            && !state.used.contains(&ip)
        {
            state.used.insert(ip);
            return Ok(ip);
        }
        // Round-robin rather than lowest-free so a restarted pod does not reuse an address that
        // a stale client may still be talking to.
        for _ in 0..CAPACITY {
            let ip = address(state.next);
            state.next = (state.next + 1) % CAPACITY;
            if state.used.insert(ip) {
                return Ok(ip);
            }
        }
        Err(Error::Spec(format!(
            "all {CAPACITY} pod addresses in 127.1.0.0/16 are in use"
        )))
    }

    pub fn release(&self, ip: Ipv4Addr) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_skip_network_and_broadcast() {
        let ips = PodIps::default();
        let a = ips.claim(None).unwrap();
        let b = ips.claim(None).unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(b, Ipv4Addr::new(127, 1, 0, 2));
        assert_eq!(address(253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(address(254), Ipv4Addr::new(127, 1, 1, 1));
        // A preferred address that is taken or outside the pod range is not handed out.
        let c = ips.claim(Some("127.1.0.1")).unwrap();
        assert_ne!(c, a);
        let d = ips.claim(Some("10.0.0.1")).unwrap();
        assert!(d.octets()[..2] == [127, 1]);
        ips.release(a);
        assert_eq!(ips.claim(Some("127.1.0.1")).unwrap(), a);
    }
}
