//! The links vrrpd works on: their state and addresses as rtnetlink
//! reports them (which re-resolve the adverts' source and drive the
//! interface and address trackers), the VRRP sockets on them, and the
//! virtual-MAC macvlans with the sysctls they need.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::binding::source_address;
use crate::daemon::Daemon;
use crate::input::{Input, PortKey};
use crate::netlink::{IfAddr, Link};
use crate::node::{InstanceId, Out};
use crate::socket::VrrpSocket;
use crate::track::{TrackKind, TrackValue};

/// A VRRP socket of one interface and family, with its reader.
pub(crate) struct Port {
    pub socket: Arc<VrrpSocket>,
    pub ifindex: u32,
    /// The reader; none for a send-only port (a virtual-MAC interface).
    pub task: Option<JoinHandle<()>>,
}

impl Port {
    pub fn close(self) {
        if let Some(t) = self.task {
            t.abort();
        }
    }
}

/// Sets a sysctl that needs no restoring (it belongs to an interface
/// vrrpd made and removes).
fn write_sysctl(path: &str, value: &str) {
    let file = format!("/proc/sys/{path}");
    if let Err(e) = std::fs::write(&file, value) {
        warn!("cannot set {file} to {value}: {e}");
    }
}

impl Daemon {
    /// Every interface some instance needs to know about.
    pub(crate) fn interfaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .bindings
            .values()
            .flat_map(|rt| {
                std::iter::once(rt.cfg.interface.clone())
                    .chain(rt.cfg.track_interfaces.iter().map(|t| t.interface.clone()))
                    .chain(rt.vips.iter().map(|v| v.ifname.clone()))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Re-reads a link: its index, state and addresses; opens or reopens
    /// its VRRP sockets; re-resolves our source addresses there.
    pub(crate) async fn refresh_link(&mut self, name: &str, now: Instant) -> Vec<Out> {
        let link = match self.nl.link(name).await {
            Ok(l) => l,
            Err(e) => {
                warn!(interface = name, "{e}");
                None
            }
        };
        match &link {
            Some(l) => {
                self.links.insert(name.to_string(), l.clone());
            }
            None => {
                self.links.remove(name);
            }
        }
        let addrs: Vec<IfAddr> = match &link {
            Some(l) => self.nl.addresses(l.index).await.unwrap_or_default(),
            None => Vec::new(),
        };
        for v6 in [false, true] {
            let key = (name.to_string(), v6);
            let wanted = self.bindings.values().any(|b| b.uses(&key));
            let current = self.ports.get(&key).map(|p| p.ifindex);
            match (&link, wanted, current) {
                (Some(l), true, cur) if cur != Some(l.index) => self.open_port(key, l.index),
                (None, _, Some(_)) | (_, false, Some(_)) => {
                    if let Some(p) = self.ports.remove(&key) {
                        p.close();
                    }
                }
                _ => {}
            }
        }
        let all_vips: Vec<IpAddr> = self
            .bindings
            .values()
            .flat_map(|r| r.vips.iter().map(|v| v.addr))
            .collect();
        let mut outs = Vec::new();
        let on_this: Vec<InstanceId> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.cfg.interface == name)
            .map(|(id, _)| *id)
            .collect();
        for id in on_this {
            let b = self.bindings.get_mut(&id).expect("listed");
            let src = source_address(b, &addrs, &all_vips);
            if src != b.src {
                debug!(instance = %b.cfg.name, "source address {:?}", src);
            }
            b.src = src;
            let tracker = b.address_tracker();
            if let Some(m) = self.node.get_mut(id) {
                m.inst.set_local_addr(src);
            }
            let v = if src.is_some() && link.is_some() {
                TrackValue::Ok
            } else {
                TrackValue::Failed
            };
            outs.extend(self.node.set_track(now, TrackKind::Address, &tracker, v));
        }
        // After the source addresses: an IPv6 macvlan carries ours.
        if let Some(l) = &link {
            self.ensure_vmacs(l).await;
        }
        let up = link.as_ref().is_some_and(|l| l.up);
        outs.extend(self.node.set_track(
            now,
            TrackKind::Interface,
            name,
            if up {
                TrackValue::Ok
            } else {
                TrackValue::Failed
            },
        ));
        outs
    }

    /// Creates the virtual-MAC macvlans of the instances on `base`,
    /// configured before they come up, and opens their sockets.
    pub(crate) async fn ensure_vmacs(&mut self, base: &Link) {
        let wanted: Vec<(String, u8, bool, Option<IpAddr>)> = self
            .bindings
            .values()
            .filter(|r| r.cfg.interface == base.name && r.send_if != r.cfg.interface)
            .map(|r| (r.send_if.clone(), r.cfg.vrid(), r.v6, r.src))
            .collect();
        if wanted.is_empty() {
            return;
        }
        if wanted.iter().any(|w| !w.2) {
            // The base interface must not answer ARP for the VIPs with its
            // own MAC (Linux answers for any local address by default), nor
            // ask with a VIP as the sender (replies from a VIP may leave
            // through it, and every neighbour would learn its MAC for the
            // VIP). IPv6 needs nothing here: a neighbour solicitation is
            // answered only for the receiving interface's own addresses.
            for (key, value) in [
                ("arp_ignore", "1"),
                ("arp_filter", "1"),
                ("arp_announce", "2"),
            ] {
                self.set_sysctl(&format!("net/ipv4/conf/{}/{key}", base.name), value);
            }
        }
        for (name, vrid, v6, src) in wanted {
            let link = match self
                .nl
                .ensure_vmac(&name, base.index, crate::netlink::virtual_mac(vrid, v6))
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    error!(interface = %name, "{e}");
                    continue;
                }
            };
            // Everything below is set while the macvlan is still down, so
            // that it never sends a frame from the shared virtual MAC that
            // would pull the switch's forwarding entry to a backup. The
            // settings go with the macvlan: nothing to put back.
            if v6 {
                // RFC 5798 7.4: no link-local address of its own (the
                // EUI-64 of the virtual MAC would be the same on every
                // router); no router solicitations, no addresses from
                // router advertisements.
                for (key, value) in [("addr_gen_mode", "1"), ("accept_ra", "0")] {
                    write_sysctl(&format!("net/ipv6/conf/{name}/{key}"), value);
                }
            } else {
                // IPv6 on an IPv4 macvlan would send DAD and router
                // solicitations from the virtual MAC, also on the backup.
                write_sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "1");
                for (key, value) in [
                    ("arp_ignore", "1"),
                    ("accept_local", "1"),
                    ("rp_filter", "0"),
                ] {
                    write_sysctl(&format!("net/ipv4/conf/{name}/{key}"), value);
                }
            }
            if let (true, Some(src)) = (v6, src) {
                // The adverts' source, the interface's link-local address,
                // must be on the macvlan they leave from. As keepalived:
                // no DAD (the address is the interface's own, already
                // checked) and deprecated, so nothing else picks it as a
                // source.
                if let Err(e) = self.nl.add_source_address(link.index, src).await {
                    error!(interface = %name, "{e}");
                }
                self.drop_stale_sources(&name, link.index, src).await;
            }
            if !link.up {
                if let Err(e) = self.nl.set_up(link.index).await {
                    error!(interface = %name, "{e}");
                }
            }
            let key = (name.clone(), v6);
            if self.ports.get(&key).map(|p| p.ifindex) != Some(link.index) {
                self.open_port(key, link.index);
            }
            self.vmacs.insert(name.clone(), link.index);
            self.links.insert(name, link);
        }
    }

    /// Removes from an IPv6 macvlan the advert sources it no longer uses
    /// (the interface's link-local address changed); VIPs stay.
    pub(crate) async fn drop_stale_sources(&mut self, name: &str, index: u32, src: IpAddr) {
        let vips: Vec<IpAddr> = self
            .bindings
            .values()
            .flat_map(|r| r.vips.iter().map(|v| v.addr))
            .collect();
        let Ok(addrs) = self.nl.addresses(index).await else {
            return;
        };
        for a in addrs {
            if a.addr.is_ipv6() && a.addr != src && !vips.contains(&a.addr) {
                debug!(interface = name, "removing old source {}", a.addr);
                if let Err(e) = self.nl.del_address(index, a.addr, a.prefix_len).await {
                    warn!(interface = name, "{e}");
                }
            }
        }
    }

    /// Sets a sysctl, remembering the value it had so it is put back when
    /// vrrpd stops.
    pub(crate) fn set_sysctl(&mut self, path: &str, value: &str) {
        let file = format!("/proc/sys/{path}");
        let Ok(old) = std::fs::read_to_string(&file) else {
            warn!("cannot read {file}");
            return;
        };
        let old = old.trim().to_string();
        if old == value {
            return;
        }
        match std::fs::write(&file, value) {
            Ok(()) => {
                self.sysctls.entry(file).or_insert(old);
            }
            Err(e) => warn!("cannot set {file} to {value}: {e}"),
        }
    }

    /// The VRIDs whose adverts are received on `key`.
    pub(crate) fn vrids_on(&self, key: &PortKey) -> Vec<u8> {
        self.bindings
            .values()
            .filter(|r| r.port() == *key)
            .filter_map(|r| u8::try_from(r.cfg.vrid).ok())
            .collect()
    }

    /// Points every open socket's kernel filter at the instances that
    /// now receive there (after a reload added or removed some).
    pub(crate) fn refilter_ports(&self) {
        for (key, port) in &self.ports {
            if let Err(e) = port.socket.keep_only_vrids(&self.vrids_on(key)) {
                warn!(interface = %key.0, "cannot filter adverts by VRID in the kernel: {e}");
            }
        }
    }

    pub(crate) fn open_port(&mut self, key: PortKey, ifindex: u32) {
        if let Some(old) = self.ports.remove(&key) {
            old.close();
        }
        // A socket only for sending joins nothing: on a virtual-MAC
        // macvlan the membership report would carry the shared MAC.
        let join = self.bindings.values().any(|r| r.joins(&key));
        match VrrpSocket::open(&key.0, ifindex, key.1, join) {
            Ok(s) => {
                let vrids = self.vrids_on(&key);
                if let Err(e) = s.keep_only_vrids(&vrids) {
                    warn!(interface = %key.0, "cannot filter adverts by VRID in the kernel: {e}");
                }
                let socket = Arc::new(s);
                let tx = self.tx.clone();
                let rx_socket = socket.clone();
                let rx_key = key.clone();
                let task = tokio::spawn(async move {
                    loop {
                        let input = match rx_socket.recv().await {
                            Ok(datagram) => Input::Packet {
                                port: rx_key.clone(),
                                datagram,
                            },
                            Err(error) => {
                                let stop = Input::PortError {
                                    port: rx_key.clone(),
                                    error,
                                };
                                let _ = tx.send(stop).await;
                                return;
                            }
                        };
                        if tx.send(input).await.is_err() {
                            return;
                        }
                    }
                });
                info!(interface = %key.0, ipv6 = key.1, "listening for adverts");
                self.ports.insert(
                    key,
                    Port {
                        socket,
                        ifindex,
                        task: Some(task),
                    },
                );
            }
            Err(e) => error!(interface = %key.0, "cannot open a VRRP socket: {e}"),
        }
    }
}
