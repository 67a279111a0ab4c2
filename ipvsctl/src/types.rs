//! The IPVS table as plain values: services, their destinations (real
//! servers), and what the kernel reports besides (statistics, timeouts,
//! sync daemons). Nothing here talks to the kernel.
//!
//! A value splits into what identifies it (a [`ServiceKey`], a
//! destination's address), what an operator sets ([`ServiceSettings`],
//! [`DestSettings`]) and what the kernel counts ([`Stats`],
//! [`DestCounters`]). The reconciler compares settings only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Address family of a service or destination (`AF_INET` / `AF_INET6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The `AF_*` number the kernel uses.
    pub fn af(self) -> u16 {
        match self {
            Family::Ipv4 => libc::AF_INET as u16,
            Family::Ipv6 => libc::AF_INET6 as u16,
        }
    }

    pub fn from_af(af: u16) -> Option<Family> {
        match i32::from(af) {
            libc::AF_INET => Some(Family::Ipv4),
            libc::AF_INET6 => Some(Family::Ipv6),
            _ => None,
        }
    }
}

/// Transport protocol of an address-based service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The `IPPROTO_*` number.
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u16,
            Protocol::Udp => libc::IPPROTO_UDP as u16,
            Protocol::Sctp => libc::IPPROTO_SCTP as u16,
        }
    }

    pub fn from_number(n: u16) -> Option<Protocol> {
        match i32::from(n) {
            libc::IPPROTO_TCP => Some(Protocol::Tcp),
            libc::IPPROTO_UDP => Some(Protocol::Udp),
            libc::IPPROTO_SCTP => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The upper-case label `ipvsadm -L` prints.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// What identifies a virtual service: protocol + address + port, or a
/// firewall mark (with its family). The kernel looks services up by
/// exactly this (`__ip_vs_service_find` / `__ip_vs_svc_fwm_find` in
/// net/netfilter/ipvs/ip_vs_ctl.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ServiceKey {
    Addr {
        protocol: Protocol,
        addr: SocketAddr,
    },
    Fwmark {
        family: Family,
        mark: u32,
    },
}

impl ServiceKey {
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr.ip()),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }

    /// The port real servers default to (0 for firewall-mark services).
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { addr, .. } => addr.port(),
            ServiceKey::Fwmark { .. } => 0,
        }
    }

    pub fn tcp(addr: SocketAddr) -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr,
        }
    }
}

/// As `ipvsadm -L` labels services: `TCP 10.0.0.1:80`, `FWM 7`,
/// `FWM 7 IPv6`.
impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { protocol, addr } => write!(f, "{} {addr}", protocol.label()),
            ServiceKey::Fwmark { family, mark } => {
                write!(f, "FWM {mark}")?;
                if *family == Family::Ipv6 {
                    write!(f, " IPv6")?;
                }
                Ok(())
            }
        }
    }
}

/// The command-line spelling: `tcp:10.0.0.1:80`, `udp:[2001:db8::1]:53`,
/// `sctp:10.0.0.1:9`, `fwmark:7`, `fwmark:7:ipv6`.
impl FromStr for ServiceKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "\"{s}\" is not a service: write tcp:10.0.0.1:80, udp:[2001:db8::1]:53, \
                 sctp:10.0.0.1:9, fwmark:7 or fwmark:7:ipv6"
            )
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let protocol = match kind.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            "fwmark" | "fwm" => {
                let (mark, family) = match rest.split_once(':') {
                    Some((m, "ipv6" | "6")) => (m, Family::Ipv6),
                    Some((m, "ipv4" | "4")) => (m, Family::Ipv4),
                    Some(_) => return Err(bad()),
                    None => (rest, Family::Ipv4),
                };
                let mark = mark.parse().map_err(|_| bad())?;
                return Ok(ServiceKey::Fwmark { family, mark });
            }
            _ => return Err(bad()),
        };
        let addr = rest.parse().map_err(|_| bad())?;
        Ok(ServiceKey::Addr { protocol, addr })
    }
}

