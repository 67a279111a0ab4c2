//! The links vrrpd works on: their state and addresses as rtnetlink
//! reports them (which re-resolve the adverts' source and drive the
//! interface and address trackers), the VRRP sockets on them, and the
//! virtual-MAC macvlans with the sysctls they need.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::Daemon;
use super::addresses::RETRY;
use crate::binding::{on_interface, source_address};
use crate::input::{Input, PortKey};
use crate::netlink::{IfAddr, Netlink, NetlinkError, virtual_mac};
use crate::node::Out;
use crate::socket::VrrpSocket;
use crate::track::{TrackKind, TrackValue};
use crate::vmac;

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
        for id in on_interface(&self.bindings, name) {
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
        let carries_vmacs = self
            .bindings
            .values()
            .any(|b| b.cfg.interface == name && b.send_if != b.cfg.interface);
        if link.is_some() && carries_vmacs {
            self.sync_vmacs().await;
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

    /// Gives every virtual-MAC instance its macvlan, configured before it
    /// comes up (see [`crate::vmac`]), and opens their sockets. A step the
    /// kernel refuses is counted and the whole is tried again a second
    /// later.
    pub(crate) async fn sync_vmacs(&mut self) {
        let want = self.wanted_vmacs();
        self.sync_vmacs_to(want).await;
    }

    fn wanted_vmacs(&self) -> Vec<vmac::Want> {
        self.bindings
            .values()
            .filter(|b| b.send_if != b.cfg.interface)
            .map(|b| vmac::Want {
                name: b.send_if.clone(),
                base: b.cfg.interface.clone(),
                mac: virtual_mac(b.cfg.vrid(), b.v6),
                v6: b.v6,
                source: if b.v6 { b.src } else { None },
            })
            .collect()
    }

    /// Makes the macvlans `want`; the others this daemon made go.
    pub(crate) async fn sync_vmacs_to(&mut self, want: Vec<vmac::Want>) {
        let owned: BTreeSet<String> = self.vmacs.keys().cloned().collect();
        if want.is_empty() && owned.is_empty() {
            return;
        }
        let vips: Vec<IpAddr> = self
            .bindings
            .values()
            .flat_map(|b| b.vips.iter().map(|v| v.addr))
            .collect();
        let mut links = KernelLinks {
            nl: &self.nl,
            index: HashMap::new(),
            restore: &mut self.sysctls,
        };
        let outcome = vmac::sync(&mut links, &want, &owned, &vips).await;
        for op in &outcome.applied {
            debug!(interface = op.link(), "{op}");
            if let vmac::Op::Delete { name } = op {
                self.vmacs.remove(name);
                self.links.remove(name);
            }
        }
        for (op, e) in &outcome.failed {
            for b in self
                .bindings
                .values_mut()
                .filter(|b| b.send_if == op.link())
            {
                b.counters.address_failures += 1;
            }
            error!(interface = op.link(), "{e}; trying again in {RETRY:?}");
        }
        if let Some(e) = &outcome.unreadable {
            error!("cannot read the virtual-MAC links: {e}; trying again in {RETRY:?}");
        }
        self.vmac_retry = outcome.incomplete().then(|| Instant::now() + RETRY);
        for w in want {
            let Ok(Some(link)) = self.nl.link(&w.name).await else {
                continue;
            };
            let key = (w.name.clone(), w.v6);
            if self.ports.get(&key).map(|p| p.ifindex) != Some(link.index) {
                self.open_port(key, link.index);
            }
            self.vmacs.insert(w.name.clone(), link.index);
            self.links.insert(w.name, link);
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

/// The kernel's links over rtnetlink and their sysctls under /proc/sys,
/// for the virtual-MAC reconciler.
struct KernelLinks<'a> {
    nl: &'a Netlink,
    index: HashMap<String, u32>,
    /// A base interface's settings as they were, to put back at the end.
    restore: &'a mut BTreeMap<String, String>,
}

impl KernelLinks<'_> {
    async fn index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        if let Some(i) = self.index.get(name) {
            return Ok(*i);
        }
        let l = self
            .nl
            .link(name)
            .await?
            .ok_or_else(|| NetlinkError::Request {
                what: format!("link {name}"),
                cause: std::io::Error::from_raw_os_error(libc::ENODEV),
            })?;
        self.index.insert(name.to_string(), l.index);
        Ok(l.index)
    }
}

impl vmac::Links for KernelLinks<'_> {
    type Error = NetlinkError;

    async fn dump(
        &mut self,
        names: &BTreeSet<String>,
        sysctls: &BTreeSet<String>,
    ) -> Result<vmac::Have, NetlinkError> {
        let mut have = vmac::Have::default();
        for name in names {
            let Some(l) = self.nl.link(name).await? else {
                continue;
            };
            self.index.insert(name.clone(), l.index);
            let addrs = if l.lower.is_some() {
                self.nl.addresses(l.index).await?
            } else {
                Vec::new()
            };
            have.links.insert(
                name.clone(),
                vmac::LinkState {
                    index: l.index,
                    mac: l.mac,
                    lower: l.lower,
                    // Administratively up is what the plan asks for; the
                    // carrier follows the base.
                    up: l.admin_up,
                    addrs: addrs.iter().map(|a| (a.addr, a.prefix_len)).collect(),
                },
            );
        }
        for path in sysctls {
            if let Ok(v) = std::fs::read_to_string(format!("/proc/sys/{path}")) {
                have.sysctls.insert(path.clone(), v.trim().to_string());
            }
        }
        Ok(have)
    }

    async fn apply(&mut self, op: &vmac::Op) -> Result<(), NetlinkError> {
        match op {
            vmac::Op::Delete { name } => {
                let i = self.index(name).await?;
                self.index.remove(name);
                self.nl.delete_link(i).await
            }
            vmac::Op::Create { name, base, mac } => {
                let lower = self.index(base).await?;
                let l = self.nl.create_vmac(name, lower, *mac).await?;
                self.index.insert(name.clone(), l.index);
                Ok(())
            }
            vmac::Op::Sysctl {
                path,
                value,
                restore,
            } => {
                let file = format!("/proc/sys/{path}");
                if *restore && !self.restore.contains_key(&file) {
                    if let Ok(old) = std::fs::read_to_string(&file) {
                        self.restore.insert(file.clone(), old.trim().to_string());
                    }
                }
                std::fs::write(&file, value).map_err(|cause| NetlinkError::Request {
                    what: format!("setting {file} to {value}"),
                    cause,
                })
            }
            vmac::Op::AddSource { name, addr } => {
                let i = self.index(name).await?;
                self.nl.add_source_address(i, *addr).await
            }
            vmac::Op::DelAddress {
                name,
                addr,
                prefix_len,
            } => {
                let i = self.index(name).await?;
                self.nl.del_address(i, *addr, *prefix_len).await
            }
            vmac::Op::Up { name } => {
                let i = self.index(name).await?;
                self.nl.set_up(i).await
            }
        }
    }
}
