//! The daemon: one event loop that owns every instance's state machine and
//! carries out what they decide. Packets, link events, script results,
//! control requests and signals arrive on one channel; timers are the
//! state machines' deadlines. Nothing else writes state, so nothing locks.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_model::api::{
    self, ApiError, DaemonInfo, EventKind, InstanceCounters, InstanceStatus, MasterSeen,
    ReloadResult, SyncGroupStatus, TrackStatus, VrrpState, VrrpdStatus, now_millis,
};
use tandem_model::config::{self, Config, ConfigError, Family, VrrpInstance};
use tandem_model::control::{CommandError, EventLog};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::fsm::{Action, Instance, Params};
use crate::netlink::{IfAddr, Link, LinkEvent, Netlink, NetlinkError};
use crate::node::{Member, Node, Out};
use crate::packet::{self, Advert, Drop, Version, garp_frame, ipv4_packet, unsolicited_na};
use crate::socket::{Datagram, Icmpv6Socket, PacketSocket, VrrpSocket, destinations};
use crate::track::{RiseFall, ScriptResult, TrackKind, TrackValue, Tracker};
use tandem_model::exec::{self, RunAs};

/// How the daemon was started.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    /// Overrides `[node] socket_dir` (tests run several nodes on one host).
    pub socket_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
}

/// How long the loop sleeps when no state machine has a deadline.
const IDLE: Duration = Duration::from_secs(3600);
/// At most this many queued inputs are taken before a deadline that has
/// passed (see [`Daemon::run`]).
const BEFORE_DEADLINE: usize = 64;

/// Requests from the control API.
pub enum Command {
    Status(oneshot::Sender<VrrpdStatus>),
    Reload(oneshot::Sender<Result<ReloadResult, ApiError>>),
    Maintenance {
        instance: String,
        on: bool,
        reply: oneshot::Sender<Result<InstanceStatus, CommandError>>,
    },
}

pub enum Signal {
    Terminate,
    Reload,
}

/// Everything the loop reacts to.
pub enum Input {
    Packet {
        port: PortKey,
        datagram: Datagram,
    },
    PortError {
        port: PortKey,
        error: std::io::Error,
    },
    Link(LinkEvent),
    Script {
        name: String,
        result: ScriptResult,
    },
    /// Quorum verdicts of tracked virtual servers, from healthd.
    Quorum(crate::healthd::Verdicts),
    File {
        path: PathBuf,
        value: TrackValue,
    },
    Command(Command),
    Signal(Signal),
}

/// A VRRP socket is per interface and family.
pub type PortKey = (String, bool);

struct Port {
    socket: Arc<VrrpSocket>,
    ifindex: u32,
    /// The reader; none for a send-only port (a virtual-MAC interface).
    task: Option<JoinHandle<()>>,
}

impl Port {
    fn close(self) {
        if let Some(t) = self.task {
            t.abort();
        }
    }
}

/// A virtual IP, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Vip {
    addr: IpAddr,
    prefix_len: u8,
    label: Option<String>,
    ifname: String,
}

/// What the loop keeps per instance besides its state machine.
struct Rt {
    cfg: VrrpInstance,
    v6: bool,
    /// Where adverts go out: the interface, or its virtual-MAC macvlan.
    send_if: String,
    vips: Vec<Vip>,
    dests: Vec<IpAddr>,
    /// Source of our adverts and our address in tie-breaks.
    src: Option<IpAddr>,
    counters: InstanceCounters,
    last_transition: Option<api::Transition>,
    ip_id: u16,
    stopped: bool,
    group: Option<String>,
}

impl Rt {
    fn new(cfg: &VrrpInstance) -> Rt {
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
        Rt {
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
            group: None,
        }
    }

    /// Where adverts are received. With a virtual MAC and multicast, that
    /// is the macvlan: a private-mode macvlan takes every multicast frame
    /// whose source MAC is its own (the master's adverts carry the virtual
    /// MAC) before the lower device sees it (drivers/net/macvlan.c,
    /// macvlan_handle_frame), and keepalived listens there too. Unicast
    /// adverts are addressed to the interface's own MAC and arrive on it.
    fn port(&self) -> PortKey {
        if self.multicast() {
            (self.send_if.clone(), self.v6)
        } else {
            (self.cfg.interface.clone(), self.v6)
        }
    }

    /// Adverts go to the VRRP group, not to unicast peers.
    fn multicast(&self) -> bool {
        self.dests.iter().all(|d| d.is_multicast())
    }

    /// The instance needs a socket on `key`, to receive or to send.
    fn uses(&self, key: &PortKey) -> bool {
        self.port() == *key || self.send_port() == *key
    }

    /// It receives multicast adverts on `key`: the socket joins the group.
    fn joins(&self, key: &PortKey) -> bool {
        self.port() == *key && self.multicast()
    }

    /// Where they are sent from.
    fn send_port(&self) -> PortKey {
        (self.send_if.clone(), self.v6)
    }

    /// The tracker naming a usable source address on our interface.
    fn address_tracker(&self) -> String {
        format!(
            "{} ({})",
            self.cfg.interface,
            if self.v6 { "IPv6 link-local" } else { "IPv4" }
        )
    }
}

/// The macvlan carrying the RFC virtual MAC, when the instance uses one.
fn vmac_name(cfg: &VrrpInstance) -> Option<String> {
    cfg.use_vmac.then(|| {
        cfg.vmac_interface
            .clone()
            .unwrap_or_else(|| format!("vrrp.{}", cfg.vrid))
    })
}