/// The three scheduler flags of a service (`IP_VS_SVC_F_SCHED1..3` in
/// include/uapi/linux/ip_vs.h). sh and mh read flag 1 as "fallback" and
/// flag 2 as "port"; other schedulers ignore them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchedFlags {
    #[serde(default, skip_serializing_if = "is_false")]
    pub flag1: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flag2: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flag3: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SchedFlags {
    pub fn is_empty(&self) -> bool {
        !(self.flag1 || self.flag2 || self.flag3)
    }

    /// Flag names as ipvsadm's `-b` spells them for `scheduler`
    /// (`sh-fallback,sh-port`; `flag-1,flag-2,flag-3` for others).
    pub fn names(&self, scheduler: &str) -> Vec<String> {
        let mut out = Vec::new();
        let named = matches!(scheduler, "sh" | "mh");
        for (on, n, name) in [
            (self.flag1, 1, "fallback"),
            (self.flag2, 2, "port"),
            (self.flag3, 3, ""),
        ] {
            if on {
                if named && !name.is_empty() {
                    out.push(format!("{scheduler}-{name}"));
                } else {
                    out.push(format!("flag-{n}"));
                }
            }
        }
        out
    }

    /// Parses one flag name in ipvsadm's spelling.
    pub fn set_by_name(&mut self, name: &str) -> Result<(), String> {
        match name {
            "sh-fallback" | "mh-fallback" | "flag-1" => self.flag1 = true,
            "sh-port" | "mh-port" | "flag-2" => self.flag2 = true,
            "flag-3" => self.flag3 = true,
            _ => {
                return Err(format!(
                    "unknown scheduler flag \"{name}\": allowed sh-fallback, sh-port, \
                     mh-fallback, mh-port, flag-1, flag-2, flag-3"
                ));
            }
        }
        Ok(())
    }
}

/// The netmask that groups clients of a persistent service. The kernel
/// keeps an IPv4 mask as an address and an IPv6 one as a prefix length
/// (`ip_vs_add_service`, net/netfilter/ipvs/ip_vs_ctl.c, refuses IPv6
/// values outside 1-128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Netmask {
    V4(Ipv4Addr),
    V6(u8),
}

impl Netmask {
    /// A single client: what ipvsadm sends when `-M` is not given.
    pub fn full(family: Family) -> Netmask {
        match family {
            Family::Ipv4 => Netmask::V4(Ipv4Addr::BROADCAST),
            Family::Ipv6 => Netmask::V6(128),
        }
    }

    /// The mask of a prefix length (IPv4 0-32, IPv6 0-128).
    pub fn from_prefix(family: Family, prefix: u8) -> Netmask {
        match family {
            Family::Ipv4 => {
                let p = u32::from(prefix.min(32));
                let bits = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                Netmask::V4(Ipv4Addr::from(bits))
            }
            Family::Ipv6 => Netmask::V6(prefix.min(128)),
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, Netmask::V4(m) if *m == Ipv4Addr::BROADCAST)
            || matches!(self, Netmask::V6(128))
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::V4(m) => write!(f, "{m}"),
            Netmask::V6(p) => write!(f, "{p}"),
        }
    }
}

/// What an operator sets on a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSettings {
    /// Scheduler name (`rr`, `wlc`, ...): the kernel loads `ip_vs_<name>`.
    pub scheduler: String,
    #[serde(default, skip_serializing_if = "SchedFlags::is_empty")]
    pub sched_flags: SchedFlags,
    /// Schedule every datagram on its own (`IP_VS_SVC_F_ONEPACKET`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub one_packet: bool,
    /// Persistence timeout in seconds (`IP_VS_SVC_F_PERSISTENT`); none
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<u32>,
    pub netmask: Netmask,
    /// Persistence engine (`sip`), when one is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe: Option<String>,
}

impl ServiceSettings {
    /// A scheduler and nothing else set, as `ipvsadm -A ... -s NAME`.
    pub fn new(family: Family, scheduler: &str) -> ServiceSettings {
        ServiceSettings {
            scheduler: scheduler.to_string(),
            sched_flags: SchedFlags::default(),
            one_packet: false,
            persistence: None,
            netmask: Netmask::full(family),
            pe: None,
        }
    }
}

/// How IPVS hands packets to a destination (`IP_VS_CONN_F_FWD_MASK`
/// values in include/uapi/linux/ip_vs.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// NAT (`IP_VS_CONN_F_MASQ`, ipvsadm -m).
    Masq,
    /// The destination is this host; the kernel sets it by itself.
    Local,
    /// IP-in-IP, GUE or GRE (`IP_VS_CONN_F_TUNNEL`, ipvsadm -i).
    Tunnel,
    /// Direct routing (`IP_VS_CONN_F_DROUTE`, ipvsadm -g).
    Route,
    /// Cache bypass (`IP_VS_CONN_F_BYPASS`).
    Bypass,
}

impl Forwarding {
    pub fn code(self) -> u32 {
        match self {
            Forwarding::Masq => 0,
            Forwarding::Local => 1,
            Forwarding::Tunnel => 2,
            Forwarding::Route => 3,
            Forwarding::Bypass => 4,
        }
    }

    pub fn from_code(code: u32) -> Option<Forwarding> {
        Some(match code & 0x7 {
            0 => Forwarding::Masq,
            1 => Forwarding::Local,
            2 => Forwarding::Tunnel,
            3 => Forwarding::Route,
            4 => Forwarding::Bypass,
            _ => return None,
        })
    }

