//! One instance's binding to this host: its configuration resolved to
//! interfaces, addresses and sockets, the state machine's parameters and
//! trackers it is built with, and its counters. Plain data and pure
//! functions: the adapters (links, rx, announce) read it, nothing here
//! does I/O but reading a tracked file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use tandem_model::api::{self, InstanceCounters};
use tandem_model::config::{Config, VrrpInstance};
use tracing::warn;

use crate::auth::Auth;
use crate::fsm::{Instance, Params};
use crate::input::PortKey;
use crate::netlink::IfAddr;
use crate::node::{InstanceId, Member, Node};
use crate::packet::{V2Auth, Version};
use crate::socket::destinations;
use crate::track::{TrackKind, TrackValue, Tracker};
use crate::vip::Vip;

/// What the loop keeps per instance besides its state machine: the
/// instance's configuration resolved to interfaces and addresses, and what
/// it has counted.
pub struct Binding {
    pub cfg: VrrpInstance,
    pub v6: bool,
    /// Where adverts go out: the interface, or its virtual-MAC macvlan.
    pub send_if: String,
    pub vips: Vec<Vip>,
    pub dests: Vec<IpAddr>,
    /// Source of our adverts and our address in tie-breaks.
    pub src: Option<IpAddr>,
    pub counters: InstanceCounters,
    pub last_transition: Option<api::Transition>,
    pub ip_id: u16,
    pub stopped: bool,
    /// VRRPv2 authentication sent and required.
    pub auth: V2Auth,
    /// Authenticated adverts (`auth_hmac`), keys loaded.
    pub hmac: Option<Auth>,
}

impl Binding {
    pub fn new(cfg: &VrrpInstance) -> Binding {
        let send_if = vmac_name(cfg).unwrap_or_else(|| cfg.interface.clone());
        let vips = cfg
            .virtual_ips
            .iter()
            .map(|v| Vip {
                addr: v.address.addr,
                prefix_len: v.address.prefix_len,
                label: v.label.clone(),
                ifname: v.interface.clone().unwrap_or_else(|| send_if.clone()),
            })
            .collect();
        Binding {
            send_if,
            v6: cfg.is_ipv6(),
            dests: destinations(cfg.is_ipv6(), &cfg.unicast_peers),
            vips,
            cfg: cfg.clone(),
            src: None,
            counters: InstanceCounters::default(),
            last_transition: None,
            ip_id: 0,
            stopped: false,
            auth: cfg
                .auth_pass
                .as_deref()
                .map_or(V2Auth::None, V2Auth::password),
            hmac: None,
        }
    }

    /// Where adverts are received. With a virtual MAC and multicast, that
    /// is the macvlan: a private-mode macvlan takes every multicast frame
    /// whose source MAC is its own (the master's adverts carry the virtual
    /// MAC) before the lower device sees it (drivers/net/macvlan.c,
    /// macvlan_handle_frame), and keepalived listens there too. Unicast
    /// adverts are addressed to the interface's own MAC and arrive on it.
    pub fn port(&self) -> PortKey {
        if self.multicast() {
            (self.send_if.clone(), self.v6)
        } else {
            (self.cfg.interface.clone(), self.v6)
        }
    }

    /// Adverts go to the VRRP group, not to unicast peers.
    pub fn multicast(&self) -> bool {
        self.dests.iter().all(|d| d.is_multicast())
    }

    /// The instance needs a socket on `key`, to receive or to send.
    pub fn uses(&self, key: &PortKey) -> bool {
        self.port() == *key || self.send_port() == *key
    }

    /// It receives multicast adverts on `key`: the socket joins the group.
    pub fn joins(&self, key: &PortKey) -> bool {
        self.port() == *key && self.multicast()
    }

    /// Where they are sent from.
    pub fn send_port(&self) -> PortKey {
        (self.send_if.clone(), self.v6)
    }

    /// The tracker naming a usable source address on our interface.
    pub fn address_tracker(&self) -> String {
        format!(
            "{} ({})",
            self.cfg.interface,
            if self.v6 { "IPv6 link-local" } else { "IPv4" }
        )
    }
}

/// The macvlan carrying the RFC virtual MAC, when the instance uses one.
pub fn vmac_name(cfg: &VrrpInstance) -> Option<String> {
    cfg.use_vmac.then(|| {
        cfg.vmac_interface
            .clone()
            .unwrap_or_else(|| format!("vrrp.{}", cfg.vrid))
    })
}

/// The state machine's parameters from the configuration.
pub fn params(cfg: &VrrpInstance) -> Params {
    Params {
        version: if cfg.version() == 2 {
            Version::V2
        } else {
            Version::V3
        },
        vrid: cfg.vrid(),
        priority: cfg.priority(),
        advert_interval: cfg.advert_interval,
        preempt: cfg.preempt,
        preempt_delay: cfg.preempt_delay,
        addresses: cfg.virtual_ips.iter().map(|v| v.address.addr).collect(),
        announce_repeat_after: cfg.announce_repeat_after,
        announce_refresh: cfg.announce_refresh,
    }
}

