//! The IPVS generic netlink family's attributes, sans-IO: operations and
//! requests become attribute bytes, replies become [`crate::types`]
//! values. Numbers and layouts from include/uapi/linux/ip_vs.h; what the
//! kernel requires of each request from `ip_vs_genl_parse_service`,
//! `ip_vs_genl_parse_dest` and `ip_vs_genl_set_cmd` in
//! net/netfilter/ipvs/ip_vs_ctl.c.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::netlink::{
    Attrs, attrs, read_be16, read_counter, read_string, read_u8, read_u16, read_u32,
};
use crate::reconcile::Op;
use crate::types::{
    Dest, DestCounters, DestSettings, Family, Forwarding, Info, Netmask, Protocol, SchedFlags,
    Service, ServiceKey, ServiceSettings, Stats, SyncDaemon, SyncRole, Timeouts, Tunnel,
    TunnelChecksum, TunnelType,
};

/// The family's name and version (`IPVS_GENL_NAME`, `IPVS_GENL_VERSION`).
pub const FAMILY_NAME: &str = "IPVS";
pub const FAMILY_VERSION: u8 = 1;

/// `IPVS_CMD_*`.
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const NEW_DAEMON: u8 = 9;
    pub const DEL_DAEMON: u8 = 10;
    pub const GET_DAEMON: u8 = 11;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
    pub const GET_INFO: u8 = 15;
    pub const ZERO: u8 = 16;
    pub const FLUSH: u8 = 17;
}

// IPVS_CMD_ATTR_*
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const CMD_ATTR_DAEMON: u16 = 3;
const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const CMD_ATTR_TIMEOUT_UDP: u16 = 6;

// IPVS_SVC_ATTR_*
const SVC_AF: u16 = 1;
const SVC_PROTOCOL: u16 = 2;
const SVC_ADDR: u16 = 3;
const SVC_PORT: u16 = 4;
const SVC_FWMARK: u16 = 5;
const SVC_SCHED_NAME: u16 = 6;
const SVC_FLAGS: u16 = 7;
const SVC_TIMEOUT: u16 = 8;
const SVC_NETMASK: u16 = 9;
const SVC_STATS: u16 = 10;
const SVC_PE_NAME: u16 = 11;
const SVC_STATS64: u16 = 12;

// IPVS_DEST_ATTR_*
const DEST_ADDR: u16 = 1;
const DEST_PORT: u16 = 2;
const DEST_FWD_METHOD: u16 = 3;
const DEST_WEIGHT: u16 = 4;
const DEST_U_THRESH: u16 = 5;
const DEST_L_THRESH: u16 = 6;
const DEST_ACTIVE_CONNS: u16 = 7;
const DEST_INACT_CONNS: u16 = 8;
const DEST_PERSIST_CONNS: u16 = 9;
const DEST_STATS: u16 = 10;
const DEST_ADDR_FAMILY: u16 = 11;
const DEST_STATS64: u16 = 12;
const DEST_TUN_TYPE: u16 = 13;
const DEST_TUN_PORT: u16 = 14;
const DEST_TUN_FLAGS: u16 = 15;

// IPVS_DAEMON_ATTR_*
const DAEMON_STATE: u16 = 1;
const DAEMON_MCAST_IFN: u16 = 2;
const DAEMON_SYNC_ID: u16 = 3;
const DAEMON_SYNC_MAXLEN: u16 = 4;
const DAEMON_MCAST_GROUP: u16 = 5;
const DAEMON_MCAST_GROUP6: u16 = 6;
const DAEMON_MCAST_PORT: u16 = 7;
const DAEMON_MCAST_TTL: u16 = 8;

// IPVS_INFO_ATTR_*
const INFO_VERSION: u16 = 1;
const INFO_CONN_TAB_SIZE: u16 = 2;

// IP_VS_SVC_F_*
const F_PERSISTENT: u32 = 0x0001;
const F_ONEPACKET: u32 = 0x0004;
const F_SCHED1: u32 = 0x0008;
const F_SCHED2: u32 = 0x0010;
const F_SCHED3: u32 = 0x0020;