    /// The word `ipvsadm -L` prints.
    pub fn label(self) -> &'static str {
        match self {
            Forwarding::Masq => "Masq",
            Forwarding::Local => "Local",
            Forwarding::Tunnel => "Tunnel",
            Forwarding::Route => "Route",
            Forwarding::Bypass => "Bypass",
        }
    }
}

/// Tunnel encapsulation (`IP_VS_CONN_F_TUNNEL_TYPE_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

impl TunnelType {
    pub fn code(self) -> u8 {
        match self {
            TunnelType::Ipip => 0,
            TunnelType::Gue => 1,
            TunnelType::Gre => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<TunnelType> {
        match code {
            0 => Some(TunnelType::Ipip),
            1 => Some(TunnelType::Gue),
            2 => Some(TunnelType::Gre),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TunnelType::Ipip => "ipip",
            TunnelType::Gue => "gue",
            TunnelType::Gre => "gre",
        }
    }
}

/// Checksum of GUE/GRE encapsulation (`IP_VS_TUNNEL_ENCAP_FLAG_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelChecksum {
    #[default]
    None,
    Checksum,
    Remote,
}

impl TunnelChecksum {
    pub fn flags(self) -> u16 {
        match self {
            TunnelChecksum::None => 0,
            TunnelChecksum::Checksum => 1,
            TunnelChecksum::Remote => 2,
        }
    }

    /// Remote checksum offload wins over a plain checksum, as in
    /// `ipvs_gue_encap` (net/netfilter/ipvs/ip_vs_xmit.c).
    pub fn from_flags(flags: u16) -> TunnelChecksum {
        if flags & 2 != 0 {
            TunnelChecksum::Remote
        } else if flags & 1 != 0 {
            TunnelChecksum::Checksum
        } else {
            TunnelChecksum::None
        }
    }
}

/// Tunnel parameters of a destination. The kernel keeps them on every
/// destination (all zero, i.e. IP-in-IP without port or checksum, unless
/// set), and only tunnel forwarding reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tunnel {
    #[serde(rename = "type")]
    pub kind: TunnelType,
    /// UDP port of GUE (0 otherwise).
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub checksum: TunnelChecksum,
}

impl Tunnel {
    pub fn is_default(&self) -> bool {
        *self == Tunnel::default()
    }
}

/// What an operator sets on a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DestSettings {
    pub forwarding: Forwarding,
    pub weight: u32,
    /// No new connections above this many active ones (0: no limit).
    #[serde(default)]
    pub upper_threshold: u32,
    /// New connections again below this many (0: no limit).
    #[serde(default)]
    pub lower_threshold: u32,
    #[serde(default, skip_serializing_if = "Tunnel::is_default")]
    pub tunnel: Tunnel,
}

impl DestSettings {
    pub fn new(forwarding: Forwarding, weight: u32) -> DestSettings {
        DestSettings {
            forwarding,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
            tunnel: Tunnel::default(),
        }
    }

    /// Whether the kernel's `current` already is what `self` asks for.
    /// The kernel rewrites the forwarding of a destination that is one of
    /// its own addresses to `Local` (`__ip_vs_update_dest`,
    /// net/netfilter/ipvs/ip_vs_ctl.c), so `Local` there satisfies any
    /// forwarding asked for; asking again would change nothing.
    pub fn satisfied_by(&self, current: &DestSettings) -> bool {
        let fwd = current.forwarding == self.forwarding || current.forwarding == Forwarding::Local;
        fwd && self.weight == current.weight
            && self.upper_threshold == current.upper_threshold
            && self.lower_threshold == current.lower_threshold
            && self.tunnel == current.tunnel
    }
}

/// Traffic counters (the kernel's `IPVS_STATS_ATTR_*`): totals since the
/// service or destination was added (or zeroed), and rates over the
/// estimator's last interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// Connection counts of a destination, as the kernel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestCounters {
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub persistent_conns: u32,
    pub stats: Stats,
}

/// A destination (real server) of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dest {
    /// Address and port; its family may differ from the service's only
    /// for tunnel forwarding (`ip_vs_genl_parse_dest`).
    pub addr: SocketAddr,
    #[serde(flatten)]
    pub settings: DestSettings,
    #[serde(default)]
    pub counters: DestCounters,
}

impl Dest {
    pub fn new(addr: SocketAddr, settings: DestSettings) -> Dest {
        Dest {
            addr,
            settings,
            counters: DestCounters::default(),
        }
    }
}

