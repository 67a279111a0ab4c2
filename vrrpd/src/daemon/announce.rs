//! A new master's announcements: gratuitous ARP for IPv4 VIPs and
//! unsolicited neighbour advertisements with Override for IPv6 ones
//! (RFC 5798 6.4.2), in bursts sent in the background so the loop never
//! waits on them.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::warn;

use super::Daemon;
use crate::node::InstanceId;
use crate::packet::{garp_frame, unsolicited_na};
use crate::socket::{Icmpv6Socket, PacketSocket};

impl Daemon {
    /// One announcement burst, in the background: `announce_count` rounds
    /// of one gratuitous ARP / unsolicited NA per VIP, `announce_interval`
    /// apart.
    pub(crate) fn announce(&mut self, id: InstanceId) {
        let Some(rt) = self.bindings.get(&id) else {
            return;
        };
        let count = rt.cfg.announce_count();
        if count == 0 {
            return;
        }
        let mut jobs: Vec<AnnounceJob> = Vec::new();
        for vip in &rt.vips {
            let Some(link) = self.links.get(&vip.ifname).cloned() else {
                continue;
            };
            match vip.addr {
                IpAddr::V4(a) => {
                    let s = match self.garp.get(&link.index) {
                        Some(s) => s.clone(),
                        None => match PacketSocket::open(link.index) {
                            Ok(s) => {
                                let s = Arc::new(s);
                                self.garp.insert(link.index, s.clone());
                                s
                            }
                            Err(e) => {
                                warn!(instance = %rt.cfg.name, "cannot send gratuitous ARP on {}: {e}", vip.ifname);
                                continue;
                            }
                        },
                    };
                    jobs.push(AnnounceJob::Arp(s, garp_frame(link.mac, a).to_vec()));
                }
                IpAddr::V6(a) => {
                    let s = match self.na.get(&link.index) {
                        Some(s) => s.clone(),
                        None => match Icmpv6Socket::open(&vip.ifname, link.index) {
                            Ok(s) => {
                                let s = Arc::new(s);
                                self.na.insert(link.index, s.clone());
                                s
                            }
                            Err(e) => {
                                warn!(instance = %rt.cfg.name, "cannot send neighbour advertisements on {}: {e}", vip.ifname);
                                continue;
                            }
                        },
                    };
                    let router = ipv6_forwarding(&vip.ifname);
                    let all_nodes = "ff02::1".parse().expect("a valid address");
                    let msg = unsolicited_na(a, link.mac, router, a, all_nodes);
                    jobs.push(AnnounceJob::Na(s, msg, a));
                }
            }
        }
        if jobs.is_empty() {
            return;
        }
        let Some(rt) = self.bindings.get_mut(&id) else {
            return;
        };
        rt.counters.announcements_sent += (count * jobs.len()) as u64;
        let interval = rt.cfg.announce_interval;
        let name = rt.cfg.name.clone();
        // The first round now, before anything else the loop has to do:
        // until it arrives, clients send to the old master.
        let send_round = move |jobs: &[AnnounceJob]| {
            for job in jobs {
                if let Err(e) = job.send() {
                    warn!(instance = %name, "announcing: {e}");
                }
            }
        };
        send_round(&jobs);
        if count > 1 {
            tokio::spawn(async move {
                for _ in 1..count {
                    if !interval.is_zero() {
                        tokio::time::sleep(interval).await;
                    }
                    send_round(&jobs);
                }
            });
        }
    }
}

enum AnnounceJob {
    Arp(Arc<PacketSocket>, Vec<u8>),
    Na(Arc<Icmpv6Socket>, Vec<u8>, std::net::Ipv6Addr),
}

impl AnnounceJob {
    fn send(&self) -> std::io::Result<()> {
        match self {
            AnnounceJob::Arp(s, frame) => s.send(frame),
            AnnounceJob::Na(s, msg, src) => {
                s.send(msg, *src, "ff02::1".parse().expect("a valid address"))
            }
        }
    }
}

/// RFC 4861 4.4: the Router flag says the sender is a router; a director
/// forwarding IPv6 is one.
fn ipv6_forwarding(ifname: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"))
        .is_ok_and(|s| s.trim() == "1")
}