/// The kernel's scheduler and engine names fit 16 bytes with the NUL
/// (`IP_VS_SCHEDNAME_MAXLEN`, `IP_VS_PENAME_MAXLEN`).
pub const NAME_MAX: usize = 15;

/// A reply the codec could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl CodecError {
    pub fn new(msg: impl Into<String>) -> CodecError {
        CodecError(msg.into())
    }
}

impl From<netlink_packet_core::DecodeError> for CodecError {
    fn from(e: netlink_packet_core::DecodeError) -> Self {
        CodecError(e.to_string())
    }
}

/// An `nf_inet_addr`: 16 bytes whatever the family, IPv4 in the first 4.
fn inet_addr(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn read_inet_addr(v: &[u8], family: Family) -> Result<IpAddr, CodecError> {
    match family {
        Family::Ipv4 if v.len() >= 4 => Ok(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        Family::Ipv6 if v.len() >= 16 => {
            let b: [u8; 16] = v[..16].try_into().unwrap();
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => Err(CodecError::new(format!(
            "an address of {} bytes for {family:?}",
            v.len()
        ))),
    }
}

/// What identifies the service: enough for `ip_vs_genl_find_service`.
fn put_service_key(a: &mut Attrs, key: &ServiceKey) {
    a.u16(SVC_AF, key.family().af());
    match key {
        ServiceKey::Addr { protocol, addr } => {
            a.u16(SVC_PROTOCOL, protocol.number());
            a.bytes(SVC_ADDR, &inet_addr(addr.ip()));
            a.be16(SVC_PORT, addr.port());
        }
        ServiceKey::Fwmark { mark, .. } => {
            a.u32(SVC_FWMARK, *mark);
        }
    }
}

fn service_flags(s: &ServiceSettings) -> u32 {
    let mut f = 0;
    if s.persistence.is_some() {
        f |= F_PERSISTENT;
    }
    if s.one_packet {
        f |= F_ONEPACKET;
    }
    if s.sched_flags.flag1 {
        f |= F_SCHED1;
    }
    if s.sched_flags.flag2 {
        f |= F_SCHED2;
    }
    if s.sched_flags.flag3 {
        f |= F_SCHED3;
    }
    f
}

/// A full service entry: `ip_vs_genl_parse_service` wants the scheduler,
/// flags, timeout and netmask together for a new or changed service.
fn put_service(a: &mut Attrs, key: &ServiceKey, s: &ServiceSettings) {
    put_service_key(a, key);
    a.string(SVC_SCHED_NAME, &s.scheduler);
    if let Some(pe) = &s.pe {
        a.string(SVC_PE_NAME, pe);
    }
    // struct ip_vs_flags { flags, mask }: with a full mask the request
    // states every flag (the kernel keeps its internal HASHED bit itself).
    let mut flags = service_flags(s).to_ne_bytes().to_vec();
    flags.extend_from_slice(&u32::MAX.to_ne_bytes());
    a.bytes(SVC_FLAGS, &flags);
    a.u32(SVC_TIMEOUT, s.persistence.unwrap_or(0));
    match s.netmask {
        // An IPv4 mask travels in network order, an IPv6 prefix length as
        // a plain u32 (svc->netmask is both, by family).
        Netmask::V4(m) => a.bytes(SVC_NETMASK, &m.octets()),
        Netmask::V6(p) => a.u32(SVC_NETMASK, u32::from(p)),
    };
}

fn put_dest_key(a: &mut Attrs, addr: SocketAddr) {
    a.u16(DEST_ADDR_FAMILY, Family::of(addr.ip()).af());
    a.bytes(DEST_ADDR, &inet_addr(addr.ip()));
    a.be16(DEST_PORT, addr.port());
}

/// A full destination entry. The kernel reads the attributes in any order
/// (`nla_parse_nested`); these come in the order ipvsadm writes them
/// (`ipvs_nl_fill_dest_attr` in its libipvs) and the kernel fills its own
/// replies (`ip_vs_genl_fill_dest`), so that a request compares byte for
/// byte with ipvsadm's (tests/kernel_golden.rs).
fn put_dest(a: &mut Attrs, addr: SocketAddr, d: &DestSettings) {
    put_dest_key(a, addr);
    a.u32(DEST_FWD_METHOD, d.forwarding.code());
    a.u32(DEST_WEIGHT, d.weight);
    a.u8(DEST_TUN_TYPE, d.tunnel.kind.code());
    a.be16(DEST_TUN_PORT, d.tunnel.port);
    a.u16(DEST_TUN_FLAGS, d.tunnel.checksum.flags());
    a.u32(DEST_U_THRESH, d.upper_threshold);
    a.u32(DEST_L_THRESH, d.lower_threshold);
}

/// The command and attributes of one operation.
pub fn encode_op(op: &Op) -> (u8, Vec<u8>) {
    let mut a = Attrs::new();
    let cmd = match op {
        Op::AddService { key, settings } | Op::EditService { key, settings } => {
            a.nested(CMD_ATTR_SERVICE, |n| put_service(n, key, settings));
            if matches!(op, Op::AddService { .. }) {
                cmd::NEW_SERVICE
            } else {
                cmd::SET_SERVICE
            }
        }
        Op::DelService { key } => {
            a.nested(CMD_ATTR_SERVICE, |n| put_service_key(n, key));
            cmd::DEL_SERVICE
        }
        Op::AddDest {
            service,
            addr,
            settings,
        }
        | Op::EditDest {
            service,
            addr,
            settings,
        } => {
            a.nested(CMD_ATTR_SERVICE, |n| put_service_key(n, service));
            a.nested(CMD_ATTR_DEST, |n| put_dest(n, *addr, settings));
            if matches!(op, Op::AddDest { .. }) {
                cmd::NEW_DEST
            } else {
                cmd::SET_DEST
            }
        }
        Op::DelDest { service, addr } => {
            a.nested(CMD_ATTR_SERVICE, |n| put_service_key(n, service));
            a.nested(CMD_ATTR_DEST, |n| put_dest_key(n, *addr));
            cmd::DEL_DEST
        }
    };
    (cmd, a.into_bytes())
}

/// The attributes naming one service: for a destinations dump, or to
/// get that service alone.
pub fn dests_request(key: &ServiceKey) -> Vec<u8> {
    let mut a = Attrs::new();
    a.nested(CMD_ATTR_SERVICE, |n| put_service_key(n, key));
    a.into_bytes()
}

/// `IPVS_CMD_ZERO`: one service's counters, or all of them.
pub fn zero_request(key: Option<&ServiceKey>) -> Vec<u8> {
    let mut a = Attrs::new();
    if let Some(key) = key {
        a.nested(CMD_ATTR_SERVICE, |n| put_service_key(n, key));
    }
    a.into_bytes()
}

/// `IPVS_CMD_SET_CONFIG`: the kernel keeps the timeouts left out
/// (`ip_vs_genl_set_config`).
pub fn timeouts_request(t: &Timeouts) -> Vec<u8> {
    let mut a = Attrs::new();
    if let Some(v) = t.tcp {
        a.u32(CMD_ATTR_TIMEOUT_TCP, v);
    }
    if let Some(v) = t.tcp_fin {
        a.u32(CMD_ATTR_TIMEOUT_TCP_FIN, v);
    }
    if let Some(v) = t.udp {
        a.u32(CMD_ATTR_TIMEOUT_UDP, v);
    }
    a.into_bytes()
}

/// `IPVS_CMD_NEW_DAEMON`, the attributes in the order of ipvsadm's
/// `ipvs_start_daemon` and the kernel's `ip_vs_genl_fill_daemon` (the
/// group last). The port is host order: the kernel reads it with
/// `nla_get_u16` and swaps it itself (`ip_vs_sync.c`).
pub fn daemon_start_request(d: &SyncDaemon) -> Vec<u8> {
    let mut a = Attrs::new();
    a.nested(CMD_ATTR_DAEMON, |n| {
        n.u32(DAEMON_STATE, d.role.state());
        n.string(DAEMON_MCAST_IFN, &d.interface);
        n.u32(DAEMON_SYNC_ID, d.sync_id);
        if let Some(v) = d.max_len {
            n.u16(DAEMON_SYNC_MAXLEN, v);
        }
        if let Some(v) = d.port {
            n.u16(DAEMON_MCAST_PORT, v);
        }
        if let Some(v) = d.ttl {
            n.u8(DAEMON_MCAST_TTL, v);
        }
        match d.group {
            Some(IpAddr::V4(g)) => {
                n.bytes(DAEMON_MCAST_GROUP, &g.octets());
            }
            Some(IpAddr::V6(g)) => {
                n.bytes(DAEMON_MCAST_GROUP6, &g.octets());
            }
            None => {}
        }
    });
    a.into_bytes()
}

/// `IPVS_CMD_DEL_DAEMON`.
pub fn daemon_stop_request(role: SyncRole) -> Vec<u8> {
    let mut a = Attrs::new();
    a.nested(CMD_ATTR_DAEMON, |n| {
        n.u32(DAEMON_STATE, role.state());
    });
    a.into_bytes()
}

/// The nested attribute `kind` among a message's attributes.
fn nested(buf: &[u8], kind: u16) -> Result<&[u8], CodecError> {
    for a in attrs(buf) {
        let (k, v) = a?;
        if k == kind {
            return Ok(v);
        }
    }
    Err(CodecError::new(format!("reply without attribute {kind}")))
}

fn decode_stats(v: &[u8]) -> Result<Stats, CodecError> {
    let mut s = Stats::default();
    for a in attrs(v) {
        let (kind, value) = a?;
        let field = match kind {
            1 => &mut s.conns,
            2 => &mut s.inpkts,
            3 => &mut s.outpkts,
            4 => &mut s.inbytes,
            5 => &mut s.outbytes,
            6 => &mut s.cps,
            7 => &mut s.inpps,
            8 => &mut s.outpps,
            9 => &mut s.inbps,
            10 => &mut s.outbps,
            _ => continue, // IPVS_STATS_ATTR_PAD and later additions
        };
        *field = read_counter(value)?;
    }
    Ok(s)
}

/// A service from a `GET_SERVICE` reply (its destinations come from a
/// separate dump).
pub fn decode_service(reply: &[u8]) -> Result<Service, CodecError> {
    let svc = nested(reply, CMD_ATTR_SERVICE)?;
    let mut af = None;
    let mut protocol = None;
    let mut addr = None;
    let mut port = None;
    let mut fwmark = None;
    let mut sched = None;
    let mut pe = None;
    let mut flags = 0u32;
    let mut timeout = 0u32;
    let mut netmask = None;
    let mut stats = None;
    let mut stats64 = None;
    for a in attrs(svc) {
        let (kind, v) = a?;
        match kind {
            SVC_AF => af = Some(read_u16(v)?),
            SVC_PROTOCOL => protocol = Some(read_u16(v)?),
            SVC_ADDR => addr = Some(v),
            SVC_PORT => port = Some(read_be16(v)?),
            SVC_FWMARK => fwmark = Some(read_u32(v)?),
            SVC_SCHED_NAME => sched = Some(read_string(v)),
            SVC_PE_NAME => pe = Some(read_string(v)).filter(|s| !s.is_empty()),
            SVC_FLAGS => flags = read_u32(v.get(..4).unwrap_or(v))?,
            SVC_TIMEOUT => timeout = read_u32(v)?,
            SVC_NETMASK => netmask = Some(v),
            SVC_STATS => stats = Some(v),
            SVC_STATS64 => stats64 = Some(v),
            _ => {}
        }
    }
    let af = af.ok_or_else(|| CodecError::new("service without address family"))?;
    let family =
        Family::from_af(af).ok_or_else(|| CodecError::new(format!("address family {af}")))?;
    let key = match (fwmark, protocol, addr, port) {
        (Some(mark), ..) if mark != 0 => ServiceKey::Fwmark { family, mark },
        (_, Some(p), Some(a), Some(port)) => ServiceKey::Addr {
            protocol: Protocol::from_number(p)
                .ok_or_else(|| CodecError::new(format!("IP protocol {p}")))?,
            addr: SocketAddr::new(read_inet_addr(a, family)?, port),
        },
        _ => return Err(CodecError::new("service without address or fwmark")),
    };
    let netmask = match (family, netmask) {
        (Family::Ipv4, Some(v)) if v.len() >= 4 => {
            Netmask::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))
        }
        (Family::Ipv6, Some(v)) => Netmask::V6(read_u32(v)?.min(128) as u8),
        _ => Netmask::full(family),
    };
    let settings = ServiceSettings {
        scheduler: sched.ok_or_else(|| CodecError::new("service without scheduler"))?,
        sched_flags: SchedFlags {
            flag1: flags & F_SCHED1 != 0,
            flag2: flags & F_SCHED2 != 0,
            flag3: flags & F_SCHED3 != 0,
        },
        one_packet: flags & F_ONEPACKET != 0,
        persistence: (flags & F_PERSISTENT != 0).then_some(timeout),
        netmask,
        pe,
    };
    Ok(Service {
        key,
        settings,
        // Kernels since 4.1 send both; the 64-bit counters do not wrap.
        stats: stats64
            .or(stats)
            .map(decode_stats)
            .transpose()?
            .unwrap_or_default(),
        dests: Vec::new(),
    })
}

/// A destination from a `GET_DEST` reply; `family` is its service's, for
/// kernels older than `IPVS_DEST_ATTR_ADDR_FAMILY` (Linux 3.18).
pub fn decode_dest(reply: &[u8], family: Family) -> Result<Dest, CodecError> {
    let d = nested(reply, CMD_ATTR_DEST)?;
    let mut addr = None;
    let mut port = None;
    let mut af = None;
    let mut settings = DestSettings::new(Forwarding::Masq, 0);
    let mut counters = DestCounters::default();
    let mut stats = None;
    let mut stats64 = None;
    for a in attrs(d) {
        let (kind, v) = a?;
        match kind {
            DEST_ADDR => addr = Some(v),
            DEST_PORT => port = Some(read_be16(v)?),
            DEST_ADDR_FAMILY => af = Some(read_u16(v)?),
            DEST_FWD_METHOD => {
                let code = read_u32(v)?;
                settings.forwarding = Forwarding::from_code(code)
                    .ok_or_else(|| CodecError::new(format!("forwarding method {code}")))?;
            }
            DEST_WEIGHT => settings.weight = read_u32(v)?,
            DEST_U_THRESH => settings.upper_threshold = read_u32(v)?,
            DEST_L_THRESH => settings.lower_threshold = read_u32(v)?,
            DEST_ACTIVE_CONNS => counters.active_conns = read_u32(v)?,
            DEST_INACT_CONNS => counters.inactive_conns = read_u32(v)?,
            DEST_PERSIST_CONNS => counters.persistent_conns = read_u32(v)?,
            DEST_STATS => stats = Some(v),
            DEST_STATS64 => stats64 = Some(v),
            DEST_TUN_TYPE => {
                let t = read_u8(v)?;
                settings.tunnel.kind = TunnelType::from_code(t)
                    .ok_or_else(|| CodecError::new(format!("tunnel type {t}")))?;
            }
            DEST_TUN_PORT => settings.tunnel.port = read_be16(v)?,
            DEST_TUN_FLAGS => settings.tunnel.checksum = TunnelChecksum::from_flags(read_u16(v)?),
            _ => {}
        }
    }
    let family = match af {
        Some(af) => {
            Family::from_af(af).ok_or_else(|| CodecError::new(format!("address family {af}")))?
        }
        None => family,
    };
    let addr = addr.ok_or_else(|| CodecError::new("destination without address"))?;
    let port = port.ok_or_else(|| CodecError::new("destination without port"))?;
    counters.stats = stats64
        .or(stats)
        .map(decode_stats)
        .transpose()?
        .unwrap_or_default();
    // Tunnel parameters mean nothing without tunnel forwarding, and a
    // kernel before 5.3 reports none: keep the default then.
    if settings.forwarding != Forwarding::Tunnel {
        settings.tunnel = Tunnel::default();
    }
    Ok(Dest {
        addr: SocketAddr::new(read_inet_addr(addr, family)?, port),
        settings,
        counters,
    })
}

pub fn decode_info(reply: &[u8]) -> Result<Info, CodecError> {
    let mut info = Info {
        version: 0,
        conn_table_size: 0,
    };
    for a in attrs(reply) {
        let (kind, v) = a?;
        match kind {
            INFO_VERSION => info.version = read_u32(v)?,
            INFO_CONN_TAB_SIZE => info.conn_table_size = read_u32(v)?,
            _ => {}
        }
    }
    Ok(info)
}

pub fn decode_timeouts(reply: &[u8]) -> Result<Timeouts, CodecError> {
    let mut t = Timeouts::default();
    for a in attrs(reply) {
        let (kind, v) = a?;
        match kind {
            CMD_ATTR_TIMEOUT_TCP => t.tcp = Some(read_u32(v)?),
            CMD_ATTR_TIMEOUT_TCP_FIN => t.tcp_fin = Some(read_u32(v)?),
            CMD_ATTR_TIMEOUT_UDP => t.udp = Some(read_u32(v)?),
            _ => {}
        }
    }
    Ok(t)
}

pub fn decode_daemon(reply: &[u8]) -> Result<SyncDaemon, CodecError> {
    let d = nested(reply, CMD_ATTR_DAEMON)?;
    let mut role = None;
    let mut interface = String::new();
    let mut out = SyncDaemon {
        role: SyncRole::Master,
        interface: String::new(),
        sync_id: 0,
        max_len: None,
        group: None,
        port: None,
        ttl: None,
    };
    for a in attrs(d) {
        let (kind, v) = a?;
        match kind {
            DAEMON_STATE => role = SyncRole::from_state(read_u32(v)?),
            DAEMON_MCAST_IFN => interface = read_string(v),
            DAEMON_SYNC_ID => out.sync_id = read_u32(v)?,
            DAEMON_SYNC_MAXLEN => out.max_len = Some(read_u16(v)?),
            DAEMON_MCAST_GROUP if v.len() >= 4 => {
                out.group = Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])))
            }
            DAEMON_MCAST_GROUP6 => out.group = Some(read_inet_addr(v, Family::Ipv6)?),
            DAEMON_MCAST_PORT => out.port = Some(read_u16(v)?),
            DAEMON_MCAST_TTL => out.ttl = Some(read_u8(v)?),
            _ => {}
        }
    }
    out.role = role.ok_or_else(|| CodecError::new("sync daemon without a known state"))?;
    out.interface = interface;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Attrs, iter_attrs};

    fn key() -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: "[2001:db8::1]:53".parse().unwrap(),
        }
    }

    /// What the kernel sends back for a request's service: the request's
    /// own attributes plus stats (`ip_vs_genl_fill_service`).
    fn as_reply(request: &[u8], extra: impl FnOnce(&mut Attrs)) -> Vec<u8> {
        let (kind, v) = iter_attrs(request).unwrap()[0];
        let mut a = Attrs::new();
        a.nested(kind, |n| {
            for (k, val) in iter_attrs(v).unwrap() {
                n.bytes(k, val);
            }
            extra(n);
        });
        a.into_bytes()
    }

    #[test]
    fn a_service_survives_encoding_and_decoding() {
        let settings = ServiceSettings {
            scheduler: "mh".into(),
            sched_flags: SchedFlags {
                flag1: true,
                flag2: true,
                flag3: false,
            },
            one_packet: true,
            persistence: Some(300),
            netmask: Netmask::V6(64),
            pe: Some("sip".into()),
        };
        let (cmd, attrs) = encode_op(&Op::AddService {
            key: key(),
            settings: settings.clone(),
        });
        assert_eq!(cmd, cmd::NEW_SERVICE);
        let reply = as_reply(&attrs, |n| {
            n.nested(SVC_STATS64, |s| {
                s.bytes(1, &7u64.to_ne_bytes());
                s.bytes(11, &[0; 8]);
                s.bytes(4, &1234u64.to_ne_bytes());
            });
        });
        let svc = decode_service(&reply).unwrap();
        assert_eq!(svc.key, key());
        assert_eq!(svc.settings, settings);
        assert_eq!(svc.stats.conns, 7);
        assert_eq!(svc.stats.inbytes, 1234);
    }

    #[test]
    fn ports_travel_big_endian_and_addresses_in_sixteen_bytes() {
        let k = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
        let (_, attrs) = encode_op(&Op::DelService { key: k });
        let svc = iter_attrs(&attrs).unwrap()[0].1;
        let inner = iter_attrs(svc).unwrap();
        let get = |kind| inner.iter().find(|(k, _)| *k == kind).unwrap().1;
        assert_eq!(get(SVC_PORT), &[0, 80]);
        assert_eq!(
            get(SVC_ADDR),
            &[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(get(SVC_PROTOCOL), &6u16.to_ne_bytes());
    }

    #[test]
    fn a_tunnel_destination_survives_encoding_and_decoding() {
        let settings = DestSettings {
            forwarding: Forwarding::Tunnel,
            weight: 3,
            upper_threshold: 100,
            lower_threshold: 50,
            tunnel: Tunnel {
                kind: TunnelType::Gue,
                port: 6080,
                checksum: TunnelChecksum::Remote,
            },
        };
        let addr: SocketAddr = "10.0.0.5:53".parse().unwrap();
        let (cmd, attrs) = encode_op(&Op::AddDest {
            service: key(),
            addr,
            settings,
        });
        assert_eq!(cmd, cmd::NEW_DEST);
        // The kernel answers with the destination alone.
        let dest_attr = iter_attrs(&attrs)
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == CMD_ATTR_DEST)
            .unwrap()
            .1
            .to_vec();
        let mut reply = Attrs::new();
        reply.nested(CMD_ATTR_DEST, |n| {
            for (k, v) in iter_attrs(&dest_attr).unwrap() {
                n.bytes(k, v);
            }
            n.u32(DEST_ACTIVE_CONNS, 4);
        });
        // An IPv4 real server behind an IPv6 service: the tunnel case.
        let d = decode_dest(&reply.into_bytes(), Family::Ipv6).unwrap();
        assert_eq!(d.addr, addr);
        assert_eq!(d.settings, settings);
        assert_eq!(d.counters.active_conns, 4);
    }

    #[test]
    fn a_firewall_mark_service_is_keyed_by_mark_and_family() {
        let k = ServiceKey::Fwmark {
            family: Family::Ipv6,
            mark: 7,
        };
        let (_, attrs) = encode_op(&Op::EditService {
            key: k,
            settings: ServiceSettings::new(Family::Ipv6, "wlc"),
        });
        let svc = decode_service(&attrs).unwrap();
        assert_eq!(svc.key, k);
        assert_eq!(svc.settings.netmask, Netmask::V6(128));
    }

    #[test]
    fn thirty_two_bit_stats_are_read_when_no_sixty_four_bit_ones_come() {
        let mut a = Attrs::new();
        a.u32(1, 5).bytes(4, &9u64.to_ne_bytes());
        let s = decode_stats(&a.into_bytes()).unwrap();
        assert_eq!((s.conns, s.inbytes), (5, 9));
    }
}