fn params(cfg: &VrrpInstance) -> Params {
    Params {
        version: if cfg.version == 2 {
            Version::V2
        } else {
            Version::V3
        },
        vrid: cfg.vrid as u8,
        priority: cfg.priority() as u8,
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
fn trackers(
    config: &Config,
    rt: &Rt,
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
fn read_track_file(path: &Path) -> TrackValue {
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

struct ScriptRt {
    rf: RiseFall,
    last: Option<ScriptResult>,
    task: JoinHandle<()>,
    cfg: config::TrackScript,
}

pub struct Daemon {
    opts: Options,
    config: Config,
    info: DaemonInfo,
    node: Node,
    rts: Vec<Rt>,
    ports: HashMap<PortKey, Port>,
    links: HashMap<String, Link>,
    garp: HashMap<u32, Arc<PacketSocket>>,
    na: HashMap<u32, Arc<Icmpv6Socket>>,
    scripts: HashMap<String, ScriptRt>,
    files_task: Option<JoinHandle<()>>,
    healthd_task: Option<JoinHandle<()>>,
    nl: Netlink,
    events: EventLog,
    tx: mpsc::Sender<Input>,
    unclaimed_drops: BTreeMap<String, u64>,
    shutting_down: Option<Instant>,
    /// Virtual-MAC macvlans this daemon created (name -> index).
    vmacs: HashMap<String, u32>,
    /// Sysctls changed, with the values to restore.
    sysctls: BTreeMap<String, String>,
}

/// Removes `vip` from its interface if it is there; true when it was.
/// A missing interface holds nothing.
async fn remove_vip_if_present(nl: &Netlink, vip: &Vip) -> Result<bool, NetlinkError> {
    let Some(link) = nl.link(&vip.ifname).await? else {
        return Ok(false);
    };
    let addrs = nl.addresses(link.index).await?;
    if !addrs.iter().any(|a| a.addr == vip.addr) {
        return Ok(false);
    }
    nl.del_address(link.index, vip.addr, vip.prefix_len).await?;
    Ok(true)
}

/// What [`release`] did on this host.
#[derive(Debug, Default)]
pub struct Released {
    /// One line per address or macvlan removed.
    pub removed: Vec<String>,
    /// What could not be removed; the rest was still attempted.
    pub errors: Vec<String>,
}

/// Takes off this host what a vrrpd of `config` puts on it while master:
/// the virtual IPs of every instance (address owners excepted: those are
/// the interface's own addresses) and the virtual-MAC macvlans. A vrrpd
/// that stops cleanly has done it already; one killed with -9 or crashed
/// has not, and its VIPs would keep answering ARP next to the new master.
/// `tandem-vrrpd release` runs this as the systemd unit's stop hook.
///
/// The sysctls a virtual MAC sets on the base interface (`arp_ignore`,
/// `arp_filter`, `arp_announce`) stay: the values they replaced died with
/// the daemon, and the next vrrpd sets them again anyway.
pub async fn release(config: &Config) -> Result<Released, DaemonError> {
    let nl = Netlink::connect()?;
    let mut out = Released::default();
    for cfg in &config.vrrp_instances {
        let rt = Rt::new(cfg);
        if !cfg.address_owner {
            for vip in &rt.vips {
                match remove_vip_if_present(&nl, vip).await {
                    Ok(true) => out.removed.push(format!(
                        "{}: {}/{} from {}",
                        cfg.name, vip.addr, vip.prefix_len, vip.ifname
                    )),
                    Ok(false) => {}
                    Err(e) => out.errors.push(format!("{}: {e}", cfg.name)),
                }
            }
        }
        let Some(vmac) = vmac_name(cfg) else {
            continue;
        };
        let found = async {
            let base = nl.link(&cfg.interface).await?;
            let link = nl.link(&vmac).await?;
            Ok::<_, NetlinkError>(base.zip(link))
        };
        match found.await {
            // Only the macvlan vrrpd would have made: on this base, with
            // the instance's virtual MAC. Anything else under that name is
            // someone else's.
            Ok(Some((base, link)))
                if link.lower == Some(base.index)
                    && link.mac == crate::netlink::virtual_mac(cfg.vrid as u8, false) =>
            {
                match nl.delete_link(link.index).await {
                    Ok(()) => out
                        .removed
                        .push(format!("{}: macvlan {vmac} on {}", cfg.name, base.name)),
                    Err(e) => out.errors.push(format!("{}: {e}", cfg.name)),
                }
            }
            Ok(_) => {}
            Err(e) => out.errors.push(format!("{}: {e}", cfg.name)),
        }
    }
    Ok(out)
}

/// The socket path this daemon serves its control API on.
pub fn socket_path(opts: &Options, config: &Config) -> PathBuf {
    opts.socket_dir
        .clone()
        .unwrap_or_else(|| config.node.socket_dir.clone())
        .join("vrrpd.sock")
}

impl Daemon {
    /// Loads the configuration and prepares everything that can fail
    /// before the first packet is sent.
    pub async fn new(opts: Options, tx: mpsc::Sender<Input>) -> Result<Daemon, DaemonError> {
        let config = config::load(&opts.config)?;
        let nl = Netlink::connect()?;
        let node_name = config.node_name();
        let info = DaemonInfo {
            daemon: "vrrpd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            node: node_name.clone(),
            pid: std::process::id(),
            started_at: now_millis(),
            config_path: opts.config.display().to_string(),
            config_loaded_at: now_millis(),
        };
        let mut d = Daemon {
            events: EventLog::new("vrrpd", &node_name, 1000),
            opts,
            info,
            node: Node::default(),
            rts: Vec::new(),
            ports: HashMap::new(),
            links: HashMap::new(),
            garp: HashMap::new(),
            na: HashMap::new(),
            scripts: HashMap::new(),
            files_task: None,
            healthd_task: None,
            nl,
            tx,
            unclaimed_drops: BTreeMap::new(),
            shutting_down: None,
            vmacs: HashMap::new(),
            sysctls: BTreeMap::new(),
            config,
        };
        d.build_node();
        Ok(d)
    }

    pub fn events(&self) -> EventLog {
        self.events.clone()
    }

    pub fn socket_path(&self) -> PathBuf {
        socket_path(&self.opts, &self.config)
    }

    /// Creates the node from `self.config`.
    fn build_node(&mut self) {
        let mut members = Vec::new();
        let mut rts = Vec::new();
        for cfg in &self.config.vrrp_instances {
            let rt = Rt::new(cfg);
            let tr = trackers(&self.config, &rt, &|_, _| None);
            members.push(Member::new(&cfg.name, Instance::new(params(cfg)), tr));
            rts.push(rt);
        }
        let groups: Vec<(String, Vec<String>)> = self
            .config
            .vrrp_sync_groups
            .iter()
            .map(|g| (g.name.clone(), g.instances.clone()))
            .collect();
        self.node = Node::new(members, &groups);
        for g in &self.config.vrrp_sync_groups {
            for name in &g.instances {
                if let Some(i) = self.node.index(name) {
                    rts[i].group = Some(g.name.clone());
                }
            }
        }
        self.rts = rts;
    }

    /// Removes virtual IPs of configured instances left on the interfaces
    /// by a vrrpd that died without cleaning up (kill -9, a crash): they
    /// would answer ARP next to the real master.
    async fn remove_stale_vips(&mut self) {
        for rt in &self.rts {
            if rt.cfg.address_owner {
                continue;
            }
            for vip in &rt.vips {
                match remove_vip_if_present(&self.nl, vip).await {
                    Ok(true) => {
                        info!(instance = %rt.cfg.name, "removing {} from {}: left behind by an earlier run", vip.addr, vip.ifname)
                    }
                    Ok(false) => {}
                    Err(e) => warn!(instance = %rt.cfg.name, "{e}"),
                }
            }
        }
    }

    /// Starts the election: cleans up, opens sockets, starts trackers.
    pub async fn start(&mut self) -> Result<(), DaemonError> {
        self.remove_stale_vips().await;
        let now = Instant::now();
        let mut outs = Vec::new();
        let names: Vec<String> = self.interfaces();
        for name in names {
            outs.extend(self.refresh_link(&name, now).await);
        }
        self.start_trackers();
        self.events.publish(EventKind::DaemonStarted {
            version: self.info.version.clone(),
        });
        outs.extend(self.node.startup(now));
        self.execute(outs, now).await;
        Ok(())
    }

    /// Every interface some instance needs to know about.
    fn interfaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .rts
            .iter()
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
    async fn refresh_link(&mut self, name: &str, now: Instant) -> Vec<Out> {
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
            let wanted = self.rts.iter().any(|rt| rt.uses(&key));
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
            .rts
            .iter()
            .flat_map(|r| r.vips.iter().map(|v| v.addr))
            .collect();
        let mut outs = Vec::new();
        for i in 0..self.rts.len() {
            if self.rts[i].cfg.interface != name {
                continue;
            }
            let src = source_address(&self.rts[i], &addrs, &all_vips);
            if src != self.rts[i].src {
                debug!(instance = %self.rts[i].cfg.name, "source address {:?}", src);
            }
            self.rts[i].src = src;
            self.node.members[i].inst.set_local_addr(src);
            let tracker = self.rts[i].address_tracker();
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
    async fn ensure_vmacs(&mut self, base: &Link) {
        let wanted: Vec<(String, u8, bool, Option<IpAddr>)> = self
            .rts
            .iter()
            .filter(|r| r.cfg.interface == base.name && r.send_if != r.cfg.interface)
            .map(|r| (r.send_if.clone(), r.cfg.vrid as u8, r.v6, r.src))
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
    async fn drop_stale_sources(&mut self, name: &str, index: u32, src: IpAddr) {
        let vips: Vec<IpAddr> = self
            .rts
            .iter()
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
    fn set_sysctl(&mut self, path: &str, value: &str) {
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
    fn vrids_on(&self, key: &PortKey) -> Vec<u8> {
        self.rts
            .iter()
            .filter(|r| r.port() == *key)
            .filter_map(|r| u8::try_from(r.cfg.vrid).ok())
            .collect()
    }

    /// Points every open socket's kernel filter at the instances that
    /// now receive there (after a reload added or removed some).
    fn refilter_ports(&self) {
        for (key, port) in &self.ports {
            if let Err(e) = port.socket.keep_only_vrids(&self.vrids_on(key)) {
                warn!(interface = %key.0, "cannot filter adverts by VRID in the kernel: {e}");
            }
        }
    }

    fn open_port(&mut self, key: PortKey, ifindex: u32) {
        if let Some(old) = self.ports.remove(&key) {
            old.close();
        }
        // A socket only for sending joins nothing: on a virtual-MAC
        // macvlan the membership report would carry the shared MAC.
        let join = self.rts.iter().any(|r| r.joins(&key));
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

    fn start_trackers(&mut self) {
        // Scripts every instance refers to, each run once at a time.
        let wanted: Vec<config::TrackScript> = self
            .config
            .track_scripts
            .iter()
            .filter(|s| {
                self.config
                    .vrrp_instances
                    .iter()
                    .any(|i| i.track_scripts.iter().any(|t| t.name == s.name))
            })
            .cloned()
            .collect();
        self.scripts.retain(|name, s| {
            let keep = wanted.contains(&s.cfg);
            if !keep {
                s.task.abort();
                debug!(script = %name, "stopped");
            }
            keep
        });
        for s in wanted {
            if self.scripts.contains_key(&s.name) {
                continue;
            }
            let run_as = match s.user.as_deref().map(RunAs::lookup) {
                Some(Err(e)) => {
                    error!(script = %s.name, "{e}: the script counts as failed");
                    None
                }
                Some(Ok(u)) => Some(u),
                None => None,
            };
            let unusable = s.user.is_some() && run_as.is_none();
            let tx = self.tx.clone();
            let cfg = s.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(cfg.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let result = if unusable {
                        ScriptResult::CannotRun(format!(
                            "user {} unknown",
                            cfg.user.clone().unwrap_or_default()
                        ))
                    } else {
                        exec::run_script(&cfg.command, run_as, &[], cfg.timeout).await
                    };
                    let msg = Input::Script {
                        name: cfg.name.clone(),
                        result,
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
            });
            self.scripts.insert(
                s.name.clone(),
                ScriptRt {
                    rf: RiseFall::new(s.rise as u32, s.fall as u32, true),
                    last: None,
                    task,
                    cfg: s,
                },
            );
        }
        // Quorum of tracked virtual servers, from healthd.
        if let Some(t) = self.healthd_task.take() {
            t.abort();
        }
        let mut tracked: Vec<String> = self
            .config
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_virtual_servers.iter().map(|t| t.name.clone()))
            .collect();
        tracked.sort();
        tracked.dedup();
        if !tracked.is_empty() {
            let dir = self
                .opts
                .socket_dir
                .clone()
                .unwrap_or_else(|| self.config.node.socket_dir.clone());
            self.healthd_task = Some(tokio::spawn(crate::healthd::watch(
                dir.join("healthd.sock"),
                tracked,
                self.config.node.healthd_grace,
                self.tx.clone(),
            )));
        }
        // Tracked files, polled once a second.
        if let Some(t) = self.files_task.take() {
            t.abort();
        }
        let mut files: Vec<PathBuf> = self
            .config
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_files.iter().map(|f| f.path.clone()))
            .collect();
        files.sort();
        files.dedup();
        if !files.is_empty() {
            let tx = self.tx.clone();
            self.files_task = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    for path in &files {
                        let value = read_track_file(path);
                        let msg = Input::File {
                            path: path.clone(),
                            value,
                        };
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                }
            }));
        }
    }

    /// Runs the loop until a shutdown has completed.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) -> Result<(), DaemonError> {
        let links = crate::netlink::link_events()?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut links = Box::pin(links);
            while let Some(ev) = links.next().await {
                if tx.send(Input::Link(ev)).await.is_err() {
                    return;
                }
            }
        });
        let timer = crate::timer::Deadline::new().map_err(|cause| DaemonError::Io {
            what: "creating a timer".into(),
            cause,
        })?;
        loop {
            if let Some(started) = self.shutting_down {
                if self.rts.iter().all(|r| r.stopped) {
                    break;
                }
                // A handover waits at most 4 advert intervals; past a
                // generous bound, stop anyway.
                if started.elapsed() >= self.shutdown_bound() {
                    warn!("shutdown did not complete in time; removing addresses now");
                    break;
                }
            }
            let mut deadline = self
                .node
                .next_deadline()
                .unwrap_or_else(|| Instant::now() + IDLE);
            if let Some(started) = self.shutting_down {
                // The bound is a deadline of its own: a stop must end even
                // when nothing else is due and nothing arrives.
                deadline = deadline.min(started + self.shutdown_bound());
            }
            if let Err(e) = timer.set(deadline) {
                error!("cannot arm the timer: {e}");
            }
            // The deadline first: under any receive load (a flood of
            // protocol 112 on the segment) a master's adverts and a
            // backup's Master_Down timer keep their schedule. With the
            // channel first, a busy channel starved the timer.
            let woke = tokio::select! {
                biased;
                _ = timer.fired() => None,
                i = rx.recv() => i,
            };
            if let Some(input) = woke {
                let now = Instant::now();
                let outs = self.handle(input, now).await;
                self.execute(outs, now).await;
                continue;
            }
            // A deadline passed. If this loop was held up (a slow netlink
            // request, a busy machine), adverts that arrived before the
            // deadline may still wait in the sockets: the readers forward
            // them when they next run. Let them run once and take what they
            // brought first, or a backup would declare a master dead that
            // advertised in time; but no more than was queued then, so a
            // flood cannot hold the deadline back.
            tokio::task::yield_now().await;
            for _ in 0..rx.len().min(BEFORE_DEADLINE) {
                let Ok(input) = rx.try_recv() else { break };
                let now = Instant::now();
                let outs = self.handle(input, now).await;
                self.execute(outs, now).await;
            }
            let now = Instant::now();
            let outs = self.node.on_timer(now);
            self.execute(outs, now).await;
        }
        self.finish().await;
        Ok(())
    }

    fn shutdown_bound(&self) -> Duration {
        let max_adv = self
            .rts
            .iter()
            .map(|r| r.cfg.advert_interval)
            .max()
            .unwrap_or_default();
        4 * max_adv + Duration::from_secs(2)
    }

    /// Last words: whatever still holds addresses gives them up.
    async fn finish(&mut self) {
        for i in 0..self.rts.len() {
            if !self.rts[i].stopped && self.node.members[i].inst.state() == VrrpState::Master {
                self.remove_addresses(i).await;
            }
        }
        for (_, p) in self.ports.drain() {
            p.close();
        }
        for (name, index) in std::mem::take(&mut self.vmacs) {
            if let Err(e) = self.nl.delete_link(index).await {
                warn!(interface = %name, "{e}");
            }
        }
        for (file, value) in std::mem::take(&mut self.sysctls) {
            if let Err(e) = std::fs::write(&file, &value) {
                warn!("cannot restore {file} to {value}: {e}");
            }
        }
        for s in self.scripts.values() {
            s.task.abort();
        }
        self.events.publish(EventKind::DaemonStopping);
        info!("stopped");
    }

    async fn handle(&mut self, input: Input, now: Instant) -> Vec<Out> {
        match input {
            Input::Packet { port, datagram } => self.on_packet(&port, datagram, now),
            Input::PortError { port, error } => {
                error!(interface = %port.0, "receiving adverts failed: {error}; reopening");
                self.ports.remove(&port);
                self.refresh_link(&port.0.clone(), now).await
            }
            Input::Link(ev) => {
                let name = match &ev {
                    LinkEvent::Changed(l) => Some(l.name.clone()),
                    LinkEvent::Removed { name, .. } => Some(name.clone()),
                    LinkEvent::Addresses { index } => self
                        .links
                        .values()
                        .find(|l| l.index == *index)
                        .map(|l| l.name.clone()),
                };
                match name {
                    Some(n) if self.interfaces().contains(&n) => {
                        let changed = match &ev {
                            LinkEvent::Changed(l) => self.links.get(&n) != Some(l),
                            _ => true,
                        };
                        if changed {
                            self.refresh_link(&n, now).await
                        } else {
                            Vec::new()
                        }
                    }
                    _ => Vec::new(),
                }
            }
            Input::Script { name, result } => self.on_script(&name, result, now),
            Input::Quorum(verdicts) => {
                let mut outs = Vec::new();
                for (name, met) in verdicts {
                    let v = if met {
                        TrackValue::Ok
                    } else {
                        TrackValue::Failed
                    };
                    outs.extend(self.node.set_track(now, TrackKind::VirtualServer, &name, v));
                }
                outs
            }
            Input::File { path, value } => {
                self.node
                    .set_track(now, TrackKind::File, &path.display().to_string(), value)
            }
            Input::Command(cmd) => self.on_command(cmd, now).await,
            Input::Signal(Signal::Reload) => {
                let (tx, _rx) = oneshot::channel();
                self.on_command(Command::Reload(tx), now).await
            }
            Input::Signal(Signal::Terminate) => self.shutdown(now),
        }
    }

    fn shutdown(&mut self, now: Instant) -> Vec<Out> {
        if self.shutting_down.is_some() {
            return Vec::new();
        }
        info!("shutting down: handing over what this node holds");
        self.shutting_down = Some(now);
        self.node.shutdown(now, true)
    }

    fn on_script(&mut self, name: &str, result: ScriptResult, now: Instant) -> Vec<Out> {
        let Some(s) = self.scripts.get_mut(name) else {
            return Vec::new();
        };
        let changed = s.rf.record(result.success());
        let same_as_before = s.last.as_ref() == Some(&result);
        s.last = Some(result.clone());
        match changed {
            Some(ok) => {
                info!(
                    script = name,
                    "now {} ({result})",
                    if ok { "ok" } else { "failed" }
                );
                let v = if ok {
                    TrackValue::Ok
                } else {
                    TrackValue::Failed
                };
                self.node.set_track(now, TrackKind::Script, name, v)
            }
            None => {
                if !same_as_before {
                    debug!(script = name, "{result}");
                }
                Vec::new()
            }
        }
    }

    fn count_unclaimed(&mut self, d: Drop) {
        *self
            .unclaimed_drops
            .entry(d.as_str().to_string())
            .or_default() += 1;
    }

    fn count_drop(&mut self, i: usize, d: Drop) {
        *self.rts[i]
            .counters
            .drops
            .entry(d.as_str().to_string())
            .or_default() += 1;
        debug!(instance = %self.rts[i].cfg.name, "dropped an advert: {d}");
    }

    /// RFC 5798 7.1 receive checks, then the state machine.
    fn on_packet(&mut self, port: &PortKey, datagram: Datagram, now: Instant) -> Vec<Out> {
        let (src, dst, ttl, msg): (IpAddr, IpAddr, u8, Vec<u8>) = match datagram {
            Datagram::V4(bytes) => match packet::parse_ipv4(&bytes) {
                Ok((h, msg)) if h.protocol == packet::IPPROTO_VRRP => {
                    (h.src.into(), h.dst.into(), h.ttl, msg.to_vec())
                }
                Ok(_) => {
                    self.count_unclaimed(Drop::Protocol);
                    return Vec::new();
                }
                Err(d) => {
                    self.count_unclaimed(d);
                    return Vec::new();
                }
            },
            Datagram::V6 {
                src,
                dst,
                hop_limit,
                payload,
            } => (src.into(), dst.into(), hop_limit, payload),
        };
        let Some(&vrid) = msg.get(1) else {
            self.count_unclaimed(Drop::Truncated);
            return Vec::new();
        };
        let Some(i) = self
            .rts
            .iter()
            .position(|rt| rt.port() == *port && rt.cfg.vrid == i64::from(vrid))
        else {
            // An advert from a peer without a virtual MAC reaches both the
            // interface and our macvlan on it; the macvlan's copy counts.
            let copy = self.rts.iter().any(|rt| {
                (rt.cfg.interface.as_str(), rt.v6) == (port.0.as_str(), port.1)
                    && rt.cfg.vrid == i64::from(vrid)
            });
            if !copy {
                self.count_unclaimed(Drop::UnknownVrid);
            }
            return Vec::new();
        };
        if ttl != packet::VRRP_TTL {
            self.count_drop(i, Drop::Ttl);
            return Vec::new();
        }
        let adv = match Advert::decode(&msg, src, dst) {
            Ok(a) => a,
            Err(d) => {
                self.count_drop(i, d);
                return Vec::new();
            }
        };
        match self.node.on_advert(now, i, src, &adv) {
            Ok(r) => {
                let rt = &mut self.rts[i];
                rt.counters.adverts_received += 1;
                if adv.priority == 0 {
                    rt.counters.priority_zero_received += 1;
                }
                for m in r.mismatches {
                    let n = rt.counters.mismatches.entry(m.as_str().into()).or_default();
                    *n += 1;
                    // Log the first and then every hundredth: a peer with
                    // another config advertises every second.
                    if *n == 1 || *n % 100 == 0 {
                        warn!(
                            instance = %rt.cfg.name,
                            "advert from {src} has another {} than ours (seen {} times): {:?}",
                            m.as_str(), n, adv
                        );
                    }
                }
                r.outs
            }
            Err(d) => {
                self.count_drop(i, d);
                Vec::new()
            }
        }
    }

    async fn execute(&mut self, outs: Vec<Out>, now: Instant) {
        for out in outs {
            match out {
                Out::Instance(i, action) => self.act(i, action, now).await,
                Out::Group { group, to } => {
                    let g = &self.config.vrrp_sync_groups[group];
                    info!(group = %g.name, "sync group is now {to}");
                    self.events.publish(EventKind::SyncGroupTransition {
                        group: g.name.clone(),
                        to,
                    });
                    if let Some(n) = &g.notify {
                        if to != VrrpState::Init {
                            exec::notify(
                                n,
                                ["GROUP".into(), g.name.clone(), to.to_string(), "0".into()],
                            );
                        }
                    }
                }
            }
        }
    }

    async fn act(&mut self, i: usize, action: Action, _now: Instant) {
        match action {
            Action::SendAdvert { priority } => self.send_advert(i, priority),
            Action::AddAddresses => self.add_addresses(i).await,
            Action::RemoveAddresses => self.remove_addresses(i).await,
            Action::Announce => self.announce(i),
            Action::Transition { from, to, reason } => {
                let rt = &mut self.rts[i];
                let priority = self.node.members[i].inst.priority();
                info!(instance = %rt.cfg.name, "{from} -> {to}: {reason}");
                rt.counters.transitions += 1;
                if to == VrrpState::Master {
                    rt.counters.became_master += 1;
                }
                rt.last_transition = Some(api::Transition {
                    from,
                    to,
                    reason: reason.clone(),
                    at: now_millis(),
                });
                self.events.publish(EventKind::VrrpTransition {
                    instance: rt.cfg.name.clone(),
                    from,
                    to,
                    priority,
                    reason,
                });
                if let Some(n) = &rt.cfg.notify {
                    if to != VrrpState::Init {
                        exec::notify(
                            n,
                            [
                                "INSTANCE".into(),
                                rt.cfg.name.clone(),
                                to.to_string(),
                                priority.to_string(),
                            ],
                        );
                    }
                }
            }
            Action::Stopped => self.rts[i].stopped = true,
        }
    }

    fn send_advert(&mut self, i: usize, priority: u8) {
        let rt = &mut self.rts[i];
        let Some(src) = rt.src else {
            debug!(instance = %rt.cfg.name, "no source address: advert not sent");
            return;
        };
        let Some(port) = self.ports.get(&rt.send_port()) else {
            debug!(instance = %rt.cfg.name, "no socket: advert not sent");
            return;
        };
        let inst = &self.node.members[i].inst;
        let adv = Advert {
            version: inst.params().version,
            vrid: inst.params().vrid,
            priority,
            interval: rt.cfg.advert_interval,
            addresses: inst.params().addresses.clone(),
        };
        for dst in rt.dests.clone() {
            let msg = adv.encode(src, dst);
            let sent = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    rt.ip_id = rt.ip_id.wrapping_add(1);
                    port.socket.send_v4(&ipv4_packet(s, d, rt.ip_id, &msg), d)
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => port.socket.send_v6(&msg, s, d),
                _ => continue,
            };
            match sent {
                Ok(()) => {
                    rt.counters.adverts_sent += 1;
                    if priority == 0 {
                        rt.counters.priority_zero_sent += 1;
                    }
                }
                Err(e) => warn!(instance = %rt.cfg.name, "sending an advert to {dst}: {e}"),
            }
        }
    }

    async fn link_index(&mut self, ifname: &str) -> Option<u32> {
        if let Some(l) = self.links.get(ifname) {
            return Some(l.index);
        }
        match self.nl.link(ifname).await {
            Ok(Some(l)) => {
                let idx = l.index;
                self.links.insert(ifname.to_string(), l);
                Some(idx)
            }
            _ => None,
        }
    }

    async fn add_addresses(&mut self, i: usize) {
        for vip in self.rts[i].vips.clone() {
            let Some(idx) = self.link_index(&vip.ifname).await else {
                warn!(instance = %self.rts[i].cfg.name, "cannot add {}: no interface {}", vip.addr, vip.ifname);
                continue;
            };
            if let Err(e) = self
                .nl
                .add_address(idx, vip.addr, vip.prefix_len, vip.label.as_deref())
                .await
            {
                error!(instance = %self.rts[i].cfg.name, "{e}");
            }
        }
    }

    async fn remove_addresses(&mut self, i: usize) {
        if self.rts[i].cfg.address_owner {
            // An owner's addresses are its own: they stay.
            return;
        }
        for vip in self.rts[i].vips.clone() {
            let Some(idx) = self.link_index(&vip.ifname).await else {
                continue;
            };
            if let Err(e) = self.nl.del_address(idx, vip.addr, vip.prefix_len).await {
                error!(instance = %self.rts[i].cfg.name, "{e}");
            }
        }
    }

    /// One announcement burst, in the background: `announce_count` rounds
    /// of one gratuitous ARP / unsolicited NA per VIP, `announce_interval`
    /// apart.
    fn announce(&mut self, i: usize) {
        let rt = &self.rts[i];
        let count = rt.cfg.announce_count as usize;
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
        self.rts[i].counters.announcements_sent += (count * jobs.len()) as u64;
        let interval = self.rts[i].cfg.announce_interval;
        let name = self.rts[i].cfg.name.clone();
        tokio::spawn(async move {
            for round in 0..count {
                if round > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                for job in &jobs {
                    if let Err(e) = job.send() {
                        warn!(instance = %name, "announcing: {e}");
                    }
                }
            }
        });
    }

    async fn on_command(&mut self, cmd: Command, now: Instant) -> Vec<Out> {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
                Vec::new()
            }
            Command::Reload(reply) => {
                let (result, outs) = self.reload(now).await;
                let _ = reply.send(result);
                outs
            }
            Command::Maintenance {
                instance,
                on,
                reply,
            } => {
                let Some(i) = self.node.index(&instance) else {
                    let _ = reply.send(Err(CommandError::NotFound(format!(
                        "no instance named {instance}"
                    ))));
                    return Vec::new();
                };
                info!(instance = %instance, "maintenance {}", if on { "on: handing over" } else { "off" });
                self.events.publish(EventKind::Action {
                    action: if on {
                        "maintenance_on"
                    } else {
                        "maintenance_off"
                    }
                    .into(),
                    target: instance.clone(),
                    user: None,
                });
                let outs = self.node.set_maintenance(now, i, on);
                self.execute(outs, now).await;
                let _ = reply.send(Ok(self.instance_status(i)));
                Vec::new()
            }
        }
    }

    /// Applies a new configuration as a diff: an unchanged instance is not
    /// touched (no flap); a changed one is reconfigured in place when it
    /// stays the same virtual router, replaced otherwise.
    async fn reload(&mut self, now: Instant) -> (Result<ReloadResult, ApiError>, Vec<Out>) {
        let new = match config::load(&self.opts.config) {
            Ok(c) => c,
            Err(e) => {
                let error = match &e {
                    ConfigError::Invalid(d) => format!(
                        "{} error(s) in {}; running configuration kept",
                        d.len(),
                        self.opts.config.display()
                    ),
                    ConfigError::Io { .. } => format!("{e}; running configuration kept"),
                };
                warn!("reload refused: {e}");
                self.events.publish(EventKind::ReloadRefused {
                    error: error.clone(),
                });
                let diagnostics = e.diagnostics().map(|d| d.0.clone()).unwrap_or_default();
                return (Err(ApiError { error, diagnostics }), Vec::new());
            }
        };
        let mut changes = Vec::new();
        let mut unchanged = 0;
        let mut outs = Vec::new();

        // Instances that go away, or change identity, stop first.
        let mut removed = Vec::new();
        for (i, rt) in self.rts.iter().enumerate() {
            match new.vrrp_instance(&rt.cfg.name) {
                Some(n) if same_router(&rt.cfg, n) => {}
                Some(_) => {
                    changes.push(format!(
                        "instance {}: replaced (interface, vrid, family or version changed)",
                        rt.cfg.name
                    ));
                    removed.push(i);
                }
                None => {
                    changes.push(format!("instance {}: removed", rt.cfg.name));
                    removed.push(i);
                }
            }
        }
        for &i in &removed {
            let actions = self.node.members[i].inst.shutdown(now, false);
            for a in actions {
                self.act(i, a, now).await;
            }
        }

        // Rebuild the node, carrying over the state machines that stay.
        let old_members = std::mem::take(&mut self.node.members);
        let mut old_rts: Vec<Option<Rt>> = std::mem::take(&mut self.rts)
            .into_iter()
            .map(Some)
            .collect();
        let mut old_members: Vec<Option<Member>> = old_members.into_iter().map(Some).collect();
        for &i in &removed {
            old_members[i] = None;
            old_rts[i] = None;
        }
        let old_config = std::mem::replace(&mut self.config, new);
        let mut members = Vec::new();
        let mut rts = Vec::new();
        let mut started = Vec::new();
        let cfgs = self.config.vrrp_instances.clone();
        for cfg in &cfgs {
            let pos = old_rts
                .iter()
                .position(|r| r.as_ref().is_some_and(|r| r.cfg.name == cfg.name));
            match pos {
                Some(p) => {
                    let mut rt = old_rts[p].take().expect("present");
                    let mut member = old_members[p].take().expect("present");
                    if rt.cfg == *cfg && old_config.track_scripts == self.config.track_scripts {
                        unchanged += 1;
                    } else {
                        changes.push(format!(
                            "instance {}: {}",
                            cfg.name,
                            describe_changes(&rt.cfg, cfg)
                        ));
                        let old_vips = rt.vips.clone();
                        let mut fresh = Rt::new(cfg);
                        fresh.counters = std::mem::take(&mut rt.counters);
                        fresh.last_transition = rt.last_transition.take();
                        fresh.src = rt.src;
                        fresh.ip_id = rt.ip_id;
                        let known = member.trackers.clone();
                        member.trackers = trackers(&self.config, &fresh, &|k, n| {
                            known
                                .iter()
                                .find(|t| t.kind == k && t.name == n)
                                .map(|t| t.value)
                        });
                        let actions = member.inst.reconfigure(now, params(cfg));
                        outs.extend(actions.into_iter().map(|a| Out::Instance(members.len(), a)));
                        if member.inst.state() == VrrpState::Master {
                            self.swap_vips(&cfg.name, &old_vips, &fresh.vips).await;
                        }
                        rt = fresh;
                    }
                    members.push(member);
                    rts.push(rt);
                }
                None => {
                    if old_config.vrrp_instance(&cfg.name).is_none() {
                        changes.push(format!("instance {}: added", cfg.name));
                    }
                    let rt = Rt::new(cfg);
                    let tr = trackers(&self.config, &rt, &|_, _| None);
                    started.push(members.len());
                    members.push(Member::new(&cfg.name, Instance::new(params(cfg)), tr));
                    rts.push(rt);
                }
            }
        }
        let groups: Vec<(String, Vec<String>)> = self
            .config
            .vrrp_sync_groups
            .iter()
            .map(|g| (g.name.clone(), g.instances.clone()))
            .collect();
        if old_config.vrrp_sync_groups != self.config.vrrp_sync_groups {
            changes.push("sync groups changed".into());
        }
        self.node = Node::new(members, &groups);
        for rt in &mut rts {
            rt.group = None;
        }
        for g in &self.config.vrrp_sync_groups {
            for name in &g.instances {
                if let Some(i) = self.node.index(name) {
                    rts[i].group = Some(g.name.clone());
                }
            }
        }
        self.rts = rts;
        // Sockets, links and trackers for what is new.
        for name in self.interfaces() {
            outs.extend(self.refresh_link(&name, now).await);
        }
        let open: Vec<PortKey> = self.ports.keys().cloned().collect();
        for key in open {
            if !self.rts.iter().any(|r| r.uses(&key)) {
                if let Some(p) = self.ports.remove(&key) {
                    p.close();
                }
            }
        }
        self.refilter_ports();
        self.start_trackers();
        for i in started {
            outs.extend(
                self.node.members[i]
                    .inst
                    .startup(now)
                    .into_iter()
                    .map(|a| Out::Instance(i, a)),
            );
        }
        self.info.config_loaded_at = now_millis();
        self.info.node = self.config.node_name();
        self.events.set_node(&self.info.node);
        info!(
            "reloaded: {} change(s), {unchanged} unchanged",
            changes.len()
        );
        self.events.publish(EventKind::Reloaded {
            changes: changes.clone(),
        });
        (Ok(ReloadResult { changes, unchanged }), outs)
    }

    /// A master whose address list changed: add the new ones, remove the
    /// dropped ones, leave the rest alone.
    async fn swap_vips(&mut self, name: &str, old: &[Vip], new: &[Vip]) {
        for v in new.iter().filter(|v| !old.contains(v)) {
            if let Some(idx) = self.link_index(&v.ifname).await {
                if let Err(e) = self
                    .nl
                    .add_address(idx, v.addr, v.prefix_len, v.label.as_deref())
                    .await
                {
                    error!(instance = name, "{e}");
                }
            }
        }
        for v in old.iter().filter(|v| !new.contains(v)) {
            if let Some(idx) = self.link_index(&v.ifname).await {
                if let Err(e) = self.nl.del_address(idx, v.addr, v.prefix_len).await {
                    error!(instance = name, "{e}");
                }
            }
        }
    }

    fn instance_status(&self, i: usize) -> InstanceStatus {
        let rt = &self.rts[i];
        let m = &self.node.members[i];
        let inst = &m.inst;
        let now = Instant::now();
        let unix = |t: Instant| {
            now_millis().saturating_sub(now.saturating_duration_since(t).as_millis() as u64)
        };
        InstanceStatus {
            name: rt.cfg.name.clone(),
            interface: rt.cfg.interface.clone(),
            vrid: rt.cfg.vrid as u8,
            family: if rt.v6 { Family::Ipv6 } else { Family::Ipv4 },
            version: rt.cfg.version as u8,
            state: inst.state(),
            configured_priority: rt.cfg.priority() as u8,
            effective_priority: inst.priority(),
            advert_interval_ms: rt.cfg.advert_interval.as_millis() as u64,
            virtual_ips: rt
                .vips
                .iter()
                .map(|v| format!("{}/{}", v.addr, v.prefix_len))
                .collect(),
            master: inst.master_seen().map(|m| MasterSeen {
                address: m.address,
                priority: m.priority,
                advert_interval_ms: m.interval.as_millis() as u64,
                is_self: Some(m.address) == rt.src && inst.state() == VrrpState::Master,
                last_seen: unix(m.at),
            }),
            last_transition: rt.last_transition.clone(),
            counters: rt.counters.clone(),
            tracking: m
                .trackers
                .iter()
                .map(|t| TrackStatus {
                    kind: t.kind.to_string(),
                    name: t.name.clone(),
                    ok: t.ok(),
                    delta: t.delta(),
                    faults: t.weight.is_none(),
                })
                .collect(),
            maintenance: inst.maintenance(),
            sync_group: rt.group.clone(),
        }
    }

    pub fn status(&self) -> VrrpdStatus {
        VrrpdStatus {
            daemon: self.info.clone(),
            instances: (0..self.rts.len())
                .map(|i| self.instance_status(i))
                .collect(),
            sync_groups: self
                .node
                .groups
                .iter()
                .map(|g| SyncGroupStatus {
                    name: g.name.clone(),
                    instances: g
                        .members
                        .iter()
                        .map(|&i| self.rts[i].cfg.name.clone())
                        .collect(),
                    state: g.state(),
                })
                .collect(),
            unclaimed_drops: self.unclaimed_drops.clone(),
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

/// RFC 5798 5.1.1.1 / 5.1.2.1: adverts come from the interface's primary
/// IPv4 address, or its IPv6 link-local address; `unicast_src` overrides.
fn source_address(rt: &Rt, addrs: &[IfAddr], vips: &[IpAddr]) -> Option<IpAddr> {
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

/// Whether a reload keeps the same virtual router (then the instance is
/// reconfigured in place).
fn same_router(a: &VrrpInstance, b: &VrrpInstance) -> bool {
    a.interface == b.interface
        && a.vrid == b.vrid
        && a.is_ipv6() == b.is_ipv6()
        && a.version == b.version
        && a.unicast_peers.is_empty() == b.unicast_peers.is_empty()
        && a.use_vmac == b.use_vmac
}

/// "priority 150 -> 120, virtual_ips changed"
fn describe_changes(old: &VrrpInstance, new: &VrrpInstance) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return "changed".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let parts: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if !x.is_array() && !x.is_object() => format!("{k} {x} -> {y}"),
            _ => format!("{k} changed"),
        })
        .collect();
    if parts.is_empty() {
        "tracked scripts changed".into()
    } else {
        parts.join(", ")
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