/// A virtual service and its destinations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    #[serde(flatten)]
    pub key: ServiceKey,
    #[serde(flatten)]
    pub settings: ServiceSettings,
    #[serde(default)]
    pub stats: Stats,
    /// Sorted by address.
    #[serde(default)]
    pub dests: Vec<Dest>,
}

impl Service {
    pub fn new(key: ServiceKey, settings: ServiceSettings) -> Service {
        Service {
            key,
            settings,
            stats: Stats::default(),
            dests: Vec::new(),
        }
    }

    pub fn dest(&self, addr: SocketAddr) -> Option<&Dest> {
        self.dests.iter().find(|d| d.addr == addr)
    }

    pub fn sort(&mut self) {
        self.dests.sort_by_key(|d| d.addr);
    }
}

/// The whole table: services sorted by key, each with its destinations
/// sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub services: Vec<Service>,
}

impl Table {
    pub fn new(mut services: Vec<Service>) -> Table {
        services.sort_by_key(|s| s.key);
        for s in &mut services {
            s.sort();
        }
        Table { services }
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.services
            .binary_search_by_key(key, |s| s.key)
            .ok()
            .map(|i| &self.services[i])
    }

    /// The same table without counters: what an operator configured.
    pub fn settings_only(&self) -> Table {
        Table {
            services: self
                .services
                .iter()
                .map(|s| Service {
                    key: s.key,
                    settings: s.settings.clone(),
                    stats: Stats::default(),
                    dests: s
                        .dests
                        .iter()
                        .map(|d| Dest::new(d.addr, d.settings))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// `IPVS_CMD_GET_INFO`: the IPVS version and the connection table size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// `0x010201` for 1.2.1.
    pub version: u32,
    pub conn_table_size: u32,
}

impl Info {
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}

/// Connection timeouts in seconds (`IPVS_CMD_ATTR_TIMEOUT_*`); in a
/// request, an absent one is left as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub tcp: Option<u32>,
    pub tcp_fin: Option<u32>,
    pub udp: Option<u32>,
}

/// Role of a connection synchronisation daemon (`IP_VS_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRole {
    Master,
    Backup,
}

impl SyncRole {
    pub fn state(self) -> u32 {
        match self {
            SyncRole::Master => 1,
            SyncRole::Backup => 2,
        }
    }

    pub fn from_state(state: u32) -> Option<SyncRole> {
        match state {
            1 => Some(SyncRole::Master),
            2 => Some(SyncRole::Backup),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

/// A connection synchronisation daemon. The last four settings arrived in
/// Linux 4.3 (`IPVS_DAEMON_ATTR_SYNC_MAXLEN` ...); absent ones take the
/// kernel's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDaemon {
    pub role: SyncRole,
    pub interface: String,
    pub sync_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_parse_from_their_command_line_spelling() {
        assert_eq!(
            "tcp:10.0.0.1:80".parse::<ServiceKey>().unwrap(),
            ServiceKey::tcp("10.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            "udp:[2001:db8::1]:53".parse::<ServiceKey>().unwrap(),
            ServiceKey::Addr {
                protocol: Protocol::Udp,
                addr: "[2001:db8::1]:53".parse().unwrap()
            }
        );
        assert_eq!(
            "fwmark:7:ipv6".parse::<ServiceKey>().unwrap(),
            ServiceKey::Fwmark {
                family: Family::Ipv6,
                mark: 7
            }
        );
        assert!("http:10.0.0.1:80".parse::<ServiceKey>().is_err());
        assert!("tcp:10.0.0.1".parse::<ServiceKey>().is_err());
    }

    #[test]
    fn a_prefix_becomes_the_mask_the_kernel_keeps() {
        assert_eq!(
            Netmask::from_prefix(Family::Ipv4, 24),
            Netmask::V4(Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!(
            Netmask::from_prefix(Family::Ipv4, 0),
            Netmask::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(Netmask::from_prefix(Family::Ipv6, 64), Netmask::V6(64));
        assert!(Netmask::full(Family::Ipv4).is_full());
    }

    #[test]
    fn sh_and_mh_flags_have_names_and_others_numbers() {
        let f = SchedFlags {
            flag1: true,
            flag2: true,
            flag3: false,
        };
        assert_eq!(f.names("sh"), ["sh-fallback", "sh-port"]);
        assert_eq!(f.names("mh"), ["mh-fallback", "mh-port"]);
        assert_eq!(f.names("rr"), ["flag-1", "flag-2"]);
    }

    #[test]
    fn a_local_destination_satisfies_any_forwarding() {
        let want = DestSettings::new(Forwarding::Masq, 1);
        let mut have = want;
        have.forwarding = Forwarding::Local;
        assert!(want.satisfied_by(&have));
        have.weight = 2;
        assert!(!want.satisfied_by(&have));
    }
}