/// The trackers of an instance; `known` gives the current value of an
/// object already tracked (a reload keeps what is known).
pub fn trackers(
    config: &Config,
    rt: &Binding,
    known: &dyn Fn(TrackKind, &str) -> Option<TrackValue>,
) -> Vec<Tracker> {
    let cfg = &rt.cfg;
    let value = |k: TrackKind, n: &str, default: TrackValue| known(k, n).unwrap_or(default);
    let mut out = vec![
        Tracker::new(
            TrackKind::Interface,
            &cfg.interface,
            None,
            value(TrackKind::Interface, &cfg.interface, TrackValue::Failed),
        ),
        Tracker::new(
            TrackKind::Address,
            &rt.address_tracker(),
            None,
            value(
                TrackKind::Address,
                &rt.address_tracker(),
                TrackValue::Failed,
            ),
        ),
    ];
    for t in &cfg.track_interfaces {
        out.push(Tracker::new(
            TrackKind::Interface,
            &t.interface,
            t.weight,
            value(TrackKind::Interface, &t.interface, TrackValue::Failed),
        ));
    }
    for t in &cfg.track_files {
        let name = t.path.display().to_string();
        out.push(Tracker::new(
            TrackKind::File,
            &name,
            t.weight,
            value(TrackKind::File, &name, read_track_file(&t.path)),
        ));
    }
    for t in &cfg.track_virtual_servers {
        // Until healthd says otherwise (or its grace runs out), quorum
        // counts as met.
        out.push(Tracker::new(
            TrackKind::VirtualServer,
            &t.name,
            t.weight,
            value(TrackKind::VirtualServer, &t.name, TrackValue::Ok),
        ));
    }
    for t in &cfg.track_scripts {
        let default_weight = config.track_script(&t.name).and_then(|s| s.weight);
        out.push(Tracker::new(
            TrackKind::Script,
            &t.name,
            t.weight.or(default_weight),
            value(TrackKind::Script, &t.name, TrackValue::Ok),
        ));
    }
    out
}

/// A tracked file's value: its integer; missing is 0; anything else
/// counts as 1 (not fine), logged.
pub fn read_track_file(path: &Path) -> TrackValue {
    match std::fs::read_to_string(path) {
        Ok(s) => match s.trim().parse::<i64>() {
            Ok(n) => TrackValue::Number(n),
            Err(_) if s.trim().is_empty() => TrackValue::Number(0),
            Err(_) => {
                warn!(file = %path.display(), "tracked file does not hold an integer; counting it as 1");
                TrackValue::Number(1)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TrackValue::Number(0),
        Err(e) => {
            warn!(file = %path.display(), "cannot read tracked file: {e}; counting it as 1");
            TrackValue::Number(1)
        }
    }
}

/// RFC 5798 5.1.1.1 / 5.1.2.1: adverts come from the interface's primary
/// IPv4 address, or its IPv6 link-local address; `unicast_src` overrides.
pub fn source_address(rt: &Binding, addrs: &[IfAddr], vips: &[IpAddr]) -> Option<IpAddr> {
    if let Some(s) = rt.cfg.unicast_src {
        return Some(s);
    }
    addrs
        .iter()
        .filter(|a| !a.tentative && !vips.contains(&a.addr))
        .filter(|a| match a.addr {
            IpAddr::V4(_) => !rt.v6 && !a.secondary,
            IpAddr::V6(v) => rt.v6 && v.is_unicast_link_local(),
        })
        .map(|a| a.addr)
        .next()
}

/// A new instance of `cfg`: its state machine with fresh trackers, and its
/// binding.
pub fn build(config: &Config, cfg: &VrrpInstance) -> (Member, Binding) {
    let b = Binding::new(cfg);
    let tr = trackers(config, &b, &|_, _| None);
    (Member::new(&cfg.name, Instance::new(params(cfg)), tr), b)
}

/// Every master's VIPs, and a backup's adopted ones: what the
/// interfaces should hold now.
pub fn masters_vips(node: &Node, bindings: &BTreeMap<InstanceId, Binding>) -> Vec<Vip> {
    bindings
        .iter()
        .filter(|(id, _)| node.get(**id).is_some_and(|m| m.inst.holds_addresses()))
        .flat_map(|(_, b)| b.vips.iter().cloned())
        .collect()
}

/// The VIPs vrrpd may remove: every configured instance's but an address
/// owner's (those are the interface's own addresses).
pub fn managed_vips<'a>(bindings: impl Iterator<Item = &'a Binding>) -> Vec<Vip> {
    bindings
        .filter(|b| !b.cfg.address_owner)
        .flat_map(|b| b.vips.iter().cloned())
        .collect()
}

/// The instances whose interface is `ifname`.
pub fn on_interface(bindings: &BTreeMap<InstanceId, Binding>, ifname: &str) -> Vec<InstanceId> {
    bindings
        .iter()
        .filter(|(_, b)| b.cfg.interface == ifname)
        .map(|(id, _)| *id)
        .collect()
}
