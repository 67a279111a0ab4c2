//! ICMP echo: one raw socket per family and source address (surge-ping
//! multiplexes every probe on it and matches replies by identifier and
//! sequence), created on first use.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};

use crate::health::Outcome;
use tandem_model::config::format_duration;

#[derive(Default)]
pub struct IcmpProber {
    clients: Mutex<HashMap<(bool, Option<IpAddr>), Client>>,
    seq: AtomicU16,
}

impl IcmpProber {
    fn client(&self, v6: bool, source: Option<IpAddr>) -> std::io::Result<Client> {
        let mut clients = self.clients.lock().expect("not poisoned");
        if let Some(c) = clients.get(&(v6, source)) {
            return Ok(c.clone());
        }
        let mut b = Config::builder().kind(if v6 { ICMP::V6 } else { ICMP::V4 });
        if let Some(src) = source {
            b = b.bind(SocketAddr::new(src, 0));
        }
        let c = Client::new(&b.build())?;
        clients.insert((v6, source), c.clone());
        Ok(c)
    }

    pub async fn ping(&self, target: IpAddr, source: Option<IpAddr>, timeout: Duration) -> Outcome {
        let client = match self.client(target.is_ipv6(), source) {
            Ok(c) => c,
            Err(e) if super::is_local(&e) => {
                return Outcome::local(format!("cannot open an ICMP socket: {e}"));
            }
            Err(e) => {
                return Outcome::down(format!("cannot open an ICMP socket: {e}"), Duration::ZERO);
            }
        };
        // Identifier per target, sequence per probe: replies to probes of
        // other targets, or to a late earlier probe, never match.
        let ident = PingIdentifier(ident_of(target));
        let seq = PingSequence(self.seq.fetch_add(1, Ordering::Relaxed));
        let mut pinger = client.pinger(target, ident).await;
        pinger.timeout(timeout);
        match pinger.ping(seq, b"tandem-healthd").await {
            Ok((_, rtt)) => Outcome::up("echo reply", rtt),
            Err(SurgeError::Timeout { .. }) => Outcome::down(
                format!("no echo reply within {}", format_duration(timeout)),
                timeout,
            ),
            Err(SurgeError::IOError(e)) => Outcome::down(super::describe_io(&e), Duration::ZERO),
            Err(e) => Outcome::down(e.to_string(), Duration::ZERO),
        }
    }
}

fn ident_of(ip: IpAddr) -> u16 {
    let octets: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    octets.chunks(2).fold(0x7a3du16, |h, c| {
        h.rotate_left(5) ^ u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])
    })
}
